"""The package carries what it runs (issue #16): the wheel and sdist hold the playbooks, image
recipes and shipped topologies; an installed copy finds them in lab/share, a checkout at its
top level, and both hash the same image inputs (the VM disk and node image stay cached)."""
import json
import os
import stat
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

from lab.engines import images
from lab.core import paths
from lab.engines import vm
from tests import REPO
from tests import wheel as wheel_build

NEEDED = ["playbooks/lab.yml", "playbooks/action_plugins/lab_unpack.py", "playbooks/templates/peer.j2",
          "playbooks/templates/configure.sh.j2", "images/rootfs.sh", "images/suite.sh", "images/node/Dockerfile",
          "images/node/entrypoint.sh", "images/vm/init.sh", "images/vm/post.sh", "images/vm/packages.txt",
          "topologies/default.yaml", "topologies/topology.schema.json"]
EXECUTABLE = ["images/rootfs.sh", "images/suite.sh", "images/node/entrypoint.sh", "images/vm/init.sh", "images/vm/post.sh"]


def shipped_files() -> list[str]:
    """Every file of the checkout's shipped folders, as share/ paths."""
    return sorted(str(p.relative_to(REPO)) for name in paths.SHARED for p in (REPO / name).rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return wheel_build.build(tmp_path_factory.mktemp("wheel"))


def test_the_wheel_carries_every_shipped_file_with_its_mode(built):
    wheel, _ = built
    with zipfile.ZipFile(wheel) as z:
        infos = {i.filename: i for i in z.infolist()}
    share = {name.removeprefix("lab/share/"): info for name, info in infos.items() if name.startswith("lab/share/")}
    assert set(NEEDED) <= set(share), sorted(set(NEEDED) - set(share))
    assert sorted(share) == shipped_files()  # all of them, and nothing else (no bytecode, no runs/)
    for name in EXECUTABLE:
        assert (share[name].external_attr >> 16) & 0o111, f"{name} lost its executable bits"
    assert "lab/cli/__init__.py" in infos and "lab/pptp/session.py" in infos and "lab/model/kinds/pptp_server.py" in infos
    meta = next(z for z in infos if z.endswith(".dist-info/METADATA"))
    with zipfile.ZipFile(wheel) as z:
        text = z.read(meta).decode()
        assert any(n.endswith(".dist-info/licenses/LICENSE") for n in infos)
    assert "License-Expression: MIT" in text and "Classifier: Framework :: Pytest" in text
    assert "# pptp-lab" in text  # the README is the long description
    # Ansible configures every lab: a plain `pip install pptp-lab` brings it (issue #28).
    requires = [line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("Requires-Dist: ")]
    assert {"ansible-runner>=2.3", "ansible>=9"} <= set(requires), requires
    assert "Provides-Extra: configure" not in text


def test_the_sdist_carries_the_checkout_layout(built):
    _, sdist = built
    if sdist is None:
        pytest.skip("the `build` package is not installed (it comes with pptp-lab[test])")
    with tarfile.open(sdist) as tar:
        members = {m.name.split("/", 1)[1]: m for m in tar.getmembers() if "/" in m.name}
    assert set(NEEDED) | {"LICENSE", "README.md", "pyproject.toml"} <= set(members)
    for name in EXECUTABLE:
        assert members[name].mode & 0o111, f"{name} lost its executable bits in the sdist"


def test_every_shipped_folder_is_a_listed_package():
    """setuptools only carries a folder listed in `packages`: a new one under images/ must be added."""
    conf = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(conf["packages"])
    for name in paths.SHARED:
        assert conf["package-dir"][f"lab.share.{name}"] == name
        for d in [REPO / name, *(p for p in (REPO / name).rglob("*") if p.is_dir())]:
            if d.name != "__pycache__":
                pkg = "lab.share." + ".".join(d.relative_to(REPO).parts)
                assert pkg in listed, f"{d.relative_to(REPO)}/ is not in pyproject.toml's packages"
    for init in (REPO / "lab").rglob("__init__.py"):  # lab's own subpackages (lab.pptp, lab.kinds)
        pkg = ".".join(init.parent.relative_to(REPO).parts)
        assert pkg in listed, f"{pkg} is not in pyproject.toml's packages"


KEYS = ("import json, os; from lab import version; from lab.core import paths; from lab.engines import images, vm; "
        "print(json.dumps({'base': images.base_key(), 'node': images.node_key(), 'vm': vm.vm_key(), "
        "'share': {n: str(paths.resource(n)) for n in paths.SHARED}, 'lab': paths.__file__, "
        "'runs': str(paths.runs_dir()), 'version': version()}))")


def test_an_installed_copy_finds_its_share_dir_and_has_the_checkouts_cache_keys(built, tmp_path):
    wheel, _ = built
    site = tmp_path / "site"
    res = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                          "--target", str(site), str(wheel)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    share = site / "lab" / "share"
    for name in EXECUTABLE:
        assert os.stat(share / name).st_mode & stat.S_IXUSR, f"installed {name} is not executable"
    # Bytecode pip or Python leave in the installed copy is no input of any image.
    assert list(share.glob("playbooks/action_plugins/__pycache__/*.pyc")), "pip compiled nothing?"
    for d in ("images/vm", "images/node", "images"):
        (share / d / "__pycache__").mkdir(exist_ok=True)
        (share / d / "__pycache__" / "stray.cpython-311.pyc").write_bytes(b"\0stray")
    (share / "images" / "node" / "stray.pyc").write_bytes(b"\0stray")
    work = tmp_path / "user-project"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop(paths.RUNS_ENV, None)
    res = subprocess.run([sys.executable, "-c", KEYS], capture_output=True, text=True, cwd=work, env=env)
    assert res.returncode == 0, res.stderr
    installed = json.loads(res.stdout)
    assert Path(installed["lab"]).is_relative_to(site)
    assert installed["share"] == {n: str(share / n) for n in paths.SHARED}
    assert installed["runs"] == str(work / "runs")  # the user's directory, not site-packages
    assert installed["version"] == tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert (installed["base"], installed["node"], installed["vm"]) == (images.base_key(), images.node_key(),
                                                                       vm.vm_key())


def test_a_checkout_finds_its_top_level_folders():
    for name in paths.SHARED:
        assert paths.resource(name) == REPO / name
    with pytest.raises(ValueError):
        paths.resource("runs")


def test_a_copy_without_its_folders_says_so(tmp_path):
    """A broken install (the lab package alone) names what is missing instead of a traceback later."""
    import shutil

    shutil.copytree(REPO / "lab", tmp_path / "lab", ignore=shutil.ignore_patterns("__pycache__"))
    res = subprocess.run([sys.executable, "-c", "from lab.core import paths; paths.resource('images')"],
                         capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert res.returncode != 0 and "pptp-lab's images/ is missing" in res.stderr and "reinstall" in res.stderr

"""pptp-lab installed the way a user installs it (issue #16): the wheel, built from this
checkout, in a fresh venv outside the repository; in a project directory of its own
(`pptp-lab init`), `pytest` with the plugin's `lab` fixture and `pptp-lab test` bring real
tunnels up on the running engine, and everything lands in that directory's runs/: nothing in
the repository, nothing in the venv. The lab is the starter's two nodes, to keep it quick;
the venv's dependencies come through pip's cache (about 30 s here)."""
import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from lab.up import lifecycle
from lab.core import paths
from tests import REPO
from tests import wheel as wheel_build


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """path -> (size, mtime) of every file under root but Python's bytecode cache."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


# The README's quick start from the package, word for word (tests/unit/test_user_project.py
# holds the README to it): each runs below through quick(), as it stands but for the wheel
# built here in the place of the index's `pptp-lab` and flags of the test's own at the end.
QUICK_START = ["pip install pptp-lab pytest", "pptp-lab init", "pptp-lab test topology.yaml", "pytest"]


def quick(command: str, venv: Path, *more, wheel: Path | None = None) -> list:
    """A QUICK_START command as the venv runs it, with `more` added at the end."""
    assert command in QUICK_START, command
    first, *words = command.split()
    return [venv / "bin" / first, *(wheel if wheel and w == "pptp-lab" else w for w in words), *more]


# The labs the installed copy runs: only these may not leave anything in the checkout's
# runs/ (other modules run beside this one under pytest -n and write theirs there).
OURS = ("starter", "t-installed", "t-test-lab", "t-inst-default")


def repo_state() -> tuple[list[str], list[str]]:
    """git status (ignored files too, so a new build/ shows; runs/ aside) of the checkout,
    and what runs/ holds of this test's labs."""
    res = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--ignored"], capture_output=True,
                         text=True, check=True)
    status = [line for line in res.stdout.splitlines() if line[3:].rstrip("/") != "runs"]
    runs = sorted(str(p.relative_to(REPO)) for p in (REPO / "runs").rglob("*")
                  if p.relative_to(REPO / "runs").parts[0].startswith(OURS)) if (REPO / "runs").is_dir() else []
    return status, runs


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """A fresh venv (outside the repository) with the wheel, no extras, and pytest: what the
    README's quick start installs (Ansible comes with the package)."""
    base = tmp_path_factory.mktemp("installed")
    assert not base.is_relative_to(REPO)
    wheel, _ = wheel_build.build(base / "build")
    env_dir = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True)
    res = subprocess.run([str(c) for c in quick("pip install pptp-lab pytest", env_dir, "-q",
                                                "--disable-pip-version-check", wheel=wheel)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    yield env_dir
    shutil.rmtree(env_dir, ignore_errors=True)  # over 600 MB with Ansible


def user_env(venv: Path) -> dict[str, str]:
    """The environment a user's shell would give: this VM's state and cache (so the installed
    copy finds the running VM and the cached images), no checkout on the path, no runs/ set."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", paths.RUNS_ENV) and not k.startswith("PYTEST_")}
    env.update(PATH=f"{venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}",
               PPTP_LAB_STATE=str(paths.state_dir()), PPTP_LAB_CACHE=str(paths.cache_dir()))
    return env


def run(cmd: list, cwd: Path, env: dict, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_an_installed_copy_runs_a_users_project(lab_engine, venv, tmp_path):
    eng, _ = lab_engine  # the engine (the VM) is up before the installed copy looks for it
    env = user_env(venv)
    site = Path(run([venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                    tmp_path, env).stdout.strip())
    where = run([venv / "bin" / "python", "-c", "import lab, lab.core.paths as p; print(lab.__file__); "
                 "print(p.resource('playbooks'))"], tmp_path, env).stdout.split()
    assert where == [str(site / "lab" / "__init__.py"), str(site / "lab" / "share" / "playbooks")]
    before_site, before_repo = tree(site), repo_state()

    project = tmp_path / "project"
    project.mkdir()
    res = run(quick("pptp-lab init", venv), project, env)
    assert res.returncode == 0, res.stderr
    starter = sorted(str(p.relative_to(project)) for p in project.rglob("*") if p.is_file())

    res = run(quick("pytest", venv, "-q", "-p", "no:cacheprovider", "--rootdir", project), project, env)
    assert res.returncode == 0 and "2 passed" in res.stdout, res.stdout[-3000:] + res.stderr[-2000:]

    res = run(quick("pptp-lab test topology.yaml", venv, "--name", "t-installed"), project, env)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    junit = Path(next(line.split("JUnit: ", 1)[1] for line in out.splitlines() if "JUnit: " in line).strip())
    assert junit.is_relative_to(project / "runs" / "t-installed"), junit
    root = ET.parse(junit).getroot()
    names = {c.get("name") for c in root.iter("testcase")}
    assert root.get("failures") == "0" and {"client: tunnel up", "client: reaches 172.30.0.1"} <= names, names
    assert (junit.parent / "report.html").stat().st_size > 0 and (junit.parent / "lan.pcap").stat().st_size > 0

    # The shipped default lab by name, from the user's directory (issue #16, "Done when").
    res = run([venv / "bin" / "pptp-lab", "up", "default", "--name", "t-inst-default", "--json"], project, env)
    try:
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
        rows = {r["name"]: r for r in json.loads(res.stdout)}
        assert rows["client"]["tunnel"] == "up" and rows["home-client"]["tunnel"] == "up", rows
    finally:
        down = run([venv / "bin" / "pptp-lab", "down", "t-inst-default"], project, env)
        if down.returncode != 0:  # the next module needs these subnets: it would wait for them
            lifecycle.down(eng, "t-inst-default")
    assert down.returncode == 0 and (project / "runs" / "t-inst-default").is_dir(), down.stdout + down.stderr

    # Everything the runs wrote is in the project's runs/; the repository and the
    # installed package are as they were.
    written = sorted(str(p.relative_to(project)) for p in project.rglob("*")
                     if p.is_file() and "__pycache__" not in p.parts)  # pytest's own, of test_lab.py
    assert [w for w in written if not w.startswith("runs/")] == starter, written
    assert tree(site) == before_site
    assert not list(site.rglob("runs"))
    assert repo_state() == before_repo
    assert not [n.name for n in eng.client.networks.list()
                if n.name.startswith(("t-installed", "t-test-lab", "t-inst-default"))]

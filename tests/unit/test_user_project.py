"""pptp-lab in someone else's repository (issue #16): their topology paths, their runs/,
shipped topologies by name, `pptp-lab init`, `--version` and what `doctor` says is missing."""
import ast
import json
import os
import re
import stat
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import lab
from lab import cli
from lab.cli import doctor
from lab.core import paths
from lab.up import configure, lifecycle, starter
from lab.model import topology
from lab.core.errors import LabError
from lab.pytest_plugin import marker_topology
from tests import REPO

pytest_plugins = ["pytester"]


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    """A user's project directory as the current one, with no runs/ location set."""
    monkeypatch.delenv(paths.RUNS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ---------------------------------------------------------------- runs/

def test_runs_go_to_the_current_directory_owner_only(user_dir):
    runs = paths.runs_dir()
    assert runs == user_dir / "runs" and stat.S_IMODE(runs.stat().st_mode) == 0o700


def test_runs_go_where_the_environment_says(user_dir, monkeypatch):
    monkeypatch.setenv(paths.RUNS_ENV, "elsewhere/runs")
    assert paths.runs_dir() == user_dir / "elsewhere" / "runs"


def test_the_runs_dir_option_wins_for_the_whole_command(user_dir, monkeypatch):
    monkeypatch.setenv(paths.RUNS_ENV, str(user_dir / "from-env"))
    res = CliRunner().invoke(cli.app, ["--runs-dir", "mine", "schema"])
    assert res.exit_code == 0, res.output
    assert paths.runs_dir() == user_dir / "mine"


def test_the_plugin_puts_runs_under_pytests_rootdir(pytester, monkeypatch):
    monkeypatch.delenv(paths.RUNS_ENV, raising=False)
    pytester.makepyfile(test_where="""
        import os
        from lab.core import paths

        def test_runs(pytestconfig):
            assert paths.runs_dir() == pytestconfig.rootpath / "runs"
            assert os.environ["PPTP_LAB_RUNS"] == str(pytestconfig.rootpath / "runs")
    """)
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")  # loaded once, whether installed or not
    pytester.runpytest("-p", "lab.pytest_plugin").assert_outcomes(passed=1)
    assert paths.RUNS_ENV not in os.environ  # set for the session only


# ---------------------------------------------------------------- topology paths and names

def test_a_bare_name_is_a_shipped_topology(user_dir):
    assert paths.topology_file("default") == paths.resource("topologies") / "default.yaml"
    assert topology.load(paths.topology_file("nat-clients")).name == "natclients"  # its name: key


def test_a_file_of_the_users_wins_over_a_shipped_name(user_dir):
    (user_dir / "default").write_text("not yaml: [")
    assert paths.topology_file("default") == Path("default")
    for arg in ("default.yaml", "sub/default"):  # a file name or path: the user's, even if missing
        assert paths.topology_file(arg) == Path(arg)


def test_an_unknown_name_lists_the_shipped_ones(user_dir):
    with pytest.raises(LabError, match=r"nope: no such topology file.*shipped: default, nat-clients"):
        paths.topology_file("nope")


def test_up_brings_up_the_shipped_default_when_given_nothing(user_dir, monkeypatch):
    loaded = []
    real = topology.load
    monkeypatch.setattr(topology, "load", lambda p, name=None: loaded.append(Path(p)) or real(p, name))

    def no_engine(choice=None, kernel=None):
        raise LabError("no engine in unit tests")

    monkeypatch.setattr(cli.engine_mod, "select", no_engine)
    for args in ([], ["default"]):
        res = CliRunner().invoke(cli.app, ["up", *args])
        assert isinstance(res.exception, LabError) and "no engine in unit tests" in str(res.exception)
    assert loaded == [paths.resource("topologies") / "default.yaml"] * 2


def test_validate_takes_shipped_names(user_dir, monkeypatch):
    monkeypatch.setenv("PPTP_LAB_ENGINE", "vm")  # no VM runs in the unit tests' state dir
    res = CliRunner().invoke(cli.app, ["validate", "default", "server-behind-nat"])
    assert res.exit_code == 0, res.output
    assert "lab default: topology valid" in res.output and "lab servernat: topology valid" in res.output


def test_the_marker_path_is_relative_to_the_test_file_then_the_current_directory(user_dir):
    tests = user_dir / "tests"
    tests.mkdir()
    test_file = tests / "test_x.py"
    (tests / "beside.yaml").write_text("x")
    (user_dir / "here.yaml").write_text("x")
    assert marker_topology("beside.yaml", test_file) == tests / "beside.yaml"
    assert marker_topology("here.yaml", test_file) == Path("here.yaml")  # the current directory's
    assert marker_topology("default", test_file) == paths.resource("topologies") / "default.yaml"
    assert marker_topology(str(user_dir / "here.yaml"), test_file) == user_dir / "here.yaml"


# ---------------------------------------------------------------- init

def test_init_writes_a_starter_that_validates(user_dir):
    res = CliRunner().invoke(cli.app, ["init", "proj"])
    assert res.exit_code == 0, res.output
    proj = user_dir / "proj"
    assert sorted(str(p.relative_to(proj)) for p in proj.rglob("*") if p.is_file()) == sorted(starter.FILES)
    topo = topology.load(proj / "topology.yaml")
    assert [n.kind for n in topo.nodes.values()].count("pptp-client") == 1 and len(topo.networks) == 1
    assert topo.expect.clients["client"].tunnel == "up" and topo.expect.clients["client"].reach
    tree = ast.parse((proj / "test_lab.py").read_text())
    assert 'pytest.mark.topology("topology.yaml")' in (proj / "test_lab.py").read_text()
    tests = [f for f in tree.body if isinstance(f, ast.FunctionDef) and f.name.startswith("test_")]
    assert tests and all("lab" in [a.arg for a in f.args.args] for f in tests)
    for ci in ("ci-examples/gitlab-ci.yml", "ci-examples/github-workflow.yml"):
        text = (proj / ci).read_text()
        assert text.startswith("# EXAMPLE, untested") and yaml.safe_load(text)


def test_the_readme_shows_the_ci_examples_init_writes():
    readme = (Path(lab.__file__).parent.parent / "README.md").read_text()
    assert starter.GITLAB in readme and starter.GITHUB in readme


def first_screen_commands(readme: str) -> list[list[str]]:
    """The commands of each ```sh block before the README's first section, comments cut."""
    head = readme.split("\n## ", 1)[0]
    blocks = re.findall(r"^```sh\n(.*?)^```", head, re.M | re.S)
    return [[line.split("#", 1)[0].strip() for line in b.splitlines() if line.split("#", 1)[0].strip()]
            for b in blocks]


def test_the_readme_quick_start_is_what_the_installed_package_test_runs():
    """The checkout's two commands first, then the package's: each word for word the
    QUICK_START of tests/integration/test_installed_package.py, and each run there."""
    checkout, package = first_screen_commands((REPO / "README.md").read_text())
    assert checkout == ["make lab-up", "make test"]
    tree = ast.parse((REPO / "tests" / "integration" / "test_installed_package.py").read_text())
    (value,) = [ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                and [t.id for t in n.targets if isinstance(t, ast.Name)] == ["QUICK_START"]]
    assert package == value
    run = {c.args[0].value for c in ast.walk(tree) if isinstance(c, ast.Call) and getattr(c.func, "id", "") == "quick"
           and c.args and isinstance(c.args[0], ast.Constant)}
    assert run == set(value)


def test_init_defaults_to_the_current_directory(user_dir):
    assert CliRunner().invoke(cli.app, ["init"]).exit_code == 0
    assert (user_dir / "topology.yaml").is_file() and (user_dir / "test_lab.py").is_file()


def test_init_overwrites_nothing_and_says_which_file(user_dir, monkeypatch, capsys):
    (user_dir / "test_lab.py").write_text("mine")
    monkeypatch.setattr(sys, "argv", ["pptp-lab", "init"])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: {Path('.') / 'test_lab.py'} exists")
    assert (user_dir / "test_lab.py").read_text() == "mine"
    assert sorted(os.listdir(user_dir)) == ["test_lab.py"]  # nothing else written either


# ---------------------------------------------------------------- --version

def test_version_comes_from_the_installed_metadata(monkeypatch):
    res = CliRunner().invoke(cli.app, ["--version"])
    assert res.exit_code == 0 and res.output == f"pptp-lab {lab.version()}\n"
    import importlib.metadata

    monkeypatch.setattr(importlib.metadata, "version", lambda name: "9.8.7")
    assert CliRunner().invoke(cli.app, ["--version"]).output == "pptp-lab 9.8.7\n"


def test_version_of_a_checkout_that_was_never_installed(monkeypatch):
    import importlib.metadata
    import tomllib

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    want = tomllib.loads((Path(lab.__file__).parent.parent / "pyproject.toml").read_text())["project"]["version"]
    assert lab.version() == want


# ---------------------------------------------------------------- doctor

def ansible(monkeypatch, tmp_path, runner: bool, playbook: bool) -> Path:
    """This Python as a venv's bin/python with PATH holding nothing: ansible-runner
    importable or not, ansible-playbook next to the Python or not. Returns that bin/."""
    import importlib.machinery
    import types

    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    if playbook:
        (bin_dir / "ansible-playbook").write_text("#!/bin/sh\n")
        (bin_dir / "ansible-playbook").chmod(0o755)
    module = types.ModuleType("ansible_runner")
    module.__spec__ = importlib.machinery.ModuleSpec("ansible_runner", None)
    monkeypatch.setitem(sys.modules, "ansible_runner", module if runner else None)  # None: not importable
    return bin_dir


def test_doctor_names_what_a_bare_runner_lacks_and_what_to_install(monkeypatch, tmp_path):
    ansible(monkeypatch, tmp_path, runner=False, playbook=False)
    monkeypatch.setattr(doctor, "_which", lambda name: False)
    monkeypatch.setattr(doctor, "_is_root", lambda: False)
    monkeypatch.setattr(doctor, "KVM", str(tmp_path / "no-kvm"))
    monkeypatch.setattr(cli.engine_mod, "probe_local", lambda: cli.engine_mod.Probe(engine="local"))
    res = CliRunner().invoke(cli.app, ["doctor", "--json", "--engine", "vm"])
    assert res.exit_code == 0, res.output
    lacks = "\n".join(json.loads(res.stdout)["lacks"])
    for want in ("no usable", "TCG", "apt-get install qemu-system-x86", "apt-get install qemu-utils",
                 "apt-get install debootstrap", "apt-get install e2fsprogs", "not root",
                 "ansible-runner (not importable", "ansible-playbook (neither in", "-m pip install ansible-runner ansible",
                 "apt-get install docker.io"):
        assert want in lacks, want


def test_doctor_lacks_nothing_on_a_ready_machine(monkeypatch, tmp_path):
    ansible(monkeypatch, tmp_path, runner=True, playbook=True)
    monkeypatch.setattr(doctor, "_which", lambda name: True)
    monkeypatch.setattr(doctor, "_is_root", lambda: False)  # nothing to build: root not needed
    kvm = tmp_path / "kvm"
    kvm.write_text("")
    monkeypatch.setattr(doctor, "KVM", str(kvm))
    monkeypatch.setattr(doctor, "_cached", lambda kernel="bookworm": (True, True))
    assert doctor.lacks(needs_vm=True) == []


# ---------------------------------------------------------------- Ansible, before anything is created

@pytest.mark.parametrize("runner,playbook,missing", [
    (False, True, ["ansible-runner"]), (True, False, ["ansible-playbook"]),
    (False, False, ["ansible-runner", "ansible-playbook"])])
def test_a_missing_ansible_is_named_with_how_to_install_it(monkeypatch, tmp_path, runner, playbook, missing):
    bin_dir = ansible(monkeypatch, tmp_path, runner, playbook)
    line = configure.lacking()
    assert line is not None and "\n" not in line
    for what in ("ansible-runner", "ansible-playbook"):
        assert (f"{what} (" in line) == (what in missing), line
    assert line.endswith(f"{bin_dir / 'python'} -m pip install ansible-runner ansible")


def test_ansible_playbook_on_path_or_next_to_the_python_is_found(monkeypatch, tmp_path):
    bin_dir = ansible(monkeypatch, tmp_path, runner=True, playbook=False)
    assert "ansible-playbook" in configure.lacking()
    on_path = tmp_path / "elsewhere"
    on_path.mkdir()
    (on_path / "ansible-playbook").write_text("#!/bin/sh\n")
    (on_path / "ansible-playbook").chmod(0o755)
    monkeypatch.setenv("PATH", str(on_path))
    assert configure.lacking() is None
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    (bin_dir / "ansible-playbook").write_text("#!/bin/sh\n")
    (bin_dir / "ansible-playbook").chmod(0o755)
    assert configure.lacking() is None


class Recorder:
    """An engine that records every attribute asked of it (every call starts with one)."""

    def __init__(self):
        self.asked: list[str] = []

    def __getattr__(self, name):
        self.asked.append(name)
        return lambda *a, **k: None


def test_up_says_ansible_is_missing_before_asking_the_engine_anything(monkeypatch, tmp_path):
    ansible(monkeypatch, tmp_path, runner=False, playbook=True)
    eng = Recorder()
    with pytest.raises(LabError, match=r"^ansible-runner \(not importable by .*\) missing: `up` and `test` "
                       r"configure nodes with Ansible: .* -m pip install ansible-runner ansible$"):
        lifecycle.up(eng, topology.load(paths.shipped_topology("default")))
    assert eng.asked == []


@pytest.mark.parametrize("verb", ["up", "test"])
def test_the_cli_says_it_in_one_line_before_choosing_an_engine(monkeypatch, tmp_path, capsys, verb):
    ansible(monkeypatch, tmp_path, runner=True, playbook=False)
    chosen = []
    monkeypatch.setattr(cli.engine_mod, "select", lambda *a, **k: chosen.append(a))  # would boot the VM
    monkeypatch.setattr(sys, "argv", ["pptp-lab", verb, "default"])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1, err
    assert err.startswith("error: ansible-playbook (neither in ") and chosen == []

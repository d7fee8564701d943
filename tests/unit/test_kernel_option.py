"""`--kernel` on the commands that act on a running lab (issue #11): each finds the lab on
that kernel's VM, the way `status` and `down` do; without it, $PPTP_LAB_KERNEL or a
topology file's engine.kernel still count. No VM is started: attach is a stand-in."""
import sys
from types import SimpleNamespace

import pytest
import yaml
from typer.testing import CliRunner

from lab import cli
from lab.core import suites
from lab.engines import ExecResult, choose, vm
from lab.engines.vm import VmEngine
from lab.core.errors import LabError
from tests.unit.test_topology import base

runner = CliRunner()

# Each command with OPTS where the options go and LAB where the lab goes.
COMMANDS = {
    "exec": ["exec", "OPTS", "LAB", "cli", "ip", "-br", "addr"],
    "logs": ["logs", "LAB", "cli", "OPTS"],
    "apply": ["apply", "LAB", "fw", "--policy", "open", "OPTS"],
    "fault": ["fault", "LAB", "kill", "srv", "pptpd", "OPTS"],
    "why": ["why", "LAB", "cli", "OPTS"],
    "capture live": ["capture", "live", "LAB", "a", "OPTS"],
    "capture watch": ["capture", "watch", "LAB", "OPTS"],
    "capture stop": ["capture", "stop", "LAB", "OPTS"],
    "policy show": ["policy", "show", "LAB", "fw", "OPTS"],
    "nat show": ["nat", "show", "LAB", "nat", "OPTS"],
    "status": ["status", "LAB", "OPTS"],
}


def args(command: str, lab: str = "t", *opts: str) -> list[str]:
    out = []
    for word in COMMANDS[command]:
        out += list(opts) if word == "OPTS" else [lab] if word == "LAB" else [word]
    return out


@pytest.fixture(autouse=True)
def back_to_the_default_vm(monkeypatch):
    monkeypatch.delenv(suites.KERNEL_ENV, raising=False)
    monkeypatch.delenv("PPTP_LAB_ENGINE", raising=False)
    yield
    vm.use(1)


@pytest.fixture
def looked(monkeypatch):
    """The VMs (number, kernel) the command looked for a running lab in; none runs."""
    seen = []
    monkeypatch.setattr(VmEngine, "attach", lambda self: seen.append((self.number, self.kernel)))
    monkeypatch.setattr(choose, "local", lambda: pytest.fail("the local engine was asked"))
    return seen


def topology_file(tmp_path, kernel: str) -> str:
    data = base()
    data["engine"] = {"kernel": kernel}
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_every_command_on_a_running_lab_takes_kernel():
    from typer.main import get_command

    root = get_command(cli.app)
    for path in [name.split() for name in COMMANDS] + [["graph"]]:
        cmd = root
        for part in path:
            cmd = cmd.commands[part]
        assert any("--kernel" in p.opts for p in cmd.params), path


@pytest.mark.parametrize("command", COMMANDS)
def test_kernel_looks_for_the_lab_on_that_kernels_vm(command, looked):
    res = runner.invoke(cli.app, args(command, "t", "--kernel", "trixie"))
    assert isinstance(res.exception, LabError), res.output
    assert str(res.exception).startswith("the VM of kernel trixie is not running: `pptp-lab vm up --kernel trixie`")
    assert looked == [(1, "trixie")]
    looked.clear()
    runner.invoke(cli.app, args(command, "t", "--engine", "vm:2", "--kernel", "bullseye"))
    assert looked == [(2, "bullseye")]


@pytest.mark.parametrize("command", COMMANDS)
def test_without_kernel_the_environment_then_a_files_engine_kernel_count(command, looked, monkeypatch, tmp_path):
    runner.invoke(cli.app, args(command, "t", "--engine", "vm"))
    monkeypatch.setenv(suites.KERNEL_ENV, "bullseye")
    runner.invoke(cli.app, args(command))
    path = topology_file(tmp_path, "bookworm-backports")
    runner.invoke(cli.app, args(command, path))
    runner.invoke(cli.app, args(command, path, "--kernel", "trixie"))  # the option wins over the file
    assert looked == [(1, "bookworm"), (1, "bullseye"), (1, "bookworm-backports"), (1, "trixie")]


def run_main(monkeypatch, capsys, *argv):
    monkeypatch.setattr(sys, "argv", ["pptp-lab", *argv])
    with pytest.raises(SystemExit) as done:
        cli.main()
    out = capsys.readouterr()
    return done.value.code, out.out, out.err


@pytest.mark.parametrize("command", [*COMMANDS, "graph"])
def test_a_bad_kernel_is_one_line_before_any_engine_is_asked(command, monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(cli.engine_mod, "running", lambda *a: pytest.fail("an engine was asked"))
    argv = (["graph", "default", "--kernel", "buster", "-o", str(tmp_path / "x.svg")] if command == "graph"
            else args(command, "t", "--kernel", "buster"))
    code, out, err = run_main(monkeypatch, capsys, *argv)
    assert (code, out) == (2, "")
    assert err.splitlines() == ["error: --kernel buster: use bullseye, bookworm, bookworm-backports or trixie"]
    assert not (tmp_path / "x.svg").exists()


def test_graph_reads_a_running_lab_on_that_kernels_vm(looked, tmp_path):
    res = runner.invoke(cli.app, ["graph", "default", "--kernel", "trixie", "-o", str(tmp_path / "d.svg")])
    assert res.exit_code == 0 and "(live)" not in res.output, res.output  # none running: the shipped one
    assert looked == [(1, "trixie")]
    runner.invoke(cli.app, ["graph", "default", "-o", str(tmp_path / "d.svg")], env={suites.KERNEL_ENV: "bullseye"})
    assert looked == [(1, "trixie"), (1, "bullseye")]


# ------------------------------------------------------------------ the engine found is the one used
class Stand:
    """The running engine of one kernel's VM: records what each command asks of it."""

    def __init__(self, kernel):
        self.kernel, self.calls = kernel, []

    def node(self, lab, name):
        return (lab, name)

    def exec(self, node, argv, check=True):
        self.calls.append((node, argv))
        return ExecResult(0, "")


@pytest.fixture
def stands(monkeypatch):
    made = {}

    def running(choice=None, kernel=None):
        key = kernel.kernel if kernel else None
        return made.setdefault(key, Stand(key))
    monkeypatch.setattr(cli.engine_mod, "running", running)
    return made


@pytest.mark.parametrize("argv,ran", [
    (["exec", "--kernel", "trixie", "default", "cli", "ip", "a"], ["ip", "a"]),
    (["exec", "default", "--kernel", "trixie", "cli", "ip", "a"], ["ip", "a"]),
    (["exec", "--kernel=trixie", "default", "cli", "curl", "--help"], ["curl", "--help"]),
])
def test_exec_runs_in_the_node_on_that_kernels_vm(stands, argv, ran):
    res = runner.invoke(cli.app, argv)
    assert res.exit_code == 0, res.output
    assert list(stands) == ["trixie"] and stands["trixie"].calls == [(("default", "cli"), ran)]


@pytest.mark.parametrize("argv,ran", [
    (["exec", "default", "cli", "--kernel", "x"], ["--kernel", "x"]),
    (["exec", "default", "cli", "mytool", "--kernel", "trixie", "--engine", "vm"],
     ["mytool", "--kernel", "trixie", "--engine", "vm"]),
    (["exec", "default", "cli", "--", "ls", "--kernel"], ["ls", "--kernel"]),
])
def test_exec_leaves_options_after_the_command_start_to_the_command(stands, argv, ran):
    res = runner.invoke(cli.app, argv)
    assert res.exit_code == 0, res.output
    assert list(stands) == [None] and stands[None].calls == [(("default", "cli"), ran)]


def test_logs_and_the_show_commands_read_the_node_on_that_kernels_vm(stands, monkeypatch):
    from lab.up import queries

    monkeypatch.setattr(queries, "ppp_log", lambda eng, node, member=0: f"log of {node} on {eng.kernel}\n")
    monkeypatch.setattr(queries, "filter_counters", lambda eng, node: [
        {"chain": eng.kernel, "comment": node[1], "packets": 1, "bytes": 2}])
    monkeypatch.setattr(queries, "nat_entries", lambda eng, node: [
        {"proto": "gre", "state": eng.kernel, "orig": node[1], "reply": "", "helper": ""}])
    res = runner.invoke(cli.app, ["logs", "default", "cli", "--kernel", "trixie"])
    assert res.output == "log of ('default', 'cli') on trixie\n"
    res = runner.invoke(cli.app, ["policy", "show", "default", "fw", "--json", "--kernel", "bullseye"])
    assert '"chain": "bullseye"' in res.output and '"comment": "fw"' in res.output
    res = runner.invoke(cli.app, ["nat", "show", "--kernel", "trixie", "default", "nat", "--json"])
    assert '"state": "trixie"' in res.output
    assert sorted(stands) == ["bullseye", "trixie"]


def test_fault_acts_on_that_kernels_vm_and_its_undo_says_so(monkeypatch, capsys):
    from tests.unit.test_fault import FakeEngine, answers, cmds, default

    engines = {}

    def running(choice=None, kernel=None):
        return engines.setdefault(kernel.kernel if kernel else None, FakeEngine(default(), answers()))
    monkeypatch.setattr(cli.engine_mod, "running", running)
    monkeypatch.setattr(sys, "argv", ["pptp-lab", "fault", "default", "link", "client", "internet", "down",
                                      "--kernel", "trixie"])
    with pytest.raises(SystemExit) as done:
        cli.main()
    err = capsys.readouterr().err
    assert done.value.code == 0 and list(engines) == ["trixie"]
    assert ["ip", "link", "set", "dev", "internet", "down"] in cmds(engines["trixie"], "client")
    assert "undo: pptp-lab fault --kernel trixie default link client internet up" in err
    monkeypatch.setattr(sys, "argv", ["pptp-lab", "fault", "--engine", "vm:2", "--kernel", "bullseye", "default",
                                      "netem", "client", "internet", "loss=5%"])
    with pytest.raises(SystemExit):
        cli.main()
    assert "undo: pptp-lab fault --engine vm:2 --kernel bullseye default netem client internet clear" \
        in capsys.readouterr().err


def test_a_running_labs_name_and_a_file_name_the_same_lab(stands, tmp_path):
    path = topology_file(tmp_path, "trixie")
    res = runner.invoke(cli.app, ["exec", path, "cli", "true"])
    assert res.exit_code == 0, res.output
    assert stands["trixie"].calls == [(("t", "cli"), ["true"])]


def test_the_show_tables_print_what_the_node_says_as_text(stands, monkeypatch):
    from lab.up import queries

    monkeypatch.setattr(queries, "filter_counters", lambda eng, node: [
        {"chain": "forward", "comment": "S12a [red]x[/]", "packets": 1, "bytes": 2}])
    monkeypatch.setattr(queries, "nat_entries", lambda eng, node: [
        {"proto": "gre", "state": "[/]", "orig": "[b]src=1", "reply": "", "helper": "pptp", "orig_call_ids": "7"}])
    res = runner.invoke(cli.app, ["policy", "show", "default", "fw"], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "S12a [red]x[/]" in res.output, res.output
    res = runner.invoke(cli.app, ["nat", "show", "default", "nat"], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "[b]src=1" in res.output and "[/]" in res.output, res.output

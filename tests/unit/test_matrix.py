"""`pptp-lab test --matrix`: axes, cells, their schedule (kernel by kernel, one VM at a
time), Ctrl-C, and the one report (grid, verdicts, differences, JUnit). No engine runs:
the engine choice and the one-topology run are stand-ins."""
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lab import engines, pptp
from lab.testing import matrix, testrun
from lab.reports import matrixreport
from lab.model import topology
from lab.diagnosis.checks import Check
from lab.engines.vm import VmEngine
from lab.core.errors import LabError
from lab.reports.runfiles import Result
from tests import REPO

from . import pptpgen as g

DEFAULT = REPO / "topologies" / "default.yaml"

pytest_plugins = ["pytester"]


def items(*names):
    return [(DEFAULT, topology.load(DEFAULT, n)) for n in names]


@pytest.mark.parametrize("opts, start", [
    (["flavour=x"], "--matrix flavour=x: the axes are kernel and image"),
    (["kernel"], "--matrix kernel: give kernel=V1,V2,..."),
    (["kernel=,"], "--matrix kernel=,: give kernel=V1,V2,..."),
    (["kernel=bullseye,jessie"], "--matrix kernel=jessie: use bullseye, bookworm, bookworm-backports or trixie"),
    (["image=bookworm-backports"], "--matrix image=bookworm-backports: use bullseye, bookworm or trixie"),
    (["kernel=trixie", "kernel=bullseye"], "--matrix kernel= given twice"),
    (["kernel=trixie,trixie"], "--matrix kernel=trixie,trixie: trixie is listed twice"),
])
def test_axes_errors_are_one_line_naming_the_option(opts, start):
    with pytest.raises(LabError) as err:
        matrix.axes(opts)
    assert str(err.value).startswith(start) and "\n" not in str(err.value)


def test_every_combination_kernel_by_kernel_and_the_image_on_a_copy():
    ax = matrix.axes(["kernel=bullseye, trixie", "image=bookworm,trixie"])
    assert ax == {"kernel": ["bullseye", "trixie"], "image": ["bookworm", "trixie"]}
    src = items("a", "b")
    cells = matrix.cells(src, ax)
    assert [(c.kernel, c.topo.name, c.image) for c in cells][:4] == [
        ("bullseye", "a", "bookworm"), ("bullseye", "a", "trixie"), ("bullseye", "b", "bookworm"),
        ("bullseye", "b", "trixie")]
    assert len(cells) == 8 and cells[1].label == "kernel=bullseye,image=trixie"
    assert {n.image for n in cells[1].topo.nodes.values()} == {"trixie"}
    assert {n.image for _, t in src for n in t.nodes.values()} == {None}  # the loaded topology is untouched
    assert cells[1].topo.nodes["vpn"].pptp_server == src[0][1].nodes["vpn"].pptp_server  # secrets kept
    only = matrix.cells(src, matrix.axes(["image=bullseye"]))
    assert [c.label for c in only] == ["image=bullseye"] * 2 and only[0].kernel is None


def test_a_kernel_axis_needs_the_vm_engine():
    matrix.check_engine("vm:2", {"kernel": ["trixie"]})
    matrix.check_engine("local", {"image": ["trixie"]})
    with pytest.raises(LabError, match="^--matrix kernel=: the tcp://h:1 engine runs its host's own kernel"):
        matrix.check_engine("tcp://h:1", {"kernel": ["trixie"]})


def _report(tmp_path: Path, name: str, teardown: str) -> pptp.Report:
    folder = tmp_path / name
    folder.mkdir()
    c = g.full_session(g.Capture(client="198.51.100.10", server="192.0.2.10"), teardown=teardown)
    return pptp.analyze([c.write(folder / "perimeter.pcap")])


# What `uname -r` and dpkg-query said in each kernel's VM (README: Per kernel).
VERSIONS = {"trixie": {"kernel": "6.12.117+deb13-amd64", "ppp": "2.5.2-1+1", "pptpd": "1.5.0-1",
                       "pptp-linux": "1.10.0-1+b2"},
            "bookworm": {"kernel": "6.1.0-37-amd64", "ppp": "2.4.9-1+1.1+b1", "pptpd": "1.4.0-12",
                         "pptp-linux": "1.10.0-1+b1"}}


class Stage:
    """Stand-ins for the engine choice and `test`'s one-topology run, recording the order."""

    def __init__(self, monkeypatch, tmp_path, running=(), broken=(), fail=(), interrupt_at=None):
        self.log, self.stopped, self.tmp = [], [], tmp_path
        self.fail, self.interrupt_at = fail, interrupt_at
        self.teardowns: dict[str, list[str]] = {}  # kernel -> who tears down in its runs, in turn
        monkeypatch.setattr(engines, "running", lambda spec, choice: VmEngine(1, kernel=choice.kernel)
                            if choice.kernel in running else None)

        def select(spec, choice):
            if choice and choice.kernel in broken:
                raise LabError(f"{choice.said}: the VM did not boot")
            self.log.append(("select", choice.kernel if choice else None))
            return VmEngine(1, kernel=choice.kernel) if choice else engines.choose.local()

        monkeypatch.setattr(engines, "select", select)
        monkeypatch.setattr(VmEngine, "stop", lambda eng: self.stopped.append(eng.kernel) or "stopped")
        monkeypatch.setattr(testrun, "refuse_running", lambda eng, topos: None)

    def run_one(self, eng, topo):
        self.log.append(("run", topo.name, getattr(eng, "kernel", None), {n.image for n in topo.nodes.values()}))
        if len(self.log) == self.interrupt_at:
            raise KeyboardInterrupt
        if (topo.name, "error") in self.fail:
            raise LabError(f"lab {topo.name}: down failed")
        kernel = getattr(eng, "kernel", "x")
        bad = (topo.name, kernel) in self.fail
        checks = [Check("lab up", "", True), Check("client: tunnel up", "S16", not bad,
                                                  "no tunnel on ppp0; analyser: phase lcp: no GRE from the server"
                                                  if bad else "ppp0 up")]
        by = self.teardowns[kernel].pop(0) if self.teardowns.get(kernel) else \
            "server" if kernel == "trixie" else "client"
        report = _report(self.tmp, f"{topo.name}-{kernel}-{len(self.log)}", by)
        page = self.tmp / f"{topo.name}-{kernel}-{len(self.log)}.html"
        page.write_text("report")
        versions = {n: VERSIONS[kernel] for n in ("client", "vpn")} if kernel in VERSIONS else {}
        return Result(topo, checks, None, report, versions=versions), self.tmp / "junit.xml", page


def test_cells_run_kernel_by_kernel_one_vm_at_a_time(monkeypatch, tmp_path):
    stage = Stage(monkeypatch, tmp_path, running={"bookworm"}, broken={"bullseye"}, fail={("b", "trixie")})
    cells = matrix.cells(items("a", "b"), matrix.axes(["kernel=trixie,bullseye,bookworm,bookworm-backports"]))
    assert matrix.run(cells, None, None, stage.run_one)
    assert [x[:3] for x in stage.log] == [
        ("select", "trixie"), ("run", "a", "trixie"), ("run", "b", "trixie"),
        ("select", "bookworm"), ("run", "a", "bookworm"), ("run", "b", "bookworm"),
        ("select", "bookworm-backports"), ("run", "a", "bookworm-backports"), ("run", "b", "bookworm-backports")]
    # trixie's VM was started for its cells and stopped before the next VM booted; bookworm's
    # was already up (left alone); the last kernel's stays up, as after a single `test`.
    assert stage.stopped == ["trixie"]
    by = {(c.topo.name, c.kernel): c for c in cells}
    assert by["a", "trixie"].passed and not by["b", "trixie"].passed
    assert by["b", "trixie"].verdict == "client: tunnel up: no tunnel on ppp0; analyser: phase lcp: no GRE from the server"
    assert by["a", "bullseye"].state == "FAIL"
    assert by["a", "bullseye"].verdict == "--matrix kernel=bullseye: the VM did not boot"

    junit, page = matrixreport.write(cells, 12.0, tmp_path)
    root = ET.parse(junit).getroot()
    assert (root.get("tests"), root.get("failures")) == ("8", "3")
    assert [s.get("name") for s in root] == ["matrix.a", "matrix.b"]
    case = root.find("testsuite[@name='matrix.b']/testcase[@name='kernel=trixie']")
    assert case.get("classname") == "matrix.b"
    assert case.find("failure").get("message") == by["b", "trixie"].verdict
    assert root.find("testsuite[@name='matrix.a']/testcase[@name='kernel=bookworm']/failure") is None

    text = page.read_text()
    assert "5 of 8 cells passed" in text and "<th>kernel=bookworm-backports</th>" in text
    assert "analyser: phase lcp: no GRE from the server" in text and "the VM did not boot" in text
    assert "href='a-trixie-2.html'" in text
    # a's passing cells: trixie's tunnels were torn down by the server, the others' by the client
    diff = matrixreport.differences(cells)
    (fact, values), = diff["a"]
    assert fact == "198.51.100.10 → 192.0.2.10: teardown"
    assert values["kernel=trixie"].startswith("by the server") and values["kernel=bookworm"].startswith("by the client")
    assert diff["b"] == []  # b passed on bookworm and bookworm-backports, which agree
    assert "the passing cells agree on every stable fact" in text and "198.51.100.10 → 192.0.2.10: teardown" in text
    data = json.loads((tmp_path / "matrix.json").read_text())
    assert data["cells"][0]["facts"] and data["differences"]["a"][0]["fact"] == fact
    assert data["cells"][0]["versions"]["vpn"]["ppp"] == "2.5.2-1+1" and data["cells"][2]["versions"] == {}


def test_each_column_is_headed_by_the_kernel_and_pptp_versions_its_cells_ran(monkeypatch, tmp_path):
    stage = Stage(monkeypatch, tmp_path, broken={"bullseye"})
    cells = matrix.cells(items("a", "b"), matrix.axes(["kernel=bookworm,trixie,bullseye"]))
    assert matrix.run(cells, None, None, stage.run_one)
    assert matrixreport.column_versions(cells) == {
        "kernel=bookworm": ["6.1.0-37-amd64", "ppp 2.4.9-1+1.1+b1", "pptpd 1.4.0-12", "pptp-linux 1.10.0-1+b1"],
        "kernel=trixie": ["6.12.117+deb13-amd64", "ppp 2.5.2-1+1", "pptpd 1.5.0-1", "pptp-linux 1.10.0-1+b2"],
        "kernel=bullseye": []}  # its VM did not boot: nothing ran
    text = matrixreport.page(cells, tmp_path, 1.0)
    assert ("<th>kernel=trixie<div class='ran'>6.12.117+deb13-amd64</div><div class='ran'>ppp 2.5.2-1+1</div>"
            "<div class='ran'>pptpd 1.5.0-1</div><div class='ran'>pptp-linux 1.10.0-1+b2</div></th>") in text
    assert "<div class='ran'>pptpd 1.4.0-12</div>" in text and "<th>kernel=bullseye</th>" in text
    from lab.cli.runs import matrix_table
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(matrix_table(cells))
    shown = console.export_text()
    assert "6.12.117+deb13-amd64" in shown and "pptpd 1.4.0-12" in shown


def test_a_fact_that_differs_between_a_cells_runs_is_left_out(monkeypatch, tmp_path):
    stage = Stage(monkeypatch, tmp_path)
    cells = matrix.cells(items("a"), matrix.axes(["kernel=bookworm,trixie"]))
    # bookworm's two runs: the client tore the tunnel down, then the server; trixie's: the server.
    stage.teardowns = {"bookworm": ["client", "server"], "trixie": ["server", "server"]}
    assert matrix.run(cells, None, None, stage.run_one, repeat=2)
    assert [x[:3] for x in stage.log if x[0] == "run"] == [("run", "a", "bookworm")] * 2 + [("run", "a", "trixie")] * 2
    assert [len(c.runs) for c in cells] == [2, 2] and all(c.passed for c in cells)
    assert matrixreport.differences(cells) == {"a": []}
    teardown = "198.51.100.10 → 192.0.2.10: teardown"
    assert matrixreport.unsteady(cells) == {"a": [teardown, "198.51.100.10 → 192.0.2.10: teardown steps"]}
    text = matrixreport.page(cells, tmp_path, 1.0)
    assert f"left out, as they differed between runs of one cell: {teardown}, " in text
    # Run once each, the same cells differ in who tore down.
    stage.teardowns = {"bookworm": ["client"], "trixie": ["server"]}
    once = matrix.cells(items("a"), matrix.axes(["kernel=bookworm,trixie"]))
    assert matrix.run(once, None, None, stage.run_one)
    assert [f for f, _ in matrixreport.differences(once)["a"]] == [teardown]


def test_a_failed_run_ends_the_cells_runs_and_is_the_one_shown(monkeypatch, tmp_path):
    stage = Stage(monkeypatch, tmp_path)

    def second_fails(eng, topo):
        out = stage.run_one(eng, topo)
        stage.fail = {("a", "trixie")}
        return out

    cells = matrix.cells(items("a"), matrix.axes(["kernel=trixie"]))
    assert matrix.run(cells, None, None, second_fails, repeat=3)
    (c,) = cells
    assert len(c.runs) == 2 and c.state == "FAIL" and c.result is c.runs[1] and c.runs[0].passed
    assert c.verdict.startswith("client: tunnel up: no tunnel on ppp0")
    assert c.page.name == "a-trixie-3.html"  # the failed run's report


def test_ctrl_c_stops_the_cells_and_the_vm_it_started(monkeypatch, tmp_path):
    stage = Stage(monkeypatch, tmp_path, interrupt_at=3)
    cells = matrix.cells(items("a", "b"), matrix.axes(["kernel=trixie,bullseye", "image=bookworm"]))
    assert not matrix.run(cells, None, None, stage.run_one)
    assert [c.state for c in cells] == ["PASS", "interrupted", "not run", "not run"]
    assert stage.stopped == ["trixie"] and ("select", "bullseye") not in stage.log
    assert stage.log[1][3] == {"bookworm"}  # the image axis reached the run
    junit, page = matrixreport.write(cells, 1.0, tmp_path)
    assert "1 of 4 cells passed" in page.read_text()
    assert ET.parse(junit).getroot().find(".//testcase[@name='kernel=bullseye,image=bookworm']/failure") \
        .get("message") == "not run"


def test_without_a_kernel_axis_the_engine_is_tests_own_choice(monkeypatch, tmp_path):
    stage = Stage(monkeypatch, tmp_path)
    cells = matrix.cells(items("a"), matrix.axes(["image=bullseye,trixie"]))
    assert matrix.run(cells, None, None, stage.run_one)
    assert stage.log[0] == ("select", None) and stage.stopped == []
    stage.log.clear()
    stage.fail = {("a", "error")}  # a LabError out of one cell fails it; the others still run
    cells = matrix.cells(items("a", "b"), matrix.axes(["image=trixie"]))
    assert matrix.run(cells, None, "trixie", stage.run_one)
    assert stage.log[0] == ("select", "trixie") and [c.state for c in cells] == ["FAIL", "PASS"]
    assert cells[0].verdict == "lab a: down failed"


def test_cli_matrix_runs_each_cell_through_tests_own_path(monkeypatch, tmp_path):
    from lab import cli

    stage = Stage(monkeypatch, tmp_path, fail={("default", "bullseye")})
    ran = []

    def one(eng, topo):
        ran.append(topo.name)
        res = stage.run_one(eng, topo)[0]
        res.run_dir = tmp_path / f"run-{len(ran)}"
        res.run_dir.mkdir()
        return res

    monkeypatch.setattr(testrun, "run", one)
    res = CliRunner().invoke(cli.app, ["test", "default", "--matrix", "kernel=bullseye,trixie"])
    assert res.exit_code == 1, res.output
    assert ran == ["default", "default"]
    assert (tmp_path / "run-1" / "junit.xml").is_file() and (tmp_path / "run-2" / "report.html").is_file()
    assert "1 of 2 cells passed" in res.output and "JUnit (matrix):" in res.output
    (out,) = (Path(tmp_path / "runs" / "matrix")).iterdir()
    assert {p.name for p in out.iterdir()} == {"junit.xml", "index.html", "matrix.json"}
    res = CliRunner().invoke(cli.app, ["test", "default", "--matrix", "kernel=trixie", "--repeat", "2"])
    assert res.exit_code == 0, res.output
    assert len(ran) == 4 and "1 matrix cell(s), one after another, 2 runs each" in res.output


@pytest.mark.parametrize("args, start", [
    (["--matrix", "kernel=sid"], "error: --matrix kernel=sid: use "),
    (["--matrix", "kernel=trixie", "--kernel", "bullseye"], "error: --kernel and --matrix kernel=: "),
    (["--matrix", "image=trixie", "-j", "2"], "error: --matrix runs its cells one after another"),
    (["--matrix", "kernel=trixie", "--engine", "local"], "error: --matrix kernel=: the local engine"),
    (["--repeat", "2"], "error: --repeat runs matrix cells again: give --matrix with it"),
])
def test_cli_matrix_errors_are_one_line(tmp_path, args, start):
    import os
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-c", "from lab.cli import main; main()", "test", "default", *args],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 2 and len(lines) == 1 and lines[0].startswith(start), res.stderr


# ---------------------------------------------------------------- the pytest plugin

@pytest.fixture
def plugin_stage(monkeypatch):
    """The plugin's engine choice and lab up/down as stand-ins; what they were asked, in order."""
    from lab.up import lifecycle

    seen = {"select": [], "up": [], "stopped": [], "order": []}

    def select(spec, kernel=None):
        seen["select"].append(kernel.said if kernel else None)
        seen["order"].append(("start", kernel.kernel if kernel else "local"))
        return VmEngine(1, kernel=kernel.kernel) if kernel else engines.choose.local()

    monkeypatch.setattr(engines, "select", select)
    monkeypatch.setattr(engines, "running", lambda spec, kernel=None: None)
    monkeypatch.setattr(VmEngine, "ensure_image", lambda eng: f"node:{eng.kernel}")
    monkeypatch.setattr(type(engines.choose.local()), "ensure_image", lambda eng: "node:local")
    monkeypatch.setattr(VmEngine, "stop", lambda eng: (seen["stopped"].append(eng.kernel),
                                                       seen["order"].append(("stop", eng.kernel))))
    monkeypatch.setattr(lifecycle, "up", lambda eng, topo, **_: seen["up"].append((getattr(eng, "kernel", "local"),
                                                                              topo.name)))
    monkeypatch.setattr(lifecycle, "down", lambda eng, name: (0, None))
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    return seen



def test_the_kernel_marker_gives_the_lab_once_per_kernel(pytester, plugin_stage):
    pytester.makepyfile(test_k="""
        import pytest

        pytestmark = pytest.mark.kernel("bullseye", "trixie")

        def test_one(lab, lab_kernel):
            assert lab.eng.kernel == lab_kernel

        def test_two(lab):
            pass
    """, test_plain="""
        def test_default(lab, lab_kernel):
            assert lab_kernel is None
    """)
    res = pytester.runpytest("-p", "lab.pytest_plugin", "-v")
    res.assert_outcomes(passed=5)
    res.stdout.fnmatch_lines(["*test_k.py::test_one?kernel=bullseye? PASSED*",
                              "*test_k.py::test_two?kernel=trixie? PASSED*",
                              "*test_plain.py::test_default PASSED*"])
    # one lab per module and kernel (the tests of a kernel share it), each kernel's VM its own
    assert sorted(plugin_stage["up"]) == [("bullseye", "t-test-k"), ("local", "t-test-plain"),
                                          ("trixie", "t-test-k")]
    assert sorted(plugin_stage["select"], key=str) == [
        "@pytest.mark.kernel bullseye", "@pytest.mark.kernel trixie", None]
    assert sorted(plugin_stage["stopped"]) == ["bullseye", "trixie"]  # started by the session: stopped


def test_the_kernel_marker_runs_one_vm_of_its_own_at_a_time(pytester, plugin_stage):
    pytester.makepyfile(test_k="""
        import pytest

        pytestmark = pytest.mark.kernel("bullseye", "bookworm-backports", "trixie")

        def test_one(lab):
            pass
    """)
    pytester.runpytest("-p", "lab.pytest_plugin").assert_outcomes(passed=3)
    # the previous kernel's VM goes before the next one starts; the last at the session's end
    assert plugin_stage["order"] == [("start", "bullseye"), ("stop", "bullseye"), ("start", "bookworm-backports"),
                                     ("stop", "bookworm-backports"), ("start", "trixie"), ("stop", "trixie")]


def test_a_bad_kernel_in_the_marker_is_named(pytester, plugin_stage):
    pytester.makepyfile(test_bad="""
        import pytest

        @pytest.mark.kernel("buster")
        def test_x(lab):
            pass
    """)
    res = pytester.runpytest("-p", "lab.pytest_plugin")
    res.stdout.fnmatch_lines(["*@pytest.mark.kernel buster: use bullseye, bookworm, bookworm-backports or trixie*"])
    assert plugin_stage["up"] == []


@pytest.mark.parametrize("path", sorted((REPO / "topologies").rglob("*.yaml")), ids=lambda p: p.stem)
def test_the_image_copy_of_every_shipped_topology_differs_only_in_images(path):
    topo = topology.load(path)
    copy = topology.public_data(matrix.with_image(topo, "bullseye"))
    assert {n.pop("image") for n in copy["nodes"].values()} == {"bullseye"}
    assert copy == topology.public_data(topo)

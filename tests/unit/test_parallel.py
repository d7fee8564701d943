"""lab.parallel without engines: the engine pool, which labs may share an engine, the
scheduler (with a stand-in for the child `pptp-lab test` process) and the merged reports."""
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from lab.testing import parallel
from lab.model import topology
from lab.core.errors import LabError
from lab.core.paths import shipped_topology

REPO = Path(__file__).resolve().parents[2]


def load(name, lab=None):
    return topology.load(shipped_topology(name), name=lab)


def test_pool_of_vms_is_instances_and_other_engines_are_shared():
    assert parallel.engine_pool("vm", 3, []) == ["vm", "vm:2", "vm:3"]
    assert parallel.engine_pool("tcp://127.0.0.1:1", 2, []) == ["tcp://127.0.0.1:1"] * 2
    assert parallel.engine_pool("vm", 1, ["vm", "tcp://127.0.0.1:2375"]) == ["vm", "tcp://127.0.0.1:2375"]
    with pytest.raises(LabError, match="engine 'podman'"):
        parallel.engine_pool("vm", 1, ["podman"])
    with pytest.raises(LabError, match="-j 0"):
        parallel.engine_pool("vm", 0, [])


def test_labs_that_overlap_cannot_share_an_engine():
    a, b = load("default"), load("nat-clients")
    assert parallel.clash(a, load("default")) == "both are lab default"
    why = parallel.clash(a, b)
    # the shipped topologies reuse the reference's addresses: they never share an engine at once
    assert why is None or "overlaps" in why
    tiny = topology.Topology.model_validate({"name": "tiny", "networks": {"n": {"subnet": "10.201.0.0/24"}},
                                             "nodes": {"h": {"kind": "host", "interfaces": {"n": "10.201.0.2"}}}})
    assert parallel.clash(a, tiny) is None


def _fake_child(monkeypatch, seconds=0.3, fail=()):
    """Stand in for the child process: record overlap per engine, write a run like a test's."""
    running: dict[str, list] = {}
    seen = {"max_per_engine": 0, "overlap": []}
    guard = threading.Lock()

    def run(job, out_dir, kernel=None):
        with guard:
            mine = running.setdefault(parallel._key(job.engine), [])
            for other in mine:
                if parallel.clash(job.topo, other):
                    seen["overlap"].append((job.topo.name, other.name))
            mine.append(job.topo)
            seen["max_per_engine"] = max(seen["max_per_engine"], len(mine))
        job.state, job.started = "running", time.monotonic()
        time.sleep(seconds)
        job.log = out_dir / f"{job.topo.name}.log"
        job.log.write_text("log\n")
        job.run_dir = out_dir / job.topo.name
        job.run_dir.mkdir()
        ok = job.topo.name not in fail
        (job.run_dir / "junit.xml").write_text(
            f'<testsuite name="{job.topo.name}" tests="1" failures="{0 if ok else 1}">'
            f'<testcase name="lab up" classname="{job.topo.name}">{"" if ok else "<failure/>"}</testcase></testsuite>')
        (job.run_dir / "report.html").write_text("<p>report</p>")
        job.rc, job.seconds = (0 if ok else 1), seconds
        job.state = "PASS" if ok else "FAIL"
        with guard:
            running[parallel._key(job.engine)].remove(job.topo)

    monkeypatch.setattr(parallel, "_run", run)
    monkeypatch.setattr(parallel, "prepare", lambda pool, *built: seen.setdefault("built", built))
    monkeypatch.setattr(parallel, "_running_vms", lambda pool, kernels: set())
    monkeypatch.setattr(parallel, "_vm_urls", lambda: {})
    monkeypatch.setattr(parallel, "stop_vms", lambda numbers: seen.setdefault("stopped", numbers))
    return seen


def test_labs_spread_over_engines_and_clashing_labs_wait(tmp_path, monkeypatch):
    monkeypatch.setenv("PPTP_LAB_RUNS", str(tmp_path))
    seen = _fake_child(monkeypatch)
    items = [(Path(f"{n}.yaml"), load("default", n)) for n in ("d1", "d2", "d3", "d4")]
    start = time.monotonic()
    jobs, out = parallel.run_all(items, ["vm", "vm:2"])
    took = time.monotonic() - start
    assert {j.engine for j in jobs} == {"vm", "vm:2"} and all(j.passed for j in jobs)
    assert took < 4 * 0.3 + 1.0  # two at a time, not one after another plus slack... loosely
    assert seen["overlap"] == [] and seen["max_per_engine"] == 1
    assert seen["stopped"] == {(2, "bookworm")}  # the extra VM it started; vm itself stays up

    # one shared engine: the four default copies overlap, so they run one at a time there
    seen = _fake_child(monkeypatch, seconds=0.1)
    jobs, _ = parallel.run_all(items, ["tcp://127.0.0.1:9"] * 2)
    assert seen["overlap"] == [] and seen["max_per_engine"] == 1 and all(j.passed for j in jobs)


def test_labs_side_by_side_on_a_kernel_asked_for(tmp_path, monkeypatch):
    monkeypatch.setenv("PPTP_LAB_RUNS", str(tmp_path))
    monkeypatch.delenv("PPTP_LAB_KERNEL", raising=False)
    seen = _fake_child(monkeypatch, seconds=0.05)
    items = [(Path("a.yaml"), load("default", "a")), (Path("b.yaml"), load("default", "b"))]
    parallel.run_all(items, ["vm", "vm:2"], "trixie")
    assert seen["stopped"] == {(2, "trixie")} and seen["built"] == ({"trixie"}, {"trixie"})
    job = parallel.Job(Path("a.yaml"), items[0][1], engine="vm:2")
    assert parallel._child_argv(job, "trixie")[-4:] == ["--engine", "vm:2", "--kernel", "trixie"]
    assert "--kernel" not in parallel._child_argv(job)
    # A topology's own kernel and node images count when no --kernel is given.
    pinned = topology.Topology.model_validate({**topology.public_data(load("default", "p")),
                                               "engine": {"kernel": "bullseye"}})
    assert parallel.kernels_of(items + [(Path("p.yaml"), pinned)]) == {"bookworm", "bullseye"}
    assert parallel.kernels_of(items + [(Path("p.yaml"), pinned)], "trixie") == {"trixie"}
    assert parallel.userlands_of([(Path("p.yaml"), pinned)], {"bookworm-backports"}) == {"bookworm"}
    assert parallel.engine_pool("auto", 2, [], vm_only=True) == ["vm", "vm:2"]


def test_two_topologies_with_one_lab_name_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("PPTP_LAB_RUNS", str(tmp_path))
    _fake_child(monkeypatch)
    with pytest.raises(LabError, match="both lab default"):
        parallel.run_all([(Path("a.yaml"), load("default")), (Path("b.yaml"), load("default"))], ["vm"])


def test_merged_junit_and_index_hold_every_lab_failures_included(tmp_path, monkeypatch):
    monkeypatch.setenv("PPTP_LAB_RUNS", str(tmp_path))
    _fake_child(monkeypatch, seconds=0.05, fail=("bad",))
    items = [(Path("good.yaml"), load("default", "good")), (Path("bad.yaml"), load("default", "bad"))]
    jobs, out = parallel.run_all(items, ["vm", "vm:2"])
    lost = parallel.Job(Path("x.yaml"), load("default", "lost"), engine="vm", rc=2, state="ERROR",
                        log=out / "lost.log")
    lost.log.write_text("boom\n")
    junit, page = parallel.write_merged(jobs + [lost], out, 1.0)
    root = ET.parse(junit).getroot()
    assert root.tag == "testsuites" and [s.get("name") for s in root] == ["good", "bad", "lost"]
    assert root.get("tests") == "3" and root.get("failures") == "2"
    assert root[2].find("testcase/failure").get("message") == "no JUnit from this lab's run (exit 2)"
    text = page.read_text()
    assert "1 of 3 labs passed" in text and 'href="good/report.html"' in text and 'href="lost.log"' in text


def test_pytest_xdist_workers_share_the_engine_or_take_the_listed_ones_in_turn(monkeypatch):
    from lab import pytest_plugin

    monkeypatch.setenv("PPTP_LAB_ENGINE", "vm")
    monkeypatch.delenv("PPTP_LAB_ENGINES", raising=False)
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    assert pytest_plugin.worker_engine() == "vm"  # not under xdist
    for worker in ("gw0", "gw1", "gw3"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        assert pytest_plugin.worker_engine() == "vm"  # one VM for all: two are slower here
    monkeypatch.setenv("PPTP_LAB_ENGINES", "vm,vm:2")
    assert pytest_plugin.worker_engine() == "vm:2"
    monkeypatch.setenv("PPTP_LAB_ENGINES", "vm, tcp://127.0.0.1:2375")
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    assert pytest_plugin.worker_engine() == "tcp://127.0.0.1:2375"
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw2")
    assert pytest_plugin.worker_engine() == "vm"  # taken in turn
    monkeypatch.delenv("PPTP_LAB_ENGINES")
    monkeypatch.setenv("PPTP_LAB_ENGINE", "tcp://127.0.0.1:2375")
    assert pytest_plugin.worker_engine() == "tcp://127.0.0.1:2375"  # one shared endpoint
    monkeypatch.setenv("PPTP_LAB_ENGINES", "podman")
    with pytest.raises(LabError, match="engine 'podman'"):
        pytest_plugin.worker_engine()

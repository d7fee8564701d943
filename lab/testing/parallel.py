"""`pptp-lab test TOPOLOGY... --engines A,B` / `-j N`: labs side by side, one per engine at
a time, then one merged JUnit file and one HTML index over the labs' own reports.

Each lab runs in its own `pptp-lab test` process (its own console, Ansible run and engine
connection), so nothing of one lab's run can leak into another's. Labs that would share
an engine and overlap (a name or a subnet) never run on it at the same time."""
from __future__ import annotations

import html
import os
import re
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from rich.live import Live
from rich.table import Table

from .. import engines
from ..core import suites
from ..core.errors import LabError
from ..core.host import console
from ..core.paths import RUNS_ENV, private_dir, runs_dir
from ..model.topology import Topology

RESULT_LINE = re.compile(r"^JUnit: (.+)$", re.M)


@dataclass
class Job:
    path: Path
    topo: Topology
    engine: str = ""
    state: str = "queued"
    rc: int | None = None
    seconds: float = 0.0
    log: Path | None = None
    run_dir: Path | None = None
    started: float = field(default=0.0, repr=False)
    began_at: float = 0.0  # wall clock, for the merged JUnit's timestamps

    @property
    def passed(self) -> bool:
        return self.rc == 0


def engine_pool(base: str, count: int, listed: list[str], vm_only: bool = False) -> list[str]:
    """The engine names labs are spread over: the listed ones, else `count` of the base
    kind (VM instances vm, vm:2, ...; any other engine is shared `count` times). With
    vm_only (a kernel is asked for), auto means the VM without probing the local engine."""
    if listed:
        return [engines.check_spec(x) for x in listed]
    if count < 1:
        raise LabError(f"-j {count}: give 1 or more")
    base = engines.check_spec(base)
    if base == "auto":
        base = "vm" if vm_only else engines.decide("auto", engines.probe_local())[0]
    if base == "vm":
        return ["vm"] + [f"vm:{i}" for i in range(2, count + 1)]
    return [base] * count


def _vm_urls() -> dict[str, str]:
    """URL -> vm:N of the VMs running now (a URL may name a VM's own Docker API)."""
    from ..engines import vm

    out, was = {}, vm.current()
    for n in range(1, 17):
        eng = vm.VmEngine(n).attach() if (vm.VmEngine.state_dir_of(n) / "state.json").exists() else None
        if eng is not None:
            out[eng.url] = f"vm:{n}"
    vm.use(*was)
    return out


_aliases: dict[str, str] = {}


def _key(spec: str) -> str:
    """Engines with the same key are one engine (shared by several slots): `vm` is vm:1,
    and the URL of a running VM's Docker API is that VM."""
    spec = "vm:1" if spec == "vm" else spec
    return _aliases.get(spec, spec)


def clash(a: Topology, b: Topology) -> str | None:
    """Why two labs cannot share an engine at the same time, or None."""
    if a.name == b.name:
        return f"both are lab {a.name}"
    for na, x in a.networks.items():
        for nb, y in b.networks.items():
            if x.net.overlaps(y.net):
                return f"{a.name}.{na} {x.subnet} overlaps {b.name}.{nb} {y.subnet}"
    return None


def _child_argv(job: Job, kernel: str | None = None) -> list[str]:
    """`kernel`: the parent's --kernel, passed on (else the child asks the topology and the
    environment itself, as the parent did)."""
    return [sys.executable, "-c", "from lab.cli import main; main()", "test", str(job.path),
            "--name", job.topo.name, "--engine", job.engine, *(["--kernel", kernel] if kernel else [])]


def kernels_of(items: list[tuple[Path, Topology]], kernel: str | None = None) -> set[str]:
    """The VM kernels the labs run on (--kernel, else each topology's, else the environment's)."""
    return {suites.kernel_of(suites.wanted_kernel(kernel, t, p)) for p, t in items}


def userlands_of(items: list[tuple[Path, Topology]], kernels: set[str]) -> set[str]:
    """The node image suites the labs need: each VM's own and the ones nodes name."""
    return {suites.userland(k) for k in kernels} | {n.image for _, t in items for n in t.nodes.values() if n.image}


def _run(job: Job, out_dir: Path, kernel: str | None = None) -> None:
    job.log = out_dir / f"{job.topo.name}.log"
    job.state, job.started, job.began_at = "running", time.monotonic(), time.time()
    env = {**os.environ, RUNS_ENV: str(runs_dir()), "COLUMNS": "200", "TERM": "dumb"}
    fd = os.open(job.log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as log:
        job.rc = subprocess.run(_child_argv(job, kernel), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env).returncode
    job.seconds = time.monotonic() - job.started
    m = RESULT_LINE.findall(job.log.read_text(errors="replace"))
    job.run_dir = Path(m[-1].strip()).parent if m else None
    job.state = {0: "PASS", 1: "FAIL"}.get(job.rc, "ERROR")


def _table(jobs: list[Job]) -> Table:
    t = Table(title="pptp-lab test: labs side by side")
    for col in ("lab", "engine", "state", "time"):
        t.add_column(col)
    now = time.monotonic()
    for j in jobs:
        took = j.seconds if j.rc is not None else (now - j.started if j.started else 0)
        colour = {"PASS": "green", "FAIL": "red", "ERROR": "red", "running": "yellow"}.get(j.state, "dim")
        t.add_row(j.topo.name, j.engine or "-", f"[{colour}]{j.state}[/]", f"{took:.0f}s" if took else "")
    return t


def prepare(pool: list[str], kernels: set[str] = frozenset({suites.DEFAULT}),
            userlands: set[str] = frozenset({suites.DEFAULT})) -> None:
    """Build what every engine shares (VM disks, node rootfs) once, before the labs start,
    so side-by-side processes never build the same artefact twice."""
    from ..engines import images
    from ..engines import vm

    if any(s == "vm" or s.startswith("vm:") for s in pool):
        for kernel in sorted(kernels, key=suites.KERNELS.index):
            vm.build(kernel)
    for suite in sorted(userlands, key=suites.USERLANDS.index):
        images.base_tarball(suite)


def _vm_numbers(pool: list[str]) -> set[int]:
    return {1 if s == "vm" else int(s[3:]) for s in pool if s == "vm" or s.startswith("vm:")}


def _vms(pool: list[str], kernels: set[str]) -> set[tuple[int, str]]:
    """(instance, kernel) of every VM the pool's slots may drive."""
    return {(n, k) for n in _vm_numbers(pool) for k in kernels}


def _running_vms(pool: list[str], kernels: set[str] = frozenset({suites.DEFAULT})) -> set[tuple[int, str]]:
    from ..engines import vm

    was = vm.current()
    up = {(n, k) for n, k in _vms(pool, kernels) if vm.VmEngine(n, kernel=k).attach() is not None}
    vm.use(*was)
    return up


def stop_vms(vms: set[tuple[int, str]]) -> None:
    from ..engines import vm

    was = vm.current()
    for n, k in sorted(vms, key=lambda x: (suites.KERNELS.index(x[1]), x[0])):
        console.print(f"VM {n}{'' if k == suites.DEFAULT else f' ({k})'}: {vm.VmEngine(n, kernel=k).stop()}")
    vm.use(*was)


def run_all(items: list[tuple[Path, Topology]], pool: list[str],
            kernel: str | None = None) -> tuple[list[Job], Path]:
    """Run every topology on the pool's engines; return the jobs and the merged-run folder.
    VMs this run started (instances beyond the ones already up) are stopped at the end.
    `kernel`: the --kernel option, if given."""
    kernels = kernels_of(items, kernel)
    before = _running_vms(pool, kernels)
    try:
        return _run_all(items, pool, kernel, kernels)
    finally:
        # Each kernel's first VM stays up, as after a single `test`.
        stop_vms(_vms(pool, kernels) - before - {(1, k) for k in kernels})


def _run_all(items: list[tuple[Path, Topology]], pool: list[str], kernel: str | None = None,
             kernels: set[str] = frozenset({suites.DEFAULT})) -> tuple[list[Job], Path]:
    names = [t.name for _, t in items]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise LabError(f"two topologies are both lab {dup[0]}: labs side by side need distinct names")
    prepare(pool, kernels, userlands_of(items, kernels))
    _aliases.clear()
    _aliases.update(_vm_urls())
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    out_dir = private_dir(private_dir(runs_dir() / "parallel") / stamp)
    jobs = [Job(p, t) for p, t in items]
    lock = threading.Condition()
    busy: dict[str, list[Job]] = {}

    def take(spec: str) -> Job | None:
        """The next queued lab that clashes with none running on this engine (waits while
        only clashing ones are left)."""
        with lock:
            while True:
                queued = [j for j in jobs if j.state == "queued"]
                if not queued:
                    return None
                for j in queued:
                    if not any(clash(j.topo, r.topo) for r in busy.get(_key(spec), [])):
                        j.state, j.engine = "starting", spec
                        busy.setdefault(_key(spec), []).append(j)
                        return j
                lock.wait(timeout=5)

    def worker(spec: str) -> None:
        while (job := take(spec)) is not None:
            try:
                _run(job, out_dir, kernel)
            except Exception as exc:  # e.g. no python to start: this lab errs, the others go on
                job.rc, job.state = 2, "ERROR"
                job.log = out_dir / f"{job.topo.name}.log"
                job.log.write_text(f"could not run: {type(exc).__name__}: {exc}\n")
            finally:
                with lock:
                    busy[_key(spec)].remove(job)
                    lock.notify_all()

    threads = [threading.Thread(target=worker, args=(s,), daemon=True) for s in pool]
    with Live(_table(jobs), console=console, refresh_per_second=1, transient=False) as live:
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            time.sleep(1)
            live.update(_table(jobs))
        live.update(_table(jobs))
    console.print()
    return jobs, out_dir


def merged_junit(jobs: list[Job]) -> str:
    """One <testsuites> holding every lab's suite (a lab whose run left no JUnit file gets
    a suite with one failed case pointing at its log)."""
    root = ET.Element("testsuites")
    for j in jobs:
        junit = j.run_dir / "junit.xml" if j.run_dir else None
        suite = None
        if junit and junit.is_file():
            try:
                parsed = ET.parse(junit).getroot()
                suite = parsed if parsed.tag == "testsuite" else parsed.find("testsuite")
            except ET.ParseError:
                suite = None
        if suite is None:
            suite = ET.Element("testsuite", name=j.topo.name, tests="1", failures="1")
            case = ET.SubElement(suite, "testcase", name="lab ran", classname=j.topo.name)
            ET.SubElement(case, "failure", message=f"no JUnit from this lab's run (exit {j.rc})").text = \
                f"see {j.log}"
        suite.set("hostname", j.engine)
        if j.began_at:
            suite.set("timestamp", datetime.fromtimestamp(j.began_at, timezone.utc).isoformat(timespec="seconds"))
            suite.set("time", f"{j.seconds:.1f}")
        root.append(suite)
    root.set("tests", str(sum(int(s.get("tests", 0)) for s in root)))
    root.set("failures", str(sum(int(s.get("failures", 0)) for s in root)))
    return ET.tostring(root, encoding="unicode", xml_declaration=True)


def index_html(jobs: list[Job], out_dir: Path, wall: float) -> str:
    """The merged HTML: one row per lab (engine, verdict, time) linking its own report."""
    def link(target: Path | None, text: str) -> str:
        if not target or not target.exists():
            return ""
        rel = os.path.relpath(target, out_dir)
        return f'<a href="{html.escape(rel)}">{html.escape(text)}</a>'

    rows = "".join(
        f"<tr class={'pass' if j.passed else 'fail'}><td>{html.escape(j.topo.name)}</td>"
        f"<td>{html.escape(j.engine)}</td><td>{html.escape(j.state)}</td><td>{j.seconds:.0f} s</td>"
        f"<td>{link(j.run_dir / 'report.html' if j.run_dir else None, 'report')} "
        f"{link(j.log, 'log')}</td></tr>" for j in jobs)
    passed = sum(j.passed for j in jobs)
    return ("<!doctype html><meta charset=utf-8><title>pptp-lab test: side by side</title>"
            "<style>body{font:14px sans-serif;margin:2em}td,th{padding:.3em .8em;text-align:left}"
            ".pass td:nth-child(3){color:#070}.fail td:nth-child(3){color:#b00}</style>"
            f"<h1>pptp-lab test: {passed} of {len(jobs)} labs passed</h1>"
            f"<p>{len({j.engine for j in jobs})} engine(s), wall time {wall:.0f} s</p>"
            "<table><tr><th>lab<th>engine<th>result<th>time<th></tr>" + rows + "</table>")


def write_merged(jobs: list[Job], out_dir: Path, wall: float) -> tuple[Path, Path]:
    junit, page = out_dir / "junit.xml", out_dir / "index.html"
    junit.write_text(merged_junit(jobs))
    page.write_text(index_html(jobs, out_dir, wall))
    return junit, page

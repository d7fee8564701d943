"""`pptp-lab test TOPOLOGY... --matrix kernel=bullseye,trixie [--matrix image=...]`: every
(topology, kernel, image) cell through the one-topology `test` path, then one report
(lab.reports.matrixreport).

Cells run one after another, grouped by kernel: each kernel is its own VM, booted once
for its cells and stopped after them when this run started it. Never two VMs at once: on
a 2-CPU host two guests (QEMU under TCG, or KVM with dockerd and a lab each) contend for
the CPUs, and a slow guest shifts dial and echo timing, which is one of the things the
report compares between cells.

`--repeat N` runs each cell N times in a row: a fact whose value differs between a cell's
runs depends on timing, and the report leaves it out of the differences (lab.reports.cellfacts)."""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .. import engines
from ..core import suites
from ..core.errors import LabError
from ..core.host import console
from ..reports.runfiles import Result
from ..model.topology import Topology

AXES = {"kernel": (suites.KERNELS, suites.check_kernel), "image": (suites.USERLANDS, suites.check_userland)}
SOURCE = "--matrix kernel="  # how an engine error names a cell's kernel


def axes(options: list[str]) -> dict[str, list[str]]:
    """`--matrix AXIS=V1,V2,...` options as {axis: values}; LabError naming the option."""
    out: dict[str, list[str]] = {}
    for opt in options:
        axis, eq, text = opt.partition("=")
        axis = axis.strip()
        if axis not in AXES:
            raise LabError(f"--matrix {opt}: the axes are {' and '.join(AXES)} (e.g. --matrix kernel=bullseye,trixie)")
        values = [v.strip() for v in text.split(",") if v.strip()]
        if not eq or not values:
            raise LabError(f"--matrix {opt}: give {axis}=V1,V2,... (one of {', '.join(AXES[axis][0])})")
        if axis in out:
            raise LabError(f"--matrix {axis}= given twice: list every value in one option")
        for v in values:
            AXES[axis][1](v, f"--matrix {axis}=")
        dup = sorted({v for v in values if values.count(v) > 1})
        if dup:
            raise LabError(f"--matrix {axis}={text}: {dup[0]} is listed twice")
        out[axis] = values
    return out


def with_image(topo: Topology, image: str | None) -> Topology:
    """A copy of the topology whose every node runs `image`'s userland (the user's file and
    the loaded topology stay as they are)."""
    if image is None:
        return topo
    data = topo.model_dump()
    for node in data["nodes"].values():
        node["image"] = image
    return Topology.model_validate(data)


@dataclass
class Cell:
    path: Path
    topo: Topology           # the cell's copy: with the image axis applied
    kernel: str | None       # None: no kernel axis (the engine is chosen as for `test`)
    image: str | None
    label: str               # "kernel=trixie,image=bookworm": the JUnit name, the grid column
    state: str = "queued"    # then PASS, FAIL, interrupted, not run
    result: Result | None = None  # the run the grid shows: the first that failed, else the first
    runs: list[Result] = field(default_factory=list)  # every run's, in order (--repeat)
    error: str = ""          # the cell could not run (its kernel's VM did not start, ...)
    seconds: float = 0.0
    junit: Path | None = None
    page: Path | None = None

    @property
    def passed(self) -> bool:
        return self.state == "PASS"

    @property
    def verdict(self) -> str:
        """Why the cell failed: the first failed check with its detail (a tunnel check's
        detail is the analyser's phase and verdict)."""
        if self.error:
            return self.error
        failed = [c for c in (self.result.checks if self.result else []) if not c.passed]
        if failed:
            return f"{failed[0].name}: {failed[0].detail}"
        return "" if self.passed else self.state


def cells(items: list[tuple[Path, Topology]], ax: dict[str, list[str]]) -> list[Cell]:
    """Every combination, ordered kernel by kernel (each VM boots once), then topology, image."""
    kernels, images = ax.get("kernel", [None]), ax.get("image", [None])
    out = []
    for kernel, (path, topo), image in itertools.product(kernels, items, images):
        label = ",".join(f"{a}={v}" for a, v in (("kernel", kernel), ("image", image)) if v is not None)
        out.append(Cell(path, with_image(topo, image), kernel, image, label))
    return out


def _choice(cell: Cell, kernel_opt: str | None) -> suites.KernelChoice | None:
    if cell.kernel is not None:
        return suites.KernelChoice(cell.kernel, SOURCE)
    return suites.wanted_kernel(kernel_opt, cell.topo, cell.path)


def check_engine(engine: str | None, ax: dict[str, list[str]]) -> None:
    """A kernel axis needs the VM engine: said before anything runs."""
    spec = engines.check_spec(engine or engines.wanted())
    if "kernel" in ax and (spec == "local" or spec.startswith(("unix://", "tcp://", "ssh://"))):
        raise LabError(f"--matrix kernel=: the {spec} engine runs its host's own kernel; only the VM "
                       "engine boots a chosen one (--engine vm, vm:N or auto)")


RunOne = Callable[[object, Topology], tuple[Result, Path, Path]]


def groups(todo: list[Cell], kernel_opt: str | None) -> list[tuple[suites.KernelChoice | None, list[Cell]]]:
    """The cells by the kernel they run on (None: no kernel asked, the engine `test` picks)."""
    out: dict[str | None, tuple] = {}
    for c in todo:
        choice = _choice(c, kernel_opt)
        out.setdefault(choice.kernel if choice else None, (choice, []))[1].append(c)
    return list(out.values())


def run(todo: list[Cell], engine: str | None, kernel_opt: str | None, run_one: RunOne, repeat: int = 1) -> bool:
    """Run the cells, each `repeat` times in a row until a run fails (run_one: `pptp-lab
    test`'s own path for one topology); False when Ctrl-C stopped them (the cell under way is
    `interrupted`, later ones `not run`)."""
    done = iter(range(1, len(todo) + 1))
    plan = groups(todo, kernel_opt)
    try:
        for i, (choice, group) in enumerate(plan):
            _group(group, choice, engine, run_one, done, len(todo), last=i == len(plan) - 1, repeat=repeat)
    except KeyboardInterrupt as exc:
        if str(exc):
            console.print(f"interrupted: {exc}", soft_wrap=True, markup=False, highlight=False)
        for c in todo:
            if c.state in ("running", "queued"):
                c.state = "interrupted" if c.state == "running" else "not run"
        return False
    return True


def _group(group: list[Cell], choice, engine: str | None, run_one: RunOne, done, total: int, last: bool,
           repeat: int = 1) -> None:
    """One kernel's cells on its engine. Its VM, when this run started it, is stopped after
    them unless they are the last (a single `test` leaves its VM up too)."""
    from . import testrun
    from ..engines.vm import VmEngine

    def cannot(exc: LabError) -> None:  # this kernel's cells fail; the other kernels' still run
        for c in group:
            c.state, c.error = "FAIL", str(exc)
            console.print(f"[red]cell {next(done)}/{total} {c.topo.name} {c.label}: FAIL[/] {exc}",
                          soft_wrap=True)

    was = engines.running(engine, choice) if choice else None
    try:
        eng = engines.select(engine, choice)
    except LabError as exc:
        return cannot(exc)
    try:
        try:
            testrun.refuse_running(eng, [c.topo for c in group])
        except LabError as exc:
            return cannot(exc)
        for c in group:
            n = next(done)
            c.state, start = "running", time.monotonic()
            for i in range(1, repeat + 1):
                console.rule(f"cell {n}/{total}: {c.topo.name} {c.label} on {eng.name}"
                             + (f", run {i} of {repeat}" if repeat > 1 else ""))
                try:
                    res, junit, page = run_one(eng, c.topo)
                except LabError as exc:  # e.g. `down` failed after the checks: this cell fails, the next runs
                    c.error = str(exc)
                    break
                c.runs.append(res)
                if c.result is None or not res.passed:
                    c.result, c.junit, c.page = res, junit, page
                if not res.passed:  # the cell has failed: more runs cannot change that
                    break
            c.seconds = time.monotonic() - start
            c.state = "PASS" if c.result and c.result.passed and not c.error else "FAIL"
            console.print(f"[{'green' if c.passed else 'red'}]{c.topo.name} {c.label}: {c.state}[/] "
                          f"in {c.seconds:.0f}s", soft_wrap=True)
    finally:
        if choice and was is None and isinstance(eng, VmEngine) and not last:
            console.print(f"{eng.name}: {eng.stop()}")  # started for these cells: never two VMs up

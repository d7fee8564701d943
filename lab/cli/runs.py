"""The verbs that test topologies and report on the runs: `test` (one lab, side by side,
a matrix) and `report`."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Group
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from .. import engines as engine_mod
from ..core import suites, timing
from ..core.errors import LabError
from ..core.host import console
from ..core.paths import topology_file
from .common import EngineOpt, KernelOpt, WideOpt, _compact, app, warnings


def checks_table(checks, title: str, wide: bool = False) -> Table:
    """testrun.Check results as a table: by default the result, then the check with its detail
    under it (the detail gets the width of the terminal); `wide`: check, result, detail."""
    def result(c) -> Text:
        return Text("pass", style="green") if c.passed else Text("FAIL", style="red")

    if wide:
        table = Table(title=title)
        for col in ("check", "result", "detail"):
            table.add_column(col, overflow="fold")
        for c in checks:
            table.add_row(Text(c.name, overflow="fold"), result(c), Text(c.detail, overflow="fold"))
        return table
    table = _compact(title)
    table.add_column("result")
    table.add_column("check", overflow="fold")
    for c in checks:
        cell = Text(c.name, style="bold", overflow="fold")
        if c.detail:
            cell = Group(cell, Padding(Text(c.detail, overflow="fold"), (0, 0, 0, 2), expand=False))
        table.add_row(result(c), cell)
    return table


@app.command("test")
def test_(topologies: list[str] = typer.Argument(..., metavar="TOPOLOGY...",
                                               help="topology files, or shipped topologies' names"),
          engine: Optional[str] = EngineOpt, kernel: Optional[str] = KernelOpt, wide: bool = WideOpt,
          name: Optional[str] = typer.Option(None, "--name", help="lab name for a single topology "
                                             "(default: the file's name:)"),
          engines: Optional[str] = typer.Option(None, "--engines", metavar="A,B,...",
                                                help="run labs side by side, one per engine at a time "
                                                "(e.g. vm,vm:2 or vm,tcp://127.0.0.1:2375)"),
          jobs: int = typer.Option(1, "-j", "--jobs", metavar="N",
                                   help="N engines of --engine's kind side by side (VMs: vm, vm:2, ...)"),
          matrix: Optional[list[str]] = typer.Option(
              None, "--matrix", metavar="AXIS=V1,V2,...",
              help=f"run every combination: kernel={','.join(suites.KERNELS)} and/or "
              f"image={','.join(suites.USERLANDS)} (every node's userland); repeatable; one report in "
              "runs/matrix/<stamp>/"),
          repeat: int = typer.Option(1, "--repeat", metavar="N", min=1,
                                     help="with --matrix: run each cell N times; a fact that differs "
                                     "between a cell's runs is left out of the differences")) -> None:
    """Bring each topology up, check its `expect:` block on real tunnels and captures, and
    write JUnit XML and an HTML report (runs/<lab>/<run-id>/). With several engines
    (--engines, -j N) labs run side by side and runs/parallel/<stamp>/ gets the merged
    junit.xml and an index.html over every lab's report. With --matrix each (topology,
    kernel, image) cell runs in turn and runs/matrix/<stamp>/ gets a grid of the cells and
    the differences between the passing ones."""
    from ..testing import matrix as matrix_mod, testrun
    from ..model import topology
    from ..up import configure

    if name and len(topologies) > 1:
        raise LabError("--name renames one topology's lab: give a single TOPOLOGY with it")
    suites.wanted_kernel(kernel)  # a bad --kernel is said before any file is read
    axes = matrix_mod.axes(matrix or [])
    if repeat != 1 and not matrix:
        raise LabError("--repeat runs matrix cells again: give --matrix with it")
    if matrix:
        if kernel and "kernel" in axes:
            raise LabError("--kernel and --matrix kernel=: give the kernels in --matrix only")
        if engines or jobs != 1:
            raise LabError("--matrix runs its cells one after another: leave out --engines and -j")
        matrix_mod.check_engine(engine, axes)
    paths = [topology_file(p) for p in topologies]
    topos = [topology.load(p, name) for p in paths]  # all validated before anything runs
    for p, t in zip(paths, topos):
        warnings(p, t)
    configure.require()  # before a VM boots for labs Ansible could not configure
    if matrix:
        _test_matrix(matrix_mod.cells(list(zip(paths, topos)), axes), engine, kernel, wide, repeat)
    asks = [suites.wanted_kernel(kernel, t, p) for p, t in zip(paths, topos)]
    listed = [x.strip() for x in (engines or "").split(",") if x.strip()]
    if listed or jobs != 1:
        _test_side_by_side(list(zip(paths, topos)), engine or engine_mod.wanted(), jobs, listed, kernel,
                           vm_only=any(asks))
    # One engine per kernel the topologies ask for (a VM each), all known before any lab runs.
    chosen: dict = {}
    for ask in asks:
        key = ask.kernel if ask else None
        if key not in chosen:
            chosen[key] = engine_mod.select(engine, ask)
    for key, eng in chosen.items():
        testrun.refuse_running(eng, [t for t, a in zip(topos, asks) if (a.kernel if a else None) == key])
    failed = 0
    for topo, ask in zip(topos, asks):
        res, _, _ = _test_one(chosen[ask.kernel if ask else None], topo, wide)
        failed += not res.passed
    raise typer.Exit(1 if failed else 0)


def _test_one(eng, topo, wide: bool = False):
    """`pptp-lab test` of one topology on one engine (a matrix cell too): (Result, junit, page)."""
    from ..reports import runfiles
    from ..testing import testrun

    res = testrun.run(eng, topo)
    junit, page = runfiles.write(res)
    console.print(checks_table(res.checks, f"pptp-lab test {topo.name}: {'PASS' if res.passed else 'FAIL'}", wide))
    console.print(f"time: {timing.line(res.timings)}", soft_wrap=True, markup=False, highlight=False)
    console.print(f"JUnit: {junit}\nreport: {page}", soft_wrap=True)  # paths whole, never wrapped
    return res, junit, page


def _test_matrix(cells, engine: Optional[str], kernel: Optional[str], wide: bool, repeat: int = 1) -> None:
    from ..testing import matrix as matrix_mod
    from ..reports import matrixreport

    console.print(f"{len(cells)} matrix cell(s), one after another"
                  + (f", {repeat} runs each" if repeat > 1 else "") + ": "
                  + ", ".join(dict.fromkeys(c.label for c in cells)))
    start = time.monotonic()
    finished = matrix_mod.run(cells, engine, kernel, lambda eng, topo: _test_one(eng, topo, wide), repeat)
    junit, page = matrixreport.write(cells, time.monotonic() - start)
    console.print(matrix_table(cells))
    console.print(f"{sum(c.passed for c in cells)} of {len(cells)} cells passed\n"
                  f"JUnit (matrix): {junit}\nreport: {page}", soft_wrap=True)
    raise typer.Exit(130 if not finished else 0 if all(c.passed for c in cells) else 1)


def matrix_table(cells) -> Table:
    """The grid on the terminal: topology rows, kernel[/image] columns headed by the versions
    their cells ran, a failing cell's verdict."""
    from ..reports import matrixreport

    labels = list(dict.fromkeys(c.label for c in cells))
    heads = matrixreport.column_versions(cells)
    table = Table(title="pptp-lab test: matrix", show_lines=True)
    table.add_column("topology")
    for label in labels:
        table.add_column(Text("\n".join([label, *heads[label]])), overflow="fold")
    by = {(c.topo.name, c.label): c for c in cells}
    for topo in dict.fromkeys(c.topo.name for c in cells):
        row = []
        for label in labels:
            c = by.get((topo, label))
            colour = {"PASS": "green", "FAIL": "red"}.get(c.state, "dim") if c else "dim"
            row.append(Text.assemble((c.state, colour), ("\n" + c.verdict if not c.passed and c.verdict else ""))
                       if c else Text(""))
        table.add_row(topo, *row)
    return table


def _test_side_by_side(items, base: str, jobs: int, listed: list[str], kernel: Optional[str] = None,
                       vm_only: bool = False) -> None:
    from ..testing import parallel

    pool = parallel.engine_pool(base, jobs, listed, vm_only)
    console.print(f"{len(items)} lab(s) on {len(pool)} engine slot(s): {', '.join(pool)}")
    start = time.monotonic()
    done, out_dir = parallel.run_all(items, pool, kernel)
    junit, page = parallel.write_merged(done, out_dir, time.monotonic() - start)
    failed = [j for j in done if not j.passed]
    for j in failed:
        console.print(f"[red]{j.topo.name}: {j.state}[/] on {j.engine} (log: {j.log})", soft_wrap=True)
    console.print(f"{len(done) - len(failed)} of {len(done)} labs passed in {time.monotonic() - start:.0f}s\n"
                  f"JUnit (merged): {junit}\nreport: {page}", soft_wrap=True)
    raise typer.Exit(1 if failed else 0)


@app.command("report")
def report_(run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="a `pptp-lab test` run: runs/<lab>/<run-id>"),
            as_json: bool = typer.Option(False, "--json", help="print report.json (checks and analysis)")) -> None:
    """Rebuild report.html and report.json of a `pptp-lab test` run from what it saved
    (pcaps, manifest.json, checks.json, topology.json): e.g. a CI artefact, read later."""
    from ..reports import runfiles

    res = runfiles.load(run_dir)
    try:
        page, data = runfiles.write_reports(res, run_dir)
    except OSError as exc:
        raise LabError(f"{run_dir}: cannot write the report ({exc.strerror or exc})") from exc
    if as_json:
        print(json.dumps(runfiles.data(res), indent=1, default=str))
    else:
        console.print(f"{res.topo.name}: {'PASS' if res.passed else 'FAIL'} "
                      f"({sum(not c.passed for c in res.checks)} of {len(res.checks)} checks failed)\n"
                      f"report: {page}\nJSON: {data}", soft_wrap=True, markup=False, highlight=False)

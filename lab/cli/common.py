"""What every verb module of the `pptp-lab` command shares: the app, its global options,
the --engine/--kernel/--wide options and the helpers that find a running lab.

Its own module (not the package) so that the verb modules import it and the package
imports them without an import cycle."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from .. import engines as engine_mod
from ..core import suites
from ..core.errors import LabError
from ..core.host import console
from ..core.paths import RUNS_ENV


app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Containerised PPTP VPN lab orchestrator and integration testbed.")


EngineOpt = typer.Option(None, "--engine", help=f"{engine_mod.HELP} (default: $PPTP_LAB_ENGINE or auto)")
KERNELS = " | ".join(suites.KERNELS)
KernelOpt = typer.Option(None, "--kernel", metavar="SUITE",
                         help=f"the VM's Debian kernel: {KERNELS} (default: the topology's engine.kernel, "
                         f"else ${suites.KERNEL_ENV}, else bookworm); implies the VM engine")
LabKernelOpt = typer.Option(None, "--kernel", metavar="SUITE",
                            help=f"the lab on this kernel's VM: {KERNELS} (default: a topology file's "
                            f"engine.kernel, else ${suites.KERNEL_ENV}); implies the VM engine")
VmKernelOpt = typer.Option(None, "--kernel", metavar="SUITE",
                           help=f"which kernel's VM: {KERNELS} (default: ${suites.KERNEL_ENV}, else bookworm)")


def _print(data, as_json: bool) -> None:
    if as_json:
        print(json.dumps(data, indent=1, default=str))
        return
    table = Table(show_header=False)
    for k, v in data.items():
        # Escaped: values hold console lines ("[pptpd:18600]") and paths that rich would take for markup.
        table.add_row(escape(str(k)), escape(("\n".join(map(str, v)) or "nothing") if isinstance(v, list) else str(v)))
    console.print(table)


def warnings(path, topo, show: bool = True) -> list[str]:
    """The topology's warnings (lab.model.warnings: valid but cannot work), each after its
    file; printed as yellow lines unless `show` is off."""
    from ..model import warnings as found

    lines = [f"{path}: {w}" for w in found.of(topo)]
    if show:
        for line in lines:
            console.print(f"[yellow]warning: {escape(line)}[/]", soft_wrap=True, highlight=False)
    return lines


def _version(value: bool) -> None:
    if value:
        from .. import version

        print(f"pptp-lab {version()}")
        raise typer.Exit()


@app.callback()
def options(show_version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                              help="print the version and exit"),
            runs_dir: Optional[Path] = typer.Option(None, "--runs-dir", metavar="DIR",
                                                    help="captures and reports (default: $PPTP_LAB_RUNS, "
                                                    "else ./runs)")) -> None:
    """Containerised PPTP VPN lab orchestrator and integration testbed."""
    if runs_dir is not None:
        # The environment, so that whatever runs below (and a test's own `pptp-lab`) agrees.
        os.environ[RUNS_ENV] = str(runs_dir.expanduser().resolve())


def _running_engine(engine: Optional[str], kernel: Optional[suites.KernelChoice] = None):
    eng = engine_mod.running(engine, kernel)
    if eng is None:
        raise LabError(engine_mod.not_running(engine, kernel))
    return eng


WideOpt = typer.Option(False, "--wide", help="one column per field (needs a wide terminal)")


def _compact(title: str) -> Table:
    """A table for 80 columns: no vertical rules, a blank line between entries."""
    return Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0),
                 show_lines=True)


def _lab_name(arg: str) -> str:
    if arg.endswith((".yaml", ".yml")):
        from ..model import topology
        return topology.load(arg).name
    return arg


def _lab_and_kernel(arg: str, kernel: Optional[str]) -> tuple[str, Optional[suites.KernelChoice]]:
    """A lab name or topology file, and the kernel asked for (a file's engine.kernel counts)."""
    asked = suites.wanted_kernel(kernel)
    if kernel or not arg.endswith((".yaml", ".yml")):
        return _lab_name(arg), asked
    from ..model import topology

    topo = topology.load(arg)
    return topo.name, suites.wanted_kernel(None, topo, arg)


def _lab_on(arg: str, engine: Optional[str], kernel: Optional[str]):
    """(the running engine, the lab's name) of a lab name or topology file: with a kernel
    asked for, the lab on that kernel's VM."""
    lab, asked = _lab_and_kernel(arg, kernel)
    return _running_engine(engine, asked), lab

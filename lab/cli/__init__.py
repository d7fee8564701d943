"""The `pptp-lab` command: thin front end over the lab's layers.

The top layer: may import every other package of lab. The verbs live by group in the
modules of this package (common.py: the app and what they share; labs.py, diagnose.py,
runs.py, machine.py: the verbs; doctor.py: what `pptp-lab doctor` finds missing); this
module registers them and holds `main`."""
from __future__ import annotations

import sys

import docker.errors

from .. import engines as engine_mod  # noqa: F401  (lab.cli.engine_mod: tests patch the engines through it)
from ..engines import vm
from ..core.errors import LabError
from ..core.host import console
from . import diagnose, labs, machine, runs  # noqa: F401  (importing them registers their verbs)
from .common import app
from .labs import status_table  # noqa: F401
from .runs import checks_table, matrix_table  # noqa: F401

# The order `pptp-lab --help` lists them in, whichever module registered them first.
HELP_ORDER = ("doctor", "analyze", "up", "down", "status", "apply", "fault", "why", "exec", "logs", "test", "report",
              "graph", "validate", "init", "schema", "vm", "image", "capture", "policy", "nat")


def _help_rank(name: str) -> int:
    return HELP_ORDER.index(name) if name in HELP_ORDER else len(HELP_ORDER)


app.registered_commands.sort(key=lambda c: _help_rank(c.name or c.callback.__name__))
app.registered_groups.sort(key=lambda g: _help_rank(g.name))


def main() -> None:
    try:
        app()
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)  # one line, never wrapped
        sys.exit(2)
    except (*vm.LOST_CONNECTION, docker.errors.DockerException) as exc:  # e.g. its guest hung under it
        print(f"error: {vm.one_line(exc)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]")
        sys.exit(130)

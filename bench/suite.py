#!/usr/bin/env python3
"""Wall time of the scenario suite (tests/integration) and where it goes (figures, no asserts):

  engine   the `lab_engine` fixture: VM boot (or engine probe) and node image load
  lab up   the `lab` fixtures and explicit lifecycle.up calls: networks, nodes, Ansible, tunnels
  timers   time.sleep in tests and helpers: waiting for protocol timers (echo, teardown, loss)
  analysis lab.pptp.analyze on the captures
  other    everything else (pings, execs, reconfiguration, teardown)

Usage: .venv/bin/python bench/suite.py [pytest args, default: tests/integration -q]
The buckets are measured in this process, so run it without -n (one at a time); `make test`
runs two workers, and its own wall time is the figure to set beside the target."""
from __future__ import annotations

import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pytest  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

SPENT: dict[str, float] = defaultdict(float)
_active: list[str] = []  # nested timers count once, in the outermost bucket


def timed(bucket: str, fn):
    def wrapper(*args, **kwargs):
        if _active:
            return fn(*args, **kwargs)
        _active.append(bucket)
        start = time.monotonic()
        try:
            return fn(*args, **kwargs)
        finally:
            SPENT[bucket] += time.monotonic() - start
            _active.pop()
    return wrapper


class Phases:
    @pytest.hookimpl(hookwrapper=True)
    def pytest_fixture_setup(self, fixturedef, request):
        bucket = {"lab_engine": "engine", "lab": "lab up"}.get(fixturedef.argname)
        if bucket is None or _active:
            yield
            return
        _active.append(bucket)
        start = time.monotonic()
        yield
        SPENT[bucket] += time.monotonic() - start
        _active.pop()


def main() -> int:
    from lab.up import lifecycle
    from lab import pptp

    time.sleep = timed("timers", time.sleep)
    pptp.analyze = timed("analysis", pptp.analyze)
    lifecycle.up = timed("lab up", lifecycle.up)
    args = sys.argv[1:] or ["tests/integration", "-q"]
    start = time.monotonic()
    rc = pytest.main(args, plugins=[Phases()])
    total = time.monotonic() - start
    table = Table(title=f"scenario suite: {total / 60:.1f} min (pytest exit {rc}); issue #15 target for "
                        "make test warm <= 10 min; before: 29-30 min one at a time, 22 min as make test's "
                        "two workers")
    for col in ("share", "seconds", "%"):
        table.add_column(col)
    for bucket in ("engine", "lab up", "timers", "analysis"):
        table.add_row(bucket, f"{SPENT[bucket]:.0f}", f"{100 * SPENT[bucket] / total:.0f}")
    other = total - sum(SPENT.values())
    table.add_row("other", f"{other:.0f}", f"{100 * other / total:.0f}")
    Console().print(table)
    return int(rc)


if __name__ == "__main__":
    sys.exit(main())

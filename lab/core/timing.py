"""Where a run's time goes (issue #30): named phases, measured with the monotonic clock and
kept by whoever records. `pptp-lab test` records each lab's run (report.json's `timings`,
one line of output); bench/lab.py records `up`. Outside a recording, `phase` only runs its
block: the process-wide list is empty."""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Iterator

_lock = threading.Lock()
_recorders: list[dict[str, float]] = []


@contextmanager
def recording() -> Iterator[dict[str, float]]:
    """{phase: seconds} of the phases run meanwhile, in the order they ended; a phase run
    twice adds up."""
    got: dict[str, float] = {}
    with _lock:
        _recorders.append(got)
    try:
        yield got
    finally:
        with _lock:
            _recorders.remove(got)


@contextmanager
def phase(name: str) -> Iterator[None]:
    start = time.monotonic()
    try:
        yield
    finally:
        took = time.monotonic() - start
        with _lock:
            for got in _recorders:
                got[name] = got.get(name, 0.0) + took


def line(got: dict[str, float]) -> str:
    """`networks 0.9 s, nodes 12.1 s, ...`: the phases as one line."""
    return ", ".join(f"{name} {secs:.1f} s" for name, secs in got.items())

"""Where a running lab's faults are written until its capture stops.

A live lab has no run directory yet: capture.stop makes runs/<lab>/<run-id>/ and its
manifest.json when the pcaps are collected. So lab.up.fault appends each fault to
runs/<lab>/faults.jsonl (owner-only, one JSON object a line: appends from the CLI and a
test at once never interleave), and capture.stop moves the faults of its capture into the
manifest (`faults`). Kept apart from lab.up.fault so capture imports nothing heavy."""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..core.paths import private_dir, runs_dir

FILE = "faults.jsonl"


def path(lab: str) -> Path:
    return private_dir(runs_dir() / lab) / FILE


def append(lab: str, record: dict) -> Path:
    p = path(lab)
    line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, line)  # one write of one line: O_APPEND keeps it whole
    finally:
        os.close(fd)
    return p


def read(lab: str) -> list[dict]:
    """The lab's faults so far, oldest first; a line that does not parse is skipped (a
    write cut short by a crash)."""
    p = runs_dir() / lab / FILE
    if not p.is_file():
        return []
    out = []
    for line in p.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("started"), (int, float)):
            out.append(rec)
    return sorted(out, key=lambda r: r["started"])


def engine_time(record: dict) -> float:
    """When a fault began on the engine's clock, the clock of the capture's timestamps (a
    VM's guest clock is not kept in step with the host's: lab.up.fault measures the offset)."""
    return record["started"] + (record.get("clock_offset") or 0.0)


def take(lab: str, since: float | None) -> list[dict]:
    """The faults injected since a capture started (engine clock), for its manifest; the
    file is removed: a fault older than that belongs to no capture still to be collected."""
    found = [r for r in read(lab) if since is None or engine_time(r) >= since]
    (runs_dir() / lab / FILE).unlink(missing_ok=True)
    return found

#!/usr/bin/env python3
"""A fresh machine's first `make lab-up` (issue #30, figure 4): `pptp-lab up default` to live
tunnels with an empty cache and state (the VM disk and the node rootfs built by debootstrap,
the KVM probe, a cold boot, the node image, the snapshot, the lab), then down; the apt
packages and the venv are taken as there. Prints the wall time next to the target and the
figure from before, and the lines of `up` that carry their own times.

It uses a cache and state directory of its own (under /tmp, removed afterwards), so the
machine's cached VM disk, images and snapshots are neither used nor touched; its VM is its own.
Needs the Debian mirror the builds use (as a real first run does)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
LAB = REPO / ".venv" / "bin" / "pptp-lab"
TARGET, BEFORE = "<= 300", "588 (9 min 48 s); 242 on 2026-12-04"


def main() -> int:
    top = Path(tempfile.mkdtemp(prefix="pptp-lab-firstrun-"))
    env = {**os.environ, "PPTP_LAB_CACHE": str(top / "cache"), "PPTP_LAB_STATE": str(top / "state"),
           "PPTP_LAB_RUNS": str(top / "runs"), "PPTP_LAB_ENGINE": "vm"}
    out = Console()
    try:
        start = time.monotonic()
        up = subprocess.run([str(LAB), "up", "default", "--name", "firstrun"], env=env, cwd=top,
                            capture_output=True, text=True)
        took = time.monotonic() - start
        text = up.stdout + up.stderr
        tunnels = len(re.findall(r"tunnel up", text))
    finally:
        subprocess.run([str(LAB), "down", "firstrun"], env=env, cwd=top, capture_output=True)
        subprocess.run([str(LAB), "vm", "down"], env=env, cwd=top, capture_output=True)
        shutil.rmtree(top, ignore_errors=True)
    table = Table(title="a fresh machine's first `pptp-lab up default` (empty cache and state)")
    for col in ("figure", "now (s)", "target (s)", "before (s)"):
        table.add_column(col)
    result = f"{took:.0f}" if up.returncode == 0 else f"FAILED (exit {up.returncode}) after {took:.0f}"
    table.add_row(f"to live tunnels ({tunnels} up)", result, TARGET, BEFORE)
    out.print(table)
    out.print("where it went (the lines of `up` with their own times):")
    for line in text.splitlines():
        if re.search(r"\b\d+(\.\d+)?s[,);]", line):
            out.print("  " + line.strip(), markup=False, highlight=False, soft_wrap=True)
    if up.returncode != 0:
        out.print(text[-2000:], markup=False, highlight=False)
    return up.returncode


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Fault figures (issue #12): how long detection and recovery took in each fault scenario
(SPEC S23-S28), as the tests measured them on real tunnels (figures, no asserts here: the
tests assert the behaviour, this prints their JUnit properties side by side).

Usage: .venv/bin/python bench/faults.py [--no-s28 | --s28-clients N]
Runs tests/integration/test_s23_s27_faults.py (and test_s28_many_tunnels.py, with N clients
behind the NAT: the members of one node with a count; `make test` runs it with 20) in this process
with the VM engine, like `make test`. Keepalives are short in those topologies (pppd's LCP
echo 2 s x 3, pptp-linux's PPTP echo after 5 idle s): with Debian's defaults (30 s x 4,
60 s) detection takes minutes."""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pytest  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
MODULES = ["tests/integration/test_s23_s27_faults.py", "tests/integration/test_s28_many_tunnels.py"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-s28", action="store_true", help="leave out the 20-client scenario (4 min)")
    ap.add_argument("--s28-clients", type=int, default=20, help="S28's clients (issue #30 asks for 200)")
    ap.add_argument("--only-s28", action="store_true", help="only the many-clients scenario")
    args = ap.parse_args()
    os.environ["PPTP_LAB_S28_CLIENTS"] = str(args.s28_clients)  # read by the S28 module at import
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "faults.xml"
        mods = MODULES[:1] if args.no_s28 else MODULES[1:] if args.only_s28 else MODULES
        rc = pytest.main([*(str(REPO / m) for m in mods), "-q", "-p", "no:cacheprovider", f"--junitxml={xml}"])
        cases = list(ET.parse(xml).iter("testcase")) if xml.exists() else []
    table = Table(title=f"fault scenarios on real tunnels (pytest exit {rc})")
    for col in ("scenario", "result", "test s", "detection s", "recovery s", "other figures"):
        table.add_column(col, overflow="fold")
    for tc in cases:
        props = {p.get("name"): p.get("value") for p in tc.iter("property")}
        result = "failed" if tc.find("failure") is not None or tc.find("error") is not None else (
            "skipped" if tc.find("skipped") is not None else "passed")
        recovery = props.get("recovery_s") or props.get("redial_s", "")
        if props.get("redial_s") and not props.get("recovery_s"):
            recovery = f"{recovery} (redial)"
        rest = "; ".join(f"{k}={v}" for k, v in props.items() if k not in ("detection_s", "recovery_s", "redial_s"))
        table.add_row(tc.get("name", "").removeprefix("test_"), result, f"{float(tc.get('time', 0)):.0f}",
                      props.get("detection_s", ""), recovery, rest)
    Console(width=160).print(table)
    return int(rc)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Data-flow figures (SPEC S29-S31, issue #29): per tunnel of
tests/integration/topologies/mtu.yaml, the MRU each side asked for, the tunnel's MTU, the
largest packet with DF set each way, and the TCP transfer's bytes, time, retransmissions
and throughput: with MPPE (c-mtu, c-mss) and without (c-plain), with 1% loss each way
(c-loss), and the black hole (c-bh) and the ICMP let through (c-icmp), which do not
complete. Figures only, printed side by side; the test asserts the behaviour.

Usage: .venv/bin/python bench/dataflow.py [--runs N]
Brings the lab up and down through `pptp-lab test` (about 3 minutes a run on the emulated
VM); with --runs N, each figure is shown for every run, so their spread is seen."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from tests.integration.test_s29_s31_mtu import HERE, run  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1, help="runs of the lab (default 1)")
    args = ap.parse_args()
    runs = [run(HERE / "mtu.yaml")[1] for _ in range(max(1, args.runs))]
    table = Table(title=f"data flow through PPTP tunnels ({len(runs)} run(s) of mtu.yaml)")
    for col in ("client", "MRU c/s", "tunnel MTU", "DF largest to srv / to cli", "bytes arrived",
                "seconds", "Mbit/s", "retransmits"):
        table.add_column(col, overflow="fold")
    for name in runs[0]:
        cells = [[] for _ in range(7)]
        for flows in runs:
            f = flows.get(name) or {}
            t, df, mru = f.get("transfer") or {}, f.get("df") or {}, f.get("mru") or {}
            values = (f"{mru.get('client')}/{mru.get('server')}", f.get("tunnel_mtu") or "down",
                      f"{(df.get('to_server') or {}).get('largest')} / {(df.get('to_client') or {}).get('largest')}",
                      f"{t.get('received')} of {t.get('bytes')}", t.get("seconds"), t.get("mbit_s"),
                      t.get("retransmits"))
            for cell, v in zip(cells, values):
                cell.append(str(v))
        table.add_row(name, *(", ".join(c) for c in cells))
    Console().print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

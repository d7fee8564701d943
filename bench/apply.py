#!/usr/bin/env python3
"""`pptp-lab apply` and kernel tracing, on a running lab (figures, no asserts; the host is
shared and noisy). Brings up topologies/examples/edge-firewall.yaml, then:

  apply: N applies alternating two rulesets (target: under 3 s each)
  tracing: the client's redial to tunnel-up, with tracing on vs off (the cost of `why`
           and of `pptp-lab test`'s traced dial), N of each, interleaved
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from lab.up import apply as apply_mod, lifecycle  # noqa: E402
from lab import engines  # noqa: E402
from lab.model import topology  # noqa: E402
from lab.diagnosis import trace  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "topologies" / "examples"


def redial(eng, topo, traced: bool) -> float:
    lifecycle.hang_up(eng, topo.name, ["client"])
    start = time.monotonic()
    if traced:
        with trace.tracing(eng, topo, trace.filtering_nodes(topo)):
            lifecycle.dial_clients(eng, topo, timeout=60)
    else:
        lifecycle.dial_clients(eng, topo, timeout=60)
    return time.monotonic() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=4, help="repetitions (default 4)")
    args = ap.parse_args()
    console = Console()
    eng = engines.select()
    topo = topology.load(EXAMPLE / "edge-firewall.yaml", name="bench-apply")
    lifecycle.down(eng, topo.name)
    lifecycle.up(eng, topo)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            other = Path(tmp) / "other.nft"
            other.write_text((EXAMPLE / "edge-firewall.nft").read_text().replace("ct state invalid drop\n", ""))
            applies, current = [], topo
            for i in range(args.n):
                path = other if i % 2 == 0 else EXAMPLE / "edge-firewall.nft"
                new = apply_mod.changed(current, "edge", ruleset=path)
                change = apply_mod.apply(eng, current, new, "edge")
                applies.append(change.seconds)
                current = new
        plain, traced = [], []
        for _ in range(args.n):
            plain.append(redial(eng, current, False))
            traced.append(redial(eng, current, True))
    finally:
        lifecycle.down(eng, topo.name)
    table = Table(title=f"apply and tracing, edge-firewall example, {eng.name} engine (median of {args.n})")
    for col in ("figure", "value", "target / note"):
        table.add_column(col)
    table.add_row("apply (ruleset replaced, through the playbook)", f"{statistics.median(applies):.1f} s",
                  "< 3 s" + (" MISSED" if statistics.median(applies) >= 3 else ""))
    table.add_row("redial to tunnel up, tracing off", f"{statistics.median(plain):.1f} s", "")
    table.add_row("redial to tunnel up, tracing on", f"{statistics.median(traced):.1f} s",
                  f"ratio {statistics.median(traced) / statistics.median(plain):.2f}x (on/off, incl. turning it on/off)")
    console.print(table)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""`pptp-lab test TOPOLOGY...` one lab at a time against `-j N` (N VMs side by side), in
one run, wall time side by side (figures, no asserts; the host is shared and noisy).

  bench/parallel.py                      # topologies/*.yaml, -j 1 then -j 2
  bench/parallel.py -j 3 a.yaml b.yaml   # your own

Each VM is 2 vCPUs and 2 GiB under QEMU: on a 2-core host without KVM the VMs share the
same two cores, so the gain is what waiting (boot, dial timeouts, Ansible, the engine's
own serial container creation) leaves to overlap. VM instances the -j run starts beyond
the first are stopped at its end; their overlay disks (with the node image) are kept."""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent


def timed_test(topos: list[str], extra: list[str]) -> tuple[float, int, str]:
    start = time.monotonic()
    res = subprocess.run([sys.executable, "-c", "from lab.cli import main; main()", "test", *topos, *extra],
                         capture_output=True, text=True, cwd=ROOT)
    tail = (res.stdout + res.stderr).strip().splitlines()[-3:]
    return time.monotonic() - start, res.returncode, " | ".join(tail)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-j", type=int, default=2, help="VMs side by side (default 2)")
    ap.add_argument("topologies", nargs="*", help="default: topologies/*.yaml")
    args = ap.parse_args()
    topos = args.topologies or sorted(str(p) for p in (ROOT / "topologies").glob("*.yaml"))
    console = Console()
    console.print(f"{len(topos)} topologies: {', '.join(Path(t).stem for t in topos)}")
    # Warm both: VM 1 up, VM N's overlay holding the node image, so neither side pays a first load.
    subprocess.run([sys.executable, "-c", "from lab.cli import main; main()", "vm", "up"], cwd=ROOT,
                   capture_output=True)
    for n in range(2, args.j + 1):
        subprocess.run([sys.executable, "-c", "from lab.cli import main; main()", "vm", "-n", str(n), "up"],
                       cwd=ROOT, capture_output=True)
    one, rc1, tail1 = timed_test(topos, ["--engine", "vm"])
    many, rcn, tailn = timed_test(topos, ["-j", str(args.j), "--engine", "vm"])
    table = Table(title=f"pptp-lab test {len(topos)} topologies, VM engine(s)")
    for col in ("run", "wall time", "exit", "last lines"):
        table.add_column(col)
    table.add_row("one lab at a time", f"{one:.0f} s", str(rc1), tail1[-120:])
    table.add_row(f"-j {args.j} (VMs side by side)", f"{many:.0f} s", str(rcn), tailn[-120:])
    table.add_row("ratio", f"{many / one:.2f}x", "", "below 1: side by side is faster")
    console.print(table)
    for n in range(2, args.j + 1):  # the extra VMs this bench started
        subprocess.run([sys.executable, "-c", "from lab.cli import main; main()", "vm", "-n", str(n), "down"],
                       cwd=ROOT, capture_output=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""What a lab costs, for sizing (docs/scaling.md): memory per node container and per
tunnel, and the guest's memory and CPU with N clients behind one NAT, idle and carrying a
ping stream each. Figures only, printed side by side; the engine must be running.

  memory per container: the container's cgroup usage (Docker stats), idle, tunnels up
  memory per tunnel: pppd + pptp RSS on a client, pppd RSS per call on the server
  guest: used memory (free) with no lab, with the lab up; CPU% of the busiest node"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from lab import engines as engine  # noqa: E402
from lab.up import lifecycle  # noqa: E402
from lab.model import topology  # noqa: E402
from lab.engines import vm  # noqa: E402

def _bench_lab():
    """bench/lab.py (its name is the package's, so it is loaded by path): the same generated
    N-clients topology the lab bench times."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_lab", Path(__file__).with_name("lab.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


nat_clients = _bench_lab().nat_clients


def guest_used_mb() -> int:
    rc, out = vm.exec_in_guest(["free", "-m"])
    return int(out.splitlines()[1].split()[2]) if rc == 0 else -1


def mem_mb(c) -> float:
    s = c.stats(stream=False)["memory_stats"]
    cache = s.get("stats", {}).get("inactive_file", 0)
    return (s.get("usage", 0) - cache) / 2**20


def cpu_pct(c) -> float:
    s = c.stats(stream=False)  # Docker fills precpu_stats from its previous sample
    d_cpu = s["cpu_stats"]["cpu_usage"]["total_usage"] - s["precpu_stats"]["cpu_usage"]["total_usage"]
    d_sys = s["cpu_stats"].get("system_cpu_usage", 0) - s["precpu_stats"].get("system_cpu_usage", 0)
    return 100.0 * d_cpu / d_sys * s["cpu_stats"].get("online_cpus", 1) if d_sys > 0 else 0.0


def rss_kb(eng, c, programs: str) -> list[int]:
    out = eng.exec(c, f"ps -o rss= -C {programs}", check=False).out
    return [int(x) for x in out.split()]


def main() -> None:
    console = Console()
    eng = engine.select()
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    base = guest_used_mb()
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
        yaml.safe_dump(nat_clients(n), fh)
    topo = topology.load(fh.name)
    lifecycle.down(eng, topo.name)
    lifecycle.up(eng, topo)
    try:
        nodes = lifecycle.existing(eng, topo.name)
        time.sleep(3)
        idle = {name: mem_mb(c) for name, c in nodes.items()}
        used = guest_used_mb()
        client_rss = [sum(rss_kb(eng, nodes[f"c{i}"], "pppd,pptp")) for i in range(n)]
        server_rss = rss_kb(eng, nodes["vpn"], "pppd")
        # A ping stream through every tunnel (5/s each), then the busiest node's CPU.
        for i in range(n):
            eng.exec(nodes[f"c{i}"], "ping -q -i 0.2 -c 50 172.31.0.1 >/dev/null 2>&1 &", check=False)
        time.sleep(4)
        busy = {name: cpu_pct(c) for name, c in nodes.items()}
        used_busy = guest_used_mb()
    finally:
        lifecycle.down(eng, topo.name)
    table = Table(title=f"footprint: {n} clients behind one NAT, {eng.name} engine")
    table.add_column("figure")
    table.add_column("value", justify="right")
    clients = [idle[f"c{i}"] for i in range(n)]
    for label, value in [
        ("guest memory used, no lab (MB)", base),
        ("guest memory used, lab up (MB)", used),
        ("guest memory per node (MB)", round((used - base) / len(nodes), 1)),
        ("client container, tunnel up (MB, mean)", round(sum(clients) / n, 1)),
        ("server container (MB)", round(idle["vpn"], 1)),
        ("NAT container (MB)", round(idle["nat"], 1)),
        ("per tunnel, client side: pppd+pptp RSS (MB, mean)", round(sum(client_rss) / n / 1024, 1)),
        ("per tunnel, server side: pppd RSS per call (MB, mean)",
         round(sum(server_rss) / max(1, len(server_rss)) / 1024, 1)),
        ("guest memory used, pings running (MB)", used_busy),
        ("busiest node CPU with pings (% of one vCPU)", round(max(busy.values()), 1)),
        ("server CPU with pings (%)", round(busy["vpn"], 1)),
    ]:
        table.add_row(label, str(value))
    console.print(table)


if __name__ == "__main__":
    main()

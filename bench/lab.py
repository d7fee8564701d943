#!/usr/bin/env python3
"""Lab figures, engine already running (figures, no asserts; the host is shared):

  warm `up` to all tunnels established, and `down`, for topologies/default.yaml
  the same for N = 1, 5, 10 clients behind one NAT, and seconds per added client
  N = 50 (--fifty): all tunnels up AND each carrying data (a ping through every tunnel)

Targets (issues #15, #30), each printed next to the figure from before it: default lab up
<= 15 s (27 s in issue #30), the same topology up a second time <= 8 s; each added client
<= 1.5 s (6.2 s); 50 clients up and carrying data <= 90 s. Each `up` is shown with where its
time went (lab.core.timing: networks, nodes, capture, configure, dial)."""
from __future__ import annotations

import argparse
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
from lab.core import timing  # noqa: E402
from lab.core.errors import LabError  # noqa: E402
from lab.core.paths import shipped_topology  # noqa: E402


def nat_clients(n: int) -> dict:
    nodes = {
        "nat": {"kind": "nat", "interfaces": {"home": "192.168.50.1", "internet": "198.18.0.2"},
                "nat": {"mode": "masquerade", "outside": "internet", "pptp_editor": True}},
        "vpn": {"kind": "pptp-server", "interfaces": {"internet": "198.18.0.20"},
                "pptp_server": {"local_ip": "172.31.0.1", "remote_ip": "172.31.0.10-200",
                                "users": [{"name": f"u{i}", "secret": f"s{i}"} for i in range(n)]}},
    }
    for i in range(n):
        nodes[f"c{i}"] = {"kind": "pptp-client", "interfaces": {"home": f"192.168.50.{10 + i}"},
                          "routes": [{"to": "default", "via": "192.168.50.1"}],
                          "pptp_client": {"server": "198.18.0.20", "user": f"u{i}", "secret": f"s{i}"}}
    return {"name": f"bench-n{n}", "networks": {"home": {"subnet": "192.168.50.0/24"},
                                                "internet": {"subnet": "198.18.0.0/24"}}, "nodes": nodes}


def carry_data(eng, topo) -> None:
    """One ping through each client's tunnel to the server's tunnel address, all at once."""
    from concurrent.futures import ThreadPoolExecutor

    clients = [n for n, node in topo.nodes.items() if node.kind == "pptp-client"]
    with ThreadPoolExecutor(16) as pool:
        res = list(pool.map(lambda c: eng.exec(eng.node(topo.name, c), "ping -c 1 -W 5 -I ppp0 172.31.0.1",
                                               check=False), clients))
    bad = [c for c, r in zip(clients, res) if not r.ok]
    if bad:
        raise SystemExit(f"no data through the tunnels of {', '.join(bad)}")


WHERE: dict[str, str] = {}  # lab -> where its last `up` spent its time


def measure(eng, topo, data: bool = False) -> tuple[float, float]:
    lifecycle.down(eng, topo.name)
    start = time.monotonic()
    with timing.recording() as got:
        rows = lifecycle.up(eng, topo)
        if data:
            with timing.phase("data"):
                carry_data(eng, topo)
    t_up = time.monotonic() - start
    WHERE[topo.name] = timing.line(got)
    assert all(r.tunnel == "up" for r in rows if r.kind == "pptp-client"), "a tunnel did not come up"
    start = time.monotonic()
    lifecycle.down(eng, topo.name)
    return t_up, time.monotonic() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1,5,10", help="clients behind the NAT (default 1,5,10)")
    ap.add_argument("--fifty", action="store_true", help="also 50 clients, up and carrying data")
    args = ap.parse_args()
    eng = engine.select()
    eng.ensure_image()
    rows = []
    default = topology.load(shipped_topology("default"), name="bench-default")
    t_up, t_down = measure(eng, default)
    rows.append(("default.yaml (6 nodes, 2 tunnels)", t_up, t_down, "<= 15", "27", WHERE[default.name]))
    t_up, t_down = measure(eng, default)
    rows.append(("default.yaml, the same topology a second time", t_up, t_down, "<= 8", "27", WHERE[default.name]))
    sizes = [int(x) for x in args.sizes.split(",")]
    per_n = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            path = Path(tmp) / f"bench-n{n}.yaml"
            path.write_text(yaml.safe_dump(nat_clients(n)))
            t_up, t_down = measure(eng, topology.load(path))
            per_n[n] = t_up
            rows.append((f"{n} client(s) behind one NAT", t_up, t_down, "", "", WHERE[f"bench-n{n}"]))
        if args.fifty:
            path = Path(tmp) / "bench-n50.yaml"
            path.write_text(yaml.safe_dump(nat_clients(50)))
            try:
                t_up, t_down = measure(eng, topology.load(path), data=True)
                rows.append(("50 clients behind one NAT, up and carrying data", t_up, t_down, "<= 90",
                             "34 of 50 failed", WHERE["bench-n50"]))
            except LabError as exc:  # a figure, not a crash: say how many calls failed
                lifecycle.down(eng, "bench-n50")
                failed = str(exc).split(" (", 1)[0].removeprefix("no tunnel for ").count(",") + 1
                Console().print(f"[red]50 clients: {failed} of 50 calls failed[/] ({str(exc)[:300]}...)")
                rows.append((f"50 clients behind one NAT: {failed} of 50 calls FAILED", float("nan"),
                             float("nan"), "<= 90", "34 of 50 failed", WHERE.get("bench-n50", "")))
    table = Table(title=f"warm lab up/down on the {eng.name} engine")
    for col in ("lab", "up (s)", "down (s)", "target (s)", "before (s)"):
        table.add_column(col)
    for name, u, d, target, before, _ in rows:
        table.add_row(name, f"{u:.1f}", f"{d:.1f}", target, before)
    Console().print(table)
    Console().print("where each up's time went:", soft_wrap=True)
    for name, *_, where in rows:
        Console().print(f"  {name}: {where}", soft_wrap=True, markup=False, highlight=False)
    if len(sizes) > 1:
        lo, hi = min(sizes), max(sizes)
        Console().print(f"seconds per added client: {(per_n[hi] - per_n[lo]) / (hi - lo):.2f} "
                        f"(from N={lo} to N={hi}; target <= 1.5 s, before 6.2 s)")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Lab figures, engine already running (figures, no asserts; the host is shared):

  warm `up` to all tunnels established, and `down`, for topologies/default.yaml
  the same for N = 1, 5, 10 clients behind one NAT, and seconds per added client
  N = 50 (--fifty): all tunnels up AND each carrying data (a ping through every tunnel)
  N = 50,200 (--members 50,200): the same with the N clients the members of one node with a
      count (one container; each member its own address, control connection and call)

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


def counted(n: int) -> dict:
    """nat_clients(n), its clients the members of one node `cs` with count n."""
    data = nat_clients(1)
    data["name"] = f"bench-m{n}"
    data["nodes"]["vpn"]["pptp_server"].update(remote_ip="172.31.0.10-250", users=[{"name": "u", "secret": "s"}])
    cs = data["nodes"].pop("c0")
    cs["pptp_client"].update(user="u", secret="s")
    data["nodes"]["cs"] = {**cs, "count": n}
    return data


def carry_data(eng, topo) -> None:
    """One ping through each client's tunnel to the server's tunnel address, all at once
    (a node with a count: one exec pings through each of its members' interfaces)."""
    from concurrent.futures import ThreadPoolExecutor

    clients = [n for n, node in topo.nodes.items() if node.kind == "pptp-client"]
    if any(topo.nodes[c].count for c in clients):
        for c in clients:
            n = topo.nodes[c].count or 1
            r = eng.exec(eng.node(topo.name, c), f"for i in $(seq 0 {n - 1}); do (ping -c 1 -W 5 -I ppp$i 172.31.0.1 "
                         ">/dev/null || echo ppp$i) & done; wait", check=False)
            if r.out.split():
                raise SystemExit(f"no data through {c}'s tunnels {' '.join(r.out.split())}")
        return
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
    ap.add_argument("--members", default="", help="also N clients as one node's count, up and carrying "
                    "data (e.g. 50,200)")
    ap.add_argument("--only-members", action="store_true", help="only the --members figures")
    args = ap.parse_args()
    eng = engine.select()
    eng.ensure_image()
    rows = []
    sizes = [] if args.only_members else [int(x) for x in args.sizes.split(",")]
    if not args.only_members:
        default = topology.load(shipped_topology("default"), name="bench-default")
        t_up, t_down = measure(eng, default)
        rows.append(("default.yaml (6 nodes, 2 tunnels)", t_up, t_down, "<= 15", "27", WHERE[default.name]))
        t_up, t_down = measure(eng, default)
        rows.append(("default.yaml, the same topology a second time", t_up, t_down, "<= 8", "27",
                     WHERE[default.name]))
    per_n, per_m = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in [int(x) for x in args.members.split(",") if x]:
            path = Path(tmp) / f"bench-m{n}.yaml"
            path.write_text(yaml.safe_dump(counted(n)))
            name = f"bench-m{n}"
            try:
                t_up, t_down = measure(eng, topology.load(path), data=True)
                per_m[n] = t_up
                rows.append((f"{n} clients in one node (count) behind one NAT, up and carrying data", t_up, t_down,
                             "<= 90" if n == 50 else "", "34 of 50 failed" if n == 50 else "", WHERE[name]))
            except LabError as exc:
                lifecycle.down(eng, name)
                Console().print(f"[red]{n} members: {str(exc)[:400]}[/]", soft_wrap=True)
                rows.append((f"{n} clients in one node: FAILED", float("nan"), float("nan"), "", "",
                             WHERE.get(name, "")))
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
    if len(per_m) > 1:
        lo, hi = min(per_m), max(per_m)
        Console().print(f"seconds per added client as a member of one node: {(per_m[hi] - per_m[lo]) / (hi - lo):.2f} "
                        f"(from N={lo} to N={hi}, up and carrying data; target <= 1.5 s, before 6.2 s)")
    if len(sizes) > 1 and not args.only_members:
        lo, hi = min(sizes), max(sizes)
        Console().print(f"seconds per added client: {(per_n[hi] - per_n[lo]) / (hi - lo):.2f} "
                        f"(from N={lo} to N={hi}; target <= 1.5 s, before 6.2 s)")


if __name__ == "__main__":
    main()

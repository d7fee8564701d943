"""A node's own evidence about a packet it did not pass on (SPEC S32): its kernel's IP
counters (the same on every kernel, per network namespace), its route for the packet (the
kernel's own decision, `ip route get`, which applies the reverse-path filter too) and, on a
NAT, its conntrack entries for PPTP. lab.diagnosis.cause reads what this gathers.

Every command is a fixed argv list; the addresses in it come from the validated topology
and are passed as arguments, never as shell text."""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

IFNAME = re.compile(r"[a-z][a-z0-9-]{0,14}")  # a lab interface: named after its network
# The counters that name a reason (/proc/net/snmp, /proc/net/netstat), and what each says.
COUNTERS = {
    "Ip.InNoRoutes": "no-route",              # a packet to forward had no route
    "Ip.OutNoRoutes": "no-route",             # a packet it sent itself had no route
    "TcpExt.IPReversePathFilter": "rp-filter",  # dropped by the reverse-path filter
    "Ip.InUnknownProtos": "unknown-proto",    # delivered to it, no handler for the protocol
    "Ip.InAddrErrors": "addr-error",          # not an address it takes or forwards
    "Ip.InHdrErrors": "hdr-error",            # a bad header, or its TTL ran out
}
COUNTER_TEXT = {
    "no-route": "no route for it",
    "rp-filter": "its reverse-path filter dropped it",
    "unknown-proto": "it was delivered to the node itself, which has no handler for its protocol",
    "addr-error": "it was addressed to nothing the node takes or forwards",
    "hdr-error": "its header was bad or its TTL ran out",
}
READ_COUNTERS = ["cat", "/proc/net/snmp", "/proc/net/netstat"]


def parse_counters(text: str) -> dict[str, int]:
    """`Ip: Forwarding ...` header lines followed by `Ip: 1 64 ...` value lines, as
    {"Ip.InNoRoutes": 0, ...}."""
    out: dict[str, int] = {}
    lines = [line.split() for line in text.splitlines() if ":" in line]
    for head, vals in zip(lines, lines[1:]):
        if not head or head[0] != vals[0] or not all(v.lstrip("-").isdigit() for v in vals[1:]):
            continue
        if any(not h.isidentifier() for h in head[1:]):
            continue
        for k, v in zip(head[1:], vals[1:]):
            out[f"{head[0].rstrip(':')}.{k}"] = int(v)
    return out


@dataclass
class NodeEvidence:
    node: str
    counters: dict[str, int] = field(default_factory=dict)   # the reason counters that moved
    route: str = ""              # `ip route get` for the packet: the route, or the kernel's error
    route_ok: bool | None = None   # None: not asked
    route_asked: str = ""        # the question, e.g. "10.1.0.10 from 10.2.0.5 iif wan"
    conntrack: list[str] | None = None  # PPTP entries on a NAT (None: not a NAT, or not read)

    def reasons(self) -> list[str]:
        """What the counters that moved say, one reason name each (lab.diagnosis.cause maps them)."""
        return list(dict.fromkeys(COUNTERS[k] for k, v in self.counters.items() if v > 0 and k in COUNTERS))


def route_query(dst: str, src: str, iif: str | None) -> list[str]:
    """`ip -4 route get DST from SRC [iif IF]`: with iif it is the kernel's decision for a
    packet coming in there (forwarding, the reverse-path filter), without it for one the
    node sends itself."""
    for a in (dst, src):
        ipaddress.IPv4Address(a)  # only addresses, never anything else, reach the argv
    cmd = ["ip", "-4", "route", "get", dst, "from", src]
    if iif:
        if not IFNAME.fullmatch(iif):
            raise ValueError(f"not an interface name: {iif!r}")
        cmd += ["iif", iif]
    return cmd


def route_verdict(rc: int, out: str) -> tuple[bool, str]:
    """(routable, the text) of `ip route get`: the route, or the kernel's error, e.g.
    "RTNETLINK answers: Network is unreachable", "... Invalid cross-device link" (the
    reverse-path filter)."""
    return rc == 0, " ".join(out.split())


CONNTRACK_PPTP = [["conntrack", "-L", "-p", "gre"], ["conntrack", "-L", "-p", "tcp", "--dport", "1723"]]


def gather(eng, lab: str, node: str, query: list[str] | None, before: dict[str, int] | None = None,
           nat: bool = False) -> NodeEvidence:
    """One node's evidence: the reason counters above zero (or above `before`), the answer
    to `query` (route_query), and on a NAT its PPTP conntrack entries."""
    box = eng.node(lab, node)
    ev = NodeEvidence(node)
    now = _read(eng, box)
    ev.counters = {k: now[k] - (before or {}).get(k, 0) for k in COUNTERS if now[k] - (before or {}).get(k, 0) > 0}
    if query:
        res = eng.exec(box, query, check=False)
        ev.route_ok, ev.route = route_verdict(res.rc, res.out)
        ev.route_asked = " ".join(query[4:])
    if nat:
        lines = []
        for cmd in CONNTRACK_PPTP:
            res = eng.exec(box, cmd, check=False)
            lines += [line for line in res.out.splitlines() if line.startswith(("gre", "tcp"))]
        ev.conntrack = lines
    return ev


def counters(eng, lab: str, node: str) -> dict[str, int]:
    """The node's reason counters now (to subtract from later: a redial's own)."""
    return _read(eng, eng.node(lab, node))


def _read(eng, box) -> dict[str, int]:
    res = eng.exec(box, READ_COUNTERS, check=False)
    now = parse_counters(res.out) if res.ok else {}
    return {k: now.get(k, 0) for k in COUNTERS}

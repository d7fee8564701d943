"""Firewall filter policies of the reference (SPEC S12-S15), rendered as nftables.

A filter is the reference's unit: an interface (internet | perimeter), a direction (in |
out) and matches on addresses, IP protocol and TCP ports. A forwarded packet must pass an
inbound filter of the interface it arrives on AND an outbound filter of the interface it
leaves by; everything else is dropped, and the drops are counted per interface, direction
and protocol so the lab can say which filter a failing tunnel is missing."""
from __future__ import annotations

import json
from dataclasses import dataclass

from ..core import names

POLICIES = ("open", "pptp-documented", "pptp-documented-router", "custom")
VPN = "VPN"  # placeholder for the VPN server's perimeter address


@dataclass(frozen=True)
class Filter:
    id: str
    interface: str  # internet | perimeter (a role), or the name of a network the firewall is on
    direction: str  # in | out
    protocol: str   # tcp | gre
    src: str = ""   # address, VPN, or "" for any
    dst: str = ""
    sport: int | None = None
    dport: int | None = None

    def describe(self) -> str:
        parts = [f"{self.interface} {self.direction}:"]
        parts += [f"src {self.src}"] if self.src else []
        parts += [f"dst {self.dst}"] if self.dst else []
        parts += ["IP protocol 47"] if self.protocol == "gre" else ["TCP"]
        parts += [f"src port {self.sport}"] if self.sport else []
        parts += [f"dst port {self.dport}"] if self.dport else []
        return " ".join(parts)


def _spec(sid, interface, direction, side, protocol, sport=None, dport=None) -> Filter:
    return Filter(sid, interface, direction, protocol, src=VPN if side == "src" else "",
                  dst=VPN if side == "dst" else "", sport=sport, dport=dport)


DOCUMENTED = [  # SPEC S12-S15 (a)/(b): a remote-access VPN server on the perimeter network
    _spec("S12a", "internet", "in", "dst", "tcp", dport=1723),
    _spec("S12b", "internet", "in", "dst", "gre"),
    _spec("S13a", "internet", "out", "src", "tcp", sport=1723),
    _spec("S13b", "internet", "out", "src", "gre"),
    _spec("S14a", "perimeter", "in", "src", "tcp", sport=1723),
    _spec("S14b", "perimeter", "in", "src", "gre"),
    _spec("S15a", "perimeter", "out", "dst", "tcp", dport=1723),
    _spec("S15b", "perimeter", "out", "dst", "gre"),
]
ROUTER = [  # the (c) filters: the VPN server is also a calling router (S17)
    _spec("S12c", "internet", "in", "dst", "tcp", sport=1723),
    _spec("S13c", "internet", "out", "src", "tcp", dport=1723),
    _spec("S14c", "perimeter", "in", "src", "tcp", dport=1723),
    _spec("S15c", "perimeter", "out", "dst", "tcp", sport=1723),
]


def filters(policy: str, custom: list[Filter] = (), without: list[str] = ()) -> list[Filter]:
    chosen = {"open": [], "pptp-documented": DOCUMENTED, "pptp-documented-router": DOCUMENTED + ROUTER,
              "custom": list(custom)}[policy]
    return [f for f in chosen if f.id not in without]


def _match(f: Filter, vpn: str) -> str:
    out = []
    for key, value in (("saddr", f.src), ("daddr", f.dst)):
        if value:
            out.append(f"ip {key} {vpn if value == VPN else value}")
    if f.protocol == "gre":
        out.append("ip protocol gre")
    else:
        out.append("ip protocol tcp")
        if f.sport:
            out.append(f"tcp sport {f.sport}")
        if f.dport:
            out.append(f"tcp dport {f.dport}")
    return " ".join(out)


ROLES = ("internet", "perimeter")


def _iface(iface: str) -> tuple[str, str]:
    """(nft expression of the interface's name, chain suffix): a role is the nft define the
    node's configure script writes ($internet, $perimeter); a network's name is the name of
    the firewall's interface on it (configure.sh.j2 names interfaces after their networks)."""
    if iface in ROLES:
        return f"${iface}", iface
    return f'"{iface}"', "n_" + iface.replace("-", "_")  # a network name: [a-z0-9-] only


def nft_ruleset(rules: list[Filter], vpn: str) -> str:
    """The lab's filter table. $internet and $perimeter are nft defines of the interface
    names, written on the node by its configure script; filters on other networks name the
    interface literally. Default: drop, counted per interface/direction/protocol."""
    ifaces = list(ROLES) + list(dict.fromkeys(f.interface for f in rules if f.interface not in ROLES))
    lines = [f"table {names.FILTER_TABLE} {{",
             "    chain forward {",
             "        type filter hook forward priority filter; policy drop;"]
    for iface in ifaces:
        expr, suffix = _iface(iface)
        lines.append(f'        iifname {expr} counter jump in_{suffix} comment "from {iface}"')
    lines += ['        counter drop comment "forward: neither lab interface"',
              "    }",
              "    chain out_check {"]
    for iface in ifaces:
        expr, suffix = _iface(iface)
        lines.append(f"        oifname {expr} jump out_{suffix}")
    lines += ['        counter drop comment "forward: leaves by neither lab interface"',
              "    }"]
    for iface in ifaces:
        suffix = _iface(iface)[1]
        for direction in ("in", "out"):
            verdict = "goto out_check" if direction == "in" else "accept"
            lines.append(f"    chain {direction}_{suffix} {{")
            for f in rules:
                if (f.interface, f.direction) == (iface, direction):
                    lines.append(f'        {_match(f, vpn)} counter {verdict} comment "{f.id} {f.describe()}"')
            for proto, what in (("tcp", "TCP"), ("gre", "GRE")):
                lines.append(f'        ip protocol {proto} counter drop comment "drop {iface} {direction} {what}"')
            lines.append(f'        counter drop comment "drop {iface} {direction} other"')
            lines.append("    }")
    lines.append("}")
    return "\n".join(lines)


def parse_counters(nft_json: str) -> list[dict]:
    """Rules of `nft -j list table inet pptp_lab_filter` (names.FILTER_TABLE) as {chain, comment, packets, bytes}."""
    rows = []
    for item in json.loads(nft_json).get("nftables", []):
        rule = item.get("rule")
        if not rule:
            continue
        counter = next((e["counter"] for e in rule.get("expr", []) if "counter" in e), None)
        if counter is None:
            continue
        rows.append({"chain": rule["chain"], "comment": rule.get("comment", ""),
                     "packets": counter["packets"], "bytes": counter["bytes"]})
    return rows


def diagnose(counters: list[dict], rules: list[Filter]) -> list[str]:
    """Plain-language causes from the drop counters: which interface/direction dropped which
    protocol, and which documented filter would have let it through."""
    out = []
    present = {f.id for f in rules}
    for row in counters:
        if not row["comment"].startswith("drop ") or not row["packets"]:
            continue
        _, iface, direction, what = row["comment"].split(" ", 3)
        missing = [f for f in DOCUMENTED + ROUTER if f.interface == iface and f.direction == direction
                   and f.protocol == {"TCP": "tcp", "GRE": "gre"}.get(what) and f.id not in present]
        cause = f"{iface} {direction} dropped {row['packets']} {what} packet(s)"
        if missing:
            cause += ": missing " + " or ".join(f"{f.id} ({f.describe()})" for f in missing)
        out.append(cause)
    return out


def parse_conntrack(text: str) -> list[dict]:
    """`conntrack -L` lines of TCP 1723 and GRE entries, with GRE keys as call IDs."""
    rows = []
    for line in text.splitlines():
        words = line.split()
        if not words or words[0] not in ("tcp", "gre"):
            continue
        fields: dict = {"proto": words[0], "state": next((w for w in words if w.isupper() and w.isalpha()), "")}
        orig: dict = {}
        reply: dict = {}
        for w in words:
            if "=" not in w:
                continue
            k, v = w.split("=", 1)
            target = orig if k not in orig else reply
            target[k] = v
        for side, d in (("orig", orig), ("reply", reply)):
            fields[side] = f"{d.get('src')} -> {d.get('dst')}"
            if "srckey" in d:
                fields[side + "_call_ids"] = f"{int(d['srckey'], 16)} -> {int(d['dstkey'], 16)}"
            elif "sport" in d:
                fields[side] += f" ({d.get('sport')} -> {d.get('dport')})"
        fields["helper"] = next((w.split("=", 1)[1] for w in words if w.startswith("helper=")), "")
        rows.append(fields)
    return rows

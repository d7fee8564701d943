"""ICMP errors about PPTP traffic: which packet they answer (the header they quote) and what
they say about the path. IPv4 only: PPTP (RFC 2637) runs over IPv4."""
from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

import dpkt

from . import gre as gre_mod
from .control import PORT

TCP, GRE = 6, 47
UNREACH, TIME_EXCEEDED = 3, 11
FRAG_NEEDED = 4

# RFC 792 / RFC 1812 codes: name, and what it says about the node that sent it.
_UNREACH = {
    0: ("net unreachable", "no route to {dst} there"),
    1: ("host unreachable", "{dst} cannot be reached from there (no route or no ARP answer)"),
    2: ("protocol unreachable", {"GRE": "nothing forwards or translates GRE there",
                                 "TCP 1723": "nothing takes TCP there"}),
    3: ("port unreachable", "a firewall rule rejects it there (the default of iptables REJECT "
                            "and nftables reject)"),
    4: ("fragmentation needed", "the packet has DF set and does not fit the next hop's MTU"),
    5: ("source route failed", "its source route failed there"),
    6: ("net unknown", "no route to {dst} there"),
    7: ("host unknown", "{dst} is unknown there"),
    9: ("net administratively prohibited", "a firewall rule rejects it there"),
    10: ("host administratively prohibited", "a firewall rule rejects it there"),
    11: ("net unreachable for TOS", "no route to {dst} there for its TOS"),
    12: ("host unreachable for TOS", "no route to {dst} there for its TOS"),
    13: ("administratively prohibited", "a firewall rule rejects it there"),
}
_TIME = {0: ("time exceeded in transit", "its TTL ran out there: a routing loop or too long a path"),
         1: ("fragment reassembly time exceeded", "not all of its fragments arrived there")}


@dataclass(slots=True)
class IcmpError:
    """An ICMP error and the PPTP packet it quotes (that packet's addresses, not the ICMP's)."""
    type: int
    code: int
    src: str
    dst: str
    proto: int  # TCP or GRE
    mtu: int | None = None  # next-hop MTU of fragmentation needed (RFC 1191), when given
    sport: int | None = None
    dport: int | None = None
    call_id: int | None = None  # GRE v1: the receiver's call ID (RFC 2637 4.1)

    @property
    def about(self) -> str:
        return "GRE" if self.proto == GRE else "TCP 1723"

    @property
    def quoted(self) -> str:
        """"GRE 203.0.113.5 → 198.18.52.2 call ID 4711", "TCP 10.0.0.2:40123 → 203.0.113.5:1723"."""
        if self.proto == GRE:
            return f"GRE {self.src} → {self.dst}" + (f" call ID {self.call_id}" if self.call_id is not None else "")
        return f"TCP {self.src}:{self.sport} → {self.dst}:{self.dport}"

    @property
    def name(self) -> str:
        table = _UNREACH if self.type == UNREACH else _TIME
        text = table.get(self.code, (f"code {self.code}",))[0]
        mtu = f" (next-hop MTU {self.mtu})" if self.mtu else ""
        return f"ICMP {text}{mtu}"

    @property
    def meaning(self) -> str:
        table = _UNREACH if self.type == UNREACH else _TIME
        text = table.get(self.code, ("", "it cannot be delivered from there"))[1]
        if isinstance(text, dict):
            text = text[self.about]
        return text.format(dst=self.dst)

    def to_dict(self) -> dict:
        return {"type": self.type, "code": self.code, "name": self.name, "about": self.about,
                "meaning": self.meaning, "mtu": self.mtu,
                "quoted": {"src": self.src, "dst": self.dst, "sport": self.sport, "dport": self.dport,
                           "call_id": self.call_id}}


def is_error(icmp_type: int) -> bool:
    return icmp_type in (UNREACH, TIME_EXCEEDED)


def decode(icmp: dpkt.icmp.ICMP) -> IcmpError | None:
    """The error if it quotes a PPTP packet (TCP to or from 1723, or GRE), else None."""
    if not is_error(icmp.type) or not isinstance(icmp.data, dpkt.icmp.ICMP.Quote):
        return None
    quoted = icmp.data.data
    if not isinstance(quoted, dpkt.ip.IP) or quoted.p not in (TCP, GRE):
        return None
    body = quoted.data if isinstance(quoted.data, bytes) else bytes(quoted.data)
    src, dst = socket.inet_ntoa(quoted.src), socket.inet_ntoa(quoted.dst)
    mtu = icmp.data.mtu if icmp.type == UNREACH and icmp.code == FRAG_NEEDED and icmp.data.mtu else None
    err = IcmpError(icmp.type, icmp.code, src, dst, quoted.p, mtu)
    if quoted.p == TCP:
        if len(body) < 4:
            return None  # no ports: cannot tell it is TCP 1723
        err.sport, err.dport = struct.unpack_from("!HH", body)
        return err if PORT in (err.sport, err.dport) else None
    g = gre_mod.decode(body)  # None: too short a quote to tell, matched by the addresses
    if g is not None and not g.is_pptp:
        return None
    # RFC 792 quotes 8 octets, too few for gre.decode's call ID when S is set: read it here.
    err.call_id = int.from_bytes(body[6:8], "big") if g and g.key and len(body) >= 8 else None
    return err


def sender(s, e) -> str:
    """An ICMP event's source (e.by), named: a NAT when it is an endpoint's address while that
    endpoint still held the control connection (its PPTP software ran, so what refused the
    packet is a box in front of it that owns the address)."""
    side = "client" if e.by == s.client else "server" if e.by == s.server else None
    if side is None:
        return e.by
    open_then = (not s.gre_only and (s.tcp["syn_ack"] or s.sccrp)
                 and not any(x.what in ("TCP FIN", "TCP RST") and x.sender == side and x.ts <= e.ts
                             for x in s.teardown))
    return f"the NAT {e.by}" if open_then else f"{e.by} (the {side}'s address)"


def text(s, e) -> str:
    """An ICMP event of session s for a verdict: "the NAT 198.18.52.2 answered GRE with ICMP
    protocol unreachable: nothing forwards or translates GRE there (to the server's GRE)"."""
    about = e.info["about"]
    answered = "client" if e.sender == "server" else "server"  # it travels back to that side
    return f"{sender(s, e)} answered {about} with {e.what}: {e.info['meaning']} (to the {answered}'s {about})"

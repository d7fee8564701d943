"""The calls a topology makes: one per dialling node, or `count` of them on a pptp-client node
with a count (issue #30: many clients behind one NAT without a container each).

A member is one call: its own source address (`pptp --localbind`), pppd peer, unit, pid file
and log. Every name and path here is made from integers and validated addresses, never from
topology text: they reach file names, pgrep patterns and argv."""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import kinds
from ..core import names
from ..core.errors import LabError

if TYPE_CHECKING:
    from .topology import Topology

MAX_MEMBERS = 1000  # every counted node of one topology together: a stranger's file stays bounded
SEP = "#"  # c#7: no node name holds it (topology NAME), so a member never shares a node's name


@dataclass(frozen=True)
class Member:
    name: str       # the node's name, or NODE#i on a counted node
    node: str       # the container it runs in
    index: int      # 1..count on a counted node, 0 for a node's one call
    network: str    # where its address is
    address: str    # its source address
    prefixlen: int
    ifname: str     # its tunnel interface (ppp0, ppp100 on a calling router, pppI-1 on a counted node)
    peer: str       # `pppd call PEER`
    log: str        # pppd's log of its calls

    @property
    def counted(self) -> bool:
        return self.index > 0

    def dial_args(self) -> list[str]:
        """What pptp-lab-dial (render.DIAL) needs after IFNAME SECONDS LCP SYN to dial this
        member: nothing for a node's one call (its defaults), else PEER LOG SRC."""
        return [self.peer, self.log, self.address] if self.counted else []


def split(name: str) -> tuple[str, int]:
    """(node, member number) of NODE#I, (node, 0) of a node's name; LabError for NODE#junk."""
    node, sep, index = name.partition(SEP)
    if sep and not (index.isdigit() and 1 <= int(index) <= MAX_MEMBERS):
        raise LabError(f"{name}: a member of a node with a count is NODE{SEP}NUMBER (e.g. {node}{SEP}1)")
    return node, int(index) if sep else 0


def peer(i: int) -> str:
    out = f"{names.PEER}-{int(i)}"
    assert re.fullmatch(r"lab-\d{1,4}", out)
    return out


def log(i: int) -> str:
    return f"/var/log/ppp-{int(i)}.log"


def numbered(node: str, first: str, count: int) -> list[tuple[int, str, str, str]]:
    """(i, NODE#i, address, tunnel interface) of each member of a node with a count whose
    interface has address `first`: the one rule for naming and addressing members."""
    start = ipaddress.IPv4Address(first)
    return [(i, f"{node}{SEP}{i}", str(start + i - 1), f"ppp{i - 1}") for i in range(1, count + 1)]


def of_node(topo: Topology, name: str) -> list[Member]:
    node = topo.nodes[name]
    net, first = next(iter(node.interfaces.items()))
    plen = topo.networks[net].net.prefixlen if net in topo.networks else 32
    ifname = kinds.get(node.kind).tunnel_if(node)
    if not getattr(node, "count", None):
        return [Member(name, name, 0, net, first, plen, ifname, names.PEER, names.PPP_LOG)]
    return [Member(member, name, i, net, address, plen, tunnel, peer(i), log(i))
            for i, member, address, tunnel in numbered(name, first, node.count)]


def members(topo: Topology) -> dict[str, Member]:
    """Every call the topology makes, by member name, in node order."""
    return {m.name: m for name in topo.clients for m in of_node(topo, name)}


def resolve(topo: Topology, name: str) -> Member:
    node = name.partition(SEP)[0]  # only that node's members are made, not every call's
    found = next((m for m in of_node(topo, node) if m.name == name), None) if node in topo.clients else None
    if found is None:
        known = list(members(topo))
        shown = ", ".join(known[:12]) + (f" ... ({len(known)} in all)" if len(known) > 12 else "")
        raise LabError(f"no client {name!r} in lab {topo.name} (clients: {shown or 'none'})")
    return found


def of_nodes(topo: Topology, nodes) -> list[Member]:
    """The members of some nodes (names of nodes or of members), in the topology's order."""
    wanted = set(nodes)
    return [m for m in members(topo).values() if m.node in wanted or m.name in wanted]


def used_addresses(topo: Topology) -> dict[str, str]:
    """Member address (beyond a node's interface) -> the key that makes it (nodes.NODE.count),
    for every node with a count and one interface (another is refused at the node)."""
    return {address: f"nodes.{name}.count" for name, node in topo.nodes.items()
            if getattr(node, "count", None) and len(node.interfaces) == 1
            for _, _, address, _ in numbered(name, next(iter(node.interfaces.values())), node.count)[1:]}

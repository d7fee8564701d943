"""A failed tunnel's cause (lab.diagnosis.cause) from everything the lab can ask: lab.diagnosis.why's finding
(captures and ruleset traces), then the nodes where the packet went missing (lab.diagnosis.evidence)
and the kernel's drops (lab.diagnosis.kdrops). Used by `pptp-lab test` and `pptp-lab why`."""
from __future__ import annotations

import re

from . import cause as cause_mod, evidence, why
from ..core import names
from ..engines import Engine
from ..model.topology import Topology


def queries(topo: Topology, finding: why.Finding) -> dict[str, list[str] | None]:
    """node -> the `ip route get` to ask it (None: only its counters): the node where the
    packet went missing, for that packet as it came in; for an answer that never came,
    the server, for the answer it should have sent; the other nodes on the path too."""
    ev, out = finding.evidence, {}
    by_seg = {f.segment: f for f in finding.flows}
    if ev is not None and ev.node and ev.unanswered:
        f = by_seg.get(ev.never_on)
        out[ev.node] = (evidence.route_query(f.client, f.server, None) if f and f.client and f.server else None)
    elif ev is not None and ev.node and ev.seen_on:
        f = by_seg.get(ev.seen_on)
        forward = ev.what in ("syn", "gre_to_server")
        src, dst = (f.client, f.server) if forward else (f.server, f.client)
        iif = names.interface(ev.seen_on)
        out[ev.node] = evidence.route_query(dst, src, iif) if f and src and dst and iif else None
    for n in (finding.route.nodes if finding.route else []):
        out.setdefault(n, None)
    if finding.server:
        out.setdefault(finding.server, None)
    return out


def next_hop(topo: Topology, node: str, route: str) -> tuple[str, str] | None:
    """(the node, its interface) that `ip route get`'s answer in `node` sends the packet
    to: the owner of the `via` address, on the network of the `dev`."""
    m = re.search(r"\bvia (\S+) dev (\S+)", route)
    if not m:
        return None
    net = next((net for net in topo.nodes[node].interfaces if names.interface(net) == m[2]), None)
    owner = next((n for n, x in topo.nodes.items() if n != node and x.interfaces.get(net) == m[1]), None)
    return (owner, m[2]) if owner and net else None


def explain(eng: Engine, topo: Topology, client: str, finding: why.Finding, session, kernel=None,
            before: dict[str, dict[str, int]] | None = None) -> cause_mod.Cause:
    """Gather the nodes' evidence for a client's finding and decide its cause; the finding
    gets it too. `before`: each node's counters before a redial (lab.diagnosis.evidence.counters)."""
    nodes = {}

    def gather(n, query):
        try:
            nodes[n] = evidence.gather(eng, topo.name, n, query, (before or {}).get(n),
                                       nat=topo.nodes[n].kind == "nat")
        except Exception:  # noqa: BLE001 - a node that is gone gives no evidence; the cause says so
            pass

    for n, query in queries(topo, finding).items():
        gather(n, query)
    ev = finding.evidence
    if ev is not None and ev.unanswered and ev.node in nodes and nodes[ev.node].route_ok:
        # Follow the answer the server's route sends out: to the node it reaches first.
        hop = next_hop(topo, ev.node, nodes[ev.node].route)
        f = next((f for f in finding.flows if f.segment == ev.never_on), None)
        if hop and f and f.client and f.server:
            finding.answer_hop = hop
            gather(hop[0], evidence.route_query(f.client, f.server, hop[1]))
    found = cause_mod.decide(topo, client, session, finding, nodes, kernel)
    finding.cause = found
    if finding.path:  # the picture names the cause at the node it names
        finding.path.update(cause=found.name, because=found.sentence,
                            at=found.node if found.node in topo.nodes else finding.path.get("at", ""))
    return found

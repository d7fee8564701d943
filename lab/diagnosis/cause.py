"""Why a tunnel failed, as one cause from a closed list (SPEC S32), decided from evidence
and never guessed: the analysed captures (phases, ICMP errors), the kernel's tracing of
the rulesets (lab.diagnosis.why), the kernel's own drop reasons (lab.diagnosis.kdrops) and the nodes' own
state (lab.diagnosis.evidence: counters, routes, conntrack). When none of them names the cause, the
cause is `not-enough-evidence`, and the sentence says what was looked at and what the
kernel or the lab could not give.

`expect: {tunnel: fails, cause: C}` checks it (lab.diagnosis.checks)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..core import names
from ..model.causes import CAUSES, NAMES  # noqa: F401 (re-exported: the list beside the decision)


# Kernel drop reasons (skb_drop_reason names) that name a cause by themselves.
REASONS = {"IP_RPFILTER": "rp-filter", "IP_INNOROUTES": "no-route", "IP_OUTNOROUTES": "no-route",
           "IP_NOPROTO": "no-nat-mapping"}
# ICMP destination unreachable codes that name a cause (the rest: `icmp`).
NET_UNREACH = (0, 6, 11)
PROTO_UNREACH = 2
TIME_EXCEEDED, IN_TRANSIT = 11, 0


@dataclass
class Cause:
    name: str                   # one of NAMES
    sentence: str
    node: str = ""              # where, when known
    used: list[str] = field(default_factory=list)     # the evidence it rests on
    missing: list[str] = field(default_factory=list)  # what could not be had

    def line(self) -> str:
        """`cause NAME: SENTENCE [evidence: ...; not available: ...]`."""
        told = [f"evidence: {', '.join(self.used)}"] if self.used else []
        told += [f"not available: {'; '.join(self.missing)}"] if self.missing and self.name != "not-enough-evidence" else []
        return f"cause {self.name}: {self.sentence}" + (f" [{'; '.join(told)}]" if told else "")

    def to_dict(self) -> dict:
        return {"name": self.name, "sentence": self.sentence, "node": self.node, "used": self.used,
                "missing": self.missing}


def _frame(s, pick) -> str:
    ev = next((e for e in reversed(getattr(s, "events", []) or []) if pick(e)), None)
    return f" ({Path(s.source).name} frame {ev.frame})" if ev is not None else ""


_PPP = ("LCP", "PAP", "CHAP", "MS-CHAP", "EAP", "CCP", "IPCP", "IPV6CP", "PPP")


def last_seen(finding, client_session) -> str:
    """` (wan.pcap frame 12)`: where the packet that went missing was last seen."""
    ev = finding.evidence
    if ev is None:
        return _frame(client_session, lambda e: True) if client_session else ""
    seg = ev.seen_on or ev.never_on
    found = finding.seen.get(seg).found if finding.seen.get(seg) else []
    if not found:
        return ""
    what = ev.what if not ev.unanswered else {"syn_ack": "syn", "gre_to_client": "gre_to_server"}[ev.what]
    pick = {"syn": lambda e: e.what == "TCP SYN", "syn_ack": lambda e: e.what == "TCP SYN-ACK",
            "gre_to_server": lambda e: e.sender == "client" and e.what.startswith(_PPP),
            "gre_to_client": lambda e: e.sender == "server" and e.what.startswith(_PPP)}[what]
    return _frame(found[-1], pick)


def _icmp(finding, client_session) -> list:
    """The ICMP errors about the flow on every capture of its path, first first, one per
    (sender, type, code)."""
    sessions = [client_session] if client_session else []
    for seen in (finding.seen or {}).values():
        sessions += seen.found
    out, keys = [], set()
    for s in sessions:
        for e in getattr(s, "icmp", []) or []:
            key = (e.by, e.info.get("type"), e.info.get("code"), e.info.get("about"))
            if key not in keys:
                keys.add(key)
                out.append((e, s))
    return sorted(out, key=lambda es: es[0].ts)


def _packet(finding) -> str:
    ev = finding.evidence
    if ev is None:
        return "the client's packets"
    from .why import MEANING
    return f"the {MEANING[ev.what]}"


def _is_nat(topo, node: str | None) -> bool:
    return bool(node) and topo.nodes[node].kind == "nat"


def decide(topo, client: str, session, finding, nodes: dict | None = None, kernel=None) -> Cause:
    """The cause of a failed tunnel. `session`: the client's own analysed session (or None);
    `finding`: lab.diagnosis.why.find's; `nodes`: node -> lab.diagnosis.evidence.NodeEvidence; `kernel`:
    lab.diagnosis.kdrops.Recording (or None)."""
    nodes = nodes or {}
    used: list[str] = []
    where = last_seen(finding, session)
    s = session
    # 1. What the PPTP and PPP exchange itself says.
    if s is not None and s.phase == "auth":
        return Cause("auth", f"{s.verdict}{_frame(s, lambda e: 'Failure' in e.what or 'CHAP' in e.what)}",
                     finding.server or "", ["capture"])
    d = finding.drop
    # 2. The kernel's trace of the rulesets.
    if d is not None:
        name = ("conntrack-invalid" if "ct state invalid" in (d.rule or "") or "ctstate INVALID" in (d.rule or "")
                else "policy" if d.policy else "rule")
        return Cause(name, finding.sentence + where, d.node, ["nft trace", "captures"])
    if s is not None and s.phase in ("tcp", "control", "call") and s.verdict.startswith(
            ("server reset TCP 1723", "SCCRP refused", "call refused by OCRP")):
        return Cause("refused", s.verdict + _frame(s, lambda e: e.what in ("TCP RST", "SCCRP", "OCRP")),
                     finding.server or "", ["capture"])
    ev = finding.evidence
    packet = _packet(finding)
    # 3. The kernel's own drop reasons, tied to the node by the interface the packet came in on.
    missing = []
    if kernel is not None and kernel.available:
        used.append("kernel drop reasons" if kernel.reasons else "kernel drops")
        for drop, node in _kernel_drops(topo, finding, kernel):
            cause = REASONS.get(drop.reason or "")
            if cause == "no-nat-mapping" and not (_is_nat(topo, node) and ev and ev.what.startswith("gre")):
                cause = None
            if cause:
                return Cause(cause, f"{packet}{where} died at {node or 'a node on ' + drop.dev}: "
                             f"the kernel dropped it ({drop.text()})", node or "", used + ["captures"])
        if not kernel.reasons:
            missing.append(kernel.why_not)
    elif kernel is not None:
        missing.append(kernel.why_not)
    else:
        missing.append("kernel drop reasons (not recorded)")
    # 4. ICMP errors in the captures, from a node on the way.
    errors = _icmp(finding, s)
    if errors:
        used.append("ICMP in the captures")
        e, es = errors[0]
        from ..pptp import icmp as icmp_mod
        node = topo.reached_at(e.by)
        code, about = e.info.get("code"), e.info.get("about")
        said = icmp_mod.text(es, e) + f" ({Path(es.source).name} frame {e.frame})"
        if e.info.get("type") == 3 and code == PROTO_UNREACH and about == "GRE" and _is_nat(topo, node):
            return Cause("no-nat-mapping", f"{node} has no NAT mapping for this call's GRE: {said}",
                         node, used + ["topology"], missing)
        if e.info.get("type") == TIME_EXCEEDED and code == IN_TRANSIT:
            return Cause("loop", f"{node or e.by}: {said}", node or "", used, missing)
        if e.info.get("type") == 3 and code in NET_UNREACH:
            return Cause("no-route", f"{node or e.by} has no route for {packet}: {said}", node or "", used, missing)
        return Cause("icmp", f"{node or e.by}: {said}", node or "", used, missing)
    # 5. The node's own state: its route for the packet, its counters, its conntrack table.
    look = [n for n in ([ev.node] if ev and ev.node else []) if n in nodes] + [n for n in nodes if not ev or n != ev.node]
    for n in look:
        facts = nodes[n]
        if facts.route_ok is False:
            used.append(f"{n}'s route")
            rpf = "cross-device" in facts.route
            # "cannot pass": with the reverse-path filter the node may already have ignored the
            # sender's ARP request (its source is the packet's), so the packet never got there.
            return Cause("rp-filter" if rpf else "no-route",
                         f"{packet}{where} cannot pass {n}: `ip route get {facts.route_asked}` there says "
                         f"\"{facts.route}\"" + (" (the reverse-path filter)" if rpf else ""), n, used, missing)
    # Counters are the node's, for every flow through it: only where this packet went missing.
    counted_at = [n for n in ([ev.node] if ev and ev.node and not ev.unanswered else [])
                  + ([finding.answer_hop[0]] if finding.answer_hop else []) if n in nodes]
    for n in counted_at:
        facts = nodes[n]
        counted = ", ".join(f"{k} {v}" for k, v in facts.counters.items())
        for reason in facts.reasons():
            if reason in ("rp-filter", "no-route"):
                used.append(f"{n}'s counters")
                return Cause(reason, f"{packet}{where} died at {n}: its kernel counted {counted}", n, used, missing)
        if "hdr-error" in facts.reasons() and facts.route_ok and ev and ev.seen_on and \
                f" dev {names.interface(ev.seen_on)}" in f" {facts.route} ":
            used += [f"{n}'s counters", f"{n}'s route"]
            return Cause("loop", f"{packet}{where} went back the way it came at {n} (`ip route get "
                         f"{facts.route_asked}`: \"{facts.route}\") and its kernel counted {counted} "
                         "(TTL run out)", n, used, missing)
    if ev and ev.node and _is_nat(topo, ev.node) and ev.what.startswith("gre") and ev.node in nodes:
        facts = nodes[ev.node]
        if facts.conntrack is not None and not any(line.startswith("gre") for line in facts.conntrack):
            used.append(f"{ev.node}'s conntrack table")
            return Cause("no-nat-mapping", f"{packet}{where} reached {ev.node}, which holds no GRE conntrack "
                         "entry to translate it (no PPTP editor, no forward)", ev.node, used, missing)
    looked = ", ".join(used + [f"{n}'s routes and counters" for n in nodes]) or "the captures"
    return Cause("not-enough-evidence", f"{finding.sentence}{where}; looked at {looked}; nothing named a cause"
                 + (f"; missing: {'; '.join(missing)}" if missing else ""), ev.node if ev and ev.node else "",
                 used, missing)


def _kernel_drops(topo, finding, kernel) -> list[tuple[object, str | None]]:
    """(drop, node) for the kernel's drops that fit where the packet went missing: on the
    interface the vanished packet came into its node by; for an answer that never came,
    on any network of the server (the answer left it there), at the node that was not its
    sender."""
    ev = finding.evidence
    if ev is None or ev.node is None:
        return []
    if not ev.unanswered:
        dev = names.interface(ev.seen_on) if ev.seen_on else None
        return [(d, ev.node) for d in kernel.on({dev})] if dev else []
    if not finding.answer_hop:
        return []  # no answer left the server (lab.diagnosis.diagnose follows the one that did)
    node, dev = finding.answer_hop
    return [(d, node) for d in kernel.on({dev})]

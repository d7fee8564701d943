"""Where did a failing tunnel die (SPEC S22): the node, table, chain and rule (or chain
policy) that dropped its packets, from the kernel's own tracing (`meta nftrace set 1` and
`nft monitor trace` in each filtering node), checked against where the packets were seen
in the per-segment captures.

Pure text and data: turning tracing on and off in a node, running the monitor and
collecting its text is the caller's part. The trace table is fixed text: no topology value
ever becomes nft command text. The caller, for a client whose tunnel failed:
  1. in each firewall/nat/router node on path(topo, client): `nft -f -` < trace_on_script(),
     and MONITOR_COMMAND running (started after the node's own ruleset is loaded, so it can
     print its rules; rules it does not know show as `unknown rule handle N`);
  2. one redial; note its start time;
  3. stop the monitors, `nft -f -` < trace_off_script() in each node;
  4. find(topo, client, pptp.analyze(captures), {node: monitor text}, since=start) gives the
     sentence, the Drop (node set) and the packet's way (path_data), for ClientFacts.why,
     .drop and .path (why() gives the first two)."""
from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from ..core import names
from ..model.topology import FILTERING_KINDS

TRACE_TABLE = names.TRACE_TABLE
# The monitor to run in a node while tracing is on: --handle prints each rule's handle.
MONITOR_COMMAND = "nft --handle monitor trace"

# Tracing for PPTP (TCP 1723 either way, GRE) and the ICMP errors about any packet (a dropped
# fragmentation-needed is SPEC S31's cause) at the earliest hooks: prerouting at -350
# (before raw at -300, conntrack at -200 and DNAT at -100) for what arrives, output for what
# the node sends itself. `add` then `delete` first: it replaces a table left from before, in
# one transaction (nft 1.0.6 has no `destroy`).
_RULES = """\
\t\ttcp dport 1723 meta nftrace set 1
\t\ttcp sport 1723 meta nftrace set 1
\t\tip protocol gre meta nftrace set 1
\t\ticmp type { destination-unreachable, time-exceeded } meta nftrace set 1"""


def trace_on_script() -> str:
    """`nft -f -` input that (re)creates the trace table."""
    return (f"add table {TRACE_TABLE}\ndelete table {TRACE_TABLE}\n"
            f"table {TRACE_TABLE} {{\n"
            f"\tchain prerouting {{\n\t\ttype filter hook prerouting priority -350; policy accept;\n{_RULES}\n\t}}\n"
            f"\tchain output {{\n\t\ttype filter hook output priority -350; policy accept;\n{_RULES}\n\t}}\n"
            "}\n")


def trace_off_script() -> str:
    """`nft -f -` input that removes the trace table (and does not fail if it is gone)."""
    return f"add table {TRACE_TABLE}\ndelete table {TRACE_TABLE}\n"


# ------------------------------------------------------------------ nft monitor trace
@dataclass
class TraceEvent:
    """One line of `nft monitor trace`."""
    id: str
    family: str
    table: str
    chain: str
    kind: str            # packet | rule | verdict | policy | conntrack
    text: str = ""       # the rule (without its `# handle N`), or the rest of the line
    verdict: str = ""    # accept | drop | continue | return | jump X | goto X | queue ...
    handle: int | None = None
    # packet lines:
    iif: str | None = None
    oif: str | None = None
    saddr: str | None = None
    daddr: str | None = None
    proto: str | None = None     # tcp | udp | gre | icmp | another name or number
    sport: int | None = None
    dport: int | None = None
    flags: tuple[str, ...] = ()  # tcp flags, e.g. ("ack", "syn")


# `trace id %08x FAMILY [TABLE] [CHAIN] ...` (nftables src/netlink.c in 1.0.x, src/trace.c
# since 1.1: trace_print_hdr).
_HEAD = re.compile(r"^trace id (?P<id>[0-9a-fA-F]+) (?P<family>ip6?|inet|arp|bridge|netdev) "
                   r"(?P<table>\S+) (?P<chain>\S+) (?P<rest>.*?)\s*$")
_RULE = re.compile(r"^rule (?P<text>.*) \(verdict (?P<verdict>[^()]*)\)$")
_UNKNOWN = re.compile(r"^unknown rule handle (?P<handle>\d+) \(verdict (?P<verdict>[^()]*)\)$")
_HANDLE = re.compile(r"\s*# handle (\d+)$")
_CHAIN_END = re.compile(r"^(?P<kind>policy|verdict) (?P<verdict>(?:jump |goto )?\S+)")
PROTOCOLS = {"6": "tcp", "17": "udp", "47": "gre", "1": "icmp"}
PORTS = {"pptp": 1723}
TCP_FLAGS = ("fin", "syn", "rst", "psh", "ack", "urg", "ecn", "cwr")


def parse_trace(text: str) -> list[TraceEvent]:
    """The events of `nft monitor trace` output; lines of any other shape are skipped."""
    out = []
    for line in text.splitlines():
        m = _HEAD.match(line.strip())
        if not m:
            continue
        ev = TraceEvent(m["id"].lower(), m["family"], m["table"], m["chain"], "")
        rest = m["rest"]
        if rest.startswith("packet:"):
            ev.kind, ev.text = "packet", rest[len("packet:"):].strip()
            _packet(ev)
        elif rest.startswith("conntrack:"):
            ev.kind, ev.text = "conntrack", rest[len("conntrack:"):].strip()
        elif r := _RULE.match(rest):
            ev.kind, ev.verdict = "rule", r["verdict"].strip()
            h = _HANDLE.search(r["text"])
            ev.text = r["text"][:h.start()] if h else r["text"]
            ev.handle = int(h[1]) if h else None
        elif r := _UNKNOWN.match(rest):  # a rule added after the monitor started
            ev.kind, ev.verdict, ev.handle = "rule", r["verdict"].strip(), int(r["handle"])
        elif r := _CHAIN_END.match(rest):
            ev.kind, ev.verdict, ev.text = r["kind"], r["verdict"], rest
        else:
            continue
        out.append(ev)
    return out


def _field(text: str, name: str) -> str | None:
    m = re.search(rf"(?:^|\s){name} (\S+)", text)
    return m[1].strip('"') if m else None


def _port(v: str | None) -> int | None:
    if v is None:
        return None
    return int(v) if v.isdigit() else PORTS.get(v)


def _packet(ev: TraceEvent) -> None:
    t = ev.text
    ev.iif, ev.oif = _field(t, "iif"), _field(t, "oif")
    ev.saddr, ev.daddr = _field(t, "ip saddr"), _field(t, "ip daddr")
    ev.sport, ev.dport = _port(_field(t, "tcp sport")), _port(_field(t, "tcp dport"))
    proto = _field(t, "ip protocol")
    # With a transport header nft leaves out `ip protocol` (a dependency of `tcp ...`).
    ev.proto = "tcp" if ev.sport is not None or ev.dport is not None else PROTOCOLS.get(proto, proto)
    if ev.proto is None and re.search(r"(?:^|\s)icmp type ", t):
        ev.proto = "icmp"  # likewise left out before `icmp type ...`
    m = re.search(r"(?:^|\s)tcp flags (?:== )?(\S+(?: ?[|,] ?\S+)*)", t)
    if m:
        words = [w for w in re.split(r"[|,\s]+", m[1]) if w]
        if len(words) == 1 and words[0].startswith("0x"):
            bits = int(words[0], 16)
            words = [n for i, n in enumerate(TCP_FLAGS) if bits >> i & 1]
        ev.flags = tuple(sorted(w for w in words if w in TCP_FLAGS))


# ------------------------------------------------------------------ drops
@dataclass
class Drop:
    """A packet the ruleset dropped: by a rule (its text and handle) or by a chain's policy."""
    family: str
    table: str
    chain: str
    rule: str = ""              # "" for a policy drop, or a rule the monitor did not know
    handle: int | None = None
    policy: bool = False
    trace_id: str = ""
    packet: TraceEvent | None = None
    node: str = ""              # filled by drops_by_node / verdict

    @property
    def action(self) -> str:
        return "rejected" if re.search(r"(?:^|\s)reject(?:\s|$)", self.rule) else "dropped"

    def where(self) -> str:
        """`table inet edge, chain forward, rule `...` (handle 7)` or `..., policy drop`."""
        out = f"table {self.family} {self.table}, chain {self.chain}, "
        if self.policy:
            return out + "policy drop"
        rule = f"rule `{self.rule}`" if self.rule else "a rule"
        return out + rule + (f" (handle {self.handle})" if self.handle is not None else "")


def drops(events: list[TraceEvent]) -> list[Drop]:
    """Every drop (or reject: the kernel traces it as drop) in the events, in order, each with
    the last `packet:` line of its trace id before it. The lab's own trace table only gives
    packet lines. A trace id can come back for a later packet: a drop ends its packet."""
    last_packet: dict[str, TraceEvent] = {}
    out = []
    for ev in events:
        if ev.kind == "packet":
            last_packet[ev.id] = ev
            continue
        if f"{ev.family} {ev.table}" == TRACE_TABLE or ev.verdict != "drop":
            continue
        if ev.kind == "rule":
            out.append(Drop(ev.family, ev.table, ev.chain, ev.text, ev.handle, trace_id=ev.id,
                            packet=last_packet.pop(ev.id, None)))
        elif ev.kind in ("policy", "verdict"):  # nft before 0.9.4 printed a policy as "verdict"
            out.append(Drop(ev.family, ev.table, ev.chain, policy=True, trace_id=ev.id,
                            packet=last_packet.pop(ev.id, None)))
    return out


def packet_summary(p: TraceEvent | None) -> str:
    """`TCP SYN 198.18.20.20:40000 -> 10.40.0.10:1723`, `GRE 198.18.20.20 -> 10.40.0.10`."""
    if p is None:
        return "a packet"
    if p.proto == "tcp":
        what = {("syn",): "TCP SYN", ("ack", "syn"): "TCP SYN-ACK"}.get(p.flags, "TCP")
        return f"{what} {p.saddr}:{p.sport} -> {p.daddr}:{p.dport}"
    return f"{(p.proto or 'IP').upper()} {p.saddr} -> {p.daddr}"


def packet_kind(p: TraceEvent | None) -> str | None:
    """Which of the PPTP packets the capture evidence follows this one is: syn, syn_ack,
    gre (either way), or None."""
    if p is None:
        return None
    if p.proto == "gre":
        return "gre"
    if p.proto == "tcp" and "syn" in p.flags:
        if p.dport == 1723 and "ack" not in p.flags:
            return "syn"
        if p.sport == 1723 and "ack" in p.flags:
            return "syn_ack"
    return None


def drops_by_node(traces: dict[str, str]) -> list[Drop]:
    """The drops of every node's trace text (node name -> `nft monitor trace` output)."""
    out = []
    for node, text in traces.items():
        for d in drops(parse_trace(text)):
            d.node = node
            out.append(d)
    return out


# ------------------------------------------------------------------ the path
@dataclass
class TunnelPath:
    """The segments from a client's network to its server's, and the node between each two."""
    segments: list[str]
    nodes: list[str]   # nodes[i] is between segments[i] and segments[i + 1]

    def between(self, a: str, b: str) -> str | None:
        for i in range(len(self.segments) - 1):
            if {self.segments[i], self.segments[i + 1]} == {a, b}:
                return self.nodes[i]
        return None


def server_node(topo, client: str) -> str | None:
    """The pptp-server that answers the client's calls: the owner of the address it dials;
    when that is a NAT's public address, the node the NAT forwards TCP 1723 (or maps the
    address) to; failing both (a NAT by its own ruleset), the topology's only pptp-server."""
    owner = _owner(topo, dialled(topo, client))
    if owner is not None and topo.nodes[owner].kind == "pptp-server":
        return owner
    servers = [n for n in topo.servers if n != client]
    return servers[0] if len(servers) == 1 else None


def dialled(topo, client: str) -> str:
    """The address the client's packets reach the server by: the one it dials, as a static
    NAT maps it or a NAT forwards TCP 1723 of it."""
    addr = topo.nodes[client].pptp_client.server
    for n in topo.nodes.values():
        nat = getattr(n, "nat", None)
        if nat is None:
            continue
        if nat.mode == "static" and nat.public == addr:
            return nat.private
        if addr in n.interfaces.values():
            to = next((f.to for f in nat.forward if f.proto == "tcp" and f.port == 1723), None)
            return to or addr
    return addr


def _owner(topo, addr: str) -> str | None:
    return next((name for name, n in topo.nodes.items() if addr in n.interfaces.values()), None)


def path(topo, client: str, server: str | None = None) -> TunnelPath | None:
    """Breadth-first from the client's (first) network to one of the server's: networks are
    the vertices, nodes with several interfaces the edges (a filtering node preferred where
    two connect the same networks). None when no path or no server is known."""
    server = server or server_node(topo, client)
    if server is None:
        return None
    start = next(iter(topo.nodes[client].interfaces))
    # The server's network that holds the address the calls reach, when it has several.
    addr = dialled(topo, client)
    goals = {net for net, a in topo.nodes[server].interfaces.items() if a == addr} or set(topo.nodes[server].interfaces)
    edges = sorted(((0 if n.kind in FILTERING_KINDS else 1, name) for name, n in topo.nodes.items()
                    if len(n.interfaces) > 1 and name not in (client, server)))
    back: dict[str, tuple[str, str] | None] = {start: None}
    todo = deque([start])
    while todo:
        net = todo.popleft()
        if net in goals:
            segs, nodes = [net], []
            while back[segs[0]] is not None:
                prev, via = back[segs[0]]
                segs.insert(0, prev)
                nodes.insert(0, via)
            return TunnelPath(segs, nodes)
        for _, name in edges:
            if net in topo.nodes[name].interfaces:
                for other in topo.nodes[name].interfaces:
                    if other not in back:
                        back[other] = (net, name)
                        todo.append(other)
    return None


# ------------------------------------------------------------------ capture evidence
SEEN = ("syn", "syn_ack", "gre_to_server", "gre_to_client")
MEANING = {"syn": "SYN", "syn_ack": "SYN-ACK", "gre_to_server": "GRE to the server",
           "gre_to_client": "GRE to the client"}


@dataclass
class Flow:
    """The client's and server's addresses as a segment's capture shows them (None: any;
    a NAT on the way rewrites them)."""
    segment: str
    client: str | None
    server: str | None


def flows(topo, client: str, route: TunnelPath) -> list[Flow]:
    """The addresses to look for on each segment of the path: the client's address until a
    NAT hides it (its outside address, or a static NAT's public one), the address dialled
    until a NAT forwards or maps it inward. A node whose NAT is its own ruleset: any."""
    c = topo.nodes[client]
    cl, sv = c.interfaces[route.segments[0]], c.pptp_client.server
    out = [Flow(route.segments[0], cl, sv)]
    for i, name in enumerate(route.nodes):
        node, nxt = topo.nodes[name], route.segments[i + 1]
        nat = getattr(node, "nat", None)
        if nat is not None:
            if nxt == nat.outside:  # leaving by the outside: the client's address is hidden
                cl = nat.public if nat.mode == "static" else node.interfaces[nxt]
            elif route.segments[i] == nat.outside:  # entering: the dialled address forwarded
                if nat.mode == "static":
                    sv = nat.private if sv == nat.public else sv
                else:
                    sv = next((f.to for f in nat.forward if f.proto == "tcp" and f.port == 1723), sv)
        elif node.kind == "nat":  # its NAT is a ruleset: the lab cannot know the addresses
            cl = sv = None
        out.append(Flow(nxt, cl, sv))
    return out


@dataclass
class Seen:
    """What one segment's capture showed of the client's attempt."""
    sessions: int = 0
    syn: bool = False
    syn_ack: bool = False
    gre_to_server: bool = False
    gre_to_client: bool = False
    found: list = field(default_factory=list, compare=False, repr=False)  # those sessions


def presence(report, route: TunnelPath, wanted: list[Flow], since: float | None = None) -> dict[str, Seen]:
    """Per segment of the path, what its capture (the analyser's sessions whose source file
    is <segment>.pcap) shows of the flow: the TCP handshake from the session's tcp flags,
    GRE from its calls' to_server / to_client packet counts. Only sessions that started at
    `since` or later, when given (an earlier attempt is not this one)."""
    by_seg = {f.segment: f for f in wanted}
    out = {seg: Seen() for seg in route.segments}
    for s in report.sessions:
        seg = Path(s.source).stem
        f = by_seg.get(seg)
        if f is None or (since is not None and s.end < since):
            continue
        swapped = _match(s, f)
        if swapped is None:
            continue
        seen = out[seg]
        seen.sessions += 1
        seen.found.append(s)
        seen.syn |= bool(s.tcp.get("syn"))
        seen.syn_ack |= bool(s.tcp.get("syn_ack"))
        for call in s.calls:
            up, down = (call.to_client, call.to_server) if swapped else (call.to_server, call.to_client)
            seen.gre_to_server |= bool(up and up.packets)
            seen.gre_to_client |= bool(down and down.packets)
    return out


def _match(s, f: Flow) -> bool | None:
    """False: the session is the flow; True: it is, the analyser's roles the other way round
    (a GRE-only session guesses them); None: another flow."""
    def fits(a, b):
        return (f.client is None or a == f.client) and (f.server is None or b == f.server)
    if fits(s.client, s.server):
        return False
    if s.gre_only and fits(s.server, s.client):
        return True
    return None


@dataclass
class Vanished:
    what: str                 # one of SEEN
    seen_on: str | None       # the last segment that showed it (None: not even the first)
    never_on: str             # the next segment, which did not
    node: str | None          # the node between them
    # The request reached the server's segment and no answer appeared on any segment of
    # the path: `node` is the server, which should have answered.
    unanswered: bool = False


ANSWER_TO = {"syn_ack": "syn", "gre_to_client": "gre_to_server"}


def vanished(route: TunnelPath, seen: dict[str, Seen], server: str | None = None) -> Vanished | None:
    """The first PPTP packet, in handshake order, that a segment showed and the next one on
    its way did not (the client's towards the server, the server's back); or, given the
    server, an answer it never gave (its request seen on the server's segment)."""
    for what in SEEN:
        segs = route.segments if what in ("syn", "gre_to_server") else route.segments[::-1]
        if not any(getattr(seen.get(s, Seen()), what) for s in segs):
            if what == "syn":
                return Vanished(what, None, segs[0], None)
            last = route.segments[-1]
            if server and what in ANSWER_TO and getattr(seen.get(last, Seen()), ANSWER_TO[what]):
                return Vanished(what, None, last, server, unanswered=True)
            continue  # never sent: the step before it explains why
        for a, b in zip(segs, segs[1:]):
            if getattr(seen.get(a, Seen()), what) and not getattr(seen.get(b, Seen()), what):
                return Vanished(what, a, b, route.between(a, b))
    return None


# ------------------------------------------------------------------ the sentence
def explain(drop: Drop | None, evidence: Vanished | None, node: str | None = None) -> str:
    """One line: what the captures show and which rule the trace names, e.g. `SYN-ACK seen on
    dmz, never on internet: dropped by edge, table inet edge, chain forward, rule `ip protocol
    gre drop` (handle 7)`."""
    node = node or (drop.node if drop else None) or (evidence.node if evidence else None)
    if evidence is not None and evidence.unanswered:
        head = (f"{MEANING[ANSWER_TO[evidence.what]]} reached {evidence.never_on}, {evidence.node} never answered "
                f"(no {MEANING[evidence.what]} on any segment)")
    elif evidence is not None:
        what = MEANING[evidence.what]
        head = (f"{what} seen on {evidence.seen_on}, never on {evidence.never_on}" if evidence.seen_on
                else f"{what} never seen, not even on {evidence.never_on}")
    else:
        head = packet_summary(drop.packet) if drop else "no PPTP packet went missing between segments"
    if drop is not None:
        return f"{head}: {drop.action} by {node}, {drop.where()} [{packet_summary(drop.packet)}]"
    if evidence is not None and evidence.unanswered:
        return f"{head}: no rule traced a drop"
    if evidence is not None and evidence.seen_on:
        return (f"{head} (between node {node}): no rule traced a drop there (routing? rp_filter? "
                "a conntrack INVALID drop outside nft?)")
    if evidence is not None:
        return f"{head}: the client sent nothing (its route to the server? the pptp client itself?)"
    return f"{head}, and no rule traced a drop"


def _fits(d: Drop, ev: Vanished) -> bool:
    kind = packet_kind(d.packet)
    want = "gre" if ev.what.startswith("gre") else ev.what
    if kind != want:
        return False
    # Interfaces are named after their networks: the packet came in from the segment that saw it.
    iif = d.packet.iif if d.packet else None
    return iif is None or names.interface(ev.seen_on) is None or iif == names.interface(ev.seen_on)


def _addressed(d: Drop, evidence: Vanished, wanted: list[Flow] | None) -> bool:
    """The drop's packet has the flow's addresses (as the segment it was last seen on, or
    for an answer never seen, the server's, shows them), where both are known."""
    f = next((f for f in wanted or [] if f.segment == (evidence.seen_on or evidence.never_on)), None)
    p = d.packet
    if f is None or p is None or not (p.saddr and p.daddr and f.client and f.server):
        return True
    forward = evidence.what in ("syn", "gre_to_server")
    return (p.saddr, p.daddr) == ((f.client, f.server) if forward else (f.server, f.client))


def blame(drops_: list[Drop], evidence: Vanished | None, wanted: list[Flow] | None = None) -> Drop | None:
    """The drop that explains the evidence: on the node between the two segments, of the
    packet that went missing, coming in from the segment that last saw it (with the flow's
    addresses, given `wanted`). For an answer never seen, that answer's drop on any node.
    With no evidence, the first drop of a PPTP packet."""
    if evidence is None:
        return next((d for d in drops_ if packet_kind(d.packet)), drops_[0] if drops_ else None)
    if evidence.unanswered:
        kind = "gre" if evidence.what.startswith("gre") else evidence.what
        return next((d for d in drops_ if packet_kind(d.packet) == kind and _addressed(d, evidence, wanted)), None)
    if evidence.node is None:
        return None
    return next((d for d in drops_ if d.node == evidence.node and _fits(d, evidence)
                 and _addressed(d, evidence, wanted)), None)


def _judge(route: TunnelPath, traces: dict[str, str], seen: dict[str, Seen],
           server: str | None = None, wanted: list[Flow] | None = None) -> tuple[Vanished | None, Drop | None]:
    ev = vanished(route, seen, server)
    return ev, blame(drops_by_node(traces), ev, wanted)


def verdict(route: TunnelPath, traces: dict[str, str], seen: dict[str, Seen]) -> tuple[str, Drop | None]:
    """The final sentence and the drop it names (None if none): `traces` is node name ->
    `nft monitor trace` text, `seen` segment name -> what its capture showed (presence)."""
    ev, d = _judge(route, traces, seen)
    return explain(d, ev), d


def path_data(client: str, server: str | None, route: TunnelPath, seen: dict[str, Seen],
              evidence: Vanished | None, drop: Drop | None) -> dict:
    """The packet's way for the topology picture (lab.reports.graph), JSON as checks.json keeps it:
    {client, server, segments, nodes, packet: what went missing, seen: {segment: its capture
    showed that packet} (empty when the captures found nothing missing), at: the node that
    dropped it (or between the last segment that saw it and the next), rule: the drop's
    table/chain/rule ("" when no rule traced it), action: dropped | rejected | ""}. {} when
    there is nothing to draw."""
    if evidence is None and drop is None:
        return {}
    what = evidence.what if evidence else None
    return {"client": client, "server": server or "", "segments": list(route.segments), "nodes": list(route.nodes),
            "packet": MEANING[what] if what else packet_summary(drop.packet),
            "seen": {s: bool(getattr(seen.get(s, Seen()), what)) for s in route.segments} if what else {},
            "at": (drop.node if drop else evidence.node) or "", "rule": drop.where() if drop else "",
            "action": drop.action if drop else ""}


@dataclass
class Finding:
    sentence: str
    drop: Drop | None = None
    path: dict = field(default_factory=dict)  # path_data
    # What lab.diagnosis.cause decides from (with the nodes' own evidence, lab.diagnosis.evidence):
    server: str | None = None
    route: TunnelPath | None = None
    flows: list = field(default_factory=list)
    seen: dict = field(default_factory=dict)
    evidence: Vanished | None = None
    cause: object = None  # lab.diagnosis.cause.Cause, once decided
    # For an answer never seen: (the node the server's route sends it to, the interface it
    # comes in by there), when lab.diagnosis.diagnose found one.
    answer_hop: tuple[str, str] | None = None


def find(topo, client: str, report, traces: dict[str, str], since: float | None = None) -> Finding:
    """verdict() for one client of a topology, from the analysed captures (lab.pptp.Report),
    with the packet's way for the picture."""
    server = server_node(topo, client)
    route = path(topo, client, server)
    if route is None:
        return Finding(f"{client}: no path from its network to its server's in the topology")
    wanted = flows(topo, client, route)
    seen = presence(report, route, wanted, since)
    ev, d = _judge(route, traces, seen, server, wanted)
    return Finding(explain(d, ev), d, path_data(client, server, route, seen, ev, d), server, route, wanted, seen, ev)


def why(topo, client: str, report, traces: dict[str, str], since: float | None = None) -> tuple[str, Drop | None]:
    """The sentence and the drop of find()."""
    f = find(topo, client, report, traces, since)
    return f.sentence, f.drop

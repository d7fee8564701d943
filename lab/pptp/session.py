"""PPTP sessions from decoded packets: control connection + calls + GRE flows, with
sequence analysis (SPEC S8), echo pairing (S9), PPP phases (S6), teardown order (S10/S11)
and a verdict saying in which phase each session stopped and, if it stopped early, why."""
from __future__ import annotations

import socket
from collections import Counter
from dataclasses import dataclass, field

from . import control, ppp, teardown
from . import icmp as icmp_mod
from .reader import Packet

# The phase a session STOPPED in, in protocol order; judge() gives one of these.
PHASE_MEANING = {
    "tcp": "the TCP connection to port 1723 never completed (SYN unanswered, or reset by the server)",
    "control": "TCP connected, no control connection (no SCCRQ, SCCRQ without SCCRP, or SCCRP refused)",
    "call": "control connection up, no established call (no OCRQ, OCRQ without OCRP, or OCRP refused)",
    "lcp": "call established, LCP did not open both ways (no GRE, GRE one way only, or LCP not agreed)",
    "auth": "LCP open, authentication failed or did not finish",
    "ccp": "authenticated, CCP/MPPE not agreed (and IPCP not done)",
    "ipcp": "CCP done (or not used), IPCP did not complete",
    "data": "IPCP done: the tunnel was up",
    "teardown": "the tunnel was up, then torn down",
}
PHASES = list(PHASE_MEANING)

SEEN_WINDOW = 4096  # sequence numbers remembered per direction for duplicate detection
MAX_ERRORS = 20     # per object, so a corrupt capture cannot grow a report without bound
# Memory has a ceiling whatever the capture holds: what goes beyond these is counted, not kept
# (Session.dropped, and stats "sessions_not_detailed" / "packets_not_detailed"). With every
# limit filled at once (1000 sessions x 4 calls, GRE both ways with header errors, pending
# control segments, all events and records) the analyser peaked at about 125 MB.
MAX_SESSIONS = 1000       # sessions kept in detail per capture file (with GRE-only ones)
MAX_CALLS = 4             # calls per session
MAX_EVENTS = 2000         # ladder events per session
MAX_RECORDS = 1000        # echoes per session; SLI, WEN and LCP echoes per call
MAX_MARKS = 100           # sequence marks per GRE direction (a lossy link has one per gap)
MAX_TEARDOWN = 64         # teardown steps per session, outside MAX_DETAIL: the verdict reads them
MAX_ICMP = 16             # ICMP errors per session, outside MAX_DETAIL (the last slot: the newest)
MAX_DETAIL = 100_000      # events and records of all sessions of a capture together
MAX_UNDETAILED = 100_000  # sessions past MAX_SESSIONS counted one by one (then "at least")
MAX_KINDS = 32            # PPP protocol names counted per GRE direction; more count as "other"
MAX_GRE_CACHE = 4 * MAX_SESSIONS  # GRE-only flows remembered for the fast lookup
SYN, RST, FIN, ACK = 0x02, 0x04, 0x01, 0x10


def limits() -> dict:
    return {"sessions": MAX_SESSIONS, "calls_per_session": MAX_CALLS, "events_per_session": MAX_EVENTS,
            "records_per_session": MAX_RECORDS, "sequence_marks_per_direction": MAX_MARKS,
            "teardown_steps_per_session": MAX_TEARDOWN, "icmp_errors_per_session": MAX_ICMP,
            "detail_per_capture": MAX_DETAIL, "undetailed_sessions_counted": MAX_UNDETAILED}


@dataclass(slots=True)
class Event:
    ts: float
    frame: int
    sender: str  # "client" | "server"
    what: str
    detail: str = ""
    malformed: bool = False
    # Who really sent it when not the `sender` endpoint: an ICMP error's source address, or
    # "middlebox" (a TCP FIN/RST sent on the endpoint's behalf, lab.pptp.teardown).
    by: str = ""
    info: dict | None = None  # an ICMP error's fields; a TCP FIN/RST's seq and TTL

    def to_dict(self) -> dict:
        d = {"ts": self.ts, "frame": self.frame, "sender": self.sender, "what": self.what,
             "detail": self.detail, "malformed": self.malformed}
        return d | ({"by": self.by} if self.by else {}) | ({"info": self.info} if self.info else {})


@dataclass
class Direction:
    """One direction of a call's GRE: counts and sequence/ack analysis."""
    src: str
    dst: str
    call_id: int
    packets: int = 0
    payload_packets: int = 0
    ack_only: int = 0
    first_seq: int | None = None
    max_seq: int | None = None
    lost: int = 0
    duplicates: int = 0
    reordered: int = 0
    highest_ack: int | None = None
    first_ts: float | None = None
    last_ts: float | None = None
    ppp: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    # The outer IPv4 packets (SPEC S29): the largest total length, how many had DF set, and
    # how many were fragmented (counted once, by their first fragment).
    largest: int = 0
    df: int = 0
    fragmented: int = 0
    # The packets the sequence analysis found something about, {frame, what: "gap" (with the
    # numbers `missing` before it) | "duplicate" | "reordered" (after the highest seq), seq}:
    # kept by the Analyzer, the first MAX_MARKS
    marks: list[dict] = field(default_factory=list)
    # seq % SEEN_WINDOW -> seen, for the SEEN_WINDOW numbers up to max_seq: a fixed size
    _seen: bytearray = field(default_factory=bytearray, repr=False)

    def add(self, pkt: Packet) -> dict | None:
        """Count a packet; a mark (see `marks`) when its sequence number is out of line."""
        g = pkt.gre
        self.largest = max(self.largest, pkt.size)
        self.df += pkt.df
        self.fragmented += pkt.fragment
        if g.errors and len(self.errors) < MAX_ERRORS:
            self.errors += [f"frame {pkt.frame}: {e}" for e in g.errors]
        if g.payload:
            return self.data(pkt.ts, g.seq, g.ack, pkt.frame)
        self.packets += 1
        self.first_ts = self.first_ts if self.first_ts is not None else pkt.ts
        self.last_ts = pkt.ts
        self._ack(g.ack)
        self.ack_only += 1
        return None

    def _ack(self, ack: int | None) -> None:
        if ack is not None and (self.highest_ack is None or
                                0 < (ack - self.highest_ack) & 0xFFFFFFFF < 0x80000000):
            # Serial-number order: a first ack of 0xFFFFFFFF (seen from Cisco) means "none yet".
            self.highest_ack = ack

    def data(self, ts: float, s: int | None, ack: int | None, frame: int = 0) -> dict | None:
        """A packet with a payload and no header errors: what add() counts of it, and its mark."""
        self.packets += 1
        self.first_ts = self.first_ts if self.first_ts is not None else ts
        self.last_ts = ts
        if ack is not None:
            self._ack(ack)
        self.payload_packets += 1
        if s is None:
            return None
        mark = None
        if self.max_seq is None:
            self.first_seq = self.max_seq = s
            self._seen = bytearray(SEEN_WINDOW)
        elif s > self.max_seq:
            if s - self.max_seq > 1:
                self.lost += s - self.max_seq - 1  # a gap: lost unless it shows up late
                self._forget(self.max_seq + 1, s)
                mark = {"frame": frame, "what": "gap", "seq": s, "missing": [self.max_seq + 1, s - 1]}
            self.max_seq = s
        elif self.max_seq - s < SEEN_WINDOW and self._seen[s % SEEN_WINDOW]:
            self.duplicates += 1
            return {"frame": frame, "what": "duplicate", "seq": s}
        else:
            self.reordered += 1
            self.lost = max(0, self.lost - 1)
            mark = {"frame": frame, "what": "reordered", "seq": s, "after": self.max_seq}
            if self.max_seq - s >= SEEN_WINDOW:
                return mark  # older than the window: its slot belongs to a newer number
        self._seen[s % SEEN_WINDOW] = 1
        return mark

    def _forget(self, lo: int, hi: int) -> None:
        """Clear the slots of numbers lo..hi-1 (skipped by a gap), which held older ones."""
        n = min(hi - lo, SEEN_WINDOW)
        a = lo % SEEN_WINDOW
        b = a + n
        if b <= SEEN_WINDOW:
            self._seen[a:b] = bytes(n)
        else:
            self._seen[a:] = bytes(SEEN_WINDOW - a)
            self._seen[:b - SEEN_WINDOW] = bytes(b - SEEN_WINDOW)

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")} | {"ppp": dict(self.ppp)}


@dataclass
class Call:
    client_call_id: int | None = None
    server_call_id: int | None = None
    request: dict = field(default_factory=dict)
    reply: dict = field(default_factory=dict)
    result: str = ""
    sli: list[dict] = field(default_factory=list)
    wen: list[dict] = field(default_factory=list)
    to_server: Direction | None = None
    to_client: Direction | None = None
    reply_ts: float | None = None  # when the OCRP/ICRP came: the call's age
    lcp_echo: dict | None = None   # the last LCP Echo-Request/Reply: {ts, sender, what}
    # LCP Echo-Requests and their replies, as Session.echoes holds the PPTP ones
    lcp_echoes: list[dict] = field(default_factory=list)
    first_data_frame: int | None = None  # its first user data (MPPE, IP): phase data began
    # Per sender, its first GRE payload since the other side's last GRE (None: none since).
    # Peers ack data within about 0.5 s (pptp-linux, pptpd), so a long wait means the other
    # side's GRE no longer arrives (`pptp-lab status`: a stalled tunnel).
    waiting: dict = field(default_factory=lambda: {"client": None, "server": None})
    ppp: dict = field(default_factory=lambda: {
        "lcp_acked_by": [], "auth": None, "auth_result": None, "auth_detail": "",
        "ccp_acked_by": [], "mppe": None, "ipcp_acked_by": [], "client_address": None,
        "server_address": None, "data_frames": {"client": 0, "server": 0},
        # The MRU each side asked for and its peer acked (LCP option 1; 1500 when not asked):
        # the largest PPP frame that side takes, so the peer's MTU (SPEC S29).
        "mru": {"client": None, "server": None}})

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k not in ("to_server", "to_client")}
        d["to_server"] = self.to_server.to_dict() if self.to_server else None
        d["to_client"] = self.to_client.to_dict() if self.to_client else None
        return d


@dataclass
class Session:
    id: int
    source: str
    client: str
    server: str
    client_port: int | None = None
    server_port: int | None = control.PORT
    start: float = 0.0
    end: float = 0.0
    tcp: dict = field(default_factory=lambda: {"syn": False, "syn_ack": False, "fin_by": [],
                                               "rst_by": [], "closed_at": None})
    sccrq: dict = field(default_factory=dict)
    sccrp: dict = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    echoes: list[dict] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    phase: str = ""
    verdict: str = ""
    teardown: list[Event] = field(default_factory=list)
    initiator: str | None = None  # the endpoint that took the first teardown step
    initiated: dict | None = None  # that step, and the path's steps before it (teardown.initiation)
    icmp: list[Event] = field(default_factory=list)  # ICMP errors answering its packets
    gre_only: bool = False
    dropped: Counter = field(default_factory=Counter)  # what the limits kept out: events, echoes, ...
    last_echo: dict | None = None  # the last PPTP Echo-Request/Reply {ts, sender, what}, kept past MAX_RECORDS
    _streams: dict = field(default_factory=dict, repr=False)
    _ttl: dict = field(default_factory=lambda: {"client": Counter(), "server": Counter()}, repr=False)

    def who(self, src: str, sport: int | None = None) -> str:
        if src == self.client and (sport is None or self.client_port is None or sport == self.client_port):
            return "client"
        return "server"

    def echo_summary(self) -> dict:
        out = {}
        for side in ("client", "server"):
            reqs = [e for e in self.echoes if e["sender"] == side]
            gaps = [b["request_ts"] - a["request_ts"] for a, b in zip(reqs, reqs[1:])]
            out[side] = {"requests": len(reqs), "answered": sum(1 for e in reqs if e["reply_ts"] is not None),
                         "interval_s": round(sum(gaps) / len(gaps), 3) if gaps else None,
                         "intervals_s": [round(g, 3) for g in gaps]}
        return out

    def to_dict(self) -> dict:
        return {
            "id": self.id, "source": self.source, "client": self.client, "server": self.server,
            "client_port": self.client_port, "server_port": self.server_port,
            "start": self.start, "end": self.end, "gre_only": self.gre_only,
            "tcp": self.tcp, "sccrq": self.sccrq, "sccrp": self.sccrp,
            "calls": [c.to_dict() for c in self.calls], "echoes": self.echoes,
            "echo_summary": self.echo_summary(), "phase": self.phase, "verdict": self.verdict,
            "teardown": [e.to_dict() for e in self.teardown], "initiator": self.initiator,
            "initiated": self.initiated, "icmp": [e.to_dict() for e in self.icmp],
            "events": [e.to_dict() for e in self.events], "errors": self.errors,
            "dropped": dict(self.dropped),
        }


class Analyzer:
    """Feed packets (from one capture point), then finish() for the sessions."""

    def __init__(self, source: str = "") -> None:
        self.source = source
        self.sessions: list[Session] = []
        self._by_conn: dict[tuple, Session] = {}
        self._gre: dict[tuple, tuple[Session, Call, str]] = {}
        self._orphans: dict[tuple, Session] = {}
        self._by_pair: dict[tuple, Session] = {}  # (lower, higher address) -> the latest control session
        self._undetailed: set[int] = set()  # hashes of the sessions past MAX_SESSIONS
        # (raw addresses, call ID) -> (session, call, direction, sender) for mppe(); emptied
        # by add(), the only place the flows and roles behind it can change.
        self._known: dict[tuple, tuple] = {}
        self.room = MAX_DETAIL  # events and records that may still be kept
        self.stats = Counter()

    # ------------------------------------------------------------- packets
    def add(self, pkt: Packet) -> None:
        if self._known:
            self._known.clear()
        self.stats["packets"] += 1
        if pkt.kind == "tcp":
            self._tcp(pkt)
        elif pkt.kind == "icmp":
            self._icmp(pkt)
        elif pkt.gre.is_pptp:
            self.stats["gre_pptp"] += 1
            self._gre_packet(pkt)
        else:
            self.stats["gre_other"] += 1

    def mppe(self, addrs: bytes, call_id: int, ts: float, seq: int, ack: int | None, frame: int = 0,
             size: int = 0, df: bool = False) -> bool:
        """An error-free GRE packet carrying MPPE data (the bulk of a capture), from the reader
        before it builds a Packet: counted as add() would count it. False when it is not of a
        flow already seen (the reader then gives it to add())."""
        key = (addrs, call_id)
        hit = self._known.get(key)
        if hit is None:
            found = self._gre.get((socket.inet_ntoa(addrs[:4]), socket.inet_ntoa(addrs[4:]), call_id))
            if found is None:
                return False
            s, call, attr = found
            flow = getattr(call, attr)
            if flow is None:
                return False
            sender, other = ("client", "server") if attr == "to_server" else ("server", "client")
            hit = self._known[key] = (s, call, flow, sender, other)
        s, call, flow, sender, other = hit
        stats = self.stats
        stats["packets"] += 1
        stats["gre_pptp"] += 1
        mark = flow.data(ts, seq, ack, frame)
        if mark is not None:
            self._keep(s, flow.marks, mark, "sequence marks", MAX_MARKS)
        if size > flow.largest:
            flow.largest = size
        flow.df += df
        if ts > s.end:
            s.end = ts
        flow.ppp["MPPE"] += 1
        call.ppp["data_frames"][sender] += 1
        if call.first_data_frame is None:
            call.first_data_frame = frame
        waiting = call.waiting
        waiting[other] = None
        if waiting[sender] is None:
            waiting[sender] = ts
        return True

    def _new_session(self, client, server, cport, ts) -> Session | None:
        if len(self.sessions) >= MAX_SESSIONS:
            return None
        s = Session(id=len(self.sessions) + 1, source=self.source, client=client, server=server,
                    client_port=cport, start=ts, end=ts)
        self.sessions.append(s)
        return s

    def _not_detailed(self, key: tuple) -> None:
        """A packet of a session past MAX_SESSIONS: counted, and its session counted once."""
        self.stats["packets_not_detailed"] += 1
        h = hash(key)
        if h not in self._undetailed and len(self._undetailed) < MAX_UNDETAILED:
            self._undetailed.add(h)
            self.stats["sessions_not_detailed"] += 1

    def _keep(self, s: Session, items: list, item, what: str, cap: int, charge: bool = True) -> None:
        if len(items) < cap and (self.room > 0 or not charge):
            items.append(item)
            self.room -= charge
        else:
            s.dropped[what] += 1

    def _event(self, s: Session, ts, frame, sender, what, detail="", malformed=False) -> Event:
        ev = Event(ts, frame, sender, what, detail, malformed)
        self._keep(s, s.events, ev, "events", MAX_EVENTS)
        if ts > s.end:
            s.end = ts
        return ev

    def _error(self, s: Session, text: str) -> None:
        if len(s.errors) < MAX_ERRORS:
            s.errors.append(text)
        else:
            s.dropped["errors"] += 1

    def _add_call(self, s: Session, call: Call) -> bool:
        if len(s.calls) < MAX_CALLS:
            s.calls.append(call)
            return True
        s.dropped["calls"] += 1
        return False

    def _tcp(self, pkt: Packet) -> None:
        to_server = pkt.dport == control.PORT
        client, server = (pkt.src, pkt.dst) if to_server else (pkt.dst, pkt.src)
        cport = pkt.sport if to_server else pkt.dport
        key = (client, cport, server)
        s = self._by_conn.get(key)
        syn_only = pkt.flags & SYN and not pkt.flags & ACK
        if s is None or (syn_only and s.tcp["closed_at"] is not None):
            s = self._new_session(client, server, cport, pkt.ts)
            if s is None:
                self._by_conn.pop(key, None)
                self._not_detailed(key)
                return
            self._by_conn[key] = s
            self._by_pair[_pair(client, server)] = s
        sender = "client" if to_server else "server"
        if pkt.ttl:
            s._ttl[sender][pkt.ttl] += 1
        stream = s._streams.setdefault(sender, control.Stream())
        if pkt.flags & SYN:
            stream.syn(pkt.seq)
            if pkt.flags & ACK:
                s.tcp["syn_ack"] = True
                self._event(s, pkt.ts, pkt.frame, sender, "TCP SYN-ACK")
            else:
                s.tcp["syn"] = True
                self._event(s, pkt.ts, pkt.frame, sender, "TCP SYN", f"{client}:{cport} -> {server}:{control.PORT}")
        for raw in stream.feed(pkt.seq, pkt.data):
            self._control(s, sender, pkt, control.decode(raw))
        if pkt.flags & (FIN | RST):
            kind = "rst_by" if pkt.flags & RST else "fin_by"
            if sender not in s.tcp[kind]:  # a retransmitted FIN is not a new step
                s.tcp[kind].append(sender)
                s.tcp["closed_at"] = pkt.ts
                ev = self._event(s, pkt.ts, pkt.frame, sender, "TCP RST" if kind == "rst_by" else "TCP FIN")
                ev.info = {"seq": pkt.seq, "ttl": pkt.ttl}  # to tell a middlebox's (teardown.py)
                s.teardown.append(ev)
        s.end = max(s.end, pkt.ts)

    def _icmp(self, pkt: Packet) -> None:
        """An ICMP error quoting a packet of a session: an event of it, sent towards the side
        whose packet it answers, by whoever sent it (pkt.src: often neither endpoint)."""
        err = pkt.icmp
        self.stats["icmp_errors"] += 1
        s = self._icmp_session(err)
        if s is None:
            self.stats["icmp_unmatched"] += 1
            return
        if err.proto == icmp_mod.TCP:
            answered = "client" if err.dport == control.PORT else "server"
        else:
            answered = "client" if err.src == s.client else "server"
        # The quoted packet by its addresses: a GRE-only session's roles may still swap.
        ev = self._event(s, pkt.ts, pkt.frame, "server" if answered == "client" else "client", err.name,
                         f"from {pkt.src}, to {err.quoted}")
        ev.by, ev.info = pkt.src, err.to_dict()
        if len(s.icmp) < MAX_ICMP:
            s.icmp.append(ev)
        else:  # the first ones explain a failure, the newest a teardown
            s.icmp[-1] = ev
            s.dropped["icmp"] += 1

    def _icmp_session(self, err: icmp_mod.IcmpError) -> Session | None:
        """By the quoted TCP ports or GRE call ID; by the addresses when it quotes neither."""
        if err.proto == icmp_mod.TCP:
            to_server = err.dport == control.PORT
            return self._by_conn.get((err.src, err.sport, err.dst) if to_server else (err.dst, err.dport, err.src))
        if err.call_id is None:
            return self._by_pair.get(_pair(err.src, err.dst)) or self._orphans.get(_pair(err.src, err.dst))
        hit = self._gre.get((err.src, err.dst, err.call_id))
        if hit is not None:
            return hit[0]
        s = self._orphans.get(_pair(err.src, err.dst))  # past MAX_GRE_CACHE, orphans are found here
        return s if s and err.call_id in (s.calls[0].client_call_id, s.calls[0].server_call_id) else None

    def _control(self, s: Session, sender: str, pkt: Packet, m: control.ControlMessage) -> None:
        self.stats["control_messages"] += 1
        if m.malformed:
            # Truncated or of no known type: on the ladder and in the errors, its fields unused.
            why = "; ".join(m.errors)
            self._error(s, f"frame {pkt.frame}: malformed {m.name} skipped: {why}")
            self._event(s, pkt.ts, pkt.frame, sender, m.name, f"malformed: {why}", malformed=True)
            return
        for e in m.errors:
            self._error(s, f"frame {pkt.frame}: {m.name}: {e}")
        f = m.fields
        detail = ", ".join(f"{k}={v}" for k, v in f.items() if k in (
            "call_id", "peer_call_id", "control_result", "out_result", "disc_result", "identifier",
            "reason", "stop_result", "send_accm", "receive_accm", "host_name", "vendor_name"))
        ev = self._event(s, pkt.ts, pkt.frame, sender, m.name, detail)
        if m.name == "SCCRQ":
            s.sccrq = f
        elif m.name == "SCCRP":
            s.sccrp = f | {"result": control.RESULTS["control_result"].get(f.get("control_result"), "?")}
        elif m.name in ("OCRQ", "ICRQ"):
            call = Call(request=f)
            # The sender of the request chose its own call ID.
            if sender == "client":
                call.client_call_id = f.get("call_id")
            else:
                call.server_call_id = f.get("call_id")
            self._add_call(s, call)
        elif m.name in ("OCRP", "ICRP"):
            call = self._call_for_reply(s, sender, f)
            if call is None:
                return
            call.reply, call.reply_ts = f, pkt.ts
            rkey = "out_result" if m.name == "OCRP" else "in_result"
            call.result = control.RESULTS["out_result"].get(f.get(rkey), f"result {f.get(rkey)}")
            if sender == "server":
                call.server_call_id = f.get("call_id")
            else:
                call.client_call_id = f.get("call_id")
            if f.get(rkey) == 1:
                self._register_gre(s, call)
        elif m.name in ("SLI", "WEN"):
            call = self._call_by_id(s, f["peer_call_id"])
            if call is None:  # an error, not pinned on the last call
                self._error(s, f"frame {pkt.frame}: {m.name} for unknown call ID {f['peer_call_id']}")
            elif m.name == "SLI":
                self._keep(s, call.sli, {"sender": sender, "ts": pkt.ts, "frame": pkt.frame,
                                         "send_accm": f"0x{f['send_accm']:08x}",
                                         "receive_accm": f"0x{f['receive_accm']:08x}"}, "sli", MAX_RECORDS)
            else:
                self._keep(s, call.wen, f | {"sender": sender, "ts": pkt.ts}, "wen", MAX_RECORDS)
            if m.name == "SLI" and self._closing(s):
                self._keep(s, s.teardown, ev, "teardown", MAX_TEARDOWN, charge=False)
        elif m.name == "ECHORQ":
            s.last_echo = {"ts": pkt.ts, "sender": sender, "what": "PPTP Echo-Request"}
            self._keep(s, s.echoes, {"identifier": f["identifier"], "sender": sender, "request_ts": pkt.ts,
                                     "request_frame": pkt.frame, "reply_ts": None, "reply_frame": None,
                                     "rtt_s": None},
                       "echoes", MAX_RECORDS)
        elif m.name == "ECHORP":
            s.last_echo = {"ts": pkt.ts, "sender": sender, "what": "PPTP Echo-Reply"}
            for e in reversed(s.echoes):
                if e["identifier"] == f["identifier"] and e["sender"] != sender and e["reply_ts"] is None:
                    e["reply_ts"], e["reply_frame"], e["rtt_s"] = pkt.ts, pkt.frame, round(pkt.ts - e["request_ts"], 6)
                    e["result"] = f.get("echo_result")
                    break
            else:
                if not s.dropped["echoes"]:  # otherwise its request may be one not kept
                    self._error(s, f"frame {pkt.frame}: Echo-Reply {f['identifier']} matches no request")
        if m.name in ("CCRQ", "CDN", "StopCCRQ", "StopCCRP"):
            self._keep(s, s.teardown, ev, "teardown", MAX_TEARDOWN, charge=False)

    def _closing(self, s: Session) -> bool:
        """SLI counts as a teardown step once the PPP link is going down (S10)."""
        return any(e.what.startswith("LCP Terminate") or e.what in ("CCRQ", "CDN", "StopCCRQ")
                   for e in s.teardown)

    def _call_for_reply(self, s: Session, sender: str, f: dict) -> Call | None:
        peer = f.get("peer_call_id")
        for call in reversed(s.calls):
            mine = call.client_call_id if sender == "server" else call.server_call_id
            if mine == peer and not call.reply:
                return call
        call = Call()  # a reply whose request the capture missed
        if sender == "server":
            call.client_call_id = peer
        else:
            call.server_call_id = peer
        return call if self._add_call(s, call) else None

    @staticmethod
    def _call_by_id(s: Session, cid) -> Call | None:
        for call in reversed(s.calls):
            if cid in (call.client_call_id, call.server_call_id):
                return call
        return None

    def _register_gre(self, s: Session, call: Call) -> None:
        # GRE to a peer carries the call ID that peer chose (S5).
        self._gre[(s.client, s.server, call.server_call_id)] = (s, call, "to_server")
        self._gre[(s.server, s.client, call.client_call_id)] = (s, call, "to_client")

    def _gre_packet(self, pkt: Packet) -> None:
        g = pkt.gre
        hit = self._gre.get((pkt.src, pkt.dst, g.call_id)) or self._orphan(pkt)
        if hit is None:
            return
        s, call, attr = hit
        flow = getattr(call, attr)
        if flow is None:
            flow = Direction(pkt.src, pkt.dst, g.call_id)
            setattr(call, attr, flow)
        mark = flow.add(pkt)
        if mark is not None:
            self._keep(s, flow.marks, mark, "sequence marks", MAX_MARKS)
        if pkt.ts > s.end:
            s.end = pkt.ts
        sender, other = ("client", "server") if attr == "to_server" else ("server", "client")
        call.waiting[other] = None  # an ack-only packet answers too
        if g.payload and call.waiting[sender] is None:
            call.waiting[sender] = pkt.ts
        if g.payload.startswith(ppp.MPPE_PREFIXES):
            flow.ppp["MPPE"] += 1  # encrypted data, the bulk of a session: counted, not decoded
            call.ppp["data_frames"][sender] += 1
            if call.first_data_frame is None:
                call.first_data_frame = pkt.frame
        elif g.payload:
            p = ppp.decode(g.payload)
            if p is not None:
                self._ppp(s, call, sender, pkt, p, flow)

    def _orphan(self, pkt: Packet) -> tuple[Session, Call, str] | None:
        """GRE with no control connection in the capture: a session of its own, its roles
        guessed (first sender = client) and corrected from PPP (the server challenges)."""
        a, b = pkt.src, pkt.dst
        key = _pair(a, b)
        s = self._orphans.get(key)
        if s is None:
            s = self._new_session(a, b, None, pkt.ts)
            if s is None:
                self._not_detailed(key)
                return None
            self._orphans[key] = s
            s.gre_only, s.server_port = True, None
            s.calls.append(Call())
        call = s.calls[0]
        attr = "to_server" if a == s.client else "to_client"
        if attr == "to_server":
            call.server_call_id = pkt.gre.call_id
        else:
            call.client_call_id = pkt.gre.call_id
        if len(self._gre) < MAX_GRE_CACHE:  # found directly next time; past the limit, via _orphans
            self._gre[(a, b, pkt.gre.call_id)] = (s, call, attr)
        return s, call, attr

    def _ppp(self, s: Session, call: Call, sender: str, pkt: Packet, p: ppp.Ppp, flow: Direction) -> None:
        name = p.name
        if name not in flow.ppp and len(flow.ppp) >= MAX_KINDS:
            name = "other"  # every unknown protocol number would be a new name
        flow.ppp[name] += 1
        if p.errors and len(flow.errors) < MAX_ERRORS:
            flow.errors += [f"frame {pkt.frame}: {e}" for e in p.errors]
        st = call.ppp
        if p.name in ("MPPE", "IPv4", "IPv6"):
            st["data_frames"][sender] += 1
            if call.first_data_frame is None:
                call.first_data_frame = pkt.frame
            return
        if p.code is None:
            return
        if p.name == "LCP" and p.code in (9, 10):
            call.lcp_echo = {"ts": pkt.ts, "sender": sender, "what": p.summary}
            self._lcp_echo(s, call, sender, pkt, p)
            return  # LCP echoes: counted, not laddered
        detail = ""
        if (p.options or p.info) and len(s.events) < MAX_EVENTS and self.room > 0:  # else not kept
            detail = ", ".join(f"{k}={v}" for k, v in {**p.options, **p.info}.items() if k != "value_size")
        ev = self._event(s, pkt.ts, pkt.frame, sender, p.summary, detail)
        if p.name in ("LCP", "CCP", "IPCP") and p.code == 2:
            acked = st[f"{p.name.lower()}_acked_by"]
            if sender not in acked:
                acked.append(sender)
        if p.name == "LCP" and p.code == 2:  # an Ack echoes the peer's request: the peer's MRU
            st["mru"]["server" if sender == "client" else "client"] = p.options.get("mru", 1500)
        if p.name == "LCP" and p.code == 1 and "auth" in p.options:
            st["auth"] = p.options["auth"]
        elif p.name == "LCP" and p.code in (5, 6):
            self._keep(s, s.teardown, ev, "teardown", MAX_TEARDOWN, charge=False)
        elif p.name == "CHAP" and p.code == 1 and s.gre_only and sender == "client":
            self._swap_roles(s)
        elif p.name == "CHAP" and p.code in (3, 4):
            st["auth"] = st["auth"] or "CHAP"
            st["auth_result"] = "success" if p.code == 3 else "failure"
            st["auth_detail"] = p.info.get("message", "")
            if p.code == 4 and "error" in p.info:
                st["auth_detail"] = f"E={p.info['error']} {p.info['meaning']}"
        elif p.name == "PAP" and p.code in (2, 3):
            st["auth"] = "PAP"
            st["auth_result"] = "success" if p.code == 2 else "failure"
            st["auth_detail"] = p.info.get("message", "")
        elif p.name == "CCP" and p.code == 2 and "mppe" in p.options:
            st["mppe"] = p.options["mppe"]
        elif p.name == "IPCP" and p.code == 2 and "address" in p.options:
            # An Ack echoes the peer's request: the acked address belongs to the other side.
            st["client_address" if sender == "server" else "server_address"] = p.options["address"]

    def _lcp_echo(self, s: Session, call: Call, sender: str, pkt: Packet, p: ppp.Ppp) -> None:
        """An LCP Echo-Request kept as a record, or the reply paired with its request."""
        if p.code == 9:
            self._keep(s, call.lcp_echoes, {"identifier": p.ident, "sender": sender, "request_ts": pkt.ts,
                                            "request_frame": pkt.frame, "reply_ts": None, "reply_frame": None,
                                            "rtt_s": None}, "LCP echoes", MAX_RECORDS)
            return
        for e in reversed(call.lcp_echoes):
            if e["identifier"] == p.ident and e["sender"] != sender and e["reply_ts"] is None:
                e["reply_ts"], e["reply_frame"], e["rtt_s"] = pkt.ts, pkt.frame, round(pkt.ts - e["request_ts"], 6)
                return

    def _swap_roles(self, s: Session) -> None:
        s.client, s.server = s.server, s.client
        call = s.calls[0]
        call.to_server, call.to_client = call.to_client, call.to_server
        call.client_call_id, call.server_call_id = call.server_call_id, call.client_call_id
        for k, (ss, cc, attr) in list(self._gre.items()):
            if ss is s:
                self._gre[k] = (ss, cc, "to_client" if attr == "to_server" else "to_server")
        for e in {id(e): e for e in [*s.events, *s.teardown, *s.icmp]}.values():
            e.sender = "server" if e.sender == "client" else "client"
        call.waiting = {"client": call.waiting["server"], "server": call.waiting["client"]}
        for echo in [call.lcp_echo, *call.lcp_echoes]:
            if echo:
                echo["sender"] = "server" if echo["sender"] == "client" else "client"
        st = call.ppp
        st["data_frames"] = {"client": st["data_frames"]["server"], "server": st["data_frames"]["client"]}
        st["mru"] = {"client": st["mru"]["server"], "server": st["mru"]["client"]}
        for k in ("lcp_acked_by", "ccp_acked_by", "ipcp_acked_by"):
            st[k] = ["server" if x == "client" else "client" for x in st[k]]

    # ------------------------------------------------------------- verdicts
    def finish(self) -> list[Session]:
        teardown.share_gre_errors(self.sessions)
        for s in self.sessions:
            for side, stream in s._streams.items():
                s.errors += [f"{side} stream: {e}" for e in stream.errors]
                if stream.errors_dropped:
                    s.dropped["errors"] += stream.errors_dropped
            teardown.settle(s, MAX_TEARDOWN)
            s.phase, s.verdict = judge(s)
        return self.sessions


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a < b else (b, a)


def _both(acked_by: list[str]) -> bool:
    return {"client", "server"} <= set(acked_by)


def _torn_down(s: Session) -> bool:
    """Closed, reset, or a call or control connection cleared or PPP terminated: never "data".
    Also when another capture of the same call saw its teardown begin (lab.pptp.teardown.across
    gave it that initiation): a capture point the last packets did not cross still ends it."""
    init = s.initiated
    from_elsewhere = bool(init and init.get("side") and init.get("source") != s.source)
    return (bool(s.tcp["fin_by"] or s.tcp["rst_by"]) or any(e.what in teardown.ENDS for e in s.teardown)
            or from_elsewhere)


def _up(s: Session, call: Call, why: str = "") -> tuple[str, str]:
    """IPCP done (or data flowing): the tunnel was up; was it torn down?"""
    data = call.ppp["data_frames"]
    seen = data["client"] or data["server"]
    why = why or ("tunnel up and carrying data" if seen else "tunnel up (IPCP done), no user data seen")
    if _torn_down(s):
        how = teardown.phrase(s)
        return "teardown", f"tunnel carried data and was torn down{how}" if seen else f"{why}, then torn down{how}"
    return "data", why


def _icmp_cause(s: Session, about: str, guess: str) -> str:
    """What the first ICMP error answering `about` ("GRE", "TCP 1723") shows, else the guess."""
    first = next((e for e in s.icmp if e.info["about"] == about), None)
    return icmp_mod.text(s, first) if first else guess


def judge(s: Session) -> tuple[str, str]:
    """The phase the session stopped in (PHASE_MEANING) and why: the evidence when the capture
    holds it (an ICMP error names its sender), else a likely cause. An ICMP error that the
    cause does not name is added to it."""
    phase, why = _judge(s)
    texts = [icmp_mod.text(s, e) for e in s.icmp]
    if texts and not any(t in why for t in texts):
        why += "; " + texts[0]
    return phase, why


def _judge(s: Session) -> tuple[str, str]:
    calls = [c for c in s.calls if c.to_server or c.to_client or c.reply]
    call = calls[-1] if calls else (s.calls[-1] if s.calls else None)
    if s.gre_only:
        return _judge_partial(s, call)
    if not s.tcp["syn_ack"] and not s.sccrq and not s.sccrp:
        if "server" in s.tcp["rst_by"]:
            return "tcp", "server reset TCP 1723 (RST): nothing listens on 1723 or it refuses"
        if s.tcp["syn"]:
            return "tcp", "TCP SYN to 1723 unanswered: " + _icmp_cause(
                s, "TCP 1723", "TCP port 1723 blocked or server down")
    if not s.sccrp:
        if s.sccrq:
            return "control", "SCCRQ sent, no SCCRP: " + _icmp_cause(
                s, "TCP 1723", "TCP 1723 blocked towards the client or server down")
        return "control", "TCP connected, no SCCRQ: the client never started PPTP"
    if s.sccrp.get("control_result") != 1:
        return "control", f"SCCRP refused the control connection: {s.sccrp.get('result')}"
    if call is None:
        return "call", "control connection up, no call requested (no OCRQ)"
    if not call.reply:
        return "call", "OCRQ sent, no OCRP: the server did not answer the call request"
    if (call.reply.get("out_result") or call.reply.get("in_result")) != 1:
        return "call", f"call refused by OCRP: {call.result}"
    st = call.ppp
    gre_srv, gre_cli = call.to_server, call.to_client
    if not gre_srv and not gre_cli:
        return "lcp", "OCRP ok, no GRE in either direction: " + _icmp_cause(
            s, "GRE", "IP protocol 47 blocked (or not captured here)")
    if not gre_cli:
        return "lcp", "OCRP ok, no GRE from the server: " + _icmp_cause(
            s, "GRE", "IP protocol 47 blocked towards the client (or GRE not translated back by a NAT without "
                      "the PPTP editor)")
    if not gre_srv:
        return "lcp", "OCRP ok, no GRE from the client: " + _icmp_cause(
            s, "GRE", "IP protocol 47 blocked towards the server")
    if not _both(st["lcp_acked_by"]):
        if "LCP" not in gre_srv.ppp and "LCP" not in gre_cli.ppp and st["data_frames"]["client"]:
            return _up(s, call, "tunnel carrying data (its PPP negotiation is not in this capture)")
        return "lcp", "GRE flows, LCP did not open: " + _icmp_cause(s, "GRE", "PPP frames lost or rejected")
    if st["auth_result"] == "failure":
        return "auth", f"{st['auth'] or 'authentication'} failure: {st['auth_detail'] or 'no reason given'}"
    if st["auth"] and st["auth_result"] != "success":
        return "auth", f"{st['auth']} did not finish: no Success from the server"
    if not _both(st["ipcp_acked_by"]):
        if _both(st["ccp_acked_by"]):
            return "ipcp", "MPPE agreed, IPCP did not complete: address pool or IP options"
        if "CCP" not in gre_srv.ppp and "CCP" not in gre_cli.ppp and ("IPCP" in gre_srv.ppp or "IPCP" in gre_cli.ppp):
            return "ipcp", "no CCP, IPCP did not complete: address pool or IP options"
        return "ccp", "authenticated, CCP/MPPE not agreed: check the MPPE options on both sides"
    return _up(s, call)


def _judge_partial(s: Session, call: Call) -> tuple[str, str]:
    """GRE without its control connection (capture started late or filtered): the phase the
    PPP evidence shows, without blaming a firewall for what the capture did not hold."""
    st = call.ppp
    seen = "both directions" if call.to_server and call.to_client else "one direction only"
    note = f"; {st['auth']} {st['auth_result']}" if st["auth_result"] else ""
    why = f"partial capture: GRE without its control connection, {seen}{note}"
    if st["data_frames"]["client"] or st["data_frames"]["server"] or _both(st["ipcp_acked_by"]):
        return ("teardown" if _torn_down(s) else "data"), why
    if _both(st["ccp_acked_by"]) or st["ipcp_acked_by"]:
        return "ipcp", why
    if st["auth_result"] == "success" or st["ccp_acked_by"]:
        return "ccp", why
    if st["auth_result"] or _both(st["lcp_acked_by"]):
        return "auth", why
    return "lcp", why

"""PPTP capture analysis: decoding (control, GRE, PPP) and sessions, from any pcap/pcapng.

Imports nothing from the rest of the project, so it works on captures from anywhere."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from . import teardown
from .reader import packets
from .session import PHASE_MEANING, PHASES, Analyzer, Session, judge, limits

__all__ = ["analyze", "analyze_file", "Report", "Session", "PHASES", "PHASE_MEANING", "FAIL_PHASES"]
# The phases a session can stop in short of a working tunnel (what `expect: phase:` takes).
FAIL_PHASES = tuple(PHASES[:PHASES.index("data")])


@dataclass
class Report:
    files: list[str]
    sessions: list[Session]
    stats: dict
    nat_links: list[dict] = field(default_factory=list)
    truncated: list[dict] = field(default_factory=list)  # {file, offset}: cut off mid-record there

    def to_dict(self) -> dict:
        return {"files": self.files, "stats": self.stats, "truncated": self.truncated,
                "limits": limits(), "sessions": [s.to_dict() for s in self.sessions],
                "nat_links": self.nat_links}


def analyze_file(path: str | Path) -> tuple[list[Session], dict, list[int]]:
    """Sessions, counters and the offsets where the file is cut off mid-record (if it is)."""
    a = Analyzer(source=str(path))
    cut: list[int] = []
    for pkt in packets(path, cut, a.mppe):
        a.add(pkt)
    return a.finish(), dict(a.stats), cut


def analyze(paths: list[str | Path]) -> Report:
    """Sessions of every file; with several files (e.g. inside and outside a NAT), the calls
    seen at more than one capture point are linked, showing any call ID the NAT rewrote, and
    the teardown is read across them (a middlebox's RST, the earliest initiator)."""
    sessions, stats, truncated = [], {}, []
    for path in paths:
        ss, st, cut = analyze_file(path)
        sessions += ss
        stats[str(path)] = st
        truncated += [{"file": str(path), "offset": at} for at in cut]
    for i, s in enumerate(sessions, 1):
        s.id = i
    links = link_across_nat(sessions)
    for s in teardown.across(sessions, links):
        s.phase, s.verdict = judge(s)
    return Report([str(p) for p in paths], sessions, stats, links, truncated)


def link_across_nat(sessions: list[Session], slack: float = 5.0) -> list[dict]:
    """Pair calls from different capture files that share the server side (address and call
    ID, which a client-side NAT leaves alone) and overlap in time."""
    links = []
    calls = [(s, c) for s in sessions if not s.gre_only for c in s.calls if c.server_call_id is not None]
    for i, (s1, c1) in enumerate(calls):
        for s2, c2 in calls[i + 1:]:
            if (s1.source != s2.source and s1.server == s2.server
                    and c1.server_call_id == c2.server_call_id
                    and s1.start - slack <= s2.end and s2.start - slack <= s1.end):
                links.append({
                    "server": s1.server, "server_call_id": c1.server_call_id,
                    "points": [{"source": s.source, "session": s.id, "client": s.client,
                                "client_port": s.client_port, "client_call_id": c.client_call_id}
                               for s, c in ((s1, c1), (s2, c2))],
                    "client_call_id_rewritten": c1.client_call_id != c2.client_call_id,
                })
    return links

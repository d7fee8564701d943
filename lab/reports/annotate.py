"""A capture written again as pcapng with a packet comment (Wireshark's `frame.comment`) on
each packet the analyser has something to say about: a session's verdict on its first packet,
the first packet of each phase, GRE sequence gaps, duplicates and reordering, echo pairs
(PPTP and LCP), teardown steps and their initiator, ICMP errors, malformed messages, and
what the caller adds (the packet a failed check points at).

scapy reads and writes the files; every packet keeps its bytes, timestamp and link type."""
from __future__ import annotations

import re
import struct
from decimal import Decimal
from pathlib import Path
from typing import Callable, Iterator, Mapping

from scapy.error import Scapy_Exception
from scapy.utils import PcapNgWriter, RawPcapNgReader, RawPcapReader

from ..core.errors import LabError
from ..pptp import PHASES, Report, Session
from ..pptp import icmp
from .report import direction, initiated, step

SUFFIX = ".annotated.pcapng"  # a run directory's NAME.pcap gets NAME.annotated.pcapng next to it
# The first packet of each phase (lab.pptp.PHASES), by the event names the analyser gives; phase
# data begins with a call's first user data, teardown with its first step.
PHASE_STARTS = {"tcp": ("TCP SYN",), "control": ("SCCRQ", "SCCRP"), "call": ("OCRQ", "ICRQ", "OCRP", "ICRP"),
                "lcp": ("LCP Configure",), "auth": ("PAP", "CHAP", "EAP"), "ccp": ("CCP",), "ipcp": ("IPCP",)}
MAX_COMMENT = 8000  # octets of one comment: a pcapng option holds at most 65535
_FRAME_ERROR = re.compile(r"frame (\d+): (.+)")  # the analyser's errors name their frame so


def comments(report: Report, capture: str | Path) -> dict[int, list[str]]:
    """frame number -> what the analyser says of that packet of `capture` (one of the files
    `report` analysed), in the order found."""
    out: dict[int, list[str]] = {}

    def say(frame: int | None, text: str) -> None:
        if frame:
            said = out.setdefault(frame, [])
            if text not in said:
                said.append(text)

    target = Path(capture).resolve()
    for s in report.sessions:
        if Path(s.source).resolve() == target:
            _session(s, say)
    return out


def _session(s: Session, say: Callable[[int | None, str], None]) -> None:
    name = f"session {s.id}"
    frames = [e.frame for e in s.events] + [c.first_data_frame for c in s.calls if c.first_data_frame]
    if frames:
        say(min(frames), f"{name} ({s.client} → {s.server}): verdict: phase {s.phase}: {s.verdict}")
    for phase, frame, what in _phase_starts(s):
        say(frame, f"{name}: phase {phase} begins" + (f" ({what})" if what else ""))
    for c in s.calls:
        for way, d in (("client → server", c.to_server), ("server → client", c.to_client)):
            for m in d.marks if d else ():
                say(m["frame"], f"GRE {way} call ID {d.call_id}: {_mark(m)}")
        for e in c.lcp_echoes:
            _echo(say, "LCP", e)
    for e in s.echoes:
        _echo(say, "PPTP", e)
    steps = s.teardown
    for i, e in enumerate(steps, 1):
        say(e.frame, f"{name}: teardown step {i} of {len(steps)}: {step(e)} ({direction(e.sender)})"
            + (f"; {initiated(s)}" if i == 1 else ""))
    for e in s.icmp:
        say(e.frame, f"{name}: {icmp.text(s, e)}")
    flows = [d for c in s.calls for d in (c.to_server, c.to_client) if d]
    for err in [*s.errors, *(x for d in flows for x in d.errors)]:
        found = _FRAME_ERROR.match(err)
        if found:
            say(int(found[1]), f"{name}: warning: {found[2]}")


def _phase_starts(s: Session) -> Iterator[tuple[str, int, str]]:
    """(phase, frame, what) of the first packet of each phase the session reached."""
    reached = PHASES[:PHASES.index(s.phase) + 1] if s.phase in PHASES else []
    for phase in reached:
        if phase in PHASE_STARTS:
            e = next((e for e in s.events if e.what.startswith(PHASE_STARTS[phase])), None)
            if e is not None:
                yield phase, e.frame, f"{e.what} from the {e.sender}"
        elif phase == "data":
            first = [c.first_data_frame for c in s.calls if c.first_data_frame]
            if first:
                yield phase, min(first), "its first user data"
        elif s.teardown:  # an ICMP error or a middlebox's RST may come first: the initiator's step
            init = s.initiated or {}
            own = init.get("frame") if init.get("source", s.source) == s.source else None
            yield phase, own or s.teardown[0].frame, ""


def _mark(m: dict) -> str:
    """What a GRE sequence mark (lab.pptp.session.Direction.marks) says."""
    if m["what"] == "gap":
        lo, hi = m["missing"]
        return (f"seq {m['seq']} after a gap: {lo if lo == hi else f'{lo}-{hi}'} missing "
                f"({hi - lo + 1} not seen before this packet)")
    if m["what"] == "duplicate":
        return f"duplicate of seq {m['seq']}"
    return f"seq {m['seq']} out of order (after seq {m['after']})"


def _echo(say: Callable[[int | None, str], None], kind: str, e: dict) -> None:
    """An echo pair: the request says where its reply is, the reply which request it answers."""
    rtt = f" ({e['rtt_s'] * 1000:.1f} ms)" if e.get("rtt_s") is not None else ""
    request = f"{kind} Echo-Request {e['identifier']} from the {e['sender']}"
    reply = e.get("reply_frame")
    say(e["request_frame"], f"{request}: "
        + (f"answered in frame {reply}{rtt}" if reply else "no reply in the capture"))
    if reply:
        say(reply, f"{kind} Echo-Reply to the {e['sender']}'s Echo-Request {e['identifier']} in frame "
            f"{e['request_frame']}{rtt}")


class _Writer(PcapNgWriter):
    """scapy's pcapng writer at nanosecond resolution: its own writes microseconds and its
    interface block does not say so, which would cut a nanosecond capture's timestamps."""

    def __init__(self, filename: str, linktype: int) -> None:
        super().__init__(filename)
        self.tsresol = 10 ** 9
        self.linktype = linktype

    def _write_block_idb(self, linktype: int, ifname: bytes | None = None) -> None:
        opts = struct.pack("<HHB3x", 9, 1, 9)  # if_tsresol: 10^-9 s
        if ifname is not None:
            opts += struct.pack("<HH", 2, len(ifname)) + self._add_padding(ifname)
        body = struct.pack("<HHI", linktype, 0, 262144)
        self.f.write(self.build_block(struct.pack("<I", 1), body, options=opts + struct.pack("<HH", 0, 0)))


def _packets(path: Path) -> Iterator[tuple[bytes, int, int, int, bytes | None, int | None, list[bytes]]]:
    """(bytes, time in ns, link type, length on the wire, interface name, direction, comments)
    of each packet of a pcap or pcapng file, in file order (frame numbers count them)."""
    try:
        reader = RawPcapReader(str(path))
    except Scapy_Exception as exc:
        raise LabError(f"{path}: not a capture scapy can read ({exc})") from None
    with reader:
        ng = isinstance(reader, RawPcapNgReader)
        while True:
            try:
                data, meta = reader._read_packet(size=1 << 26)  # scapy's documented raw read; no MTU cut
            except EOFError:
                return
            if ng:
                ticks = ((meta.tshigh or 0) << 32) | (meta.tslow or 0)
                yield (data, ticks * 10 ** 9 // meta.tsresol, meta.linktype, meta.wirelen, meta.ifname,
                       meta.direction, list(meta.comments or []))
            else:
                if len(data) < meta.caplen:
                    return  # a record cut off: the analysis stopped there too
                ns = meta.sec * 10 ** 9 + meta.usec * (1 if reader.nano else 1000)
                yield data, ns, reader.linktype, meta.wirelen, None, None, []


def _clean(text: str) -> bytes:
    """One line of printable text (capture values are in it), within a pcapng option's size."""
    line = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return line.encode()[:MAX_COMMENT].decode(errors="ignore").encode()


def write(capture: str | Path, out: str | Path, report: Report, extra: Mapping[int, str] | None = None) -> int:
    """Write `capture` to `out` as pcapng with the analyser's comments (`report` analysed it,
    maybe with other captures) and `extra` {frame number: text}; every packet keeps its
    bytes, timestamp, link type and earlier comments. Returns how many packets got a comment."""
    capture, out = Path(capture), Path(out)
    if out.resolve() == capture.resolve():
        raise LabError(f"{out}: that is the capture itself; give another file name")
    said = comments(report, capture)
    for frame, text in (extra or {}).items():
        said.setdefault(frame, []).append(text)
    writer, commented, frame = None, 0, 0
    try:
        for data, ns, linktype, wirelen, ifname, way, earlier in _packets(capture):
            frame += 1
            if writer is None:
                writer = _Writer(str(out), linktype)
                writer.write_header(None)
            elif linktype != writer.linktype:
                raise LabError(f"{capture}: frame {frame} has another link type ({linktype}, the first "
                               f"{writer.linktype}): one annotated capture holds one")
            ours = [_clean(t) for t in said.get(frame, [])]
            commented += bool(ours)
            # The raw writer's own entry point: a scapy Packet per frame would take 3/4 of the time.
            writer._write_packet(data, linktype, sec=Decimal(ns) / 10 ** 9, wirelen=wirelen, ifname=ifname or None,
                                 direction=way, comments=earlier + ours)
        if writer is None:  # no packets: still a valid, empty pcapng
            writer = _Writer(str(out), 1)
    except BaseException:
        if writer is not None:
            writer.close()
        out.unlink(missing_ok=True)
        raise
    writer.close()
    return commented

"""PPTP control messages (RFC 2637 section 2) and their framing on a TCP byte stream.

Field names follow Wireshark's `pptp.*` fields, so decoded values compare one to one with
tshark's. No library decodes these fast enough on a plain byte stream (scapy does, at a
fraction of the speed, and without TCP reassembly), hence the table below."""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

MAGIC = 0x1A2B3C4D
HEADER = struct.Struct("!HHIHH")  # length, PPTP message type, magic cookie, control type, reserved0
PORT = 1723
MAX_LENGTH = 1024  # RFC 2637's longest message is 220 octets: a longer length field is garbage
MAX_ERRORS = 20    # errors kept per stream; more are only counted

_S = "64s"  # a 64-octet NUL-padded string
# type -> (abbreviation, full name, struct of the body after the 12-octet header, field names)
MESSAGES: dict[int, tuple[str, str, str, tuple[str, ...]]] = {
    1: ("SCCRQ", "Start-Control-Connection-Request", f"!HHIIHH{_S}{_S}",
        ("protocol_version", "_r1", "framing_capabilities", "bearer_capabilities",
         "maximum_channels", "firmware_revision", "host_name", "vendor_name")),
    2: ("SCCRP", "Start-Control-Connection-Reply", f"!HBBIIHH{_S}{_S}",
        ("protocol_version", "control_result", "error", "framing_capabilities",
         "bearer_capabilities", "maximum_channels", "firmware_revision", "host_name", "vendor_name")),
    3: ("StopCCRQ", "Stop-Control-Connection-Request", "!BBH", ("reason", "_r1", "_r2")),
    4: ("StopCCRP", "Stop-Control-Connection-Reply", "!BBH", ("stop_result", "error", "_r1")),
    5: ("ECHORQ", "Echo-Request", "!I", ("identifier",)),
    6: ("ECHORP", "Echo-Reply", "!IBBH", ("identifier", "echo_result", "error", "_r1")),
    7: ("OCRQ", "Outgoing-Call-Request", f"!HHIIIIHHHH{_S}{_S}",
        ("call_id", "call_serial_number", "minimum_bps", "maximum_bps", "bearer_type",
         "framing_type", "packet_receive_window_size", "packet_processing_delay",
         "phone_number_length", "_r1", "phone_number", "subaddress")),
    8: ("OCRP", "Outgoing-Call-Reply", "!HHBBHIHHI",
        ("call_id", "peer_call_id", "out_result", "error", "cause", "connect_speed",
         "packet_receive_window_size", "packet_processing_delay", "physical_channel_id")),
    9: ("ICRQ", "Incoming-Call-Request", f"!HHIIHH{_S}{_S}{_S}",
        ("call_id", "call_serial_number", "bearer_type", "physical_channel_id",
         "dialed_number_length", "dialing_number_length", "dialed_number", "dialing_number",
         "subaddress")),
    10: ("ICRP", "Incoming-Call-Reply", "!HHBBHHH",
         ("call_id", "peer_call_id", "in_result", "error", "packet_receive_window_size",
          "packet_processing_delay", "_r1")),
    11: ("ICCN", "Incoming-Call-Connected", "!HHIHHI",
         ("peer_call_id", "_r1", "connect_speed", "packet_receive_window_size",
          "packet_processing_delay", "framing_type")),
    12: ("CCRQ", "Call-Clear-Request", "!HH", ("call_id", "_r1")),
    13: ("CDN", "Call-Disconnect-Notify", "!HBBHH128s",
         ("call_id", "disc_result", "error", "cause", "_r1", "call_statistics")),
    14: ("WEN", "WAN-Error-Notify", "!HHIIIIII",
         ("peer_call_id", "_r1", "crc_errors", "framing_errors", "hardware_overruns",
          "buffer_overruns", "timeout_errors", "alignment_errors")),
    15: ("SLI", "Set-Link-Info", "!HHII", ("peer_call_id", "_r1", "send_accm", "receive_accm")),
}
_BODIES = {t: struct.Struct(m[2]) for t, m in MESSAGES.items()}
NAMES = {m[0]: t for t, m in MESSAGES.items()}

RESULTS = {  # general result codes of the replies, for plain-language verdicts
    "control_result": {1: "ok", 2: "general error", 3: "command channel already exists",
                       4: "not authorized", 5: "unsupported protocol version"},
    "out_result": {1: "connected", 2: "general error", 3: "no carrier", 4: "busy",
                   5: "no dial tone", 6: "time-out", 7: "do not accept"},
    "disc_result": {1: "lost carrier", 2: "general error", 3: "admin shutdown", 4: "request"},
}


@dataclass
class ControlMessage:
    type: int
    name: str
    fields: dict
    length: int
    errors: list[str] = field(default_factory=list)
    malformed: bool = False  # fields could not be decoded (truncated or unknown type): skip it


def decode(msg: bytes) -> ControlMessage:
    """Decode one whole control message (its length field already delimits it). Never raises."""
    if len(msg) < HEADER.size:
        return ControlMessage(0, "?", {}, len(msg), [f"truncated header ({len(msg)} octets)"], True)
    length, ptype, magic, ctype, _ = HEADER.unpack_from(msg)
    errors = []
    if magic != MAGIC:
        errors.append(f"bad magic cookie 0x{magic:08x}")
    if ptype != 1:
        errors.append(f"PPTP message type {ptype} (1 = control expected)")
    spec = MESSAGES.get(ctype)
    if spec is None:
        return ControlMessage(ctype, f"type-{ctype}", {}, length, errors + [f"unknown control type {ctype}"], True)
    body = _BODIES[ctype]
    if len(msg) < HEADER.size + body.size:
        errors.append(f"{spec[0]} truncated: {len(msg)} of {HEADER.size + body.size} octets")
        return ControlMessage(ctype, spec[0], {}, length, errors, True)
    if length != HEADER.size + body.size:
        errors.append(f"{spec[0]} length {length}, RFC 2637 says {HEADER.size + body.size}")
    values = body.unpack_from(msg, HEADER.size)
    fields = {}
    for name, value in zip(spec[3], values):
        if name.startswith("_"):
            continue
        if isinstance(value, bytes):
            value = value.split(b"\0", 1)[0].decode("latin-1")
        fields[name] = value
    return ControlMessage(ctype, spec[0], fields, length, errors)


class Stream:
    """One direction of a control connection: TCP segments in, whole messages out.

    Segments are placed by sequence number, so retransmissions, overlaps and out-of-order
    arrival are handled; messages split across segments or packed together come out whole."""

    MAX_PENDING = 256            # out-of-order segments kept before giving up on a gap ...
    MAX_PENDING_BYTES = 16384    # ... or out-of-order octets (control messages are small)

    def __init__(self) -> None:
        self.next_seq: int | None = None
        self.pending: dict[int, bytes] = {}
        self.pending_bytes = 0
        self.buf = b""
        self.errors: list[str] = []
        self.errors_dropped = 0
        self.gaps = 0

    def _error(self, msg: str) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(msg)
        else:
            self.errors_dropped += 1

    def syn(self, seq: int) -> None:
        self.next_seq = (seq + 1) & 0xFFFFFFFF

    def feed(self, seq: int, data: bytes) -> list[bytes]:
        """Add a segment; return the complete messages now available."""
        if not data:
            return []
        if self.next_seq is None:
            self.next_seq = seq
        old = self.pending.get(seq, b"")
        if len(data) > len(old):
            self.pending[seq] = data
            self.pending_bytes += len(data) - len(old)
        progressed = True
        while progressed:
            progressed = False
            for s in list(self.pending):
                off = (self.next_seq - s) & 0xFFFFFFFF
                seg = self.pending[s]
                if off < len(seg):  # this segment covers next_seq
                    self.buf += seg[off:]
                    self.next_seq = (self.next_seq + len(seg) - off) & 0xFFFFFFFF
                    del self.pending[s]
                    self.pending_bytes -= len(seg)
                    progressed = True
                elif off < 0x80000000:  # entirely old: a retransmission
                    del self.pending[s]
                    self.pending_bytes -= len(seg)
        if len(self.pending) > self.MAX_PENDING or self.pending_bytes > self.MAX_PENDING_BYTES:
            # A capture that lost a segment: skip to the earliest data we have and resync.
            self.gaps += 1
            self._error("TCP gap in the control stream (segment missing from the capture)")
            first = min(self.pending, key=lambda s: (s - self.next_seq) & 0xFFFFFFFF)
            self.next_seq, self.buf = first, b""
            seg = self.pending.pop(first)
            self.pending_bytes -= len(seg)
            return self.feed(first, seg)
        return self._messages()

    def _messages(self) -> list[bytes]:
        out = []
        while len(self.buf) >= 2:
            length = int.from_bytes(self.buf[:2], "big")
            if length < HEADER.size or length > MAX_LENGTH or (
                    len(self.buf) >= 8 and int.from_bytes(self.buf[4:8], "big") != MAGIC):
                # Not a message boundary: find the next magic cookie and resync there.
                at = self.buf.find(MAGIC.to_bytes(4, "big"), 5)
                self._error(f"control stream out of sync (length {length}); "
                            f"skipped {at - 4 if at >= 4 else len(self.buf)} octets")
                self.buf = self.buf[at - 4:] if at >= 4 else b""
                continue
            if len(self.buf) < length:
                break
            out.append(self.buf[:length])
            self.buf = self.buf[length:]
        return out

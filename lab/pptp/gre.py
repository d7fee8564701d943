"""Enhanced GRE (RFC 2637 section 4.1): every header field, with deviations reported.

dpkt decodes the GRE v1 fields but then always parses the payload as PPP with FF 03 and
has no notion of a malformed PPTP header, so this small decoder takes the IP payload."""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

PPP_PROTO = 0x880B


@dataclass(slots=True)
class Gre:
    checksum: bool
    routing: bool
    key: bool
    seq_present: bool
    strict_route: bool
    recursion: int
    ack_present: bool
    flags: int
    version: int
    proto: int
    payload_length: int | None = None
    call_id: int | None = None
    seq: int | None = None
    ack: int | None = None
    payload: bytes = b""
    errors: list[str] = field(default_factory=list)

    @property
    def is_pptp(self) -> bool:
        return self.version == 1


_V1 = struct.Struct("!BBHHH")


def decode(data: bytes, fragment: bool = False) -> Gre | None:
    """Decode a GRE header and what follows; None when fewer than 4 octets. Never raises.
    fragment: data is the first fragment of its IP packet, so its payload may be cut short."""
    if len(data) >= 8 and not fragment:
        b0, b1, proto, plen, cid = _V1.unpack_from(data)
        # Fast path: a well-formed PPTP header (K=1, only S/A optional, version 1, 0x880B).
        end = 8 + (4 if b0 & 0x10 else 0) + (4 if b1 & 0x80 else 0)
        if (b0 & 0xEF) == 0x20 and (b1 & 0x7F) == 1 and proto == PPP_PROTO and len(data) >= end:
            off = 8
            seq = ack = None
            if b0 & 0x10:
                seq = int.from_bytes(data[8:12], "big")
                off = 12
            if b1 & 0x80:
                ack = int.from_bytes(data[off:off + 4], "big")
            payload = data[end:]
            if len(payload) == plen and (seq is not None or not payload):
                return Gre(False, False, True, seq is not None, False, 0, ack is not None, 0, 1,
                           proto, plen, cid, seq, ack, payload, _NO_ERRORS)
    return _decode_slow(data, fragment)


_NO_ERRORS: list[str] = []  # shared by every well-formed header; never appended to


def _decode_slow(data: bytes, fragment: bool = False) -> Gre | None:
    if len(data) < 4:
        return None
    b0, b1 = data[0], data[1]
    g = Gre(checksum=bool(b0 & 0x80), routing=bool(b0 & 0x40), key=bool(b0 & 0x20),
            seq_present=bool(b0 & 0x10), strict_route=bool(b0 & 0x08), recursion=b0 & 0x07,
            ack_present=bool(b1 & 0x80), flags=(b1 >> 3) & 0x0F, version=b1 & 0x07,
            proto=int.from_bytes(data[2:4], "big"))
    if g.version != 1:
        return g  # plain GRE (version 0) and others: not PPTP, not decoded further
    need = 8 + 4 * g.seq_present + 4 * g.ack_present
    if len(data) < need:
        g.errors.append(f"GRE header truncated: {len(data)} of {need} octets")
        return g
    g.payload_length = int.from_bytes(data[4:6], "big")
    g.call_id = int.from_bytes(data[6:8], "big")
    off = 8
    if g.seq_present:
        g.seq = int.from_bytes(data[off:off + 4], "big")
        off += 4
    if g.ack_present:
        g.ack = int.from_bytes(data[off:off + 4], "big")
        off += 4
    g.payload = data[off:]
    for bad, what in ((g.checksum, "checksum-present set"), (g.routing, "routing-present set"),
                      (not g.key, "key-present clear"), (g.strict_route, "strict-source-route set"),
                      (g.recursion, f"recursion {g.recursion}"), (g.flags, f"flags {g.flags}"),
                      (g.proto != PPP_PROTO, f"protocol 0x{g.proto:04x}, not 0x880B")):
        if bad:
            g.errors.append(f"GRE v1 header: {what}")
    if g.payload_length != len(g.payload) and not (fragment and g.payload_length > len(g.payload)):
        g.errors.append(f"GRE payload length {g.payload_length}, {len(g.payload)} octets follow")
    if g.payload and not g.seq_present:
        g.errors.append("GRE payload without a sequence number")
    return g

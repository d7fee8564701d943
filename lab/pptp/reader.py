"""Read pcap/pcapng files with dpkt and yield only what PPTP analysis needs: TCP segments to
or from port 1723, GRE packets and ICMP errors quoting either, with the innermost IP
endpoints (through VLAN tags, Linux cooked capture, IPv6 or IPv4 outer headers and
IP-in-IP). Streams: memory stays flat."""
from __future__ import annotations

import contextlib
import functools
import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import dpkt

from . import gre as gre_mod
from . import icmp as icmp_mod
from . import ppp
from .control import PORT

ICMP, IP_IN_IP, IPV6_IN_IP, TCP, GRE = 1, 4, 41, 6, 47

# dpkt would parse GRE payloads as PPP with FF 03 (wrong for PPTP, and slow): keep them raw
# bytes for lab.pptp.gre. The table is shared by dpkt's IPv4 and IPv6 classes.
dpkt.ip.IP._protosw.pop(GRE, None)


@dataclass(slots=True)
class Packet:
    frame: int
    ts: float
    src: str
    dst: str
    kind: str  # "tcp" | "gre" | "icmp"
    sport: int = 0
    dport: int = 0
    seq: int = 0
    flags: int = 0
    data: bytes = b""
    gre: gre_mod.Gre | None = None
    icmp: icmp_mod.IcmpError | None = None
    ttl: int = 0  # of TCP segments (0: not known): a middlebox's RST shows a TTL of its own
    # The outer IPv4 header of GRE (SPEC S29): total length, DF set, first of several fragments.
    size: int = 0
    df: bool = False
    fragment: bool = False


_IPV4 = struct.Struct("!B1xH2xHBB")  # version/IHL, total length, flags/fragment, TTL, protocol
_TCP = struct.Struct("!HHI4xBB")  # ports, sequence number, data offset, flags


@functools.lru_cache(maxsize=4096)
def _addr(raw: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)


def _fast_ipv4(buf: bytes, at: int, end: int, frame: int, ts: float) -> Packet | None | bool:
    """Ethernet II + unfragmented IPv4 in buf[at:end], the bulk of any PPTP capture, parsed
    without building dpkt objects (which cost most of the analyser's time) and without copying
    a frame that is not PPTP. False: use the dpkt path."""
    if end - at < 34 or buf[at + 12] != 8 or buf[at + 13] != 0:
        return False
    ver_ihl, total, frag, ttl, proto = _IPV4.unpack_from(buf, at + 14)
    if ver_ihl >> 4 != 4 or frag & 0x3FFF:  # not IPv4, or a fragment: let dpkt report it
        return False
    ihl = (ver_ihl & 0x0F) * 4
    stop = at + 14 + total
    if ihl < 20 or stop > end or stop < at + 14 + ihl:
        return False
    body = at + 14 + ihl
    if proto == GRE:
        g = gre_mod.decode(buf[body:stop])
        return None if g is None else Packet(frame, ts, _addr(buf[at + 26:at + 30]), _addr(buf[at + 30:at + 34]),
                                             "gre", 0, 0, 0, 0, b"", g, None, 0, total, bool(frag & 0x4000))
    if proto == TCP and stop - body >= 20:
        sport, dport, seq, off, flags = _TCP.unpack_from(buf, body)
        if PORT not in (sport, dport):
            return None
        return Packet(frame, ts, _addr(buf[at + 26:at + 30]), _addr(buf[at + 30:at + 34]), "tcp", sport=sport,
                      dport=dport, seq=seq, flags=flags, data=buf[body + (off >> 4) * 4:stop], ttl=ttl)
    if proto == ICMP:  # errors are rare: dpkt decodes them and the header they quote
        return False if body < stop and icmp_mod.is_error(buf[body]) else None
    return None if proto not in (IP_IN_IP, IPV6_IN_IP) else False


def _frame(linktype: int, buf: bytes, at: int, end: int, frame: int, ts: float) -> Packet | None:
    """The PPTP packet in frame buf[at:end], if it holds one."""
    if linktype == dpkt.pcap.DLT_EN10MB:
        fast = _fast_ipv4(buf, at, end, frame, ts)
        if fast is not False:
            return fast
    try:
        ip = _ip_layer(buf[at:end], linktype)
    except (dpkt.UnpackError, dpkt.NeedData, IndexError, ValueError):
        return None
    return _from_ip(ip, frame, ts)


def _ip_layer(buf: bytes, linktype: int):
    """The first IP header of a frame, as a dpkt object (or None)."""
    if linktype == dpkt.pcap.DLT_EN10MB:
        eth = dpkt.ethernet.Ethernet(buf)
        return eth.data if isinstance(eth.data, (dpkt.ip.IP, dpkt.ip6.IP6)) else None
    if linktype == dpkt.pcap.DLT_LINUX_SLL:
        layer = dpkt.sll.SLL(buf).data
    elif linktype == 276:  # DLT_LINUX_SLL2: `tcpdump -i any` on recent libpcap
        layer = dpkt.sll2.SLL2(buf).data
    elif linktype in (dpkt.pcap.DLT_NULL, dpkt.pcap.DLT_LOOP):
        layer = dpkt.loopback.Loopback(buf).data
    elif linktype in (101, 12, 14, 228, 229):  # LINKTYPE_RAW (dpkt's DLT_RAW is 12 on Linux), raw IPv4/IPv6
        layer = buf
    else:
        return None
    if isinstance(layer, (dpkt.ip.IP, dpkt.ip6.IP6)):
        return layer
    if isinstance(layer, bytes) and layer:
        version = layer[0] >> 4
        return dpkt.ip.IP(layer) if version == 4 else dpkt.ip6.IP6(layer) if version == 6 else None
    return None


# magic -> (byte order, timestamp unit, record header size); the last two are Kuznetzov's
# "modified" pcap, whose records carry 8 more octets.
_PCAP_MAGIC = {b"\xd4\xc3\xb2\xa1": ("<", 1e-6, 16), b"\xa1\xb2\xc3\xd4": (">", 1e-6, 16),
               b"\x4d\x3c\xb2\xa1": ("<", 1e-9, 16), b"\xa1\xb2\x3c\x4d": (">", 1e-9, 16),
               b"\x34\xcd\xb2\xa1": ("<", 1e-6, 24), b"\xa1\xb2\xcd\x34": (">", 1e-6, 24)}
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
MAX_RECORD = 0x4000000  # 64 MiB: a longer record or block length is garbage, not data
CHUNK = 1 << 16  # octets read at a time; 1 MiB was slower and raised peak RSS by 5 MB
# Ethernet II, IPv4 without options, then a PPTP GRE header with seq and ack (if A is set).
_ETH_GRE = struct.Struct("!12xHBxH2xH1xB2x8sBBHHHII")


def _pcap_packets(fh, linktype: int, endian: str, scale: float, size: int, cut: list[int],
                  mppe=None) -> Iterator[Packet]:
    """The PPTP packets of classic pcap records (after the 24-octet header). dpkt's reader
    builds a header object per record, which was a third of the analyser's time; this loop is
    the whole format. A record cut short (or with a garbage length) ends the file: its offset
    goes to `cut`. mppe(addrs, call_id, ts, seq, ack, frame), when given, is offered each MPPE frame
    over Ethernet/IPv4 before any Packet is built; it returns True when it took the frame."""
    rec = struct.Struct(endian + "IIII")
    read1 = getattr(fh, "read1", fh.read)  # a live pipe: what has arrived, not a full chunk
    if linktype != dpkt.pcap.DLT_EN10MB:
        mppe = None
    buf, at, base, frame = b"", 0, 24, 0  # base: file offset of buf[0]
    while True:
        avail = len(buf)
        if at + size <= avail:
            sec, frac, incl, _ = rec.unpack_from(buf, at)
            if incl > MAX_RECORD:
                cut.append(base + at)
                return
            start = at + size
            end = start + incl
            if end <= avail:
                at = end
                frame += 1
                ts = sec + frac * scale
                if mppe is not None and incl >= 50:
                    etype, ver_ihl, total, frag, proto, addrs, b0, b1, gproto, plen, call_id, seq, ack = \
                        _ETH_GRE.unpack_from(buf, start)
                    gre_len = 12 if b1 == 0x01 else 16 if b1 == 0x81 else 0  # S set, A clear or set
                    # Only what gre.decode() finds error-free (and the PPP payload MPPE) is offered.
                    if (etype == 0x0800 and ver_ihl == 0x45 and proto == GRE and not frag & 0x3FFF
                            and b0 == 0x30 and gre_len and gproto == gre_mod.PPP_PROTO and plen
                            and total == 20 + gre_len + plen and 14 + total <= incl
                            and buf.startswith(ppp.MPPE_PREFIXES, start + 34 + gre_len, start + 14 + total)
                            and mppe(addrs, call_id, ts, seq, ack if gre_len == 16 else None, frame, total,
                                    bool(frag & 0x4000))):
                        continue
                pkt = _frame(linktype, buf, start, end, frame, ts)
                if pkt is not None:
                    yield pkt
                continue
            need = end - avail
        else:
            need = at + size - avail
        more = read1(CHUNK) if need <= CHUNK else fh.read(need)
        if not more:
            if at < avail:
                cut.append(base + at)
            return
        buf, base, at = buf[at:] + more, base + at, 0


def _interface(body: bytes, endian: str) -> tuple[int, float, int]:
    """Link type, timestamp divisor and offset of a pcapng Interface Description Block."""
    linktype = struct.unpack_from(endian + "H", body)[0]
    divisor, offset, i = 1e6, 0, 8
    while i + 4 <= len(body) - 4:  # options, up to the trailing block length
        code, ln = struct.unpack_from(endian + "HH", body, i)
        value = body[i + 4:i + 4 + ln]
        if code == 0:
            break
        if code == 9 and ln >= 1:  # if_tsresol: a power of 10, or of 2 with the top bit set
            divisor = float(2 ** (value[0] & 0x7F) if value[0] & 0x80 else 10 ** value[0])
        elif code == 14 and ln == 8:  # if_tsoffset, seconds
            offset = struct.unpack(endian + "q", value)[0]
        i += 4 + ln + (-ln % 4)
    return linktype, divisor, offset


def _pcapng_records(fh, cut: list[int]) -> Iterator[tuple[int, float, bytes]]:
    """pcapng Enhanced and (obsolete) Packet Blocks, each with its interface's link type and
    time resolution. dpkt's reader reads whatever length a block claims and cannot tell a
    cut file from a whole one; here a block that does not fit ends the file (offset in `cut`)."""
    read = fh.read
    endian, ifaces, pos = "<", [], 0
    while True:
        head = read(12)  # type, length and 4 octets of body: every block has at least 12
        if len(head) < 12:
            if head:
                cut.append(pos)
            return
        if head[:4] == PCAPNG_MAGIC:  # a section header: its byte-order magic sets the order
            endian = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}.get(head[8:12])
            if endian is None:
                if pos == 0:
                    raise ValueError("pcapng section header with a bad byte-order magic")
                cut.append(pos)
                return
            ifaces = []
        btype, blen = struct.unpack_from(endian + "II", head)
        if blen < 12 or blen % 4 or blen > MAX_RECORD:
            cut.append(pos)
            return
        body = head[8:] + read(blen - 12)
        if len(body) < blen - 8:
            cut.append(pos)
            return
        pos += blen
        if btype == 1:
            ifaces.append(_interface(body, endian))
        elif btype in (6, 2) and len(body) >= 24:  # Enhanced Packet Block, Packet Block
            iface, hi, lo, caplen = struct.unpack_from(endian + ("IIII" if btype == 6 else "HxxIII"), body)
            if iface < len(ifaces):
                linktype, divisor, offset = ifaces[iface]
                yield linktype, ((hi << 32) | lo) / divisor + offset, body[20:20 + min(caplen, len(body) - 24)]


class _Prefixed:
    """A stream with its first octets already read put back in front (pipes cannot seek)."""

    def __init__(self, head: bytes, fh) -> None:
        self.head, self.fh = head, fh

    def read(self, n: int) -> bytes:
        if not self.head:
            return self.fh.read(n)
        out, self.head = self.head[:n], self.head[n:]
        return out + (self.fh.read(n - len(out)) if len(out) < n else b"")


def packets(path, truncated: list[int] | None = None, mppe=None) -> Iterator[Packet]:
    """PPTP-relevant packets of one capture file (a path, or a binary stream such as a live
    capture on a pipe), in file order. Undecodable frames are skipped (they are not PPTP); a
    file that is not a capture raises ValueError. A file cut off mid-record yields what came
    before; the offset of the cut record goes to `truncated`. mppe: see _pcap_packets."""
    cut = truncated if truncated is not None else []
    stream = hasattr(path, "read")
    with (contextlib.nullcontext(path) if stream else open(path, "rb")) as fh:
        head = fh.read(24)
        magic = head[:4]
        if magic == PCAPNG_MAGIC:
            frame = 0
            for linktype, ts, buf in _pcapng_records(_Prefixed(head, fh), cut):
                frame += 1
                pkt = _frame(linktype, buf, 0, len(buf), frame, ts)
                if pkt is not None:
                    yield pkt
        elif magic in _PCAP_MAGIC:
            if len(head) < 24:
                raise ValueError(f"{path}: pcap file header cut off ({len(head)} of 24 octets)")
            endian = _PCAP_MAGIC[magic][0]
            yield from _pcap_packets(fh, struct.unpack_from(endian + "I", head, 20)[0], *_PCAP_MAGIC[magic],
                                     cut, mppe)
        else:
            raise ValueError(f"{path}: not a pcap or pcapng file")


def _from_ip(ip, frame: int, ts: float) -> Packet | None:
    for _ in range(4):  # unwrap IP-in-IP tunnels (at most a few levels)
        if ip is None:
            return None
        proto = ip.p if isinstance(ip, dpkt.ip.IP) else ip.nxt
        if proto in (IP_IN_IP, IPV6_IN_IP) and isinstance(ip.data, (dpkt.ip.IP, dpkt.ip6.IP6)):
            ip = ip.data
            continue
        payload = ip.data
        if proto == GRE:
            v4 = isinstance(ip, dpkt.ip.IP)
            if v4 and ip.offset:
                return None  # a later fragment: no GRE header; its first fragment was counted
            first = v4 and bool(ip.mf)
            g = gre_mod.decode(bytes(payload), fragment=first)
            if g is None:
                return None
            return Packet(frame, ts, _addr(ip.src), _addr(ip.dst), "gre", gre=g, size=ip.len if v4 else 0,
                          df=v4 and bool(ip.df), fragment=first)
        if proto == TCP and isinstance(payload, dpkt.tcp.TCP):
            if PORT not in (payload.sport, payload.dport):
                return None
            return Packet(frame, ts, _addr(ip.src), _addr(ip.dst), "tcp", sport=payload.sport,
                          dport=payload.dport, seq=payload.seq, flags=payload.flags,
                          data=bytes(payload.data), ttl=ip.ttl if isinstance(ip, dpkt.ip.IP) else ip.hlim)
        if proto == ICMP and isinstance(payload, dpkt.icmp.ICMP):
            err = icmp_mod.decode(payload)
            return None if err is None else Packet(frame, ts, _addr(ip.src), _addr(ip.dst), "icmp", icmp=err)
        return None
    return None

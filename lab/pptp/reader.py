"""Read pcap/pcapng files with dpkt and yield only what PPTP analysis needs: TCP segments to
or from port 1723 and GRE packets, with the innermost IP endpoints (through VLAN tags,
Linux cooked capture, IPv6 or IPv4 outer headers and IP-in-IP). Streams: memory stays flat."""
from __future__ import annotations

import functools
import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import dpkt

from . import gre as gre_mod
from .control import PORT

IP_IN_IP, IPV6_IN_IP, TCP, GRE = 4, 41, 6, 47

# dpkt would parse GRE payloads as PPP with FF 03 (wrong for PPTP, and slow): keep them raw
# bytes for lab.pptp.gre. The table is shared by dpkt's IPv4 and IPv6 classes.
dpkt.ip.IP._protosw.pop(GRE, None)


@dataclass(slots=True)
class Packet:
    frame: int
    ts: float
    src: str
    dst: str
    kind: str  # "tcp" | "gre"
    sport: int = 0
    dport: int = 0
    seq: int = 0
    flags: int = 0
    data: bytes = b""
    gre: gre_mod.Gre | None = None


_IPV4 = struct.Struct("!B1xH2xH1xB")  # version/IHL, total length, flags/fragment, protocol


@functools.lru_cache(maxsize=4096)
def _addr(raw: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)


def _fast_ipv4(buf: bytes, frame: int, ts: float) -> Packet | None | bool:
    """Ethernet II + unfragmented IPv4, the bulk of any PPTP capture, parsed without building
    dpkt objects (which cost most of the analyser's time). False: use the dpkt path."""
    if len(buf) < 34 or buf[12] != 8 or buf[13] != 0:
        return False
    ver_ihl, total, frag, proto = _IPV4.unpack_from(buf, 14)
    if ver_ihl >> 4 != 4 or frag & 0x3FFF:  # not IPv4, or a fragment: let dpkt report it
        return False
    ihl = (ver_ihl & 0x0F) * 4
    end = 14 + total
    if ihl < 20 or end > len(buf) or end < 14 + ihl:
        return False
    body = buf[14 + ihl:end]
    if proto == GRE:
        g = gre_mod.decode(body)
        return None if g is None else Packet(frame, ts, _addr(buf[26:30]), _addr(buf[30:34]), "gre",
                                             0, 0, 0, 0, b"", g)
    if proto == TCP and len(body) >= 20:
        sport, dport = int.from_bytes(body[0:2], "big"), int.from_bytes(body[2:4], "big")
        if PORT not in (sport, dport):
            return None
        off = (body[12] >> 4) * 4
        return Packet(frame, ts, _addr(buf[26:30]), _addr(buf[30:34]), "tcp", sport=sport, dport=dport,
                      seq=int.from_bytes(body[4:8], "big"), flags=body[13], data=body[off:])
    return None if proto not in (IP_IN_IP, IPV6_IN_IP) else False


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
    elif linktype in (dpkt.pcap.DLT_RAW, 12, 14, 228, 229):
        layer = buf
    else:
        return None
    if isinstance(layer, (dpkt.ip.IP, dpkt.ip6.IP6)):
        return layer
    if isinstance(layer, bytes) and layer:
        version = layer[0] >> 4
        return dpkt.ip.IP(layer) if version == 4 else dpkt.ip6.IP6(layer) if version == 6 else None
    return None


_PCAP_MAGIC = {b"\xd4\xc3\xb2\xa1": ("<", 1e-6), b"\xa1\xb2\xc3\xd4": (">", 1e-6),
               b"\x4d\x3c\xb2\xa1": ("<", 1e-9), b"\xa1\xb2\x3c\x4d": (">", 1e-9)}


def _pcap_records(fh, endian: str, scale: float) -> Iterator[tuple[float, bytes]]:
    """Classic pcap records. dpkt's reader builds a header object per record, which was a
    third of the analyser's time; this loop is the whole format (after the 24-octet header)."""
    rec = struct.Struct(endian + "IIII")
    read = fh.read
    while True:
        hdr = read(16)
        if len(hdr) < 16:
            return
        sec, frac, incl, _ = rec.unpack(hdr)
        buf = read(incl)
        if len(buf) < incl or incl > 0x4000000:
            return  # cut off mid-record (or garbage length): what came before still counts
        yield sec + frac * scale, buf


def packets(path: str | Path) -> Iterator[Packet]:
    """PPTP-relevant packets of one capture file, in file order. Undecodable frames are
    skipped (they are not PPTP); a file that is not a capture raises ValueError."""
    with open(path, "rb") as fh:
        magic = fh.read(4)
        fh.seek(0)
        try:
            reader = dpkt.pcapng.Reader(fh) if magic == b"\x0a\x0d\x0d\x0a" else dpkt.pcap.Reader(fh)
        except (ValueError, dpkt.NeedData) as exc:
            raise ValueError(f"{path}: not a pcap or pcapng file ({exc})") from exc
        linktype = reader.datalink()
        frame = 0
        if magic in _PCAP_MAGIC:
            fh.seek(24)
            it = _pcap_records(fh, *_PCAP_MAGIC[magic])
        else:
            it = iter(reader)
        while True:
            try:
                ts, buf = next(it)
            except StopIteration:
                return
            except (dpkt.NeedData, dpkt.UnpackError, ValueError):
                return  # a capture cut off mid-record: what came before still counts
            frame += 1
            if linktype == dpkt.pcap.DLT_EN10MB:
                fast = _fast_ipv4(buf, frame, float(ts))
                if fast is not False:
                    if fast is not None:
                        yield fast
                    continue
            try:
                ip = _ip_layer(buf, linktype)
            except (dpkt.UnpackError, dpkt.NeedData, IndexError, ValueError):
                continue
            pkt = _from_ip(ip, frame, float(ts))
            if pkt is not None:
                yield pkt


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
            g = gre_mod.decode(payload)
            if g is None:
                return None
            return Packet(frame, ts, _addr(ip.src), _addr(ip.dst), "gre", gre=g)
        if proto == TCP and isinstance(payload, dpkt.tcp.TCP):
            if PORT not in (payload.sport, payload.dport):
                return None
            return Packet(frame, ts, _addr(ip.src), _addr(ip.dst), "tcp", sport=payload.sport,
                          dport=payload.dport, seq=payload.seq, flags=payload.flags,
                          data=bytes(payload.data))
        return None
    return None

"""Build PPTP captures in tests with scapy (an implementation independent of lab.pptp)."""
from __future__ import annotations

import struct

from scapy.layers.inet import ICMP, IP, TCP
from scapy.layers.l2 import GRE_PPTP, Ether
from scapy.layers.ppp import (PPP, PPP_CHAP, PPP_CHAP_ChallengeResponse, PPP_IPCP,
                              PPP_IPCP_Option_IPAddress, PPP_LCP_Auth_Protocol_Option,
                              PPP_LCP_Configure, PPP_LCP_Magic_Number_Option, PPP_LCP_Terminate)
from scapy.layers.pptp import (PPTPCallClearRequest, PPTPCallDisconnectNotify, PPTPEchoReply,
                               PPTPEchoRequest, PPTPOutgoingCallReply, PPTPOutgoingCallRequest,
                               PPTPSetLinkInfo, PPTPStartControlConnectionReply,
                               PPTPStartControlConnectionRequest, PPTPStopControlConnectionReply,
                               PPTPStopControlConnectionRequest)
from scapy.utils import wrpcap

CLIENT, SERVER = "198.51.100.10", "203.0.113.5"
CPORT = 40123
CLIENT_CALL, SERVER_CALL = 4711, 128


class Capture:
    """A scripted PPTP session: TCP with real sequence numbers, GRE with per-direction seq."""

    def __init__(self, client=CLIENT, server=SERVER, cport=CPORT) -> None:
        self.client, self.server, self.cport = client, server, cport
        self.t = 1_700_000_000.0
        self.frames = []
        self.tcp_seq = {"client": 1000, "server": 5000}
        self.gre_seq = {"client": 1, "server": 0}
        self.gre_rcvd = {"client": None, "server": None}
        self.ttl = {"client": 64, "server": 64}  # as the capture point sees each side's packets

    def _ip(self, sender, **ip):
        src, dst = (self.client, self.server) if sender == "client" else (self.server, self.client)
        # Fixed MACs: scapy would otherwise resolve them (ARP, with timeouts) per packet.
        return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(
            **{"src": src, "dst": dst, "ttl": self.ttl[sender], **ip})

    def _ports(self, sender):
        return (self.cport, 1723) if sender == "client" else (1723, self.cport)

    def add(self, pkt, dt=0.01):
        self.t += dt
        pkt.time = self.t
        self.frames.append(pkt)

    def handshake(self):
        sp, dp = self._ports("client")
        self.add(self._ip("client") / TCP(sport=sp, dport=dp, flags="S", seq=self.tcp_seq["client"] - 1))
        self.add(self._ip("server") / TCP(sport=dp, dport=sp, flags="SA", seq=self.tcp_seq["server"] - 1,
                                          ack=self.tcp_seq["client"]))
        return self

    def segment(self, sender, data: bytes, seq=None, advance=True, flags="PA", dt=0.01, **ip):
        sp, dp = self._ports(sender)
        s = self.tcp_seq[sender] if seq is None else seq
        self.add(self._ip(sender, **ip) / TCP(sport=sp, dport=dp, flags=flags, seq=s) / data, dt)
        if advance:
            self.tcp_seq[sender] += len(data)

    def control(self, sender, msg, split=None, dt=0.01):
        data = bytes(msg)
        if split is None:
            self.segment(sender, data, dt=dt)
        else:
            for i in range(0, len(data), split):
                self.segment(sender, data[i:i + split])
        return self

    def fin(self, sender, dt=0.01):
        self.segment(sender, b"", flags="FA", advance=False, dt=dt)
        self.tcp_seq[sender] += 1
        return self

    def rst(self, sender, dt=0.01, **ip):
        """A RST from `sender`'s address; ip (ttl=...) for one a middlebox sent in its name."""
        self.segment(sender, b"", flags="R", advance=False, dt=dt, **ip)
        return self

    def icmp(self, by, quoted=-1, type=3, code=2, mtu=0, octets=8, dt=0.001):
        """An ICMP error from address `by` about frame `quoted` of this capture (its IP header
        and `octets` octets of what follows, as RFC 792 quotes), sent back to its source."""
        q = IP(bytes(self.frames[quoted][IP]))  # built: its header length known
        quote = bytes(q)[:q.ihl * 4 + octets]
        self.add(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src=by, dst=q.src)
                 / ICMP(type=type, code=code, nexthopmtu=mtu) / quote, dt)
        return self

    def gre(self, sender, ppp_payload: bytes | None, seq=None, call_id=None, ack=True, dt=0.01, **overrides):
        peer = "server" if sender == "client" else "client"
        cid = call_id if call_id is not None else (SERVER_CALL if sender == "client" else CLIENT_CALL)
        fields = dict(key_present=1, call_id=cid, payload_len=len(ppp_payload or b""))
        if ppp_payload is not None:
            s = self.gre_seq[sender] if seq is None else seq
            fields.update(seqnum_present=1, sequence_number=s)
            if seq is None:
                self.gre_seq[sender] += 1
            self.gre_rcvd[peer] = s if self.gre_rcvd[peer] is None else max(self.gre_rcvd[peer], s)
        if ack and self.gre_rcvd[sender] is not None:
            fields.update(acknum_present=1, ack_number=self.gre_rcvd[sender])
        fields.update(overrides)
        payload = ppp_payload or b""
        self.add(self._ip(sender) / GRE_PPTP(**fields) / payload, dt)
        return self

    def write(self, path):
        wrpcap(str(path), self.frames)
        return path


def sccrq():
    return PPTPStartControlConnectionRequest(framing_capabilities=3, bearer_capabilities=3,
                                             maximum_channels=65535, firmware_revision=1,
                                             host_name="local", vendor_string="cananian")


def sccrp(result=1):
    return PPTPStartControlConnectionReply(result_code=result, maximum_channels=1, firmware_revision=1,
                                           host_name="local", vendor_string="linux")


def ocrq(call_id=CLIENT_CALL):
    return PPTPOutgoingCallRequest(call_id=call_id, call_serial_number=0, minimum_bps=2400,
                                   maximum_bps=10000000, pkt_window_size=3)


def ocrp(call_id=SERVER_CALL, peer=CLIENT_CALL, result=1):
    return PPTPOutgoingCallReply(call_id=call_id, peer_call_id=peer, result_code=result)


def ppp(layer) -> bytes:
    return bytes(PPP() / layer)  # with FF 03 and a 2-octet protocol, as pppd sends before LCP opens


LCP_REQ_SERVER = PPP_LCP_Configure(code=1, id=1, options=[
    PPP_LCP_Auth_Protocol_Option(auth_protocol=0xC223, algorithm=0x81),
    PPP_LCP_Magic_Number_Option(magic_number=0x1234)])
LCP_REQ_CLIENT = PPP_LCP_Configure(code=1, id=1, options=[PPP_LCP_Magic_Number_Option(magic_number=0x9999)])


def lcp_ack(req):
    ack = req.copy()
    ack.code = 2
    return ack


def chap(code, ident=1, value=b"", name=b"", message=b""):
    if code in (1, 2):
        return PPP_CHAP_ChallengeResponse(code=code, id=ident, value=value, optional_name=name)
    return PPP_CHAP(code=code, id=ident, data=message)


def ccp(code, ident=1, bits=0x01000040) -> bytes:
    """CCP with the MPPE option (scapy has no CCP layer): ff03 80fd code id len opt."""
    opt = struct.pack("!BBI", 18, 6, bits)
    return b"\xff\x03\x80\xfd" + struct.pack("!BBH", code, ident, 4 + len(opt)) + opt


def ipcp(code, address, ident=1):
    return PPP_IPCP(code=code, id=ident, options=[PPP_IPCP_Option_IPAddress(data=address)])


def mppe_data(n=40) -> bytes:
    """An MPPE-encrypted frame as pppd sends it after LCP opened with ACFC/PFC: 00 FD + ccount."""
    return b"\x00\xfd\x90\x01" + bytes(n)


def full_session(cap: Capture | None = None, data_frames=5, teardown="client") -> Capture:
    """A complete, healthy session: control, call, PPP up, data, teardown."""
    c = cap or Capture()
    c.handshake().control("client", sccrq()).control("server", sccrp())
    c.control("client", ocrq()).control("server", ocrp())
    c.gre("client", ppp(LCP_REQ_CLIENT))
    c.gre("server", ppp(LCP_REQ_SERVER))
    c.gre("server", ppp(lcp_ack(LCP_REQ_CLIENT)))
    c.gre("client", ppp(lcp_ack(LCP_REQ_SERVER)))
    c.gre("server", ppp(chap(1, value=bytes(16), name=b"pptpd")))
    c.gre("client", ppp(chap(2, value=bytes(49), name=b"alice")))
    c.gre("server", ppp(chap(3, message=b"S=0123456789ABCDEF0123456789ABCDEF01234567 M=Access granted")))
    for sender in ("client", "server"):
        c.gre(sender, ccp(1))
    for sender in ("client", "server"):
        c.gre(sender, ccp(2))
    c.gre("client", ppp(ipcp(1, "192.168.240.10")))
    c.gre("server", ppp(ipcp(2, "192.168.240.10")))
    c.gre("server", ppp(ipcp(1, "192.168.240.1")))
    c.gre("client", ppp(ipcp(2, "192.168.240.1")))
    for _ in range(data_frames):
        c.gre("client", mppe_data())
        c.gre("server", mppe_data())
    return hang_up(c, teardown) if teardown else c


def hang_up(c: Capture, by: str = "client") -> Capture:
    """The teardown of full_session's call, started by `by`."""
    a, b = ("client", "server") if by == "client" else ("server", "client")
    c.gre(a, ppp(PPP_LCP_Terminate(code=5, id=2)))
    c.gre(b, ppp(PPP_LCP_Terminate(code=6, id=2)))
    call_id = CLIENT_CALL if a == "client" else SERVER_CALL
    c.control(a, PPTPCallClearRequest(call_id=call_id))
    c.control(b, PPTPCallDisconnectNotify(call_id=SERVER_CALL if b == "server" else CLIENT_CALL,
                                          result_code=4))
    c.control(a, PPTPStopControlConnectionRequest(reason=1))
    c.control(b, PPTPStopControlConnectionReply(result_code=1))
    c.fin(a)
    c.fin(b)
    return c


__all__ = ["Capture", "full_session", "hang_up", "sccrq", "sccrp", "ocrq", "ocrp", "ppp", "chap", "ccp", "ipcp",
           "mppe_data", "PPTPEchoRequest", "PPTPEchoReply", "PPTPSetLinkInfo", "CLIENT", "SERVER",
           "CPORT", "CLIENT_CALL", "SERVER_CALL"]

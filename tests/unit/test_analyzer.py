"""The capture analyser (lab.pptp) on captures built with scapy: SPEC S1-S11 as the analyser
sees them, TCP reassembly, malformed headers and the verdicts for sessions that stop early."""
import json
import subprocess
import sys

import pytest
from scapy.layers.ppp import PPP_LCP_Echo, PPP_LCP_Terminate

from lab import pptp
from lab.pptp import control

from . import pptpgen as g


def one(cap, tmp_path, name="c.pcap"):
    report = pptp.analyze([cap.write(tmp_path / name)])
    assert len(report.sessions) == 1, [s.to_dict()["verdict"] for s in report.sessions]
    return report.sessions[0]


def test_S1_S2_S3_S5_control_connection_and_call_ids(tmp_path):
    s = one(g.full_session(), tmp_path)
    assert (s.client, s.client_port, s.server, s.server_port) == (g.CLIENT, g.CPORT, g.SERVER, 1723)
    assert s.sccrq["protocol_version"] == 0x100 and s.sccrq["vendor_name"] == "cananian"
    assert s.sccrp["control_result"] == 1 and s.sccrp["result"] == "ok"
    assert s.sccrp["host_name"] == "local" and s.sccrp["vendor_name"] == "linux"
    call = s.calls[0]
    assert (call.client_call_id, call.server_call_id) == (g.CLIENT_CALL, g.SERVER_CALL)
    assert call.reply["peer_call_id"] == g.CLIENT_CALL and call.result == "connected"
    # S5: GRE to a peer carries the call ID the peer chose.
    assert call.to_server.call_id == g.SERVER_CALL and call.to_client.call_id == g.CLIENT_CALL
    assert [e.what for e in s.events[:6]] == ["TCP SYN", "TCP SYN-ACK", "SCCRQ", "SCCRP", "OCRQ", "OCRP"]


def test_S6_ppp_phases_mschapv2_mppe_ipcp(tmp_path):
    s = one(g.full_session(), tmp_path)
    p = s.calls[0].ppp
    assert p["auth"] == "CHAP-MS-CHAPv2" and p["auth_result"] == "success"
    assert p["mppe"]["128"] and p["mppe"]["stateless"]
    assert (p["client_address"], p["server_address"]) == ("192.168.240.10", "192.168.240.1")
    assert p["data_frames"] == {"client": 5, "server": 5}
    assert s.phase == "teardown"


def test_S7_clean_headers_have_no_errors_and_deviations_are_reported(tmp_path):
    s = one(g.full_session(), tmp_path)
    assert not s.calls[0].to_server.errors and not s.calls[0].to_client.errors
    cap = g.full_session(teardown=None, data_frames=0)
    cap.gre("client", g.mppe_data(), chksum_present=1)
    cap.gre("client", g.mppe_data(), payload_len=7)
    cap.gre("client", g.mppe_data(), proto=0x0800)
    errors = " ".join(one(cap, tmp_path, "bad.pcap").calls[0].to_server.errors)
    assert "checksum-present set" in errors
    assert "payload length 7, 44 octets follow" in errors
    assert "protocol 0x0800" in errors


def test_S7_ack_only_packets_are_legal(tmp_path):
    cap = g.full_session(teardown=None, data_frames=1)
    cap.gre("server", None)
    flow = one(cap, tmp_path).calls[0].to_client
    assert flow.ack_only == 1 and not flow.errors


def test_S8_loss_duplicates_reordering(tmp_path):
    cap = g.full_session(teardown=None, data_frames=0)
    base = cap.gre_seq["client"]
    for seq in [base, base + 1, base + 3, base + 2, base + 3, base + 6, base + 7]:
        cap.gre("client", g.mppe_data(), seq=seq)
    cap.gre("server", g.mppe_data())  # acks the highest the server got
    flow = one(cap, tmp_path).calls[0].to_server
    # 4 and 5 never came (lost 2); 3 came before 2 (reordered 1); 3 twice (duplicate 1).
    assert (flow.lost, flow.reordered, flow.duplicates) == (2, 1, 1)
    assert flow.max_seq == base + 7
    assert one(cap, tmp_path, "x.pcap").calls[0].to_client.highest_ack == base + 7


def test_S9_echo_pairs_and_interval(tmp_path):
    cap = g.full_session(teardown=None)
    for ident in (7, 8, 9):
        cap.control("client", g.PPTPEchoRequest(identifier=ident), )
        cap.t += 0.5
        cap.control("server", g.PPTPEchoReply(identifier=ident, result_code=1))
        cap.t += 59.5
    s = one(cap, tmp_path)
    assert [e["identifier"] for e in s.echoes] == [7, 8, 9]
    assert all(e["rtt_s"] == pytest.approx(0.51, abs=0.01) for e in s.echoes)
    summary = s.echo_summary()["client"]
    assert summary["requests"] == summary["answered"] == 3
    assert summary["interval_s"] == pytest.approx(60.01, abs=0.05)


def test_S10_client_initiated_teardown_order(tmp_path):
    s = one(g.full_session(teardown="client"), tmp_path)
    assert s.initiator == "client"
    assert [(e.sender, e.what) for e in s.teardown] == [
        ("client", "LCP Terminate-Request"), ("server", "LCP Terminate-Ack"), ("client", "CCRQ"),
        ("server", "CDN"), ("client", "StopCCRQ"), ("server", "StopCCRP"),
        ("client", "TCP FIN"), ("server", "TCP FIN")]


def test_S11_server_initiated_teardown(tmp_path):
    s = one(g.full_session(teardown="server"), tmp_path)
    assert s.initiator == "server"
    assert s.teardown[0].sender == "server" and s.teardown[0].what == "LCP Terminate-Request"


def test_S4_sli_sender_and_accms(tmp_path):
    cap = g.full_session(teardown=None)
    cap.control("server", g.PPTPSetLinkInfo(peer_call_id=g.CLIENT_CALL, send_accm=0, receive_accm=0xFFFFFFFF))
    sli = one(cap, tmp_path).calls[0].sli
    assert [(x["sender"], x["send_accm"], x["receive_accm"]) for x in sli] == [("server", "0x00000000", "0xffffffff")]


def test_reassembly_split_packed_retransmitted_and_out_of_order(tmp_path):
    cap = g.Capture().handshake()
    cap.control("client", g.sccrq(), split=50)               # one message over 4 segments
    sccrp, ocrq = bytes(g.sccrp()), bytes(g.ocrq())
    cap.segment("server", sccrp)
    cap.segment("client", ocrq[:100], advance=False)        # retransmitted later
    cap.segment("client", ocrq[:100])
    start = cap.tcp_seq["server"]
    ocrp = bytes(g.ocrp())
    echo = bytes(g.PPTPEchoRequest(identifier=5))
    cap.segment("client", ocrq[100:])
    cap.segment("server", echo, seq=start + len(ocrp), advance=False)   # arrives before ...
    cap.segment("server", ocrp, seq=start, advance=False)               # ... the segment before it
    s = one(cap, tmp_path)
    assert [e.what for e in s.events if e.what not in ("TCP SYN", "TCP SYN-ACK")] == [
        "SCCRQ", "SCCRP", "OCRQ", "OCRP", "ECHORQ"]
    assert not s.errors


def test_two_messages_in_one_segment(tmp_path):
    cap = g.Capture().handshake()
    cap.segment("client", bytes(g.sccrq()) + bytes(g.ocrq()))
    assert [e.what for e in one(cap, tmp_path).events][2:] == ["SCCRQ", "OCRQ"]


@pytest.mark.parametrize("build,phase,words", [
    (lambda c: c.add(c._ip("client") / g.TCP(sport=g.CPORT, dport=1723, flags="S")), "tcp", "SYN to 1723 unanswered"),
    (lambda c: c.handshake().control("client", g.sccrq()), "control", "SCCRQ sent, no SCCRP"),
    (lambda c: c.handshake().control("client", g.sccrq()).control("server", g.sccrp(result=4)), "control", "not authorized"),
    (lambda c: c.handshake().control("client", g.sccrq()).control("server", g.sccrp()).control("client", g.ocrq()),
     "call", "OCRQ sent, no OCRP"),
])
def test_verdicts_for_control_failures(tmp_path, build, phase, words):
    cap = g.Capture()
    build(cap)
    s = one(cap, tmp_path)
    assert s.phase == phase and words in s.verdict


def _up_to_call():
    c = g.Capture().handshake().control("client", g.sccrq()).control("server", g.sccrp())
    return c.control("client", g.ocrq()).control("server", g.ocrp())


def test_verdict_no_gre_from_server_names_protocol_47(tmp_path):
    cap = _up_to_call()
    for _ in range(3):
        cap.gre("client", g.ppp(g.LCP_REQ_CLIENT))
    s = one(cap, tmp_path)
    assert s.phase == "lcp" and "no GRE from the server: IP protocol 47 blocked towards the client" in s.verdict


def test_verdict_no_gre_at_all(tmp_path):
    s = one(_up_to_call(), tmp_path)
    assert s.phase == "lcp" and "no GRE in either direction" in s.verdict


def test_verdict_mschapv2_failure_691(tmp_path):
    cap = _up_to_call()
    cap.gre("client", g.ppp(g.LCP_REQ_CLIENT))
    cap.gre("server", g.ppp(g.LCP_REQ_SERVER))
    cap.gre("server", g.ppp(g.lcp_ack(g.LCP_REQ_CLIENT)))
    cap.gre("client", g.ppp(g.lcp_ack(g.LCP_REQ_SERVER)))
    cap.gre("server", g.ppp(g.chap(4, message=b"E=691 R=0 C=00 V=3 M=Authentication failed")))
    cap.gre("server", g.ppp(PPP_LCP_Terminate(code=5, id=3)))
    s = one(cap, tmp_path)
    assert s.phase == "auth" and "E=691" in s.verdict and "bad credentials" in s.verdict


def test_control_decode_never_raises_and_reports():
    assert control.decode(b"\x00").errors
    bad = bytearray(bytes(g.sccrq()))
    bad[4:8] = b"\0\0\0\0"
    assert "bad magic cookie" in control.decode(bytes(bad)).errors[0]
    assert "unknown control type 99" in control.decode(bytes(bytearray(bytes(g.sccrq())[:8]) + b"\x00\x63\0\0")).errors[-1]


def test_cli_analyze_json_and_ladder(tmp_path):
    pcap = g.full_session().write(tmp_path / "s.pcap")
    out = subprocess.run([sys.executable, "-c", "from lab.cli import main; main()", "analyze", str(pcap),
                          "--json", "--ladder", str(tmp_path / "l.html")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["sessions"][0]["phase"] == "teardown"
    page = (tmp_path / "l.html").read_text()
    assert "<svg" in page and "SCCRQ" in page and "LCP Terminate-Request" in page


# ------------------------------------------------------------------ one phase vocabulary
def stopping_in(phase):
    """A session that stops in `phase` (session.PHASES: the phase it stopped in)."""
    if phase in ("data", "teardown"):
        return g.full_session(teardown="client" if phase == "teardown" else None)
    c = g.Capture()
    if phase == "tcp":
        c.add(c._ip("client") / g.TCP(sport=g.CPORT, dport=1723, flags="S"))
        return c
    c.handshake().control("client", g.sccrq())
    if phase == "control":
        return c
    c.control("server", g.sccrp()).control("client", g.ocrq())
    if phase == "call":
        return c
    c.control("server", g.ocrp())
    c.gre("client", g.ppp(g.LCP_REQ_CLIENT))
    if phase == "lcp":
        return c
    c.gre("server", g.ppp(g.LCP_REQ_SERVER))
    c.gre("server", g.ppp(g.lcp_ack(g.LCP_REQ_CLIENT)))
    c.gre("client", g.ppp(g.lcp_ack(g.LCP_REQ_SERVER)))
    c.gre("server", g.ppp(g.chap(1, value=bytes(16), name=b"pptpd")))
    c.gre("client", g.ppp(g.chap(2, value=bytes(49), name=b"alice")))
    if phase == "auth":
        c.gre("server", g.ppp(g.chap(4, message=b"E=691 R=0 C=00 V=3 M=Authentication failed")))
        return c
    c.gre("server", g.ppp(g.chap(3, message=b"S=0123456789ABCDEF0123456789ABCDEF01234567 M=ok")))
    c.gre("client", g.ccp(1))
    c.gre("server", g.ccp(1))
    if phase == "ccp":
        return c
    c.gre("client", g.ccp(2))
    c.gre("server", g.ccp(2))
    c.gre("client", g.ppp(g.ipcp(1, "192.168.240.10")))
    assert phase == "ipcp"
    return c


VERDICT_WORDS = {"tcp": "SYN to 1723 unanswered", "control": "SCCRQ sent, no SCCRP",
                 "call": "OCRQ sent, no OCRP", "lcp": "no GRE from the server: IP protocol 47",
                 "auth": "E=691", "ccp": "CCP/MPPE not agreed", "ipcp": "IPCP did not complete",
                 "data": "tunnel up and carrying data", "teardown": "torn down"}


def test_phases_are_defined_once_with_a_meaning_each():
    from lab.pptp import session
    assert pptp.PHASES == list(pptp.PHASE_MEANING) == list(VERDICT_WORDS)
    assert pptp.FAIL_PHASES == tuple(pptp.PHASES[:7])
    assert all(pptp.PHASE_MEANING.values()) and session.PHASES is pptp.PHASES


@pytest.mark.parametrize("phase", pptp.PHASES)
def test_a_session_stopping_in_each_phase_is_judged_in_that_phase(tmp_path, phase):
    s = one(stopping_in(phase), tmp_path)
    assert (s.phase, VERDICT_WORDS[phase] in s.verdict) == (phase, True), s.verdict


@pytest.mark.parametrize("phase", ["lcp", "auth", "ccp", "ipcp", "data", "teardown"])
def test_gre_only_capture_is_judged_in_the_same_phase(tmp_path, phase):
    cap = stopping_in(phase)
    cap.frames = [f for f in cap.frames if not f.haslayer(g.TCP)]  # as if only GRE was captured
    s = one(cap, tmp_path)
    assert s.gre_only and s.phase == phase and "partial capture" in s.verdict


def test_what_status_reads_call_reply_time_last_echoes_and_waits(tmp_path):
    """For `pptp-lab status` (lab.tunnels): when the OCRP came, the last PPTP and LCP echo
    (also past MAX_RECORDS), and per side the first payload the other side has not answered."""
    cap = g.full_session(teardown=None, data_frames=1)
    cap.control("server", g.PPTPEchoRequest(identifier=1))
    cap.gre("client", g.ppp(PPP_LCP_Echo(code=10, id=1, magic_number=1)))
    echo_ts = cap.t
    cap.gre("client", g.mppe_data())  # the fast path; the server answers neither
    s = one(cap, tmp_path)
    call = s.calls[0]
    assert call.reply_ts == next(e.ts for e in s.events if e.what == "OCRP")
    assert s.last_echo["what"] == "PPTP Echo-Request" and s.last_echo["sender"] == "server"
    assert call.lcp_echo == {"ts": pytest.approx(echo_ts), "sender": "client", "what": "LCP Echo-Reply"}
    assert call.waiting == {"client": pytest.approx(echo_ts), "server": None}


def test_gre_only_roles_swapped_keep_waits_and_echoes_with_their_side(tmp_path):
    cap = g.Capture()  # the server's GRE first: taken for the client's until its CHAP Challenge
    cap.gre("server", g.ppp(PPP_LCP_Echo(code=9, id=1, magic_number=1)))
    first = cap.t
    cap.gre("server", g.ppp(g.chap(1, value=bytes(16), name=b"pptpd")))
    call = one(cap, tmp_path).calls[0]
    assert call.lcp_echo["sender"] == "server" and call.waiting == {"client": None, "server": pytest.approx(first)}


def test_tunnel_up_without_data_is_in_data_phase(tmp_path):
    s = one(g.full_session(teardown=None, data_frames=0), tmp_path)
    assert s.phase == "data" and "no user data seen" in s.verdict


# ------------------------------------------------------------------ SLI / WEN placement
def test_sli_and_wen_for_an_unknown_call_id_are_errors_not_the_last_call(tmp_path):
    from scapy.layers.pptp import PPTPWANErrorNotify
    cap = g.full_session(teardown=None)
    cap.control("client", g.PPTPSetLinkInfo(peer_call_id=999, send_accm=0, receive_accm=0))
    cap.control("server", PPTPWANErrorNotify(peer_call_id=998, crc_errors=3))
    cap.control("server", g.PPTPSetLinkInfo(peer_call_id=g.CLIENT_CALL, send_accm=0, receive_accm=0))
    s = one(cap, tmp_path)
    call = s.calls[0]
    assert [x["sender"] for x in call.sli] == ["server"] and call.wen == []
    assert any("SLI for unknown call ID 999" in e for e in s.errors)
    assert any("WEN for unknown call ID 998" in e for e in s.errors)


@pytest.mark.parametrize("linktype", [101, 113])
def test_raw_ip_and_linux_cooked_captures_read_like_ethernet(tmp_path, linktype):
    """LINKTYPE_RAW (101: `tcpdump -i` on a tun or ppp device) and Linux cooked capture."""
    from scapy.layers.inet import IP
    from scapy.layers.l2 import CookedLinux
    from scapy.utils import PcapWriter

    c = g.full_session()
    ether = c.write(tmp_path / "ether.pcap")
    other = tmp_path / f"{linktype}.pcap"
    with PcapWriter(str(other), linktype=linktype) as w:
        for p in c.frames:
            q = p[IP] if linktype == 101 else CookedLinux(pkttype=0, lladdrtype=1, lladdrlen=6, proto=0x0800) / p[IP]
            q.time = p.time
            w.write(bytes(q) if linktype == 101 else q)
    (want,), (got,) = pptp.analyze([ether]).sessions, pptp.analyze([other]).sessions
    assert (got.phase, got.verdict, len(got.events)) == (want.phase, want.verdict, len(want.events))

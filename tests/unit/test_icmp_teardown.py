"""ICMP errors as evidence and the teardown model (SPEC S23, S33) on captures built with scapy:
which errors are read and matched to which session, the verdicts that name them, and the
initiator of a teardown for each order of events, on one capture and across a NAT."""
import json

import pytest
from scapy.layers.pptp import (PPTPCallClearRequest, PPTPCallDisconnectNotify,
                               PPTPStopControlConnectionRequest)

from lab import pptp
from lab.reports import report
from lab.pptp import session
from tests import REPO

from . import pptpgen as g

NAT_OUT, INSIDE = "198.18.52.2", "10.1.0.10"
ROUTER = "192.0.2.1"
PROTO_UNREACH = "answered GRE with ICMP protocol unreachable: nothing forwards or translates GRE there"


def analysed(tmp_path, *caps):
    return pptp.analyze([c.write(tmp_path / f"{name}.pcap") for name, c in caps])


def one(cap, tmp_path, name="c"):
    (s,) = analysed(tmp_path, (name, cap)).sessions
    return s


# ------------------------------------------------------------------ a server behind a NAT without GRE
def behind_nat_without_gre(give_up=False):
    """The NAT forwards TCP 1723 only: it answers each client GRE packet itself."""
    c = g.Capture(server="203.0.113.9")
    c.handshake().control("client", g.sccrq()).control("server", g.sccrp())
    c.control("client", g.ocrq()).control("server", g.ocrp())
    for _ in range(3):
        c.gre("client", g.ppp(g.LCP_REQ_CLIENT), dt=3.0)
        c.icmp("203.0.113.9", code=2)
    if give_up:
        c.control("client", PPTPCallClearRequest(call_id=g.CLIENT_CALL), dt=3.0)
        c.control("server", PPTPCallDisconnectNotify(call_id=g.SERVER_CALL, result_code=4))
        c.fin("client").fin("server")
    return c


def test_server_nat_forwarding_only_tcp_1723_answers_gre_with_protocol_unreachable(tmp_path):
    s = one(behind_nat_without_gre(), tmp_path)
    assert s.phase == "lcp"
    assert s.verdict == f"OCRP ok, no GRE from the server: the NAT 203.0.113.9 {PROTO_UNREACH} (to the client's GRE)"
    assert len(s.icmp) == 3 and all(e.sender == "server" for e in s.icmp)


# ------------------------------------------------------------------ which errors, matched how
def router_error(type, code, mtu=0):
    c = g.full_session(teardown=None)
    c.gre("client", g.mppe_data(1400))
    return c.icmp(ROUTER, type=type, code=code, mtu=mtu)


@pytest.mark.parametrize("type,code,mtu,name,meaning", [
    (3, 0, 0, "ICMP net unreachable", "no route to 203.0.113.5 there"),
    (3, 1, 0, "ICMP host unreachable", "203.0.113.5 cannot be reached from there"),
    (3, 2, 0, "ICMP protocol unreachable", "nothing forwards or translates GRE there"),
    (3, 3, 0, "ICMP port unreachable", "a firewall rule rejects it there"),
    (3, 4, 1400, "ICMP fragmentation needed (next-hop MTU 1400)", "does not fit the next hop's MTU"),
    (3, 13, 0, "ICMP administratively prohibited", "a firewall rule rejects it there"),
    (3, 10, 0, "ICMP host administratively prohibited", "a firewall rule rejects it there"),
    (11, 0, 0, "ICMP time exceeded in transit", "its TTL ran out there"),
])
def test_each_error_is_an_event_with_its_sender_and_in_the_verdict(tmp_path, type, code, mtu, name, meaning):
    s = one(router_error(type, code, mtu), tmp_path)
    (e,) = s.icmp
    assert (e.what, e.by, e.sender) == (name, ROUTER, "server")  # back towards the client
    assert e.detail == f"from {ROUTER}, to GRE {g.CLIENT} → {g.SERVER} call ID {g.SERVER_CALL}" and e in s.events
    assert (e.info["type"], e.info["code"], e.info["mtu"]) == (type, code, mtu or None)
    assert s.phase == "data" and s.verdict.startswith("tunnel up and carrying data; ")
    assert f"{ROUTER} answered GRE with {name}: " in s.verdict and meaning in s.verdict


def test_an_error_about_tcp_1723_is_matched_by_its_ports_and_explains_an_unanswered_syn(tmp_path):
    c = g.Capture()
    c.add(c._ip("client") / g.TCP(sport=g.CPORT, dport=1723, flags="S"))
    c.icmp(ROUTER, code=1)
    other = g.Capture(cport=g.CPORT + 1)  # the same hosts, another connection
    other.add(other._ip("client") / g.TCP(sport=g.CPORT + 1, dport=1723, flags="S"))
    c.frames += other.frames
    s1, s2 = analysed(tmp_path, ("syn", c)).sessions
    assert s1.phase == "tcp" and len(s1.icmp) == 1 and not s2.icmp
    assert s1.verdict == (f"TCP SYN to 1723 unanswered: {ROUTER} answered TCP 1723 with ICMP host unreachable: "
                          f"{g.SERVER} cannot be reached from there (no route or no ARP answer) "
                          "(to the client's TCP 1723)")


def test_gre_is_matched_by_call_id_and_by_addresses_only_when_the_quote_has_none(tmp_path):
    c = g.full_session(teardown=None)
    c.gre("client", g.mppe_data(), call_id=999)  # a call ID no call of the session has
    c.icmp(ROUTER)
    del c.frames[-2]  # and not captured: no flow of its own either
    c.gre("server", g.mppe_data())
    c.icmp(ROUTER, octets=0)  # only the IP header quoted: matched by the addresses
    r = analysed(tmp_path, ("c", c))
    (s,) = r.sessions
    assert [(e.sender, e.detail) for e in s.icmp] == [("client", f"from {ROUTER}, to GRE {g.SERVER} → {g.CLIENT}")]
    (st,) = r.stats.values()
    assert (st["icmp_errors"], st["icmp_unmatched"]) == (2, 1)


def test_gre_only_an_error_keeps_its_side_when_the_roles_swap(tmp_path):
    c = g.Capture()  # the server's GRE first: taken for the client's until its CHAP Challenge
    c.gre("server", g.ppp(g.LCP_REQ_SERVER))
    c.icmp(ROUTER, type=11, code=0)
    c.gre("server", g.ppp(g.chap(1, value=bytes(16), name=b"pptpd")))
    s = one(c, tmp_path)
    assert s.gre_only and (s.client, s.server) == (g.CLIENT, g.SERVER)
    (e,) = s.icmp
    assert e.sender == "client" and f"{ROUTER} answered GRE with ICMP time exceeded in transit" in s.verdict
    assert s.verdict.endswith("(to the server's GRE)")


def test_echo_and_errors_about_other_traffic_are_not_read(tmp_path):
    c = g.full_session(teardown=None)
    c.add(c._ip("client") / g.TCP(sport=g.CPORT, dport=80, flags="S"))
    c.icmp(ROUTER, code=3)
    c.add(c._ip("client") / g.ICMP(type=8))
    (st,) = analysed(tmp_path, ("c", c)).stats.values()
    assert "icmp_errors" not in st


def test_json_carries_the_icmp_events(tmp_path):
    data = json.loads(json.dumps(analysed(tmp_path, ("c", behind_nat_without_gre())).to_dict()))
    (s,) = data["sessions"]
    assert s["icmp"][0]["by"] == "203.0.113.9" and s["icmp"][0]["info"]["name"] == "ICMP protocol unreachable"
    assert s["icmp"][0]["info"]["quoted"]["call_id"] == g.SERVER_CALL
    assert s["icmp"] == [e for e in s["events"] if e["what"].startswith("ICMP")]
    assert data["limits"]["icmp_errors_per_session"] == session.MAX_ICMP


def test_icmp_errors_keep_within_the_limits_first_ones_and_the_newest(tmp_path, monkeypatch):
    monkeypatch.setattr(session, "MAX_ICMP", 3)
    monkeypatch.setattr(session, "MAX_EVENTS", 20)
    c = behind_nat_without_gre()
    for _ in range(7):
        c.gre("client", g.ppp(g.LCP_REQ_CLIENT), dt=3.0)
        c.icmp("203.0.113.9", code=2)
    last = c.t
    s = one(c, tmp_path)
    assert len(s.icmp) == 3 and s.dropped["icmp"] == 7 and s.icmp[-1].ts == pytest.approx(last)
    assert len(s.events) == 20 and s.dropped["events"] == 6 and s.phase == "lcp" and "ICMP" in s.verdict


def conntrack_loss():
    """The client's NAT loses its state mid-session (S23), captured inside and outside it on
    one clock: the server's GRE gets the NAT's ICMP protocol unreachable, the server closes
    within 10 ms, the NAT answers its FIN with a RST in the client's name; the client's late
    CCRQ gets the server's RST. TTLs: one hop through the NAT."""
    inside, outside = g.Capture(client=INSIDE), g.Capture(client=NAT_OUT)
    inside.ttl["server"] = outside.ttl["client"] = 63
    for c in (inside, outside):
        g.full_session(c, teardown=None)
    outside.gre("server", g.mppe_data(), dt=1.0)  # no state: not forwarded inside
    outside.icmp(NAT_OUT, code=2)
    outside.fin("server", dt=0.009)
    outside.rst("client", ttl=64)  # the NAT's own TTL, not the client's forwarded 63
    inside.t, inside.tcp_seq = outside.t, dict(outside.tcp_seq)  # the NAT keeps sequence numbers
    for c in (inside, outside):
        c.control("client", PPTPCallClearRequest(call_id=g.CLIENT_CALL), dt=4.0)
        c.rst("server", dt=0.001)
    return inside, outside


def steps(s):
    return [(e.sender, e.what) for e in s.teardown]


# ------------------------------------------------------------------ the NAT that lost its state
def test_outside_capture_the_server_initiated_after_the_nats_icmp(tmp_path):
    s = one(conntrack_loss()[1], tmp_path, "outside")
    assert s.phase == "teardown" and s.initiator == "server"
    assert steps(s) == [("client", "ICMP protocol unreachable"), ("server", "TCP FIN"), ("client", "TCP RST"),
                        ("client", "CCRQ"), ("server", "TCP RST")]
    assert (s.initiated["step"], [a["by"] for a in s.initiated["after"]]) == ("TCP FIN", [NAT_OUT])
    assert s.verdict == ("tunnel carried data and was torn down by the server (TCP FIN), after the NAT "
                         f"{NAT_OUT} {PROTO_UNREACH} (to the server's GRE)")
    nat_rst = s.teardown[2]
    assert nat_rst.by == "middlebox" and "TTL 64, the client's segments 63" in nat_rst.detail
    assert s.teardown[4].by == ""  # the server's own RST
    (icmp,) = s.icmp
    assert icmp.by == NAT_OUT and icmp.info["about"] == "GRE" and icmp.info["quoted"]["call_id"] == g.CLIENT_CALL


def test_inside_capture_alone_a_ccrq_and_a_reset_are_a_teardown_not_data(tmp_path):
    """Was "data: tunnel up and carrying data" although the client sent CCRQ and got a RST."""
    s = one(conntrack_loss()[0], tmp_path, "inside")
    assert s.phase == "teardown" and s.initiator == "client"
    assert steps(s) == [("client", "CCRQ"), ("server", "TCP RST")]
    assert s.verdict == "tunnel carried data and was torn down by the client (CCRQ)"


def test_a_client_giving_up_after_the_nats_errors_stays_in_lcp_and_initiated_the_teardown(tmp_path):
    s = one(behind_nat_without_gre(give_up=True), tmp_path)
    assert s.phase == "lcp" and f"the NAT 203.0.113.9 {PROTO_UNREACH}" in s.verdict
    # 3 s after the last ICMP error: not a step of the teardown, the client's CCRQ is the first.
    assert s.initiator == "client" and s.initiated["after"] == []
    assert steps(s) == [("client", "CCRQ"), ("server", "CDN"), ("client", "TCP FIN"), ("server", "TCP FIN")]


# ------------------------------------------------------------------ the initiator, per order of events
def icmp_from_client_side(c, dt=0.001):
    c.gre("server", g.mppe_data(), dt=dt)
    c.icmp(ROUTER)


ORDERS = {
    "icmp, then the server's FIN": (
        lambda c: (icmp_from_client_side(c), c.fin("server"), c.fin("client")),
        "server", [("client", "ICMP protocol unreachable"), ("server", "TCP FIN"), ("client", "TCP FIN")]),
    "the server's FIN, then icmp": (
        lambda c: (c.fin("server"), icmp_from_client_side(c), c.fin("client")),
        "server", [("server", "TCP FIN"), ("client", "ICMP protocol unreachable"), ("client", "TCP FIN")]),
    "the client's CCRQ, then the server's FIN": (
        lambda c: (c.control("client", PPTPCallClearRequest(call_id=g.CLIENT_CALL)), c.fin("server")),
        "client", [("client", "CCRQ"), ("server", "TCP FIN")]),
    "the server's CDN": (
        lambda c: c.control("server", PPTPCallDisconnectNotify(call_id=g.CLIENT_CALL, result_code=3)),
        "server", [("server", "CDN")]),
    "the server's StopCCRQ": (
        lambda c: c.control("server", PPTPStopControlConnectionRequest(reason=1)),
        "server", [("server", "StopCCRQ")]),
    "the client's own RST": (
        lambda c: (c.rst("client"), c.rst("server")),
        "client", [("client", "TCP RST"), ("server", "TCP RST")]),
    "a middlebox's RST, then the client's CCRQ": (
        lambda c: (c.rst("client", ttl=40), c.control("client", PPTPCallClearRequest(call_id=g.CLIENT_CALL))),
        "client", [("client", "TCP RST"), ("client", "CCRQ")]),
    "only a middlebox's RST": (
        lambda c: c.rst("server", ttl=40),
        None, [("server", "TCP RST")]),
    "icmp long before the server's FIN": (
        lambda c: (icmp_from_client_side(c), c.fin("server", dt=5.0)),
        "server", [("server", "TCP FIN")]),
}


@pytest.mark.parametrize("order", ORDERS)
def test_the_initiator_is_the_endpoint_of_the_first_step_in_time(tmp_path, order):
    build, initiator, expected = ORDERS[order]
    c = g.full_session(teardown=None)
    build(c)
    s = one(c, tmp_path)
    assert (s.phase, s.initiator, steps(s)) == ("teardown", initiator, expected), s.verdict
    first_path = [e for e in s.teardown if e.by][:1]
    before = [e for e in first_path if not s.initiated["side"] or e.frame < s.initiated["frame"]]
    assert [a["frame"] for a in s.initiated["after"]] == [e.frame for e in before]
    assert "ICMP" not in s.verdict or f"{ROUTER} {PROTO_UNREACH}" in s.verdict  # named wherever it was


def test_json_carries_the_teardown_initiator(tmp_path):
    data = json.loads(json.dumps(analysed(tmp_path, ("outside", conntrack_loss()[1])).to_dict()))
    (s,) = data["sessions"]
    assert s["initiator"] == "server" and s["initiated"]["after"][0]["text"].startswith(f"the NAT {NAT_OUT} answered")
    assert s["teardown"][2]["by"] == "middlebox" and s["teardown"][1]["info"]["ttl"] == 64


# ------------------------------------------------------------------ across a NAT
def test_both_captures_the_inside_gets_the_outside_initiator_and_the_nats_rst_is_told_apart(tmp_path):
    inside, outside = conntrack_loss()
    r = analysed(tmp_path, ("inside", inside), ("outside", outside))
    s_in, s_out = r.sessions
    assert len(r.nat_links) == 1 and s_in.initiator == s_out.initiator == "server"
    assert s_in.phase == "teardown" and s_in.initiated["source"].endswith("outside.pcap")
    assert f"torn down by the server (TCP FIN), after the NAT {NAT_OUT} {PROTO_UNREACH}" in s_in.verdict
    assert s_in.verdict.endswith("(seen on outside.pcap)")
    nat_rst = s_out.teardown[2]
    assert nat_rst.by == "middlebox"
    assert nat_rst.detail == f"not on inside.pcap, nearer the client: sent by the NAT {NAT_OUT}"
    # The server's RST to the late CCRQ is on both sides: the server's own.
    assert [e.by for e in s_in.teardown] == ["", ""] and s_out.teardown[4].by == ""


def test_a_ttl_guess_is_cleared_when_the_capture_nearer_the_sender_holds_the_packet(tmp_path):
    inside, outside = g.Capture(client=INSIDE), g.Capture(client=NAT_OUT)
    inside.ttl["server"] = outside.ttl["client"] = 63
    for c in (inside, outside):
        g.full_session(c, teardown=None)
        c.rst("client", ttl=50 if c is outside else 64)  # the client's, its TTL odd on the outside
    assert one(outside, tmp_path, "alone").teardown[0].by == "middlebox"
    s_in, s_out = analysed(tmp_path, ("inside", inside), ("outside", outside)).sessions
    assert s_out.teardown[0].by == "" and s_out.teardown[0].detail == "also on inside.pcap: the client sent it"
    assert s_out.initiator == s_in.initiator == "client"


# ------------------------------------------------------------------ on the ladder and in the report
def test_the_ladder_draws_the_icmp_error_with_its_sender_and_the_teardown_table_says_who(tmp_path):
    from lab.reports import runfiles
    from lab.model import topology

    r = analysed(tmp_path, ("outside", conntrack_loss()[1]))
    (s,) = r.sessions
    svg = report.ladder_svg(s)
    (row,) = [line for line in svg.splitlines() if "ICMP protocol unreachable" in line]
    assert f"from {NAT_OUT}, to GRE {g.SERVER} → {NAT_OUT} call ID {g.CLIENT_CALL}" in row and "#b00" in row
    assert "— teardown, client → server" in row  # from the client's side, back to the server
    page = report.test_html(runfiles.Result(topology.load(REPO / "topologies" / "default.yaml"), report=r))
    assert f"<td>ICMP protocol unreachable from {NAT_OUT}</td><td>client → server</td>" in page
    assert f"teardown (server initiated, after ICMP protocol unreachable from {NAT_OUT})" in page
    assert "<td>TCP RST from a middlebox</td>" in page


def test_the_console_names_a_middlebox_step_before_the_initiator(tmp_path):
    c = g.full_session(teardown=None)
    c.rst("server", ttl=40).control("client", PPTPCallClearRequest(call_id=g.CLIENT_CALL))
    s = one(c, tmp_path)
    assert report.initiated(s) == "client initiated, after TCP RST from a middlebox"
    assert [report.step(e) for e in s.teardown] == ["TCP RST from a middlebox", "CCRQ"]


def test_one_gre_error_between_two_addresses_is_every_open_call_of_that_pair():
    """S33: a GRE protocol unreachable reaches every GRE socket of the pair (measured: one
    from a flushed NAT, three calls closed by the server within 5 ms)."""
    from types import SimpleNamespace as NS

    from lab.pptp import teardown as td

    err = NS(ts=5.0, info={"about": "GRE"})
    tcp_err = NS(ts=5.0, info={"about": "TCP 1723"})
    a = NS(gre_only=False, source="o.pcap", client="198.18.93.2", server="198.18.93.20", start=1, end=9,
           icmp=[err, tcp_err])
    b = NS(gre_only=False, source="o.pcap", client="198.18.93.2", server="198.18.93.20", start=2, end=9, icmp=[])
    ended = NS(gre_only=False, source="o.pcap", client="198.18.93.2", server="198.18.93.20", start=1, end=4, icmp=[])
    other_pair = NS(gre_only=False, source="o.pcap", client="198.18.93.3", server="198.18.93.20", start=1, end=9, icmp=[])
    other_file = NS(gre_only=False, source="i.pcap", client="198.18.93.2", server="198.18.93.20", start=1, end=9, icmp=[])
    td.share_gre_errors([a, b, ended, other_pair, other_file])
    assert b.icmp == [err] and a.icmp == [err, tcp_err]
    assert ended.icmp == other_pair.icmp == other_file.icmp == []


def test_a_call_another_capture_saw_torn_down_is_never_data_here():
    """S33: inside the NAT the last packets may never cross it; the outside saw the server's FIN."""
    from types import SimpleNamespace as NS

    from lab.pptp import session as sm

    s = NS(tcp={"fin_by": [], "rst_by": []}, teardown=[], source="home.pcap", initiated=None)
    assert not sm._torn_down(s)
    s.initiated = {"side": "server", "source": "internet.pcap"}
    assert sm._torn_down(s)
    s.initiated = {"side": None, "source": "internet.pcap"}  # only the path acted
    assert not sm._torn_down(s)

"""ICMP errors as evidence (SPEC S32) on captures built with scapy: which errors are read and
matched to which session, and the verdicts that name them."""
import json

import pytest
from scapy.layers.pptp import PPTPCallClearRequest, PPTPCallDisconnectNotify

from lab import pptp
from lab.pptp import session

from . import pptpgen as g

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

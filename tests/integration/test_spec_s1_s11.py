"""SPEC S1-S11 on real tunnels of the default topology, asserted on the analysed captures.

The client on the Internet segment dials with `--idle-wait 3` (short Echo interval, S9);
the client behind the NAT keeps pptp-linux's default (60 s, the slow S9 test)."""
import math
import time

import pytest

from lab.reports import conformance

CLIENT, HOME = "198.51.100.10", "192.168.1.10"
INTRANET_HOST = "10.10.0.20"

pytestmark = pytest.mark.topology("default", name="t-spec",
                                  overrides={"nodes.client.pptp_client.options": {"idle_wait": 3}})


def session(lab, client=CLIENT, segment="internet"):
    found = [s for s in lab.sessions(client=client, segment=segment) if not s.gre_only]
    assert found, f"no control connection from {client} in the {segment} capture"
    return found[-1]


def call_flows(s):
    (call,) = [c for c in s.calls if c.to_server and c.to_client]
    return call, call.to_server, call.to_client


def test_S1_one_tcp_connection_from_an_ephemeral_port_to_1723(lab):
    sessions = [s for s in lab.sessions(client=CLIENT, segment="internet") if not s.gre_only]
    assert len(sessions) == 1
    s = sessions[0]
    assert s.server_port == 1723 and s.client_port >= 1024
    assert s.tcp["syn"] and s.tcp["syn_ack"]


def test_S2_sccrq_then_sccrp_with_result_and_names(lab):
    s = session(lab)
    order = [e.what for e in s.events]
    assert order.index("SCCRQ") < order.index("SCCRP")
    assert s.sccrq["protocol_version"] == 0x0100 and s.sccrp["protocol_version"] == 0x0100
    assert s.sccrp["control_result"] == 1
    # What the real programs send (PPTP-NOTES): pptp-linux is "cananian", pptpd is "linux".
    assert s.sccrq["vendor_name"] == "cananian" and s.sccrp["vendor_name"] == "linux"
    assert (s.sccrq["framing_capabilities"], s.sccrq["bearer_capabilities"]) == (3, 3)


def test_S3_S5_call_ids_in_ocrq_ocrp_and_gre(lab):
    s = session(lab)
    call, to_server, to_client = call_flows(s)
    assert call.request["call_id"] == call.client_call_id
    assert call.reply["call_id"] == call.server_call_id
    assert call.reply["peer_call_id"] == call.client_call_id and call.reply["out_result"] == 1
    # S5: each side's GRE carries the call ID its peer chose.
    assert to_server.call_id == call.server_call_id
    assert to_client.call_id == call.client_call_id


def test_S4_set_link_info_who_and_how_often(lab):
    # Documented: the client sends SLI after the call is up. Observed on Linux: pptp-linux
    # sends it only with --quirks BEZEQ_ISRAEL, pptpd never: no SLI at all.
    call, _, _ = call_flows(session(lab))
    assert call.sli == []


def test_S6_negotiation_then_mppe_data_for_1000_pings(lab):
    before = call_flows(session(lab))[0].ppp["data_frames"]["client"]
    res = lab.run("client", f"ping -q -c 1000 -i 0.005 -W 2 {INTRANET_HOST}", check=False)
    assert " 0% packet loss" in res.out, res.out
    s = session(lab)
    call, to_server, to_client = call_flows(s)
    p = call.ppp
    assert p["auth"] == "CHAP-MS-CHAPv2" and p["auth_result"] == "success"
    assert p["mppe"]["128"] and p["mppe"]["stateless"]
    assert p["client_address"] in lab.topo.nodes["vpn"].pptp_server.pool
    assert p["server_address"] == lab.topo.nodes["vpn"].pptp_server.local_ip
    assert p["data_frames"]["client"] - before >= 1000
    assert to_server.ppp["MPPE"] >= 1000 and to_client.ppp["MPPE"] >= 1000
    assert "IPv4" not in to_server.ppp, "user data must travel encrypted (MPPE)"
    first = {}
    for e in s.events:
        first.setdefault(e.what.split()[0], e.ts)
    assert first["LCP"] < first["CHAP"] < first["CCP"] < first["IPCP"]


def test_S7_every_gre_header_as_specified(lab):
    _, to_server, to_client = call_flows(session(lab))
    for flow in (to_server, to_client):
        assert flow.errors == [], flow.errors[:3]
        assert flow.packets >= flow.payload_packets > 0
    # Acknowledgement-only packets are legal and do occur (a side with nothing to send acks alone).
    assert to_server.ack_only + to_client.ack_only > 0


def test_S8_sequence_and_acks_consistent_with_no_loss(lab):
    _, to_server, to_client = call_flows(session(lab))
    for flow, peer in ((to_server, to_client), (to_client, to_server)):
        assert (flow.lost, flow.duplicates, flow.reordered) == (0, 0, 0)
        assert flow.max_seq - flow.first_seq + 1 == flow.payload_packets
        # The peer acknowledges the highest sequence it received (the last few may be in flight).
        assert flow.max_seq - 3 <= peer.highest_ack <= flow.max_seq
    # pptp-linux starts at 1, pptpd at 0 (PPTP-NOTES).
    assert to_server.first_seq == 1 and to_client.first_seq == 0


def test_S8_injected_loss_is_counted_within_statistical_bounds(lab):
    rate, pings = 0.10, 600
    _, flow, _ = call_flows(session(lab, segment="perimeter"))
    seq0, lost0 = flow.max_seq, flow.lost
    eth = lab.run("client", "ip -o -4 addr show | awk '/198.51.100.10/ {print $2}'").out.strip()
    lab.run("client", f"tc qdisc add dev {eth} root netem loss {rate * 100:.0f}%")
    try:
        lab.run("client", f"ping -q -c {pings} -i 0.01 -W 1 {INTRANET_HOST}", check=False)
    finally:
        lab.run("client", f"tc qdisc del dev {eth} root")
    time.sleep(1)
    _, flow, _ = call_flows(session(lab, segment="perimeter"))
    sent = flow.max_seq - seq0
    lost = flow.lost - lost0
    bound = 4 * math.sqrt(sent * rate * (1 - rate))
    assert sent >= pings
    assert abs(lost - sent * rate) <= bound, f"lost {lost} of {sent}, expected {sent * rate:.0f} ± {bound:.0f}"


def test_S9_echo_requests_at_the_short_interval_paired_by_identifier(lab):
    time.sleep(10)
    s = session(lab)
    echo = s.echo_summary()["client"]
    assert echo["requests"] >= 2 and echo["answered"] == echo["requests"]
    assert all(3 <= gap <= 5 for gap in echo["intervals_s"]), echo
    for e in s.echoes:
        assert e["sender"] == "client" and e["reply_ts"] is not None and e["rtt_s"] < 1


@pytest.mark.slow
def test_S9_echo_at_the_60s_default(lab):
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        echo = session(lab, client=HOME, segment="home").echo_summary()["client"]
        if echo["requests"] >= 2:
            break
        time.sleep(10)
    assert echo["requests"] >= 2 and echo["answered"] == echo["requests"], echo
    assert all(59 <= gap <= 62 for gap in echo["intervals_s"]), echo


def test_S10_client_initiated_teardown_order(lab):
    """Documented: SLI, LCP Terminate, SLI, Terminate-Ack, CCRQ, CDN, StopCCRQ, StopCCRP, close.
    Observed with pptp-linux 1.10 and pptpd 1.4 when the client's pppd is told to hang up
    (SIGTERM, as `poff` does): pptp clears the call at once, before pppd's LCP
    Terminate-Request reaches the wire, and both sides close TCP without CDN or Stop-CCR."""
    lab.hangup("client")
    time.sleep(1)
    s = session(lab)
    seen = conformance.observed(s)
    diff = conformance.compare(conformance.DOCUMENTED_CLIENT_TEARDOWN, seen)
    assert s.initiator == "client", diff
    assert seen[0] == ("client", "CCRQ"), diff
    assert {("client", "TCP FIN"), ("server", "TCP FIN")} <= set(seen), diff
    assert not any(w.startswith("LCP Terminate") for _, w in seen), diff
    assert {"CDN (server)", "StopCCRQ (client)", "StopCCRP (server)", "SLI (client)"} <= set(diff["skipped"]), diff
    assert s.phase == "teardown" and s.tcp["closed_at"] is not None


def test_S11_server_initiated_teardown_order(lab):
    """Documented: the S10 exchange with the roles swapped. Observed when the server's pppd
    for the call ends: LCP Terminate-Request from the server (sent twice), Terminate-Ack
    from the client, then pptpd closes TCP at once; the client's CCRQ arrives after the
    server's FIN and is answered with a reset. No SLI, CDN or Stop-CCR in either direction."""
    lab.hangup_from_server("home-client")
    time.sleep(1)
    s = session(lab, client=HOME, segment="home")
    seen = conformance.observed(s)
    diff = conformance.compare(conformance.DOCUMENTED_SERVER_TEARDOWN, seen)
    assert s.initiator == "server", diff
    assert seen[0] == ("server", "LCP Terminate-Request"), diff
    whats = [f"{w} ({who})" for who, w in seen]
    assert whats.index("LCP Terminate-Ack (client)") < whats.index("TCP FIN (server)"), diff
    assert not any(w in ("CDN", "StopCCRQ", "StopCCRP", "SLI") for _, w in seen), diff
    assert s.tcp["closed_at"] is not None

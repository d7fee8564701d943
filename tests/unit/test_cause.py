"""SPEC S32: the cause of a failed tunnel from its evidence (lab.cause), and the parsers of
that evidence: the kernel's counters and route answers (lab.evidence), its drops
(lab.kdrops), and the answer that never came (lab.why)."""
from types import SimpleNamespace as NS

import pytest

from lab.diagnosis import cause, diagnose, evidence, kdrops, why
from lab.model import topology
from lab.diagnosis.evidence import NodeEvidence
from tests import REPO

TOPO = topology.load(REPO / "tests" / "integration" / "topologies" / "causes.yaml")

SNMP = """Ip: Forwarding DefaultTTL InReceives InHdrErrors InAddrErrors ForwDatagrams InUnknownProtos InDiscards InDelivers OutRequests OutDiscards OutNoRoutes ReasmTimeout ReasmReqds ReasmOKs ReasmFails FragOKs FragFails FragCreates InNoRoutes
Ip: 1 64 20 0 0 3 2 0 15 9 0 1 0 0 0 0 0 0 0 4
Icmp: InMsgs InErrors
Icmp: 2 0
TcpExt: SyncookiesSent IPReversePathFilter
TcpExt: 0 7
"""


def test_counters_are_read_by_name():
    c = evidence.parse_counters(SNMP)
    assert c["Ip.InUnknownProtos"] == 2 and c["Ip.OutNoRoutes"] == 1 and c["Ip.InNoRoutes"] == 4
    assert c["TcpExt.IPReversePathFilter"] == 7 and c["Icmp.InMsgs"] == 2


def test_route_query_takes_only_addresses_and_interface_names():
    assert evidence.route_query("10.0.0.1", "10.0.0.2", "wan") == [
        "ip", "-4", "route", "get", "10.0.0.1", "from", "10.0.0.2", "iif", "wan"]
    assert evidence.route_query("10.0.0.1", "10.0.0.2", None)[-1] == "10.0.0.2"
    with pytest.raises(ValueError):
        evidence.route_query("10.0.0.1; reboot", "10.0.0.2", None)
    with pytest.raises(ValueError):
        evidence.route_query("10.0.0.1", "10.0.0.2", "wan; reboot")
    assert evidence.route_verdict(2, "RTNETLINK answers: Invalid cross-device link\n") == (
        False, "RTNETLINK answers: Invalid cross-device link")


TRACE = """# kernel 6.1.0-50-amd64 reasons 2
            crun-1    [000] ..s..  10.000001: netif_receive_skb: dev=n-nat skbaddr=00000000aaaa len=60
            crun-1    [000] ..s..  10.000002: kfree_skb: skbaddr=00000000aaaa protocol=2048 location=0000000012 reason: IP_NOPROTO
            crun-1    [000] ..s..  10.000003: <stack trace>
 => trace_event_raw_event_kfree_skb
 => kfree_skb_reason
 => ip_local_deliver_finish
 => __netif_receive_skb_one_core
     ksoftirqd/1-21      [001] ..s..  11.0: netif_receive_skb: dev=s-inv skbaddr=00000000bbbb len=56
     ksoftirqd/1-21      [001] ..s..  11.1: <stack trace>
 => trace_event_raw_event_kfree_skb
 => kfree_skb_reason
 => ip6_rcv_core
     ksoftirqd/1-21      [001] ..s..  12.0: kfree_skb: skbaddr=00000000cccc protocol=2048 location=0000000034 reason: NEIGH_FAILED
"""


def test_kernel_drops_are_tied_to_their_interface_and_function():
    rec = kdrops.parse(TRACE)
    assert rec.kernel == "6.1.0-50-amd64" and rec.reasons
    first, second = rec.drops
    assert (first.dev, first.reason, first.function) == ("n-nat", "IP_NOPROTO", "ip_local_deliver_finish")
    # a stack printed for another event (IPv6) is not this drop's
    assert (second.dev, second.reason, second.function) == (None, "NEIGH_FAILED", "")
    assert rec.on({"n-nat"}) == [first]
    old = kdrops.parse(TRACE.replace("reasons 2", "reasons 0").replace(" reason: IP_NOPROTO", ""))
    assert not old.reasons and old.drops[0].reason is None and "no reason" in old.drops[0].text()


def finding(client, what, seen_on, never_on, node, unanswered=False, drop=None, hop=None):
    server = why.server_node(TOPO, client)
    route = why.path(TOPO, client, server)
    flows = why.flows(TOPO, client, route)
    seen = {s: why.Seen(1, True) for s in route.segments}
    ev = why.Vanished(what, seen_on, never_on, node, unanswered)
    return why.Finding("SENTENCE", drop, {}, server, route, flows, seen, ev, answer_hop=hop)


def session(phase="tcp", verdict="TCP SYN to 1723 unanswered: x", icmp=()):
    return NS(phase=phase, verdict=verdict, events=[], icmp=list(icmp), source="x/n.pcap")


def test_the_phase_says_auth_and_refused():
    f = finding("c-auth", "syn", None, "s-auth", None)
    assert cause.decide(TOPO, "c-auth", session("auth", "CHAP failure"), f).name == "auth"
    f = finding("c-ref", "syn_ack", None, "n-ref", "srv", unanswered=True)
    got = cause.decide(TOPO, "c-ref", session("tcp", "server reset TCP 1723 (RST): nothing listens"), f)
    assert got.name == "refused"


@pytest.mark.parametrize("rule,policy,name", [
    ("ct state invalid drop", False, "conntrack-invalid"), ("ip protocol gre drop", False, "rule"),
    ("", True, "policy")])
def test_a_traced_drop_is_a_rule_a_policy_or_conntrack_invalid(rule, policy, name):
    d = why.Drop("inet", "fw", "forward", rule, 2, policy=policy, node="fw-inv")
    f = finding("c-inv", "syn_ack", "s-inv", "n-inv", "fw-inv", drop=d)
    got = cause.decide(TOPO, "c-inv", session(), f)
    assert got.name == name and got.node == "fw-inv" and got.sentence.startswith("SENTENCE")


def test_the_kernels_reason_at_the_node_the_answer_went_to():
    f = finding("c-rpf", "syn_ack", None, "s-rpf", "srv", unanswered=True, hop=("r-rpf", "s-rpf2"))
    rec = kdrops.Recording(True, kernel="6.1", reasons=True,
                           drops=[kdrops.KernelDrop(1.0, "s-nr", "IP_INNOROUTES"),  # another client's
                                  kdrops.KernelDrop(2.0, "s-rpf2", "IP_RPFILTER", "ip_rcv_finish_core")])
    got = cause.decide(TOPO, "c-rpf", session(), f, {}, rec)
    assert (got.name, got.node) == ("rp-filter", "r-rpf") and "IP_RPFILTER in ip_rcv_finish_core" in got.sentence
    # no answer left the server: no kernel drop is its answer's
    f.answer_hop = None
    assert cause.decide(TOPO, "c-rpf", session(), f, {}, rec).name == "not-enough-evidence"


def test_gre_dropped_as_no_protocol_at_a_nat_is_no_nat_mapping():
    f = finding("c-nat", "gre_to_server", "n-nat", "s-nat", "gw")
    rec = kdrops.Recording(True, reasons=True, drops=[kdrops.KernelDrop(1.0, "n-nat", "IP_NOPROTO")])
    assert cause.decide(TOPO, "c-nat", session("lcp", "OCRP ok"), f, {}, rec).name == "no-nat-mapping"


def icmp_event(by, code, about="GRE"):
    return NS(by=by, ts=1.0, frame=9, sender="server", what="ICMP x", info={
        "type": 3, "code": code, "about": about, "meaning": "m"})


def test_icmp_from_a_nat_and_from_a_router():
    f = finding("c-nat", "gre_to_server", "n-nat", "s-nat", "gw")
    s = session("lcp", "OCRP ok", [icmp_event("10.202.0.1", 2)])
    s.client, s.server, s.gre_only, s.tcp, s.sccrp, s.teardown = "10.202.0.10", "10.202.0.1", False, {"syn_ack": 1}, {}, []
    got = cause.decide(TOPO, "c-nat", s, f, {}, kdrops.Recording(False, "the local engine"))
    assert (got.name, got.node) == ("no-nat-mapping", "gw") and "frame 9" in got.sentence
    s.icmp = [icmp_event("10.204.0.1", 0, "TCP 1723")]
    assert cause.decide(TOPO, "c-nat", s, f, {}).name == "no-route"
    s.icmp = [icmp_event("10.204.0.1", 13, "TCP 1723")]
    assert cause.decide(TOPO, "c-nat", s, f, {}).name == "icmp"


def test_the_nodes_own_route_names_no_route_or_the_reverse_path_filter():
    f = finding("c-nr", "syn_ack", None, "s-nr", "srv", unanswered=True)
    srv = NodeEvidence("srv", route="RTNETLINK answers: Network is unreachable", route_ok=False,
                       route_asked="10.204.0.10 from 10.201.1.10")
    got = cause.decide(TOPO, "c-nr", session(), f, {"srv": srv, "r-nr": NodeEvidence("r-nr")}, None)
    assert (got.name, got.node) == ("no-route", "srv") and "Network is unreachable" in got.sentence
    rpf = NodeEvidence("r-rpf", route="RTNETLINK answers: Invalid cross-device link", route_ok=False)
    f = finding("c-rpf", "syn_ack", None, "s-rpf", "srv", unanswered=True, hop=("r-rpf", "s-rpf2"))
    got = cause.decide(TOPO, "c-rpf", session(), f, {"srv": NodeEvidence("srv", route_ok=True), "r-rpf": rpf})
    assert (got.name, got.node) == ("rp-filter", "r-rpf")
    counted = NodeEvidence("r-rpf", counters={"TcpExt.IPReversePathFilter": 3})
    assert cause.decide(TOPO, "c-rpf", session(), f, {"r-rpf": counted}).name == "rp-filter"


def test_no_evidence_says_so_and_what_was_missing():
    f = finding("c-nr", "syn_ack", None, "s-nr", "srv", unanswered=True)
    got = cause.decide(TOPO, "c-nr", session(), f, {"srv": NodeEvidence("srv", route_ok=True)},
                       kdrops.Recording(True, "kernel 5.10 gives no drop reasons (only the function)"))
    assert got.name == "not-enough-evidence" and "5.10 gives no drop reasons" in got.sentence
    assert got.missing and set(cause.NAMES) == set(cause.CAUSES)


def test_the_answer_never_given_is_the_servers():
    route = why.path(TOPO, "c-nr")
    seen = {s: why.Seen(1, True) for s in route.segments}
    ev = why.vanished(route, seen, "srv")
    assert (ev.what, ev.unanswered, ev.node, ev.never_on) == ("syn_ack", True, "srv", "s-nr")
    assert why.vanished(route, seen) is None  # without the server: as before
    assert "srv never answered" in why.explain(None, ev)


def test_the_path_ends_on_the_network_of_the_address_dialled():
    assert why.path(TOPO, "c-rpf").segments == ["n-rpf", "s-rpf"]
    assert why.dialled(TOPO, "c-nat") == "10.202.1.10"


def test_the_next_hop_of_an_answer():
    assert diagnose.next_hop(TOPO, "srv", "10.205.0.10 from 10.201.2.10 via 10.201.3.1 dev s-rpf2 uid 0") == (
        "r-rpf", "s-rpf2")
    assert diagnose.next_hop(TOPO, "srv", "10.201.5.11 dev s-auth src 10.201.5.10") is None


def test_cause_is_only_for_a_failing_tunnel():
    with pytest.raises(ValueError, match="cause is only for tunnel: fails"):
        topology.ClientExpect(tunnel="up", cause="rule")
    assert topology.ClientExpect(tunnel="fails", cause="rp-filter").cause == "rp-filter"
    with pytest.raises(ValueError):
        topology.ClientExpect(tunnel="fails", cause="bad-luck")


def test_a_routing_loop_from_time_exceeded_or_from_the_nodes_counters_and_route():
    f = finding("c-loop", "syn", "l-mid", "s-loop", "r-l2")
    s = session(icmp=[NS(by="10.208.1.2", ts=1.0, frame=6, sender="server", what="ICMP time exceeded in transit",
                         info={"type": 11, "code": 0, "about": "TCP 1723", "meaning": "m"})])
    s.client, s.server, s.gre_only, s.tcp, s.sccrp, s.teardown = "10.208.0.10", "10.201.7.10", False, {}, {}, []
    assert cause.decide(TOPO, "c-loop", s, f).name == "loop"
    # bullseye: no ICMP seen; the node's TTL counter, and its route sends it back out where it came in
    r_l2 = NodeEvidence("r-l2", counters={"Ip.InHdrErrors": 40}, route_ok=True,
                        route="10.201.7.10 from 10.208.0.10 via 10.208.1.1 dev l-mid iif l-mid",
                        route_asked="10.201.7.10 from 10.208.0.10 iif l-mid")
    assert cause.decide(TOPO, "c-loop", session(), f, {"r-l2": r_l2}).name == "loop"
    # another node's counters (the server's, shared by every client) are not this packet's
    srv = NodeEvidence("srv", counters={"Ip.OutNoRoutes": 5})
    assert cause.decide(TOPO, "c-loop", session(), f, {"srv": srv}).name == "not-enough-evidence"


def test_host_unreachable_is_an_icmp_cause():
    f = finding("c-hu", "syn", "n-hu", "s-hu", "r-hu")
    s = session(icmp=[icmp_event("10.209.0.1", 1, "TCP 1723")])
    s.client, s.server, s.gre_only, s.tcp, s.sccrp, s.teardown = "10.209.0.10", "10.201.8.99", False, {}, {}, []
    got = cause.decide(TOPO, "c-hu", s, f)
    assert (got.name, got.node) == ("icmp", "r-hu")


def test_the_cause_check_passes_only_on_the_cause_expected():
    from lab.diagnosis import checks

    want = topology.ClientExpect(tunnel="fails", cause="rp-filter")
    facts = checks.ClientFacts("c-rpf", "ppp0", "down", cause=cause.Cause("rp-filter", "s", "r-rpf"))
    [ok] = checks.cause(facts, want)
    assert ok.passed and ok.spec == "S32" and ok.name == "c-rpf: fails for cause rp-filter"
    facts.cause = cause.Cause("no-route", "s", "srv")
    assert not checks.cause(facts, want)[0].passed
    facts.cause = None  # the tunnel came up, or was not diagnosed: never a pass
    assert not checks.cause(facts, want)[0].passed

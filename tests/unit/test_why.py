"""Where did a failing tunnel die (lab.why): `nft monitor trace` text parsed, drops found,
the client's path through the topology, what each segment's capture saw, and the sentence.
The trace texts are in the shape nftables 1.0.6 (Debian bookworm) prints: trace_print_hdr,
trace_print_packet, trace_print_rule (`# handle N` with --handle), trace_print_policy."""
from types import SimpleNamespace

import pytest

from lab.diagnosis import checks, why
from lab import pptp
from lab.model import topology
from lab.core.errors import LabError
from lab.model.topology import ClientExpect
from tests import REPO
from tests.unit.pptpgen import LCP_REQ_CLIENT, LCP_REQ_SERVER, Capture, ocrp, ocrq, ppp, sccrp, sccrq

T = "trace id 5fd3a86b inet"
SYN = (f'{T} pptp_lab_trace prerouting packet: iif "internet" ether saddr 02:42:c6:12:1e:14 ether daddr '
       "02:42:c6:12:1e:01 ip saddr 198.18.20.20 ip daddr 10.40.0.10 ip dscp cs0 ip ecn not-ect ip ttl 64 "
       "ip id 48213 ip length 60 tcp sport 41868 tcp dport 1723 tcp flags == syn tcp window 64240\n"
       f"{T} pptp_lab_trace prerouting rule tcp dport 1723 meta nftrace set 1 # handle 2 (verdict continue)\n"
       f"{T} pptp_lab_trace prerouting verdict continue\n"
       f"{T} pptp_lab_trace prerouting policy accept\n")
EDGE_DROPS_GRE = (
    'trace id 0c1d2e3f inet pptp_lab_trace prerouting packet: iif "dmz" ether saddr 02:42:0a:28:00:0a '
    "ether daddr 02:42:0a:28:00:01 ip saddr 10.40.0.10 ip daddr 198.18.20.20 ip dscp cs0 ip ecn not-ect "
    "ip ttl 64 ip id 0 ip protocol gre ip length 84 @th,0,64 0x3001880b00400080\n"
    "trace id 0c1d2e3f inet pptp_lab_trace prerouting rule ip protocol gre meta nftrace set 1 # handle 4 "
    "(verdict continue)\n"
    "trace id 0c1d2e3f inet pptp_lab_trace prerouting verdict continue\n"
    "trace id 0c1d2e3f inet pptp_lab_trace prerouting policy accept\n"
    'trace id 0c1d2e3f inet edge forward packet: iif "dmz" oif "internet" ether saddr 02:42:0a:28:00:0a '
    "ether daddr 02:42:0a:28:00:01 ip saddr 10.40.0.10 ip daddr 198.18.20.20 ip dscp cs0 ip ecn not-ect "
    "ip ttl 63 ip id 0 ip protocol gre ip length 84\n"
    "trace id 0c1d2e3f inet edge forward rule ct state established,related accept # handle 5 "
    "(verdict continue)\n"
    'trace id 0c1d2e3f inet edge forward rule iifname "dmz" ip protocol gre counter packets 3 bytes 252 drop '
    "# handle 7 (verdict drop)\n")


def test_trace_table_is_fixed_text():
    on, off = why.trace_on_script(), why.trace_off_script()
    assert why.TRACE_TABLE == "inet pptp_lab_trace"
    assert on.startswith("add table inet pptp_lab_trace\ndelete table inet pptp_lab_trace\n")
    assert off == "add table inet pptp_lab_trace\ndelete table inet pptp_lab_trace\n"
    for hook in ("prerouting", "output"):
        assert f"type filter hook {hook} priority -350; policy accept;" in on
    for rule in ("tcp dport 1723", "tcp sport 1723", "ip protocol gre"):
        assert on.count(f"{rule} meta nftrace set 1") == 2
    assert on.count("icmp type { destination-unreachable, time-exceeded } meta nftrace set 1") == 2
    assert on.count("{") == on.count("}") == 5  # the table, two chains, two sets of ICMP types


def test_packet_rule_verdict_and_policy_lines():
    evs = why.parse_trace(SYN + EDGE_DROPS_GRE)
    assert [e.kind for e in evs[:4]] == ["packet", "rule", "verdict", "policy"]
    p = evs[0]
    assert (p.id, p.family, p.table, p.chain) == ("5fd3a86b", "inet", "pptp_lab_trace", "prerouting")
    assert (p.iif, p.oif, p.saddr, p.daddr, p.proto, p.sport, p.dport, p.flags) == (
        "internet", None, "198.18.20.20", "10.40.0.10", "tcp", 41868, 1723, ("syn",))
    assert (evs[1].text, evs[1].handle, evs[1].verdict) == ("tcp dport 1723 meta nftrace set 1", 2, "continue")
    assert (evs[2].verdict, evs[3].verdict) == ("continue", "accept")
    gre = [e for e in evs if e.kind == "packet" and e.table == "edge"][0]
    assert (gre.iif, gre.oif, gre.proto, gre.sport, gre.flags) == ("dmz", "internet", "gre", None, ())
    last = evs[-1]
    assert (last.kind, last.text, last.handle, last.verdict) == (
        "rule", 'iifname "dmz" ip protocol gre counter packets 3 bytes 252 drop', 7, "drop")


@pytest.mark.parametrize("flags,want", [
    ("tcp flags == syn tcp window 64240", ("syn",)),
    ("tcp flags == syn | ack tcp window 65160", ("ack", "syn")),
    ("tcp flags syn,ack tcp window 65160", ("ack", "syn")),   # nft 1.0.1 and later
    ("tcp flags == 0x12 tcp window 65160", ("ack", "syn")),
    ("tcp flags == ack tcp window 502", ("ack",)),
])
def test_tcp_flags_as_printed(flags, want):
    (p,) = why.parse_trace(f"{T} t c packet: ip saddr 1.1.1.1 ip daddr 2.2.2.2 tcp sport 1723 "
                           f"tcp dport 40000 {flags}")
    assert p.flags == want


def test_other_shapes_and_garbage():
    text = "\n".join([
        "",
        "# nft --handle monitor trace",
        "Error: syntax error, unexpected newline",
        "trace id zz inet edge forward policy drop",              # not a trace id
        "trace id 1a2b3c4d inet edge",                            # cut off
        "trace id 1a2b3c4d inet edge forward something else",
        "trace id 1a2b3c4d inet edge forward unknown rule handle 9 (verdict drop)",
        "trace id 1a2b3c4d inet edge forward policy drop meta mark 0x00000001 ",
        "trace id 1a2b3c4d inet edge forward conntrack: ct direction original ct state new ct id 264136",
        "trace id 1a2b3c4d ip filter FORWARD rule counter packets 0 bytes 0 jump PPTP (verdict jump PPTP)",
        "  trace id 1a2b3c4d inet edge forward verdict return",
    ])
    evs = why.parse_trace(text)
    assert [(e.kind, e.verdict, e.handle) for e in evs] == [
        ("rule", "drop", 9), ("policy", "drop", None), ("conntrack", "", None),
        ("rule", "jump PPTP", None), ("verdict", "return", None)]
    assert evs[0].text == ""


def test_drop_by_rule_with_packet_and_handle():
    (d,) = why.drops(why.parse_trace(SYN + EDGE_DROPS_GRE))
    assert (d.family, d.table, d.chain, d.handle, d.policy, d.trace_id) == ("inet", "edge", "forward", 7, False,
                                                                            "0c1d2e3f")
    assert d.rule.endswith("ip protocol gre counter packets 3 bytes 252 drop")
    assert d.packet.table == "edge" and d.packet.oif == "internet"  # the drop's own chain's packet line
    assert why.packet_summary(d.packet) == "GRE 10.40.0.10 -> 198.18.20.20"
    assert d.where() == ('table inet edge, chain forward, rule `iifname "dmz" ip protocol gre counter '
                         'packets 3 bytes 252 drop` (handle 7)')
    assert d.action == "dropped"


IPTABLES_NFT = """\
trace id 77aa0011 inet pptp_lab_trace prerouting packet: iif "internet" ether saddr 02:42:c6:12:28:14 \
ether daddr 02:42:c6:12:28:01 ip saddr 198.18.40.20 ip daddr 198.18.40.1 ip dscp cs0 ip ecn not-ect ip ttl 64 \
ip id 1 ip length 60 tcp sport 50514 tcp dport 1723 tcp flags == syn tcp window 64240
trace id 77aa0011 inet pptp_lab_trace prerouting rule tcp dport 1723 meta nftrace set 1 (verdict continue)
trace id 77aa0011 inet pptp_lab_trace prerouting policy accept
trace id 77aa0011 ip nat PREROUTING packet: iif "internet" ether saddr 02:42:c6:12:28:14 \
ether daddr 02:42:c6:12:28:01 ip saddr 198.18.40.20 ip daddr 198.18.40.1 ip dscp cs0 ip ecn not-ect ip ttl 64 \
ip id 1 ip length 60 tcp sport 50514 tcp dport 1723 tcp flags == syn tcp window 64240
trace id 77aa0011 ip nat PREROUTING rule iifname "internet" tcp dport 1723 counter packets 0 bytes 0 \
dnat to 10.60.0.10:1723 (verdict accept)
trace id 77aa0011 ip filter FORWARD packet: iif "internet" oif "lan" ether saddr 02:42:c6:12:28:14 \
ether daddr 02:42:c6:12:28:01 ip saddr 198.18.40.20 ip daddr 10.60.0.10 ip dscp cs0 ip ecn not-ect ip ttl 63 \
ip id 1 ip length 60 tcp sport 50514 tcp dport 1723 tcp flags == syn tcp window 64240
trace id 77aa0011 ip filter FORWARD rule counter packets 0 bytes 0 jump PPTP (verdict jump PPTP)
trace id 88bb0022 inet pptp_lab_trace prerouting packet: iif "lan" ether saddr 02:42:0a:3c:00:0a \
ether daddr 02:42:0a:3c:00:01 ip saddr 10.60.0.10 ip daddr 198.18.40.20 ip protocol gre ip length 84
trace id 77aa0011 ip filter PPTP verdict return
trace id 77aa0011 ip filter FORWARD policy accept
trace id 88bb0022 ip filter FORWARD packet: iif "lan" oif "internet" ether saddr 02:42:0a:3c:00:0a \
ether daddr 02:42:0a:3c:00:01 ip saddr 10.60.0.10 ip daddr 198.18.40.20 ip dscp cs0 ip ecn not-ect ip ttl 63 \
ip id 0 ip protocol gre ip length 84
trace id 88bb0022 ip filter FORWARD rule counter packets 0 bytes 0 jump PPTP (verdict jump PPTP)
trace id 88bb0022 ip filter PPTP rule ip protocol 47 counter packets 0 bytes 0 drop (verdict drop)
"""


def test_iptables_restore_ruleset_seen_through_iptables_nft_interleaved():
    (d,) = why.drops(why.parse_trace(IPTABLES_NFT))
    assert (d.family, d.table, d.chain, d.rule, d.handle) == (
        "ip", "filter", "PPTP", "ip protocol 47 counter packets 0 bytes 0 drop", None)
    assert d.trace_id == "88bb0022" and d.packet.iif == "lan"
    assert why.packet_kind(d.packet) == "gre"
    assert d.where() == "table ip filter, chain PPTP, rule `ip protocol 47 counter packets 0 bytes 0 drop`"


def test_policy_drop_and_reject():
    text = (SYN + f"{T} edge forward packet: iif \"internet\" oif \"dmz\" ip saddr 198.18.20.20 "
            "ip daddr 10.40.0.10 tcp sport 41868 tcp dport 1723 tcp flags == syn\n"
            f"{T} edge forward rule ct state established accept # handle 4 (verdict continue)\n"
            f"{T} edge forward verdict continue\n"
            f"{T} edge forward policy drop\n"
            "trace id 99 inet edge input packet: iif \"internet\" ip saddr 198.18.20.20 ip daddr 198.18.20.1 "
            "tcp sport 41868 tcp dport 1723 tcp flags == syn\n"
            "trace id 99 inet edge input rule tcp dport 1723 reject with tcp reset # handle 9 (verdict drop)\n")
    pol, rej = why.drops(why.parse_trace(text))
    assert pol.policy and pol.rule == "" and pol.where() == "table inet edge, chain forward, policy drop"
    assert why.packet_summary(pol.packet) == "TCP SYN 198.18.20.20:41868 -> 10.40.0.10:1723"
    assert why.packet_kind(pol.packet) == "syn"
    assert rej.action == "rejected" and rej.handle == 9


def test_an_accepted_path_has_no_drop():
    text = SYN + (f"{T} edge forward packet: iif \"internet\" oif \"dmz\" ip saddr 198.18.20.20 "
                  "ip daddr 10.40.0.10 tcp sport 41868 tcp dport 1723 tcp flags == syn\n"
                  f"{T} edge forward rule tcp dport 1723 accept # handle 6 (verdict accept)\n"
                  f"{T} edge postrouting policy accept\n")
    assert why.drops(why.parse_trace(text)) == []


def test_a_reused_trace_id_is_a_new_packet_after_a_drop():
    line = (f'{T} edge forward packet: iif "dmz" oif "internet" ip saddr 10.40.0.10 ip daddr 198.18.20.20 '
            "ip protocol gre ip length 84\n"
            f"{T} edge forward rule ip protocol gre drop # handle 7 (verdict drop)\n")
    a, b = why.drops(why.parse_trace(line + line))
    assert a.packet is not b.packet and b.packet is not None


# ------------------------------------------------------------------ paths
TOPOLOGIES = sorted([*(REPO / "tests" / "integration" / "topologies").glob("*.yaml"),
                     *(REPO / "topologies" / "examples").glob("*.yaml"), *(REPO / "topologies").glob("*.yaml")])


@pytest.mark.parametrize("path", TOPOLOGIES, ids=lambda p: p.name)
def test_every_client_has_a_path_to_its_server(path):
    topo = topology.load(path)
    for client in topo.clients:
        route = why.path(topo, client)
        assert route is not None, client
        server = why.server_node(topo, client)
        assert route.segments[0] == next(iter(topo.nodes[client].interfaces))
        assert route.segments[-1] in topo.nodes[server].interfaces
        assert len(route.nodes) == len(route.segments) - 1
        for i, node in enumerate(route.nodes):
            assert {route.segments[i], route.segments[i + 1]} <= set(topo.nodes[node].interfaces)
        flows = why.flows(topo, client, route)
        assert [f.segment for f in flows] == route.segments


def test_three_legged_client_goes_internet_to_dmz():
    topo = topology.load(REPO / "topologies" / "examples" / "three-legged.yaml")
    route = why.path(topo, "client")
    assert (route.segments, route.nodes) == (["internet", "dmz"], ["fw"])
    assert route.between("dmz", "internet") == "fw"
    assert [(f.client, f.server) for f in why.flows(topo, "client", route)] == [
        ("198.18.30.20", "10.50.0.10"), ("198.18.30.20", "10.50.0.10")]


def test_port_forward_and_ruleset_nat_flows():
    topo = topology.load(REPO / "tests" / "integration" / "topologies" / "port-forward.yaml")
    route = why.path(topo, "client")
    assert why.server_node(topo, "client") == "vpn" and route.nodes == ["nat"]
    assert [(f.segment, f.client, f.server) for f in why.flows(topo, "client", route)] == [
        ("internet", "198.18.40.20", "198.18.40.1"), ("lan", "198.18.40.20", "10.60.0.10")]
    soho = topology.load(REPO / "topologies" / "examples" / "soho-router.yaml")  # NAT by iptables-restore
    route = why.path(soho, "client")
    assert route.segments == ["internet", "lan"]
    assert [(f.client, f.server) for f in why.flows(soho, "client", route)] == [
        ("198.18.10.20", "198.18.10.1"), (None, None)]


# ------------------------------------------------------------------ captures and the sentence
def _capture(gre_from_server: bool) -> Capture:
    c = Capture(client="198.18.30.20", server="10.50.0.10")
    c.handshake().control("client", sccrq()).control("server", sccrp())
    c.control("client", ocrq()).control("server", ocrp())
    c.gre("client", ppp(LCP_REQ_CLIENT))
    if gre_from_server:
        c.gre("server", ppp(LCP_REQ_SERVER))
    return c


FW_DROPS_GRE = EDGE_DROPS_GRE.replace("inet edge", "inet fw").replace("198.18.20.20", "198.18.30.20") \
    .replace("10.40.0.10", "10.50.0.10")


def test_gre_dropped_by_the_firewall_end_to_end(tmp_path):
    topo = topology.load(REPO / "topologies" / "examples" / "three-legged.yaml")
    report = pptp.analyze([_capture(False).write(tmp_path / "internet.pcap"),
                           _capture(True).write(tmp_path / "dmz.pcap")])
    route = why.path(topo, "client")
    seen = why.presence(report, route, why.flows(topo, "client", route))
    assert seen["dmz"] == why.Seen(1, True, True, True, True)
    assert seen["internet"] == why.Seen(1, True, True, True, False)
    sentence, drop = why.why(topo, "client", report, {"fw": SYN + FW_DROPS_GRE})
    assert drop.node == "fw" and drop.handle == 7
    assert sentence == ("GRE to the client seen on dmz, never on internet: dropped by fw, table inet fw, chain "
                        'forward, rule `iifname "dmz" ip protocol gre counter packets 3 bytes 252 drop` '
                        "(handle 7) [GRE 10.50.0.10 -> 198.18.30.20]")
    assert "\n" not in sentence
    found = why.find(topo, "client", report, {"fw": SYN + FW_DROPS_GRE})
    assert (found.sentence, found.drop.handle) == (sentence, 7)
    assert found.path == {"client": "client", "server": "vpn", "segments": ["internet", "dmz"], "nodes": ["fw"],
                          "packet": "GRE to the client", "seen": {"internet": False, "dmz": True}, "at": "fw",
                          "rule": drop.where(), "action": "dropped"}
    # A later window sees none of it.
    later = why.presence(report, route, why.flows(topo, "client", route), since=2e9)
    assert later["dmz"] == why.Seen()


ROUTE = why.TunnelPath(["internet", "dmz"], ["edge"])


def seen(**segs):
    return {s: why.Seen(1, *(w in v for w in why.SEEN)) for s, v in segs.items()}


def test_syn_ack_dropped_on_the_way_back():
    policy = (f'{T} edge forward packet: iif "dmz" oif "internet" ip saddr 10.40.0.10 ip daddr 198.18.20.20 '
              "tcp sport 1723 tcp dport 41868 tcp flags == syn | ack tcp window 65160\n"
              f"{T} edge forward policy drop\n")
    text, d = why.verdict(ROUTE, {"edge": policy, "other": SYN + EDGE_DROPS_GRE},
                          seen(internet={"syn"}, dmz={"syn", "syn_ack"}))
    assert text == ("SYN-ACK seen on dmz, never on internet: dropped by edge, table inet edge, chain forward, "
                    "policy drop [TCP SYN-ACK 10.40.0.10:1723 -> 198.18.20.20:41868]")
    assert d.policy


def test_a_drop_of_another_packet_or_direction_is_not_the_blame():
    # The GRE drop is the server's GRE coming in on dmz; the evidence is the client's GRE lost.
    text, d = why.verdict(ROUTE, {"edge": EDGE_DROPS_GRE},
                          seen(internet={"syn", "syn_ack", "gre_to_server"}, dmz={"syn", "syn_ack"}))
    assert d is None
    assert text == ("GRE to the server seen on internet, never on dmz (between node edge): no rule traced a "
                    "drop there (routing? rp_filter? a conntrack INVALID drop outside nft?)")


def test_path_data_says_only_what_was_found():
    lost = seen(internet={"syn", "syn_ack", "gre_to_server"}, dmz={"syn", "syn_ack"})
    ev = why.vanished(ROUTE, lost)
    assert why.path_data("c", "s", ROUTE, lost, ev, None) == {
        "client": "c", "server": "s", "segments": ["internet", "dmz"], "nodes": ["edge"],
        "packet": "GRE to the server", "seen": {"internet": True, "dmz": False}, "at": "edge", "rule": "",
        "action": ""}
    nothing = seen(internet=set(), dmz=set())
    p = why.path_data("c", None, ROUTE, nothing, why.vanished(ROUTE, nothing), None)
    assert (p["packet"], p["seen"], p["at"], p["server"]) == ("SYN", {"internet": False, "dmz": False}, "", "")
    # A drop and no capture evidence: the node only, no segment claimed seen or not.
    d = why.drops_by_node({"edge": EDGE_DROPS_GRE})[0]
    p = why.path_data("c", "s", ROUTE, {}, None, d)
    assert (p["packet"], p["seen"], p["at"]) == ("GRE 10.40.0.10 -> 198.18.20.20", {}, "edge")
    assert why.path_data("c", "s", ROUTE, {}, None, None) == {}


def test_nothing_sent_and_nothing_lost():
    text, d = why.verdict(ROUTE, {}, seen(internet=set(), dmz=set()))
    assert d is None and text.startswith("SYN never seen, not even on internet: the client sent nothing")
    text, d = why.verdict(ROUTE, {}, seen(internet=set(why.SEEN), dmz=set(why.SEEN)))
    assert text == "no PPTP packet went missing between segments, and no rule traced a drop"
    text, d = why.verdict(ROUTE, {"edge": EDGE_DROPS_GRE}, seen(internet=set(why.SEEN), dmz=set(why.SEEN)))
    assert d.node == "edge" and text.startswith("GRE 10.40.0.10 -> 198.18.20.20: dropped by edge, table inet edge")


# ------------------------------------------------------------------ expect: dropped_by / rule
def test_expect_dropped_by_validation(tmp_path):
    examples = REPO / "topologies" / "examples"
    src = (examples / "three-legged.yaml").read_text()
    (tmp_path / "three-legged.nft").write_text((examples / "three-legged.nft").read_text())

    def load(client_expect: str):
        p = tmp_path / "t.yaml"
        p.write_text(src.replace("client: {tunnel: up, reach: [172.50.0.1, 10.51.0.20]}", client_expect))
        return topology.load(p)

    t = load("client: {tunnel: fails, dropped_by: fw, rule: 'gre drop'}")
    assert t.expect.clients["client"].dropped_by == "fw"
    with pytest.raises(LabError, match=r"expect\.clients\.client\.dropped_by: no firewall, nat or router "
                                       r"node 'vpn'"):
        load("client: {tunnel: fails, dropped_by: vpn}")
    with pytest.raises(LabError, match="dropped_by is only for tunnel: fails"):
        load("client: {tunnel: up, dropped_by: fw}")
    with pytest.raises(LabError, match="rule needs dropped_by"):
        load("client: {tunnel: fails, rule: drop}")


def test_dropped_by_check():
    d = why.drops(why.parse_trace(EDGE_DROPS_GRE))[0]
    d.node = "edge"
    f = checks.ClientFacts("client", "ppp0", "down", None, drop=d, why="GRE ... dropped by edge")
    want = ClientExpect(tunnel="fails", dropped_by="edge", rule="ip protocol gre")
    (c,) = checks.dropped_by(f, want)
    assert c.passed and c.spec == "S22" and c.name == "client: dropped by edge (rule with `ip protocol gre`)"
    assert c.detail == "GRE ... dropped by edge"
    assert c.path == {}
    way = {"client": "client", "segments": ["internet", "dmz"], "nodes": ["edge"], "at": "edge"}
    f.path = way
    assert checks.dropped_by(f, want)[0].path == way  # drawn on the report's topology
    (t,) = checks.tunnel(f, ClientExpect(tunnel="up"))
    assert not t.passed and t.path == way
    (t,) = checks.tunnel(f, ClientExpect(tunnel="fails"))
    assert t.passed and t.path == {}  # failing as expected: dropped_by carries the way
    assert not checks.dropped_by(f, ClientExpect(tunnel="fails", dropped_by="fw"))[0].passed
    assert not checks.dropped_by(f, ClientExpect(tunnel="fails", dropped_by="edge", rule="tcp"))[0].passed
    none = checks.ClientFacts("client", "ppp0", "down", SimpleNamespace(events=[]))
    (c,) = checks.dropped_by(none, ClientExpect(tunnel="fails", dropped_by="edge"))
    assert not c.passed and c.detail == "no traced drop"
    assert checks.dropped_by(f, ClientExpect(tunnel="fails")) == []
    assert [c.name for c in checks.client_checks(f, want)][-1].startswith("client: dropped by edge")

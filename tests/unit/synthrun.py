"""A `pptp-lab test` run of the default topology made without a lab: captures built with
scapy (pptpgen), the manifest `capture stop` writes, and checks judged by lab.checks on the
analysed sessions, as testrun does; the home client's failure traced to the firewall's
rule (lab.why) as testrun's tracing would find it."""
from __future__ import annotations

from pathlib import Path

from scapy.layers.ppp import PPP_LCP_Terminate
from scapy.utils import wrpcap

from lab.up import capture
from lab.diagnosis import checks, why
from lab import pptp
from lab.model import topology
from lab.diagnosis.checks import Check
from lab.reports.runfiles import Result
from tests import REPO

from . import pptpgen as g

SERVER = "192.0.2.10"
# fw drops the server's GRE on its way back to the home client (through the NAT's outside).
FW_TRACE = ('trace id 0c1d2e3f inet fw forward packet: iif "perimeter" oif "internet" ip saddr 192.0.2.10 '
            "ip daddr 198.51.100.2 ip dscp cs0 ip ecn not-ect ip ttl 63 ip id 0 ip protocol gre ip length 84\n"
            'trace id 0c1d2e3f inet fw forward rule iifname "perimeter" ip protocol gre drop # handle 7 '
            "(verdict drop)\n")
LONG = "nodes not running: " + "/".join(f"node-{i:02d}" for i in range(30))  # no space to wrap at


def _stuck_in_lcp(client: str) -> g.Capture:
    """The server never answers in GRE: the client asks for LCP three times."""
    c = g.Capture(client=client, server=SERVER).handshake()
    c.control("client", g.sccrq()).control("server", g.sccrp()).control("client", g.ocrq()).control("server", g.ocrp())
    for _ in range(3):
        c.t += 1.0  # pppd asks again after its restart timer
        c.gre("client", g.ppp(g.LCP_REQ_CLIENT))
    return c


def _refused(client: str) -> g.Capture:
    """MS-CHAPv2 refuses the password (E=691), then the server hangs up."""
    c = g.Capture(client=client, server=SERVER, cport=40999).handshake()
    c.control("client", g.sccrq()).control("server", g.sccrp()).control("client", g.ocrq()).control("server", g.ocrp())
    c.gre("client", g.ppp(g.LCP_REQ_CLIENT))
    c.gre("server", g.ppp(g.LCP_REQ_SERVER))
    c.gre("server", g.ppp(g.lcp_ack(g.LCP_REQ_CLIENT)))
    c.gre("client", g.ppp(g.lcp_ack(g.LCP_REQ_SERVER)))
    c.gre("server", g.ppp(g.chap(4, message=b"E=691 R=0 C=0123456789ABCDEF0123456789ABCDEF V=3 "
                                            b"M=Authentication failed for this user name")))
    c.gre("server", g.ppp(PPP_LCP_Terminate(code=5, id=3)))
    c.gre("client", g.ppp(PPP_LCP_Terminate(code=6, id=3)))
    return c


def traced(topo, client: str, trace: str, node: str = "fw") -> dict:
    """ClientFacts' drop, why and path for a client whose captures showed every packet up to
    the server's GRE, seen on the server's side of `node` and not past it."""
    route = why.path(topo, client)
    before = route.segments[:route.nodes.index(node) + 1]
    seen = {s: why.Seen(1, True, True, True, s not in before) for s in route.segments}
    sentence, drop = why.verdict(route, {node: trace}, seen)
    return {"drop": drop, "why": sentence, "path": why.path_data(
        client, why.server_node(topo, client), route, seen, why.vanished(route, seen), drop)}


def captures(run: Path) -> list[Path]:
    """internet.pcap: the client's healthy session, torn down by the client, and a refused
    login from behind the NAT; home.pcap: the home client stuck in LCP."""
    ok = g.full_session(g.Capture(client="198.51.100.10", server=SERVER), teardown="client")
    refused = _refused("198.51.100.2")
    for p in refused.frames:
        p.time += 10  # after the first session
    wrpcap(str(run / "internet.pcap"), ok.frames + refused.frames)
    return [run / "internet.pcap", _stuck_in_lcp("192.168.1.10").write(run / "home.pcap")]


def result(base: Path) -> Result:
    """A finished run in base/default/<run-id> (not yet written: runfiles.write does that)."""
    topo = topology.load(REPO / "topologies" / "default.yaml")
    run = base / "default" / "20250101-120000"
    run.mkdir(parents=True)
    files = captures(run)
    capture.write_manifest(run, topo.name, run.name, files, {"internet": "br-1", "home": "br-2"},
                           1_700_000_000.0, 1_700_000_100.0)
    analysed = pptp.analyze(sorted(run.glob("*.pcap")))

    def session(file: str, client: str):
        return next(s for s in analysed.sessions if Path(s.source).name == file and s.client == client)

    expect = topo.expect.clients
    found = [Check("lab up", "", True, "default on the vm engine: 6 nodes running", 12.5)]
    found += checks.client_checks(checks.ClientFacts(
        "client", "ppp0", "up", session("internet.pcap", "198.51.100.10"),
        {"10.10.0.20": (True, "rtt min/avg/max/mdev = 0.1/0.2/0.3/0.1 ms")}), expect["client"])
    found += checks.client_checks(checks.ClientFacts(
        "home-client", "ppp0", "down", session("home.pcap", "192.168.1.10"),
        {"10.10.0.20": (False, "")}, **traced(topo, "home-client", FW_TRACE)), expect["home-client"])
    found.append(Check("a check with a long detail", "", False, LONG))
    ran = {"kernel": "6.1.0-37-amd64", "ppp": "2.4.9-1+1.1+b1", "pptpd": "1.4.0-12", "pptp-linux": "1.10.0-1+b1"}
    return Result(topo, found, run, analysed, versions={n: ran for n in ("client", "home-client", "vpn")})

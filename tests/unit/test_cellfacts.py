"""lab.reports.cellfacts: the facts a matrix compares between passing cells (timing facts
and facts that differ between runs of one cell left out), on scripted sessions and on the
third-party captures (read in place)."""
from scapy.layers.ppp import PPP_LCP_Echo
from scapy.layers.pptp import PPTPCallClearRequest, PPTPCallDisconnectNotify

from lab.reports import cellfacts
from lab import pptp
from lab.model import topology
from tests import REPO

from . import pptpgen as g
from .test_captures import CAPTURES, needs_captures

SERVER = "192.0.2.10"  # the default topology's vpn, on its perimeter segment


def _analysed(tmp_path, name: str, *captures: tuple[str, g.Capture]) -> pptp.Report:
    folder = tmp_path / name
    folder.mkdir()
    return pptp.analyze([c.write(folder / f"{seg}.pcap") for seg, c in captures])


def _echoes(c: g.Capture, every: list[float]) -> g.Capture:
    """The server asks for a PPTP echo after each gap; the client answers."""
    for i, gap in enumerate(every, 1):
        c.t += gap
        c.control("server", g.PPTPEchoRequest(identifier=i))
        c.control("client", g.PPTPEchoReply(identifier=i, result_code=1))
    return c


def _up(client: str) -> g.Capture:
    return g.full_session(g.Capture(client=client, server=SERVER), teardown=None)


def _call(client: str, cport: int, call_id: int, server_call: int = 0) -> g.Capture:
    """Control connection and an answered call, nothing more (what the NAT facts read)."""
    c = g.Capture(client=client, server=SERVER, cport=cport).handshake()
    c.control("client", g.sccrq()).control("server", g.sccrp())
    return c.control("client", g.ocrq(call_id)).control("server", g.ocrp(server_call, peer=call_id))


def test_classifiers_say_how_ids_are_picked_not_which():
    assert cellfacts.client_ids([]) == "none"
    assert cellfacts.client_ids([0, 0]) == "always 0"
    assert cellfacts.client_ids([4711]) == cellfacts.client_ids([29]) == "non-zero"
    assert cellfacts.client_ids([7, 8, 9]) == "consecutive"
    assert cellfacts.client_ids([40000, 12, 9001]) == cellfacts.client_ids([3, 60000]) \
        == "not in sequence (random-looking)"
    assert cellfacts.client_ids([5, 5]) == "repeated"
    assert cellfacts._seq([0, 128, 256]) == "0, 128, 256 (step 128)"
    assert cellfacts._seq(list(range(10))).endswith(", ... (step 1)")


def _lcp_echo(c: g.Capture, asks: str) -> g.Capture:
    """`asks`'s pppd sends an LCP Echo-Request, the other answers: the last echo is a reply
    from the other side."""
    other = "server" if asks == "client" else "client"
    c.t += 30
    c.gre(asks, g.ppp(PPP_LCP_Echo(code=9, id=1, magic_number=0x9999)))
    return c.gre(other, g.ppp(PPP_LCP_Echo(code=10, id=1, magic_number=0x1234)))


def test_facts_of_a_cell_teardown_phase_and_echo_timing(tmp_path):
    topo = topology.load(REPO / "topologies" / "default.yaml")
    client = "198.51.100.10"
    a = _analysed(tmp_path, "a", ("perimeter", g.hang_up(_echoes(_up(client), [60.2, 59.9]), "client")))
    b = _analysed(tmp_path, "b", ("perimeter", g.hang_up(_echoes(_up(client), [59.8, 60.1, 30.0]), "server")))
    fa, fb = cellfacts.facts(a, topo), cellfacts.facts(b, topo)
    where = f"{client} → {SERVER}"
    assert fa[f"server {SERVER}: call IDs"] == fb[f"server {SERVER}: call IDs"] == str(g.SERVER_CALL)
    assert fa[f"{where}: client call IDs"] == "non-zero"
    assert fa[f"{where}: phase"] == fb[f"{where}: phase"] == "teardown"
    assert fa[f"{where}: teardown"] == "by the client (LCP Terminate-Request)"
    assert fb[f"{where}: teardown"] == "by the server (LCP Terminate-Request)"
    assert fa[f"{where}: teardown steps"].startswith("client LCP Terminate-Request → server ")
    assert "client CCRQ → server CDN" in fa[f"{where}: teardown steps"]
    assert fa[f"{where}: PPTP echo"] == "client none; server 2, every 60 s, all answered"  # jitter rounded away
    assert fb[f"{where}: PPTP echo"] == "client none; server 3, every 60, 30 s, all answered"
    assert fa[f"{where}: LCP echo"] == "none seen"
    # the NAT of the default topology carried no call in these captures
    assert fa["NAT nat: outside call ID = masqueraded TCP port"] == "no calls"
    assert [f for f in fa if cellfacts.timing(f)] == [f"{where}: {w}" for w in ("teardown steps", "PPTP echo",
                                                                                 "LCP echo")]

    # The teardown's initiator is a difference; its steps and the echoes differ too, by timing.
    diff = dict(cellfacts.differences({"kernel=bullseye": [fa], "kernel=trixie": [fb]}))
    assert set(diff) == {f"{where}: teardown"}
    assert diff[f"{where}: teardown"] == {"kernel=bullseye": fa[f"{where}: teardown"],
                                          "kernel=trixie": fb[f"{where}: teardown"]}
    assert cellfacts.differences({"x": [fa], "y": [dict(fa)]}) == []
    only = cellfacts.differences({"x": [fa], "y": [{}]})
    assert len(only) == len(fa) - 3 and only[0][1]["y"] == cellfacts.MISSING


def test_which_side_echoed_last_is_timing_never_a_difference(tmp_path):
    """The noise of issue #28: whichever pppd's echo timer fired first sent the last Echo-Request."""
    topo = topology.load(REPO / "topologies" / "default.yaml")
    client, where = "198.51.100.10", f"198.51.100.10 → {SERVER}"
    runs = {side: cellfacts.facts(_analysed(tmp_path, side, ("perimeter", _lcp_echo(_up(client), side))), topo)
            for side in ("client", "server")}
    assert runs["client"][f"{where}: LCP echo"] == "last LCP Echo-Reply from the server"
    assert runs["server"][f"{where}: LCP echo"] == "last LCP Echo-Reply from the client"
    assert runs["client"][f"{where}: phase"] == "data"
    assert cellfacts.differences({"bookworm": [runs["client"]], "trixie": [runs["server"]]}) == []
    # A stable fact beside it still shows: the trixie cell's tunnel was torn down by the server.
    down = cellfacts.facts(_analysed(tmp_path, "down", ("perimeter", g.hang_up(_lcp_echo(_up(client), "client"),
                                                                               "server"))), topo)
    diff = dict(cellfacts.differences({"bookworm": [runs["server"]], "trixie": [down]}))
    assert set(diff) == {f"{where}: phase", f"{where}: teardown"}
    assert diff[f"{where}: phase"] == {"bookworm": "data", "trixie": "teardown"}
    assert diff[f"{where}: teardown"]["bookworm"] == "none seen"


def test_a_fact_that_differs_between_two_runs_of_one_cell_is_dropped(tmp_path):
    topo = topology.load(REPO / "topologies" / "default.yaml")
    where = f"198.51.100.10 → {SERVER}"

    def run(name: str, by: str) -> dict:
        return cellfacts.facts(_analysed(tmp_path, name, ("perimeter", g.full_session(
            g.Capture(client="198.51.100.10", server=SERVER), teardown=by))), topo)

    first, second, other = run("1", "client"), run("2", "server"), run("3", "server")
    assert cellfacts.unsteady([first, second]) == [f"{where}: teardown", f"{where}: teardown steps"]
    assert cellfacts.unsteady([second, other]) == [] and cellfacts.unsteady([first]) == []
    # Run once each, the cells differ in who tore down; bullseye run twice shows it is a race.
    assert [f for f, _ in cellfacts.differences({"bullseye": [first], "trixie": [other]})] == [f"{where}: teardown"]
    assert cellfacts.differences({"bullseye": [first, second], "trixie": [other]}) == []
    # A fact that one run lacks differs too (MISSING): a redial's extra session, say.
    assert "NAT nat: outside call IDs" in cellfacts.unsteady([first, {k: v for k, v in first.items()
                                                                       if not k.startswith("NAT")}])


def test_a_cells_versions_as_lines_per_node_where_they_differ():
    same = {"kernel": "6.1.0-37-amd64", "ppp": "2.4.9-1+1.1+b1", "pptpd": "1.4.0-12", "pptp-linux": "1.10.0-1+b1"}
    assert cellfacts.versions({"client": same, "vpn": same}) == [
        "6.1.0-37-amd64", "ppp 2.4.9-1+1.1+b1", "pptpd 1.4.0-12", "pptp-linux 1.10.0-1+b1"]
    newer = {**same, "ppp": "2.5.2-1+1", "pptpd": "1.5.0-1"}
    assert cellfacts.versions({"vpn": newer, "client": same, "home-client": same}) == [
        "6.1.0-37-amd64", "ppp 2.4.9-1+1.1+b1 (client, home-client), 2.5.2-1+1 (vpn)",
        "pptpd 1.4.0-12 (client, home-client), 1.5.0-1 (vpn)", "pptp-linux 1.10.0-1+b1"]
    assert cellfacts.versions({}) == [] and cellfacts.versions({"vpn": {"ppp": "2.4.9"}}) == ["ppp 2.4.9"]


def test_nat_helper_outside_call_id_is_the_masqueraded_port_or_not(tmp_path):
    topo = topology.load(REPO / "topologies" / "default.yaml")
    outside = "198.51.100.2"  # nat's address on internet, its outside

    def cell(name: str, outside_ids: list[int]) -> dict:
        inside, out = g.Capture(client="192.168.1.10", server=SERVER), None
        frames_in, frames_out = [], []
        for i, oid in enumerate(outside_ids):
            port = 40000 + i
            a, b = _call("192.168.1.10", 50000 + i, 1000 + i, 128 * i), _call(outside, port, oid, 128 * i)
            for cap, into in ((a, frames_in), (b, frames_out)):
                for p in cap.frames:
                    p.time += 10 * i
                into += cap.frames
        inside.frames, out = frames_in, g.Capture(client=outside, server=SERVER)
        out.frames = frames_out
        return cellfacts.facts(_analysed(tmp_path, name, ("home", inside), ("internet", out)), topo)

    linux = cell("linux", [40000, 40001])   # nf_nat_pptp: the outside call ID is the TCP port
    other = cell("other", [7, 7])           # an editor that keeps the ID: both calls collide
    assert linux["NAT nat: outside call ID = masqueraded TCP port"] == "yes, all"
    assert linux["NAT nat: outside call IDs"] == "2 unique"
    assert linux["NAT nat: client call ID rewritten"] == "yes, all"
    assert other["NAT nat: outside call ID = masqueraded TCP port"] == "none"
    assert other["NAT nat: outside call IDs"] == "repeated"
    assert other["NAT nat: client call ID rewritten"] == "yes, all"  # 1000, 1001 inside
    assert cell("half", [40000, 9])["NAT nat: outside call ID = masqueraded TCP port"] == "1 of 2"
    diff = dict(cellfacts.differences({"kernel=bookworm": [linux], "kernel=trixie": [other]}))
    assert set(diff) == {"NAT nat: outside call ID = masqueraded TCP port", "NAT nat: outside call IDs"}


@needs_captures
def test_facts_of_third_party_captures_read_in_place():
    ndpi = cellfacts.facts(pptp.analyze([CAPTURES / "ndpi-pptp.pcap"]))
    where = "192.168.43.22 → 191.101.61.1 on ndpi-pptp"
    assert ndpi[f"{where}: client call IDs"] == "always 0"  # an old pptp-linux
    assert ndpi["server 191.101.61.1 on ndpi-pptp: call IDs"] == "11755"
    # the client closed TCP before the server's CDN came, then reset it
    assert ndpi[f"{where}: teardown"] == "by the client (CCRQ)"
    assert ndpi[f"{where}: teardown steps"] == "client CCRQ → client TCP FIN → server CDN → client TCP RST"
    cisco = cellfacts.facts(pptp.analyze([CAPTURES / "packetlife-PPTP_negotiation.cap"]))
    where = "20.0.0.2 → 20.0.0.1 on packetlife-PPTP_negotiation"
    assert (cisco["server 20.0.0.1 on packetlife-PPTP_negotiation: call IDs"], cisco[f"{where}: client call IDs"]) \
        == ("24", "non-zero")
    assert cisco[f"{where}: teardown"] == "none seen"
    assert cisco[f"{where}: PPTP echo"] == "client none; server none"
    # GRE alone (no control connection) gives no facts: nothing to compare
    assert cellfacts.facts(pptp.analyze([CAPTURES / "chapcrack-pptp.cap"])) == {}

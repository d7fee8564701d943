"""lab.cellfacts: the facts a matrix compares between passing cells, on scripted sessions
and on the third-party captures (read in place)."""
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


def test_teardown_order_and_echo_timing_differ_where_the_cells_did(tmp_path):
    topo = topology.load(REPO / "topologies" / "default.yaml")
    client = "198.51.100.10"
    a = _analysed(tmp_path, "a", ("perimeter", g.hang_up(_echoes(_up(client), [60.2, 59.9]), "client")))
    b = _analysed(tmp_path, "b", ("perimeter", g.hang_up(_echoes(_up(client), [59.8, 60.1, 30.0]), "server")))
    fa, fb = cellfacts.facts(a, topo), cellfacts.facts(b, topo)
    where = f"{client} → {SERVER}"
    assert fa[f"{where}: server call IDs"] == fb[f"{where}: server call IDs"] == str(g.SERVER_CALL)
    assert fa[f"{where}: client call IDs"] == "non-zero"
    assert fa[f"{where}: teardown"].startswith("by the client: client LCP Terminate-Request → server ")
    assert "client CCRQ → server CDN" in fa[f"{where}: teardown"]
    assert fb[f"{where}: teardown"].startswith("by the server: server LCP Terminate-Request")
    assert fa[f"{where}: PPTP echo"] == "client none; server 2, every 60 s, all answered"  # jitter rounded away
    assert fb[f"{where}: PPTP echo"] == "client none; server 3, every 60, 30 s, all answered"
    assert fa[f"{where}: LCP echo"] == "none seen"
    # the NAT of the default topology carried no call in these captures
    assert fa["NAT nat: outside call ID = masqueraded TCP port"] == "no calls"

    diff = dict(cellfacts.differences({"kernel=bullseye": fa, "kernel=trixie": fb}))
    assert set(diff) == {f"{where}: teardown", f"{where}: PPTP echo"}
    assert diff[f"{where}: PPTP echo"]["kernel=trixie"] == fb[f"{where}: PPTP echo"]
    assert cellfacts.differences({"x": fa, "y": dict(fa)}) == []
    only = cellfacts.differences({"x": fa, "y": {}})
    assert len(only) == len(fa) and only[0][1]["y"] == cellfacts.MISSING


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
    diff = dict(cellfacts.differences({"kernel=bookworm": linux, "kernel=trixie": other}))
    assert set(diff) == {"NAT nat: outside call ID = masqueraded TCP port", "NAT nat: outside call IDs"}


@needs_captures
def test_facts_of_third_party_captures_read_in_place():
    ndpi = cellfacts.facts(pptp.analyze([CAPTURES / "ndpi-pptp.pcap"]))
    where = "192.168.43.22 → 191.101.61.1 on ndpi-pptp"
    assert ndpi[f"{where}: client call IDs"] == "always 0"  # an old pptp-linux
    assert ndpi[f"{where}: server call IDs"] == "11755"
    # the client closed TCP before the server's CDN came, then reset it
    assert ndpi[f"{where}: teardown"] == "by the client: client CCRQ → client TCP FIN → server CDN → client TCP RST"
    cisco = cellfacts.facts(pptp.analyze([CAPTURES / "packetlife-PPTP_negotiation.cap"]))
    where = "20.0.0.2 → 20.0.0.1 on packetlife-PPTP_negotiation"
    assert (cisco[f"{where}: server call IDs"], cisco[f"{where}: client call IDs"]) == ("24", "non-zero")
    assert cisco[f"{where}: teardown"] == "none seen"
    assert cisco[f"{where}: PPTP echo"] == "client none; server none"
    # GRE alone (no control connection) gives no facts: nothing to compare
    assert cellfacts.facts(pptp.analyze([CAPTURES / "chapcrack-pptp.cap"])) == {}

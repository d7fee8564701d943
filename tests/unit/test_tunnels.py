"""`pptp-lab status`'s per-tunnel figures (lab.tunnels): age, last echo, GRE and losses each
way, and up / stalled / down, from captures built with scapy and third-party captures
(../shared/captures, read in place). No Docker."""
import io
import json
import tarfile
from types import SimpleNamespace

import pytest
from scapy.layers.ppp import PPP, PPP_LCP_Echo

from lab.up import capture, lifecycle
from lab.core import names
from lab import pptp
from lab.model import tunnels
from lab.up.lifecycle import NodeStatus
from lab.model.tunnels import STALL, Tunnel

from . import pptpgen as g
from .test_captures import cap, needs_captures


def after(c, seconds):
    """The capture `seconds` later (each packet adds 10 ms more)."""
    c.t += seconds
    return c


def seen(c, tmp_path, now, name="home.pcap"):
    return tunnels.summarise(pptp.analyze([c.write(tmp_path / name)]).sessions, now)


def tunnel_up(data_frames=3):
    """A healthy call, PPP up, a little data both ways, no teardown."""
    return g.full_session(data_frames=data_frames, teardown=None)


def lcp_echo(code, ident=1):
    return bytes(PPP() / PPP_LCP_Echo(code=code, id=ident, magic_number=0x9999))


# ------------------------------------------------------------- the decision

@pytest.mark.parametrize("pppd, unanswered, want", [
    ("up", None, "up"),              # idle, or the server's GRE came after the client's
    ("up", 0.4, "up"),               # the answer is on its way (acks come within 0.5 s)
    ("up", STALL - 0.1, "up"),
    ("up", STALL, "stalled"),        # the client's GRE has gone unanswered for STALL seconds
    ("up", 3600.0, "stalled"),
    ("down", None, "down"),          # pppd has no address: down, whatever the capture says
    ("down", 3600.0, "down"),
])
def test_state(pppd, unanswered, want):
    assert tunnels.state(pppd, unanswered) == want


def test_ago():
    assert [tunnels.ago(s) for s in (None, 0, 9.9, 59, 60, 302.4, 3600, 11220, 86400 * 2 + 3600 * 5)] == \
        ["", "0s", "9s", "59s", "1m00s", "5m02s", "1h00m", "3h07m", "2d05h"]


# ------------------------------------------------------------- figures from a capture

def test_figures_of_a_tunnel_that_is_up(tmp_path):
    c = tunnel_up(data_frames=3)
    after(c, 5).gre("server", lcp_echo(9))
    c.gre("client", lcp_echo(10))
    c.gre("server", None)  # the server acks the reply: nothing of the client's waits
    last = c.t
    after(c, 20).control("client", g.PPTPEchoRequest(identifier=7))
    c.control("server", g.PPTPEchoReply(identifier=7))
    (t,) = seen(c, tmp_path, now=c.t + 30)["198.51.100.10"]
    s = pptp.analyze([tmp_path / "home.pcap"]).sessions[0]
    ocrp = next(e.ts for e in s.events if e.what == "OCRP")
    assert t.seen_on == "home" and t.call_ids == f"{g.CLIENT_CALL}/{g.SERVER_CALL}"
    assert t.age_s == pytest.approx(c.t + 30 - ocrp, abs=0.1)
    assert (t.last_echo, t.last_echo_s) == ("PPTP Echo-Reply from server", 30.0)
    call = s.calls[0]
    assert (t.gre_out, t.gre_in) == (call.to_server.packets, call.to_client.packets) == (11, 13)
    assert (t.lost_out, t.lost_in) == (0, 0)
    assert t.last_gre_in_s == pytest.approx(c.t + 30 - last, abs=0.1)
    assert t.unanswered_s is None
    assert tunnels.state("up", t.unanswered_s) == "up"


def test_the_last_lcp_echo_counts_too(tmp_path):
    c = tunnel_up()
    after(c, 1).control("client", g.PPTPEchoRequest(identifier=1))
    after(c, 10).gre("client", lcp_echo(9, 4))
    (t,) = seen(c, tmp_path, now=c.t + 2)[g.CLIENT]
    assert (t.last_echo, t.last_echo_s) == ("LCP Echo-Request from client", 2.0)


def test_losses_each_way(tmp_path):
    c = tunnel_up()
    c.gre_seq["server"] += 3  # three of the server's packets never reach this segment
    c.gre("server", g.mppe_data())
    c.gre("client", g.mppe_data())
    (t,) = seen(c, tmp_path, now=c.t)[g.CLIENT]
    assert (t.lost_out, t.lost_in) == (0, 3)


# ------------------------------------------------------------- stalled, idle, one-way

def test_client_traffic_that_gets_nothing_back_is_a_stall(tmp_path):
    """NAT state lost: the client keeps sending (MPPE data, the analyser's fast path), not one
    GRE packet comes back."""
    c = tunnel_up()
    c.gre("server", None)  # the last thing that came back
    back = c.t
    first = c.t + 1
    for _ in range(15):
        after(c, 1).gre("client", g.mppe_data())
    (t,) = seen(c, tmp_path, now=c.t + 0.5)[g.CLIENT]
    assert t.unanswered_s == pytest.approx(c.t + 0.5 - first, abs=0.1) and t.unanswered_s >= STALL
    assert t.last_gre_in_s == pytest.approx(c.t + 0.5 - back, abs=0.1)
    assert tunnels.state("up", t.unanswered_s) == "stalled"


@pytest.mark.parametrize("payload, gap, want, state", [
    (lcp_echo(9), 5, 11.0, "stalled"),  # pppd's LCP echoes (the analyser's slow path), nothing back
    (g.mppe_data(), 1, 3.0, "up"),      # a moment of one-way data: no stall yet
])
def test_one_way_runs(tmp_path, payload, gap, want, state):
    c = tunnel_up()
    for _ in range(3):
        after(c, gap).gre("client", payload)
    (t,) = seen(c, tmp_path, now=c.t + 1)[g.CLIENT]
    assert t.unanswered_s == pytest.approx(want, abs=0.1)
    assert tunnels.state("up", t.unanswered_s) == state


def test_one_way_traffic_answered_by_acks_alone_is_up(tmp_path):
    """A one-way stream (say UDP to the server): the server's GRE carries only acks back."""
    c = tunnel_up()
    for _ in range(30):
        after(c, 1).gre("client", g.mppe_data())
        after(c, 0.3).gre("server", None)
    after(c, 1).gre("client", g.mppe_data())
    (t,) = seen(c, tmp_path, now=c.t + 0.1)[g.CLIENT]
    assert t.unanswered_s == pytest.approx(0.1, abs=0.05)
    assert tunnels.state("up", t.unanswered_s) == "up"


@pytest.mark.parametrize("last", ["server data", "client ack", "server ack of client data"])
def test_an_idle_tunnel_is_up_whoever_sent_last(tmp_path, last):
    """Nothing either way for an hour: not stalled, whichever packet was the last."""
    c = tunnel_up()
    if last == "client ack":
        c.gre("server", g.mppe_data())
        c.gre("client", None)  # an ack-only packet asks for nothing back
    elif last == "server ack of client data":
        c.gre("client", g.mppe_data())
        c.gre("server", None)
    (t,) = seen(c, tmp_path, now=c.t + 3600)[g.CLIENT]
    assert t.unanswered_s is None and t.last_gre_in_s >= 3600
    assert tunnels.state("up", t.unanswered_s) == "up"


def test_the_server_answering_ends_a_stall(tmp_path):
    c = tunnel_up()
    for _ in range(20):
        after(c, 1).gre("client", g.mppe_data())
    c.gre("server", None)  # the NAT learnt the mapping again
    (t,) = seen(c, tmp_path, now=c.t + 1)[g.CLIENT]
    assert t.unanswered_s is None and t.last_gre_in_s == 1.0


# ------------------------------------------------------------- which call, which capture

def test_the_client_segment_is_preferred_and_a_nat_hides_the_client(tmp_path):
    """The same call seen on the client's own segment (stalled there) and beyond a NAT
    (where the client is the NAT's address): the client's row reads its own segment."""
    inside = tunnel_up()
    for _ in range(15):
        after(inside, 1).gre("client", g.mppe_data())
    outside = g.full_session(g.Capture(client="198.51.100.2"), teardown=None)
    files = [inside.write(tmp_path / "home.pcap"), outside.write(tmp_path / "internet.pcap")]
    found = tunnels.summarise(pptp.analyze(files).sessions, now=inside.t)
    assert [t.seen_on for t in found[g.CLIENT]] == ["home"]
    assert [t.seen_on for t in found["198.51.100.2"]] == ["internet"]
    t = tunnels.nearest(found, {"home": g.CLIENT})
    assert t.seen_on == "home" and t.unanswered_s >= STALL


def test_without_a_nat_the_nearest_capture_wins(tmp_path):
    """A client seen with its own address on two segments (routed, no NAT): its own first,
    whatever the order of the files."""
    near = tunnel_up()
    for _ in range(15):
        after(near, 1).gre("client", g.mppe_data())
    far = tunnel_up()  # the same call further on, where GRE still flows both ways
    files = [far.write(tmp_path / "perimeter.pcap"), near.write(tmp_path / "internet.pcap")]
    found = tunnels.summarise(pptp.analyze(files).sessions, now=near.t)
    assert sorted(t.seen_on for t in found[g.CLIENT]) == ["internet", "perimeter"]
    assert tunnels.nearest(found, {"internet": g.CLIENT}).seen_on == "internet"
    assert tunnels.nearest(found, {"elsewhere": g.CLIENT}).seen_on in ("internet", "perimeter")
    assert tunnels.nearest(found, {"internet": "10.9.9.9"}) is None


def test_a_client_that_dialled_again_shows_its_latest_call(tmp_path):
    first = g.full_session()  # torn down
    again = g.Capture(cport=g.CPORT + 1)
    again.t = first.t + 60
    g.full_session(again, teardown=None)
    again.frames = first.frames + again.frames
    (t,) = seen(again, tmp_path, now=again.t)[g.CLIENT]
    assert t.age_s < 1  # the second call's, not the first's (about 61 s)


def test_fill_puts_the_figures_on_the_row_and_decides():
    t = Tunnel("home", "7/9", 60.0, 5.0, "PPTP Echo-Reply from server", 10, 9, 0, 1, 30.0, 25.0)
    st = NodeStatus("c", "pptp-client", "running", {"home": "192.168.1.10"}, "up")
    tunnels.fill(st, t)
    assert (st.tunnel, st.call_ids, st.gre_out, st.unanswered_s, st.seen_on) == ("stalled", "7/9", 10, 25.0, "home")
    down = NodeStatus("c", "pptp-client", "running", {}, "down")
    tunnels.fill(down, t)
    assert down.tunnel == "down" and down.gre_in == 9
    bare = NodeStatus("c", "pptp-client", "running", {}, "up")
    tunnels.fill(bare, None)  # no capture, or the call is not in it: pppd's word
    assert bare.tunnel == "up" and bare.gre_out is None


# ------------------------------------------------------------- third-party captures

@needs_captures
def test_packetlife_cisco_call():
    """Cisco server, PAP, unencrypted data; no echo in the file."""
    sessions = pptp.analyze([cap("packetlife-PPTP_negotiation.cap")]).sessions
    (s,) = sessions
    call = s.calls[0]
    end = s.end
    (t,) = tunnels.summarise(sessions, now=end + 5)["20.0.0.2"]
    assert t.seen_on == "packetlife-PPTP_negotiation" and t.call_ids == "1/24"
    assert (t.gre_out, t.gre_in) == (call.to_server.packets, call.to_client.packets)
    assert t.gre_out > 0 and t.gre_in > 0
    assert (t.lost_out, t.lost_in) == (call.to_server.lost, call.to_client.lost)
    assert t.age_s == pytest.approx(end + 5 - call.reply_ts, abs=0.1) and call.reply_ts > s.start
    assert (t.last_echo, t.last_echo_s) == ("", None)
    assert t.last_gre_in_s == pytest.approx(end + 5 - call.to_client.last_ts, abs=0.1)


@needs_captures
def test_ndpi_call_without_gre():
    """Control connection and a call, no GRE captured: nothing to count, nothing waits."""
    (t,) = tunnels.summarise(pptp.analyze([cap("ndpi-pptp.pcap")]).sessions, now=2e9)["192.168.43.22"]
    assert t.call_ids == "0/11755" and (t.gre_out, t.gre_in, t.last_gre_in_s, t.unanswered_s) == (0, 0, None, None)


@needs_captures
def test_chapcrack_gre_only_ages_from_the_first_packet():
    """GRE without its control connection (pptpd to its client): no OCRP, so the age runs
    from the session's first packet; the server's GRE is what was seen."""
    sessions = pptp.analyze([cap("chapcrack-pptp.cap")]).sessions
    (s,) = sessions
    found = tunnels.summarise(sessions, now=s.end + 1)
    (t,) = found[s.client]
    assert t.age_s == pytest.approx(s.end + 1 - s.start, abs=0.1)
    assert t.gre_in + t.gre_out == 3


# ------------------------------------------------------------- lifecycle.status, end to end

# What VERSIONS_CMD printed in each node image (uname -r first, then dpkg-query's lines).
VERSIONS_OUT = {None: "6.1.0-37-amd64\nppp 2.4.9-1+1.1+b1\npptp-linux 1.10.0-1+b1\npptpd 1.4.0-12\n",
                "trixie": "6.1.0-37-amd64\nppp 2.5.2-1+1\npptp-linux 1.10.0-1+b2\npptpd 1.5.0-1\n"}


class FakeEngine:
    """A lab of one stalled client and its server on a fake engine: containers, exec
    answers, the capture container's archive (a tar of its pcaps) and the engine's clock."""

    def __init__(self, pcap: bytes, engine_now: float):
        self.pcap, self.engine_now, self.execs = pcap, engine_now, []
        self.box = SimpleNamespace(labels={names.ROLE: capture.ROLE}, status="running")
        self.nodes = [self._node("client", "pptp-client", {"home": g.CLIENT}),
                      self._node("vpn", "pptp-server", {"internet": g.SERVER})]

    @staticmethod
    def _node(name, kind, addrs):
        nets = {f"lab-{net}": {"IPAddress": a} for net, a in addrs.items()}
        return SimpleNamespace(labels={names.NODE: name, names.ROLE: kind}, status="running",
                               attrs={"NetworkSettings": {"Networks": nets}}, reload=lambda: None)

    def containers(self, lab, role=None):
        return [self.box] if role == capture.ROLE else self.nodes

    def exec(self, c, cmd, check=True):
        self.execs.append((c, cmd))
        if cmd == ["date", "+%s.%N"]:
            out = f"{self.engine_now:.6f}"
        elif cmd == lifecycle.VERSIONS_CMD:
            out = VERSIONS_OUT[c.attrs.get("Image")]
        elif "addr show dev ppp0" in cmd:
            out = "5: ppp0    inet 172.16.0.10 peer 172.16.0.1/32 scope global ppp0"
        else:
            out = "7: ppp0: <POINTOPOINT>"
        return SimpleNamespace(ok=True, rc=0, out=out)

    def get_archive(self, box, path):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo("captures/home.pcap")
            info.size = len(self.pcap)
            tar.addfile(info, io.BytesIO(self.pcap))
        return buf.getvalue()


def test_status_analyses_the_capture_once_on_the_engines_clock(tmp_path, monkeypatch):
    c = tunnel_up()
    first = c.t + 1.01
    for _ in range(15):
        after(c, 1).gre("client", g.mppe_data())
    # The engine's clock is the capture's (2023 here), not this host's.
    eng = FakeEngine(c.write(tmp_path / "home.pcap").read_bytes(), engine_now=c.t + 5)
    analysed = []
    real = pptp.analyze
    monkeypatch.setattr(pptp, "analyze", lambda files: analysed.append(files) or real(files))
    rows = {r.name: r for r in lifecycle.status(eng, "lab")}
    assert len(analysed) == 1
    client, vpn = rows["client"], rows["vpn"]
    assert (client.tunnel, client.seen_on, client.call_ids) == ("stalled", "home", f"{g.CLIENT_CALL}/{g.SERVER_CALL}")
    assert client.unanswered_s == pytest.approx(c.t + 5 - first, abs=0.5)
    assert vpn.tunnel == "1 call(s)" and vpn.gre_out is None
    out = json.loads(lifecycle.to_json(list(rows.values())))
    assert {"age_s", "last_echo_s", "last_echo", "gre_out", "gre_in", "lost_out", "lost_in",
            "last_gre_in_s", "unanswered_s", "seen_on"} <= set(out[0])


def test_status_with_the_capture_stopped_reads_it_on_the_hosts_clock(tmp_path):
    """A stopped container runs no `date`; its pcaps are still there to read."""
    eng = FakeEngine(tunnel_up().write(tmp_path / "home.pcap").read_bytes(), engine_now=0)
    eng.box.status = "exited"
    rows = {r.name: r for r in lifecycle.status(eng, "lab")}
    assert not [cmd for box, cmd in eng.execs if box is eng.box]
    assert rows["client"].tunnel == "up" and rows["client"].age_s > 3600  # 2023's capture, today's clock


def test_the_versions_are_read_once_per_image_with_one_fixed_command(tmp_path, monkeypatch):
    """lifecycle.versions, as status and a test run read them: the kernel the nodes run and
    their ppp, pptpd and pptp-linux, per node; `test` records them before it dials."""
    from lab.core.errors import LabError
    from lab.model import topology
    from lab.reports.runfiles import Result
    from lab.testing import testrun
    from tests import REPO

    eng = FakeEngine(tunnel_up().write(tmp_path / "home.pcap").read_bytes(), engine_now=0)
    eng.nodes.append(FakeEngine._node("client2", "pptp-client", {"home": "192.168.1.11"}))
    eng.nodes.append(FakeEngine._node("nat", "nat", {"home": "192.168.1.1"}))
    eng.nodes[1].attrs["Image"] = "trixie"  # vpn runs another userland
    found = lifecycle.versions(eng, lifecycle.existing(eng, "lab"))
    old = {"kernel": "6.1.0-37-amd64", "ppp": "2.4.9-1+1.1+b1", "pptp-linux": "1.10.0-1+b1", "pptpd": "1.4.0-12"}
    assert found == {"client": old, "client2": old, "vpn": {"kernel": "6.1.0-37-amd64", "ppp": "2.5.2-1+1",
                                                          "pptp-linux": "1.10.0-1+b2", "pptpd": "1.5.0-1"}}
    asked = [(c.labels[names.NODE], cmd) for c, cmd in eng.execs]
    assert sorted(asked) == [("client", lifecycle.VERSIONS_CMD), ("vpn", lifecycle.VERSIONS_CMD)]
    assert {r.name: r.versions for r in lifecycle.status(eng, "lab")} == {**found, "nat": {}}

    def started(*a):
        raise LabError("stop here")

    monkeypatch.setattr(lifecycle, "start_servers", started)
    res = Result(topology.load(REPO / "topologies" / "default.yaml"))
    with pytest.raises(LabError):
        testrun._checks(eng, res.topo, res)
    assert res.versions == found

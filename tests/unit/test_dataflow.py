"""SPEC S29-S31 without a lab: what the analyser reads of packet sizes (MRU from LCP, outer
GRE size, DF, fragments), the transfer's and DF search's parsing, the `mtu` cause from nft
traces, the check of `expect: transfer`, and the topology keys (mtu, netem, transfer)."""
from types import SimpleNamespace

import pytest
from scapy.layers.inet import IP, fragment
from scapy.layers.l2 import Ether
from scapy.layers.ppp import PPP_LCP_Configure, PPP_LCP_MRU_Option, PPP_LCP_Magic_Number_Option

from lab import pptp
from lab.core.errors import LabError
from lab.diagnosis import checks, mtu
from lab.diagnosis.cause import Cause
from lab.model.topology import ClientExpect
from lab.model.types import Netem
from lab.up import dataflow
from tests.unit import pptpgen as g


def _session(tmp_path, cap):
    return pptp.analyze([cap.write(tmp_path / "x.pcap")]).sessions[0]


def test_S29_each_sides_mru_is_what_its_peer_acked(tmp_path):
    c = g.Capture()
    c.handshake().control("client", g.sccrq()).control("server", g.sccrp())
    c.control("client", g.ocrq()).control("server", g.ocrp())
    req = PPP_LCP_Configure(code=1, id=1, options=[PPP_LCP_MRU_Option(max_recv_unit=1300),
                                                   PPP_LCP_Magic_Number_Option(magic_number=7)])
    c.gre("client", g.ppp(req))
    c.gre("server", g.ppp(g.LCP_REQ_SERVER))
    c.gre("server", g.ppp(g.lcp_ack(req)))
    c.gre("client", g.ppp(g.lcp_ack(g.LCP_REQ_SERVER)))
    s = _session(tmp_path, c)
    assert s.calls[0].ppp["mru"] == {"client": 1300, "server": 1500}  # the server asked for none


def test_S29_outer_gre_size_df_and_fragments_are_counted_and_a_fragment_is_no_gre(tmp_path):
    c = g.full_session(data_frames=2, teardown=None)
    c.gre("client", g.mppe_data(1400))
    big = c.frames.pop()
    big[IP].flags = "DF"
    c.add(big)
    c.gre("client", g.mppe_data(1400))
    whole = c.frames.pop()
    for part in fragment(whole[IP], fragsize=800):
        c.add(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / part, 0.001)
    s = _session(tmp_path, c)
    up = s.calls[0].to_server
    assert up.largest == len(bytes(big[IP])) and up.df >= 1
    assert up.fragmented == 1 and not up.errors and up.lost == 0  # the later fragment was not read as GRE


def test_the_df_search_and_the_transfer_read_their_scripts_output():
    outputs = iter([
        SimpleNamespace(ok=True, rc=0, out=""),  # listen
        SimpleNamespace(ok=True, rc=0, out="start 100.0\nrc 0\nretrans 3\nsha256 ab\n"),
        SimpleNamespace(ok=True, rc=0, out="done 102.5\nbytes 1000\nsha256 ab\n")])
    calls = []
    eng = SimpleNamespace(node=lambda lab, n: n, exec=lambda node, argv, check=True: (calls.append(argv),
                                                                                      next(outputs))[1])
    t = dataflow.transfer(eng, "lab", "cli", "web", "10.0.0.20", 1000)
    assert t.complete and t.seconds == 2.5 and t.retransmits == 3 and t.mbit_s == 0.0
    assert all(isinstance(a, str) for argv in calls for a in argv)  # argv words, no shell text built
    outputs = iter([SimpleNamespace(ok=True, rc=0, out=""),
                    SimpleNamespace(ok=True, rc=0, out="start 100.0\nrc 124\nretrans 9\nsha256 ab\n"),
                    SimpleNamespace(ok=True, rc=0, out="done none\nbytes 0\nsha256 e3\n")])
    t = dataflow.transfer(eng, "lab", "cli", "web", "10.0.0.20", 1000)
    assert not t.complete and t.stalled and "stalled: 0 of 1000 bytes" in t.summary()
    untimed = dataflow.Transfer("cli", "web", "10.0.0.20", 1000, received=1000, intact=True, retransmits=0)
    assert untimed.summary() == "1000 bytes to 10.0.0.20 intact, 0 retransmitted segments"  # bullseye once
    eng2 = SimpleNamespace(node=lambda lab, n: n, exec=lambda node, argv, check=True:
                           SimpleNamespace(ok=True, rc=0, out="1314\n"))
    assert dataflow.df_search(eng2, "lab", "cli", "172.16.0.1").largest == 1342
    with pytest.raises(ValueError):
        dataflow.df_search(eng2, "lab", "cli", "172.16.0.1; reboot")


TRACE = ("trace id 5c86195d inet fw forward packet: iif \"mid\" oif \"a\" ip saddr 10.221.1.2 ip daddr 10.221.0.10 "
         "ip protocol icmp ip length 576 icmp type destination-unreachable icmp code frag-needed icmp id 0\n"
         "trace id 5c86195d inet fw forward rule icmp type destination-unreachable icmp code frag-needed drop "
         "# handle 2 (verdict drop)\n")


def test_S31_a_traced_drop_of_fragmentation_needed_is_found_and_others_are_not():
    found = mtu.frag_needed_drops({"fw": TRACE})
    assert [(d.node, d.handle) for d in found] == [("fw", 2)]
    assert mtu.frag_needed_drops({"fw": TRACE}, {"10.221.0.10"}) == found
    assert mtu.frag_needed_drops({"fw": TRACE}, {"10.221.0.11"}) == []  # another client's ICMP
    other = TRACE.replace("frag-needed", "host-unreachable")
    assert mtu.frag_needed_drops({"fw": other}) == []


def test_S30_the_transfer_check_passes_only_when_every_byte_arrived_intact():
    want = ClientExpect(transfer={"to": "10.0.0.20", "bytes": 1000, "min_mtu": 1400})
    done = dataflow.Transfer("cli", "web", "10.0.0.20", 1000, received=1000, intact=True, seconds=1.0,
                             retransmits=0)
    df = {"to_server": dataflow.DfSearch("cli", "x", 1400), "to_client": dataflow.DfSearch("srv", "y", 1342)}
    f = checks.ClientFacts("cli", "ppp0", "up", transfer=done, df=df)
    got = {c.name: c.passed for c in checks.transfer(f, want)}
    assert got == {"cli: 1000 bytes to 10.0.0.20": True, "cli: packets of 1400 bytes pass with DF set": False}
    stalled = dataflow.Transfer("cli", "web", "10.0.0.20", 1000, received=10, stalled=True, error="timed out")
    f = checks.ClientFacts("cli", "ppp0", "up", transfer=stalled, df=df,
                           transfer_cause=Cause("mtu", "too big for r's next hop"))
    first = checks.transfer(f, want)[0]
    assert not first.passed and "cause mtu: too big" in first.detail
    assert not checks.transfer(checks.ClientFacts("cli", "ppp0", "down"), want)[0].passed  # no transfer: no pass


def test_netem_words_are_numbers_only():
    assert Netem(loss=1).words() == ["loss", "1%"]
    assert Netem(loss=0.5, delay_ms=20).words() == ["delay", "20ms", "loss", "0.5%"]
    with pytest.raises(ValueError):
        Netem(loss="1%; reboot")


def test_a_transfer_needs_an_address_a_node_holds_and_a_tunnel_that_comes_up(tmp_path):
    import yaml

    from lab.core.paths import shipped_topology
    from lab.model import topology

    data = yaml.safe_load(shipped_topology("default").read_text())
    data["expect"]["clients"]["client"]["transfer"] = {"to": "10.10.0.99", "bytes": 1000}
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(LabError, match="expect.clients.client.transfer.to: no node has 10.10.0.99"):
        topology.load(path)
    data["expect"]["clients"]["client"]["transfer"]["to"] = "172.16.0.1"  # the server's tunnel address
    path.write_text(yaml.safe_dump(data))
    assert topology.load(path).holder("172.16.0.1") == "vpn"
    with pytest.raises(ValueError, match="transfer is only for tunnel: up"):
        ClientExpect(tunnel="fails", transfer={"to": "10.0.0.1", "bytes": 1})


def test_S29_status_wide_shows_the_tunnels_sizes():
    from lab.cli.labs import _sizes

    r = SimpleNamespace(tunnel_mtu=1396, mru="1400/1400", outer="1437/1396")
    assert _sizes(r) == "MTU 1396, MRU 1400/1400, outer ↑1437 ↓1396"
    assert _sizes(SimpleNamespace(tunnel_mtu=None, mru="", outer="")) == ""


def _df_search(tmp_path, limit: int, mtu: int | None, lost: tuple[int, int] = (0, 0)) -> tuple[str, list[int]]:
    """The DF search script itself, with a fake ping that passes payloads up to `limit`, a
    route through an interface of `mtu`, and no sleeping: (its answer, the sizes it tried).
    `lost`: (after, count): that many pings after the first `after` are lost whatever their
    size (a guest starved for a moment)."""
    import os
    import subprocess
    bin_ = tmp_path / "bin"
    bin_.mkdir(parents=True)
    (tmp_path / "sys").mkdir()
    log = tmp_path / "tried"
    (bin_ / "ping").write_text(f'#!/bin/sh\nwhile [ "$1" != -s ]; do shift; done\necho "$2" >> {log}\n'
                               f'n=$(wc -l < {log})\n[ "$n" -gt {sum(lost)} ] || [ "$n" -le {lost[0]} ] || exit 1\n'
                               f'[ "$2" -le {limit} ]\n')
    (bin_ / "ip").write_text("#!/bin/sh\necho '172.16.0.1 dev ppp0 src 172.16.0.10 uid 0'\n"
                             if mtu else "#!/bin/sh\nexit 1\n")
    (bin_ / "sleep").write_text("#!/bin/sh\n")
    for f in bin_.iterdir():
        f.chmod(0o755)
    script = dataflow.DF_SEARCH.replace("/sys/class/net/", f"{tmp_path}/sys/")
    if mtu:
        (tmp_path / "sys" / "ppp0").mkdir()
        (tmp_path / "sys" / "ppp0" / "mtu").write_text(f"{mtu}\n")
    out = subprocess.run(["sh", "-c", script, "sh", "172.16.0.1", "36", "1473"], capture_output=True, text=True,
                         env={**os.environ, "PATH": f"{bin_}:{os.environ['PATH']}"}).stdout
    tried = [int(x) for x in log.read_text().split()] if log.exists() else []
    return out.strip(), tried


def test_S29_the_df_search_tries_the_tunnels_mtu_first_then_searches(tmp_path):
    # a path that carries what the tunnel takes: one probe at its MTU (1400 - 28)
    out, tried = _df_search(tmp_path / "a", 1372, 1400)
    assert out == "1372" and sorted(set(tried)) == [36, 1372]
    # a black hole below the tunnel's MTU: the binary search still finds the largest
    out, tried = _df_search(tmp_path / "b", 1314, 1396)
    assert out == "1314" and 1368 in tried and max(tried) == 1368
    # no route to read an MTU from: the whole range, as before
    out, tried = _df_search(tmp_path / "c", 1000, None)
    assert out == "1000" and max(tried) == 1472
    # nothing passes
    out, _ = _df_search(tmp_path / "d", 10, 1400)
    assert out == "none"
    # a black hole costs one probe more than the search: its smallest failing size, again
    out, tried = _df_search(tmp_path / "e", 1331, 1396)
    assert out == "1331" and tried.count(1332) == 4


def test_S29_pings_lost_for_a_moment_do_not_shrink_the_answer(tmp_path):
    # pings lost under load in the middle of the search (a probe is two pings, then two
    # more): the smallest size that failed is tried again at the end, and the search goes
    # on above it
    out, tried = _df_search(tmp_path / "a", 1331, 1396, lost=(3, 8))
    assert out == "1331", tried
    # lost at the very start: the smallest size gets a second chance
    out, tried = _df_search(tmp_path / "b", 1331, 1396, lost=(0, 2))
    assert out == "1331", tried
    # lost for longer than the search: the answer is what was seen, not a guess
    out, _ = _df_search(tmp_path / "c", 1331, 1396, lost=(0, 10_000))
    assert out == "none"


def test_S29_the_two_ways_of_a_tunnel_are_searched_one_after_the_other_tunnels_at_once():
    """A probe lost one way makes pptpd queue the next packet of that call, which could be the
    other way's echo reply (a black hole's server search said "none" that way): the ways of
    one tunnel never overlap, different tunnels do."""
    import threading
    import time as _time

    from lab.testing import testrun

    running: dict[str, int] = {}
    most: dict[str, int] = {}
    overlap = threading.Event()
    lock = threading.Lock()

    def search(node, addr):
        tunnel = addr.split("/")[0]
        with lock:
            running[tunnel] = running.get(tunnel, 0) + 1
            most[tunnel] = max(most.get(tunnel, 0), running[tunnel])
            if len([t for t, n in running.items() if n]) > 1:
                overlap.set()
        _time.sleep(0.1)
        with lock:
            running[tunnel] -= 1
        return f"{node}->{addr}"

    ways = {t: [("to_server", t, f"{t}/srv"), ("to_client", "srv", f"{t}/cli")] for t in ("a", "b", "c")}
    found = testrun.df_searches(search, ways)
    assert found == {t: {"to_server": f"{t}->{t}/srv", "to_client": f"srv->{t}/cli"} for t in ways}
    assert most == {"a": 1, "b": 1, "c": 1}
    assert overlap.is_set()

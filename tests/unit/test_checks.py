"""The `expect:` checks (lab.checks): every key of the expect block has a registered check,
and each check passes and fails on the facts it is given. No lab needed."""
from types import SimpleNamespace

import pytest

from lab.diagnosis import checks
from lab.model.topology import ClientExpect, NatExpect

STOPPED_IN_LCP = SimpleNamespace(phase="lcp", verdict="OCRP ok, no GRE from the server")


def facts(state="up", session=None, **pings):
    return checks.ClientFacts("client", "ppp0", state, session,
                              {k.replace("_", "."): v for k, v in pings.items()})


def test_every_expect_key_has_a_check():
    assert set(ClientExpect.model_fields) <= set(checks.CLIENT)
    assert set(NatExpect.model_fields) <= set(checks.NAT)


@pytest.mark.parametrize("state,want,passed,words", [
    ("up", ClientExpect(), True, "ppp0 up"),
    ("down", ClientExpect(), False, "no tunnel on ppp0; analyser: phase lcp: OCRP ok, no GRE"),
    ("down", ClientExpect(tunnel="fails"), True, "ppp0 down"),
    ("up", ClientExpect(tunnel="fails"), False, "ppp0 up"),
    ("down", ClientExpect(tunnel="fails", phase="lcp"), True, "phase lcp"),
    ("down", ClientExpect(tunnel="fails", phase="auth"), False, "phase lcp"),
])
def test_tunnel(state, want, passed, words):
    (c,) = checks.tunnel(facts(state, STOPPED_IN_LCP), want)
    assert c.passed is passed and words in c.detail, c
    assert c.name == "client: tunnel up" if want.tunnel == "up" else c.name.startswith("client: tunnel fails")


def test_a_failing_tunnel_with_no_session_cannot_meet_a_phase():
    (c,) = checks.tunnel(facts("down", None), ClientExpect(tunnel="fails", phase="tcp"))
    assert not c.passed and "no session in the capture" in c.detail


def test_reach_and_unreachable():
    f = facts(**{"10_0_0_1": (True, "rtt 1 ms"), "10_0_0_2": (False, "")})
    want = ClientExpect(reach=["10.0.0.1", "10.0.0.2", "10.0.0.3"], unreachable=["10.0.0.1", "10.0.0.2", "10.0.0.4"])
    assert [(c.name, c.passed) for c in checks.reach(f, want)] == [
        ("client: reaches 10.0.0.1", True), ("client: reaches 10.0.0.2", False), ("client: reaches 10.0.0.3", False)]
    assert [(c.name, c.passed) for c in checks.unreachable(f, want)] == [
        ("client: does not reach 10.0.0.1", False), ("client: does not reach 10.0.0.2", True),
        ("client: does not reach 10.0.0.4", False)]  # never pinged: no pass


@pytest.mark.parametrize("ids,passed", [([57818, 54214], True), ([57818, 57818], False), ([], False)])
def test_unique_outside_call_ids(ids, passed):
    (c,) = checks.unique_outside_call_ids("nat", NatExpect(), ids)
    assert c.passed is passed and str(ids) in c.detail
    assert checks.unique_outside_call_ids("nat", NatExpect(unique_outside_call_ids=False), ids) == []


def test_client_checks_runs_each_check_once():
    got = checks.client_checks(facts(**{"10_0_0_1": (True, "ok")}), ClientExpect(reach=["10.0.0.1"]))
    assert [c.name for c in got] == ["client: tunnel up", "client: reaches 10.0.0.1"]
    assert [c.name for c in checks.client_checks(facts(), None)] == ["client: tunnel up"]


# ------------------------------------------------------------------ evidence: the packet that shows why
def _analysed(tmp_path, *caps):
    from lab import pptp

    return pptp.analyze([c.write(tmp_path / f"{name}.pcap") for name, c in caps])


def test_a_tunnel_check_points_at_the_last_packet_before_the_teardown(tmp_path):
    from . import pptpgen as g
    from .synthrun import _refused, _stuck_in_lcp

    (stuck,) = _analysed(tmp_path, ("home", _stuck_in_lcp("192.168.1.10"))).sessions
    (c,) = checks.tunnel(facts("down", stuck), ClientExpect())
    assert c.where == {"capture": "home.pcap", "frame": 9, "event": "LCP Configure-Request"}
    assert stuck.events[-1].frame == 9  # the client's third request, unanswered
    (refused,) = _analysed(tmp_path, ("internet", _refused("198.51.100.2"))).sessions
    (c,) = checks.tunnel(facts("down", refused), ClientExpect(tunnel="fails", phase="auth"))
    assert c.passed and c.where["event"] == "CHAP Failure"  # not the LCP Terminate after it
    (whole,) = _analysed(tmp_path, ("lan", g.full_session(teardown="client"))).sessions
    assert checks.evidence(whole)["event"] == "IPCP Configure-Ack" and checks.evidence(None) == {}


def test_a_repeated_outside_call_id_points_at_the_request_that_repeated_it(tmp_path):
    """Two clients behind the NAT leave it with the same call ID: the check fails and
    links the second call's OCRQ on the NAT's outside segment."""
    from lab.testing import testrun
    from lab.model import topology
    from tests import REPO

    from . import pptpgen as g

    topo = topology.load(REPO / "topologies" / "default.yaml")
    first = g.full_session(g.Capture(client="198.51.100.2", cport=40001), teardown=None)
    second = g.full_session(g.Capture(client="198.51.100.2", cport=40002), teardown=None)
    for p in second.frames:
        p.time += 5
    first.frames += second.frames
    analysed = _analysed(tmp_path, ("internet", first))
    (c,) = testrun._nat_checks(topo, analysed)
    assert not c.passed and c.detail == "outside call IDs [4711, 4711]"
    later = analysed.sessions[1]
    ocrq = next(e for e in later.events if e.what == "OCRQ")
    assert c.where == {"capture": "internet.pcap", "frame": ocrq.frame, "event": "OCRQ"}
    assert ocrq.frame > len(analysed.sessions[0].events)

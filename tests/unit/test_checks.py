"""The `expect:` checks (lab.checks): every key of the expect block has a registered check,
and each check passes and fails on the facts it is given. No lab needed."""
from types import SimpleNamespace

import pytest

from lab import checks
from lab.topology import ClientExpect, NatExpect

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

"""conformance.rows(): every verdict follows what was observed; "as documented" is never a
given. Fake sessions (SimpleNamespace) stand in for the analyser's."""
from types import SimpleNamespace as NS

import pytest

from lab.reports import conformance


def direction(src, dst, call_id, lost=0, duplicates=0, reordered=0):
    return NS(src=src, dst=dst, call_id=call_id, errors=[], lost=lost, duplicates=duplicates, reordered=reordered)


def session(to_server=None, to_client=None, requests=3, answered=3, interval=60.0, gre=True):
    call = NS(client_call_id=128, server_call_id=12345, reply={"peer_call_id": 128}, sli=[{"sender": "client"}],
              to_server=None, to_client=None)
    if gre:
        call.to_server = to_server or direction("198.51.100.10", "192.0.2.10", 12345)
        call.to_client = to_client or direction("192.0.2.10", "198.51.100.10", 128)
    echo = {"requests": requests, "answered": answered, "interval_s": interval if requests > 1 else None}
    return NS(gre_only=False, client_port=40000, server_port=1723,
              sccrp={"control_result": 1, "vendor_name": "linux"}, calls=[call],
              echo_summary=lambda: {"client": echo, "server": echo}, initiator="client",
              teardown=[NS(sender=s, what=w) for s, w in conformance.DOCUMENTED_CLIENT_TEARDOWN])


def verdicts(*sessions) -> dict:
    return {r[0]: (r[2], r[3]) for r in conformance.rows(list(sessions))}


def test_a_clean_session_is_as_documented_on_every_row():
    got = verdicts(session())
    assert set(got) == {"S1", "S2", "S3", "S4", "S5", "S7", "S8", "S9", "S10"}
    assert {v for _, v in got.values()} == {"as documented"}, got
    assert got["S8"] == ("lost 0, duplicated 0, reordered 0", "as documented")


@pytest.mark.parametrize("counts,seen", [
    ({"lost": 3}, "lost 3, duplicated 0, reordered 0"),
    ({"duplicates": 1}, "lost 0, duplicated 1, reordered 0"),
    ({"reordered": 2}, "lost 0, duplicated 0, reordered 2"),
])
def test_s8_differs_on_loss_duplicates_or_reordering(counts, seen):
    for s in (session(to_server=direction("198.51.100.10", "192.0.2.10", 12345, **counts)),
              session(to_client=direction("192.0.2.10", "198.51.100.10", 128, **counts))):
        assert verdicts(s)["S8"] == (seen, "differs")


def test_s8_counts_every_call_of_every_session():
    bad = session(to_client=direction("192.0.2.10", "198.51.100.20", 129, lost=1))
    assert verdicts(session(), bad)["S8"] == ("lost 1, duplicated 0, reordered 0", "differs")


def test_s8_without_gre_differs():
    got = verdicts(session(gre=False))
    assert got["S8"] == ("no GRE", "differs") and got["S5"][1] == got["S7"][1] == "differs"


def test_s9_needs_paired_replies_and_the_60s_interval():
    assert verdicts(session(requests=3, answered=2))["S9"] == ("interval 60.0 s, 2 of 3 answered", "differs")
    assert verdicts(session(interval=3.0))["S9"][1] == "differs"
    assert verdicts(session(requests=1, answered=1))["S9"][1] == "differs"


def test_no_control_connection_is_not_seen():
    assert conformance.rows([NS(gre_only=True)])[0][3] == "not seen"

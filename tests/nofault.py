"""Counter-proof for the fault tests (SPEC S23-S27): every lab.fault call records a fault but
does nothing in the lab, so each test must fail:
    PYTHONPATH=. .venv/bin/pytest tests/integration/test_s23_s27_faults.py -p tests.nofault
Run by hand (not part of make test): all six failed on 2026-11-26."""
import time
import lab.up.fault as F


def _fake(eng, lab, verb, *args):
    now = time.time()
    words = [F.word(a) for a in args]
    detail = {"down_at": now, "up_at": now + 2} if verb == "link" else {}
    return F.Fault(verb, words[0] if words else "", words[1:], now, now, "NOT INJECTED (counter-proof)",
                   undo=None, clock_offset=0.0, detail=detail)


def pytest_configure(config):
    F.inject = _fake

"""SPEC S32 on bullseye (5.10): its kernel gives no drop reasons, so the causes come from
the fallback evidence (captures, ICMP, routes, counters, conntrack) or say "not enough
evidence" and what was missing; here each must still be the right one. Its own VM: in the
suite's own-VM scope (tests/integration/conftest.py)."""
from lab.engines import vm
from tests.integration.test_s32_s33_causes import CAUSES, HERE, junit_cases, pptp_lab


def test_S32_on_bullseye_the_same_causes_from_the_fallback_evidence():
    was_up = vm.VmEngine(kernel="bullseye").attach() is not None
    try:
        res = pptp_lab("test", str(HERE / "causes.yaml"), "--kernel", "bullseye")
        out = res.stdout + res.stderr
        cases = junit_cases(out)
        for client, cause in CAUSES.items():
            assert cases.get(f"{client}: fails for cause {cause}") is True, (client, out[-4000:])
        assert res.returncode == 0, out[-3000:]
    finally:
        if not was_up:
            pptp_lab("vm", "down", "--kernel", "bullseye")

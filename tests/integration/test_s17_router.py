"""SPEC S17: router-to-router. The perimeter VPN server dials out to a PPTP server on the
Internet: it works with the (c) filters of the calling-router policy, and fails without
them, the drop counters naming the (c) filter that is missing."""
import pytest

from lab.up import lifecycle
from lab.model import policy
from lab.core.errors import LabError

VPN = "192.0.2.10"

pytestmark = pytest.mark.topology("router-to-router", name="t-router")


def test_S17_calling_router_works_with_the_c_filters(lab):
    state, addr, peer = lab.tunnel("vpn")
    assert state == "up" and peer == "172.20.0.1"
    lab.ping("vpn", "172.20.0.1")
    counters = lab.counters("fw")
    for fid in ("S12c", "S13c", "S14c", "S15c"):
        assert counters[fid] > 0, f"{fid} never matched: {counters}"
    # The remote-access client still works beside it (the (a)/(b) filters).
    assert lab.tunnel("client")[0] == "up"
    # Status counts the calls a server answers, not its own outgoing ppp100.
    rows = {r.name: r for r in lifecycle.status(lab.eng, lab.topo)}
    assert rows["vpn"].tunnel == "1 call(s)" and rows["remote"].tunnel == "1 call(s)", rows


def test_S17_without_the_c_filters_the_router_call_fails(lab):
    lab.stop_client("vpn")
    lab.reconfigure(lab.variant(**{"nodes.fw.policy": "pptp-documented"}), "fw")
    before = lab.counters("fw")
    try:
        with pytest.raises(LabError, match="no tunnel"):
            lab.dial("vpn", timeout=15)
        (s,) = [s for s in lab.sessions(client=VPN, segment="perimeter") if not s.gre_only][-1:]
        after = lab.counters("fw")
    finally:
        lab.stop_client("vpn")
        lab.reconfigure(lab.variant(**{"nodes.fw.policy": "pptp-documented-router"}), "fw")
    assert s.phase == "tcp" and "SYN to 1723 unanswered" in s.verdict, s.verdict
    delta = [{"comment": k, "packets": after[k] - before.get(k, 0)} for k in after]
    causes = policy.diagnose(delta, policy.filters("pptp-documented"))
    assert any("missing S14c" in c for c in causes), causes
    assert lab.tunnel("client")[0] == "up"  # remote access is unaffected

"""SPEC S12-S16: the documented filters on the firewall in front of the perimeter VPN server.
With exactly those filters a client on the Internet gets a tunnel and nothing else passes;
without any one (a)/(b) filter the tunnel fails, and the lab names the phase (from the
capture) and the filter (from the firewall's drop counters)."""
import pytest

from lab.model import policy
from lab.core.errors import LabError

CLIENT, VPN, INTRANET_HOST = "198.51.100.10", "192.0.2.10", "10.10.0.20"
DOCUMENTED = ["S12a", "S12b", "S13a", "S13b", "S14a", "S14b", "S15a", "S15b"]

pytestmark = pytest.mark.topology("default", name="t-fw",
                                  overrides={"nodes.fw.policy": "pptp-documented"})


def latest(lab, segment):
    found = [s for s in lab.sessions(client=CLIENT, segment=segment) if not s.gre_only]
    assert found, f"no session of {CLIENT} in the {segment} capture"
    return max(found, key=lambda s: s.start)


def test_S16_documented_filters_give_a_working_tunnel(lab):
    for client in ("client", "home-client"):
        lab.ping(client, INTRANET_HOST)
    counters = lab.counters("fw")
    for fid in DOCUMENTED:
        assert counters[fid] > 0, f"{fid} never matched: {counters}"
    assert "S12c" not in counters  # the calling-router filters are not part of this policy


def test_S16_nothing_else_passes(lab):
    before = lab.counters("fw")
    tcp = lab.run("client", f"timeout 5 bash -c 'echo > /dev/tcp/{VPN}/22'", check=False)
    ping = lab.run("client", f"ping -c 2 -W 1 {VPN}", check=False)
    after = lab.counters("fw")
    assert not tcp.ok and not ping.ok
    assert after["drop internet in TCP"] > before["drop internet in TCP"]
    assert after["drop internet in other"] >= before["drop internet in other"] + 2


# Where a missing filter shows: (capture segment to read, phase stopped in, words of the verdict).
EXPECT = {
    "S12a": ("internet", "tcp", "TCP SYN to 1723 unanswered"),
    "S15a": ("internet", "tcp", "TCP SYN to 1723 unanswered"),
    "S13a": ("internet", "tcp", "TCP SYN to 1723 unanswered"),
    "S14a": ("internet", "tcp", "TCP SYN to 1723 unanswered"),
    "S12b": ("perimeter", "lcp", "no GRE from the client: IP protocol 47 blocked towards the server"),
    "S15b": ("perimeter", "lcp", "no GRE from the client: IP protocol 47 blocked towards the server"),
    "S13b": ("internet", "lcp", "no GRE from the server: IP protocol 47 blocked towards the client"),
    "S14b": ("internet", "lcp", "no GRE from the server: IP protocol 47 blocked towards the client"),
}


@pytest.mark.parametrize("missing", DOCUMENTED)
def test_S16_without_one_filter_the_tunnel_fails_at_a_named_phase(lab, missing):
    segment, phase, words = EXPECT[missing]
    lab.stop_client("client")
    lab.reconfigure(lab.variant(**{"nodes.fw.policy_without": [missing]}), "fw")
    before = lab.counters("fw")
    try:
        with pytest.raises(LabError, match="no tunnel"):
            lab.dial("client", timeout=15)
        s = latest(lab, segment)
        after = lab.counters("fw")
    finally:
        lab.stop_client("client")
    assert s.phase == phase and words in s.verdict, (s.phase, s.verdict)
    delta = [{"comment": k, "packets": after[k] - before.get(k, 0)} for k in after]
    causes = policy.diagnose(delta, policy.filters("pptp-documented", without=[missing]))
    assert any(f"missing {missing} " in c for c in causes), causes


def test_S16_with_the_filters_back_the_tunnel_works_again(lab):
    lab.reconfigure(lab.variant(**{"nodes.fw.policy_without": []}), "fw")
    lab.stop_client("home-client")
    lab.dial()
    for client in ("client", "home-client"):
        lab.ping(client, INTRANET_HOST)

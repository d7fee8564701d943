"""SPEC S23 with its second ground truth, and S33. test_s23_s27_faults flushes a client NAT's
state with a stateless firewall between the NAT and the server: the NAT's ICMP error never
reaches the server, the control connection lives on and the client's LCP echo hangs up.
Here nothing stands between the NAT and the server (topologies/nat-clients.yaml's shape):
the server gets the NAT's ICMP protocol unreachable for its GRE and hangs up every call at
once. On both captures (inside and outside the NAT) every session must be torn down by the
server, never left in `data`, with the NAT's ICMP error as what came first."""
import time

import pytest

from .faultkit import fault_time, wait_down, wait_ended

pytestmark = pytest.mark.topology("tests/integration/topologies/nat-flush.yaml", name="t-natflush")

CLIENTS = ("c1", "c2", "c3")
NAT_IN, NAT_OUT = "192.168.93.1", "198.18.93.2"


def test_S23_S33_a_client_nat_flushed_beside_the_server_the_server_hangs_up(lab):
    for c in CLIENTS:
        if lab.tunnel(c)[0] != "up":
            lab.dial(c, timeout=40)
    time.sleep(2)
    flush = lab.fault("conntrack-flush", "nat")
    t0 = fault_time(flush)
    for c in CLIENTS:
        assert wait_down(lab, c, timeout=40) is not None, f"{c}'s tunnel stayed up after the NAT forgot its state"
        wait_ended(lab, c)
    time.sleep(1)
    # Both captures analysed together: each capture of a call gets the earliest initiator.
    calls = [s for s in lab.sessions() if not s.gre_only and s.start < t0]
    inside = [s for s in calls if s.source.endswith("home.pcap")]
    outside = [s for s in calls if s.source.endswith("internet.pcap") and s.client == NAT_OUT]
    assert len(inside) == len(outside) == len(CLIENTS), [(s.source, s.client, s.phase) for s in calls]
    for s in inside + outside:
        where = f"{s.source} {s.client}:{s.client_port}"
        assert s.phase == "teardown", (where, s.phase, s.verdict)
        assert s.initiator == "server", (where, s.initiated)
        first = s.initiated["after"]
        assert first and first[0]["what"] == "ICMP protocol unreachable" and first[0]["by"] == NAT_OUT, (where, first)
    # The order on the outside: the NAT's ICMP, then the server's FIN on every control connection.
    for s in outside:
        whats = [e.what for e in s.teardown]
        assert whats.index("ICMP protocol unreachable") < whats.index("TCP FIN"), whats

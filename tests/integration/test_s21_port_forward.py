"""SPEC S21: a PPTP server behind a masquerading NAT that port-forwards TCP 1723 to it, with
and without the NAT editor, with and without a forward of GRE (IP protocol 47). What Linux
does is read from the captures on both sides of the NAT (internet: the client's view; lan:
the server's), not assumed."""
import time

import pytest

from lab.core.errors import LabError

pytestmark = pytest.mark.topology("topologies/port-forward.yaml", name="t-s21")

TCP_ONLY = [{"proto": "tcp", "port": 1723, "to": "10.60.0.10"}]
BOTH = TCP_ONLY + [{"proto": "gre", "to": "10.60.0.10"}]
CLIENT, PUBLIC = "198.18.40.20", "198.18.40.1"


def attempt(lab, editor: bool, forward: list) -> dict:
    """Redial the client with this NAT setup; what each side of the NAT saw of the new call."""
    lab.stop_client("client")
    time.sleep(1)
    lab.reconfigure(lab.variant(**{"nodes.nat.nat.pptp_editor": editor, "nodes.nat.nat.forward": forward}), "nat")
    since = time.time()
    try:
        lab.dial("client", timeout=25)
        up = True
    except LabError:
        up = False
    outside = [s for s in lab.sessions(client=CLIENT, segment="internet") if not s.gre_only and s.start >= since - 1]
    inside = [s for s in lab.sessions(segment="lan") if not s.gre_only and s.start >= since - 1]
    gre_in = [s for s in lab.sessions(segment="lan") if s.start >= since - 1
              and any(c.to_server and c.to_server.packets for c in s.calls)]
    return {"up": up, "out_phase": outside[-1].phase if outside else None,
            "in_phase": inside[-1].phase if inside else None, "gre_reached_server": bool(gre_in),
            "in_client": inside[-1].client if inside else None}


def test_S21_port_forward_with_and_without_the_editor(lab):
    seen = {(editor, gre): attempt(lab, editor, BOTH if gre else TCP_ONLY)
            for editor in (True, False) for gre in (True, False)}
    up = {"up": True, "out_phase": "data", "in_phase": "data", "gre_reached_server": True, "in_client": CLIENT}
    # Observed on Linux 6.1 (README conformance table, S21):
    # with the editor, GRE follows the 1723 forward by itself (the helper's expectation is
    # DNAT'ed to the server): a GRE forward is not needed;
    assert seen[(True, True)] == up and seen[(True, False)] == up, seen
    # without the editor, a plain DNAT of GRE carries one client's tunnel;
    assert seen[(False, True)] == up, seen
    # without either, the control connection and the call come up through the 1723 forward,
    # but the client's GRE ends at the NAT itself: both sides see the session stop in LCP.
    assert seen[(False, False)] == {"up": False, "out_phase": "lcp", "in_phase": "lcp",
                                    "gre_reached_server": False, "in_client": CLIENT}, seen

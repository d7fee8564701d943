"""SPEC S19, S20: clients behind one masquerading NAT. With the PPTP NAT editor (the kernel's
pptp conntrack/NAT helper) each client's call ID is rewritten consistently in the control
messages and the GRE headers, also when the clients chose the same call ID, and all tunnels
carry data at once. Without the editor, what fails and how is read from the captures."""
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from lab.core.errors import LabError

CLIENTS = {"c1": "192.168.1.11", "c2": "192.168.1.12", "c3": "192.168.1.13"}
NAT_OUTSIDE, INTRANET_HOST = "198.51.100.2", "10.10.0.20"

pytestmark = pytest.mark.topology("nat-clients", name="t-nat")


def test_S19_editor_rewrites_the_call_id_in_control_and_gre(lab):
    inside = {s.client: s for s in lab.sessions(segment="home") if not s.gre_only}
    outside = [s for s in lab.sessions(segment="internet") if not s.gre_only]
    assert set(CLIENTS.values()) <= set(inside)
    assert {s.client for s in outside} == {NAT_OUTSIDE}
    for s_in in (inside[a] for a in CLIENTS.values()):
        (call_in,) = s_in.calls
        (s_out,) = [s for s in outside if s.calls[0].server_call_id == call_in.server_call_id]
        call_out = s_out.calls[0]
        # The helper maps the client's call ID to the NAT's outside TCP port (PPTP-NOTES) ...
        assert call_out.client_call_id == s_out.client_port != call_in.client_call_id
        # ... consistently: OCRP's peer call ID and the server's GRE carry it outside, and the
        # original one inside.
        assert call_out.reply["peer_call_id"] == call_out.client_call_id
        assert call_in.reply["peer_call_id"] == call_in.client_call_id
        assert call_out.to_client.call_id == call_out.client_call_id
        assert call_in.to_client.call_id == call_in.client_call_id
        assert s_in.phase == s_out.phase and s_in.phase in ("data", "teardown")


def _hang_up_all(lab):
    for c in CLIENTS:
        lab.stop_client(c)
    time.sleep(1)


def test_S20_same_call_id_with_editor_all_tunnels_carry_data_at_once(lab):
    # pptp-linux reads its call ID from /dev/random: pin it so all three choose the same one.
    _hang_up_all(lab)
    lab.reconfigure(lab.variant(**{f"nodes.{c}.pptp_client.pin_random": 18 for c in CLIENTS}), *CLIENTS)
    lab.dial(*CLIENTS)
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda c: lab.ping(c, INTRANET_HOST, count=5, interval=0.2), CLIENTS))
    # The capture is read while it runs: give its last packets a few seconds to land.
    for _ in range(10):
        latest, outside = _latest_calls(lab)
        if all(_carried_data(s) for s in list(latest.values()) + outside):
            break
        time.sleep(0.5)
    inside_ids = {s.calls[0].client_call_id for s in latest.values()}
    assert len(inside_ids) == 1, f"the clients did not choose one call ID: {inside_ids}"
    assert len({s.calls[0].client_call_id for s in outside}) == 3, "outside call IDs are not unique"
    for s in list(latest.values()) + outside:
        assert _carried_data(s), (s.client, s.calls[0].server_call_id, s.calls[0].ppp["data_frames"])


def _carried_data(s) -> bool:
    frames = s.calls[0].ppp["data_frames"]
    return bool(frames["client"] and frames["server"])


def _latest_calls(lab):
    """Each client's latest call inside the NAT, and the same calls outside (by server call
    ID, the latest of each: pptpd may give them the IDs of earlier calls in this capture)."""
    latest = {}
    for s in lab.sessions(segment="home"):
        if not s.gre_only and s.calls and s.client in CLIENTS.values():
            if s.client not in latest or s.start > latest[s.client].start:
                latest[s.client] = s
    servers = {s.calls[0].server_call_id for s in latest.values()}
    outside = {}
    for s in lab.sessions(segment="internet"):
        if not s.gre_only and s.calls and s.calls[0].server_call_id in servers:
            sid = s.calls[0].server_call_id
            if sid not in outside or s.start > outside[sid].start:
                outside[sid] = s
    return latest, list(outside.values())


def test_S20_without_the_editor_the_tunnels_fail_and_the_capture_says_how(lab):
    _hang_up_all(lab)
    lab.reconfigure(lab.variant(**{"nodes.nat.nat.pptp_editor": False}), "nat")
    try:
        with pytest.raises(LabError, match="no tunnel"):
            lab.dial(*CLIENTS, timeout=20)
        latest = {}
        for s in lab.sessions(segment="home"):
            # A client's pppd dials again at once: its newest control connection may not
            # have asked for a call yet when the capture is read. The latest call is the fact.
            if not s.gre_only and s.calls and s.client in CLIENTS.values():
                if s.client not in latest or s.start > latest[s.client].start:
                    latest[s.client] = s
        up = [c for c in CLIENTS if lab.tunnel(c)[0] == "up"]
    finally:
        _hang_up_all(lab)
        lab.reconfigure(lab.variant(**{"nodes.nat.nat.pptp_editor": True}), "nat")
    # Observed on Linux (PPTP-NOTES): the server's GRE is not translated back to the inside,
    # so no client, not even one alone, gets its LCP opened.
    assert up == []
    assert len(latest) == len(CLIENTS), latest  # every client asked for a call
    for s in latest.values():
        assert s.phase == "lcp", (s.client, s.phase, s.verdict)
        assert "no GRE from the server" in s.verdict and "NAT without the PPTP editor" in s.verdict


def test_S19_editor_back_on_all_tunnels_up_again(lab):
    lab.dial(*CLIENTS)
    for c in CLIENTS:
        lab.ping(c, INTRANET_HOST)

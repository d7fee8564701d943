"""SPEC S18: the VPN server behind a NAT with a static 1:1 mapping of a public address.
A client on the Internet dials the public address; only IP addresses are rewritten (the call
IDs and ports are the same on both sides of the NAT); no NAT editor is involved."""
import pytest

CLIENT, PUBLIC, PRIVATE = "198.51.100.10", "198.51.100.100", "10.20.0.10"

pytestmark = pytest.mark.topology("server-behind-nat", name="t-snat")


def test_S18_static_mapping_gives_a_working_tunnel(lab):
    state, addr, peer = lab.tunnel("client")
    assert state == "up" and addr in lab.topo.nodes["vpn"].pptp_server.pool
    lab.ping("client", "10.10.0.20")


def test_S18_only_ip_addresses_are_rewritten(lab):
    (outside,) = [s for s in lab.sessions(client=CLIENT, segment="internet") if not s.gre_only]
    (inside,) = [s for s in lab.sessions(client=CLIENT, segment="dmz") if not s.gre_only]
    assert (outside.server, inside.server) == (PUBLIC, PRIVATE)
    assert outside.client_port == inside.client_port
    (c_out,), (c_in,) = outside.calls, inside.calls
    assert (c_out.client_call_id, c_out.server_call_id) == (c_in.client_call_id, c_in.server_call_id)
    assert c_out.to_server.call_id == c_in.to_server.call_id
    assert c_out.to_client.call_id == c_in.to_client.call_id
    assert inside.phase == "data" and outside.phase == inside.phase
    assert "helper" not in lab.run("nat", "nft list table ip pptp_lab_nat").out

"""Proof that the selected engine runs real PPTP: pptpd and pptp-linux in two containers on
an internal network, MS-CHAPv2 + MPPE-128, ping across ppp0, hang up, nothing left."""
import time

import pytest

from lab.model import render

LAB = "proof"
POOL_LOCAL, POOL = "192.168.240.1", "192.168.240.10-20"


def wait_for(fn, timeout=60, step=0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(step)
    return fn()


@pytest.fixture
def two_nodes(lab_engine):
    eng, image = lab_engine
    eng.remove_lab(LAB)
    eng.create_network(LAB, "net", "10.99.0.0/24")
    server = eng.create_node(LAB, "server", image, {"net": "10.99.0.10"}, "pptp-server")
    client = eng.create_node(LAB, "client", image, {"net": "10.99.0.20"}, "pptp-client")
    yield eng, server, client
    eng.remove_lab(LAB)
    assert not eng.containers(LAB) and not eng.networks(LAB)


def test_engine_runs_a_real_pptp_tunnel_mschapv2_mppe128(two_nodes):
    eng, server, client = two_nodes
    secret = [{"name": "alice", "secret": "s3cret", "server": "pptpd"}]
    eng.put_files(server, render.server_files(POOL_LOCAL, POOL) | render.chap_secrets(secret))
    eng.put_files(client, render.client_files("10.99.0.10", "alice") | render.chap_secrets(secret))
    eng.exec(server, "pptpd")
    eng.exec(client, "pppd call lab logfile /tmp/ppp.log")

    addr = wait_for(lambda: "inet 192.168.240." in eng.exec(client, "ip -4 addr show ppp0", check=False).out)
    log = eng.exec(client, "cat /tmp/ppp.log").out
    assert addr, f"ppp0 never got a pool address; pppd log:\n{log}"
    assert "CHAP authentication succeeded" in log
    assert "MPPE 128-bit stateless compression enabled" in log

    ping = eng.exec(client, f"ping -c 5 -i 0.3 -W 3 -I ppp0 {POOL_LOCAL}", check=False)
    assert ping.ok and " 0% packet loss" in ping.out, ping.out
    # The server side saw the same call: its pppd holds a ppp interface with the local address.
    assert f"inet {POOL_LOCAL}" in eng.exec(server, "ip -4 addr show").out

    eng.exec(client, "pkill -TERM pppd")
    gone = wait_for(lambda: eng.exec(client, "ip link show ppp0", check=False).rc != 0, timeout=30)
    assert gone, "ppp0 still present after hang-up"
    server_gone = wait_for(lambda: f"inet {POOL_LOCAL}" not in eng.exec(server, "ip -4 addr show").out,
                           timeout=30)
    assert server_gone, "server's ppp interface still up after the client hung up"

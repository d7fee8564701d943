"""A client whose user name, server name and secret hold spaces, quotes, '#', '$',
backslashes and template syntax gets its tunnel: such values are carried literally into
pppd's files, not refused wholesale, and none of them ran anywhere (issue #9)."""
from pathlib import Path

import pytest

from lab.model import topology

TOPO = Path(__file__).parent / "topologies" / "hostile.yaml"
SECRET = topology.load(TOPO).nodes["client"].pptp_client.secret

pytestmark = pytest.mark.topology(str(TOPO), name="t-hostile")


def test_hostile_secret_user_and_server_name_give_a_working_tunnel(lab):
    state, local, peer = lab.tunnel("client")
    assert state == "up" and peer == "172.18.0.1", (state, local, peer)
    lab.ping("client", "172.18.0.1")
    log = lab.run("client", "cat /var/log/ppp.log").out
    assert "CHAP authentication succeeded" in log, log


def test_the_values_arrived_literally(lab):
    assert "{{ 7*7 }}" in SECRET and "\\n" in SECRET  # the file's value, unexpanded
    secrets = lab.run("vpn", "cat /etc/ppp/chap-secrets").out
    assert "49" not in secrets and "{{ 7*7 }}" in secrets
    assert lab.run("vpn", "stat -c %a /etc/ppp/chap-secrets").out.strip() == "600"


def test_nothing_ran(lab):
    for node in ("vpn", "client"):
        assert lab.run(node, "test -e /tmp/pwned", check=False).rc != 0, node
    assert not Path("/tmp/pwned").exists()

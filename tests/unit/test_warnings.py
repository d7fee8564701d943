"""What a topology allows but cannot work (lab.model.warnings): a PPP pool on a lab network or
holding the server's own address, a client dialling an address no node has. `validate` says
so and passes; `validate --strict` fails; `up` and `test` print them."""
import sys

import pytest
import yaml
from typer.testing import CliRunner

from lab import cli
from lab.model import topology, warnings
from lab.up import starter
from tests import REPO

SHIPPED = sorted([*(REPO / "topologies").glob("*.yaml"), *(REPO / "topologies" / "examples").glob("*.yaml"),
                  *(REPO / "tests" / "integration" / "topologies").glob("*.yaml")])


def default(tmp_path, change):
    """topologies/default.yaml, changed, as a file."""
    data = yaml.safe_load((REPO / "topologies" / "default.yaml").read_text())
    change(data)
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def server(d):
    return d["nodes"]["vpn"]["pptp_server"]


def client(d):
    return d["nodes"]["client"]["pptp_client"]


@pytest.mark.parametrize("shipped", SHIPPED, ids=lambda p: str(p.relative_to(REPO)))
def test_no_shipped_topology_warns(shipped):
    assert warnings.of(topology.load(shipped)) == []


def test_the_starter_does_not_warn(tmp_path):
    starter.write(tmp_path)
    assert warnings.of(topology.load(tmp_path / "topology.yaml")) == []


def warned(tmp_path, change) -> list[str]:
    return warnings.of(topology.load(default(tmp_path, change)))


@pytest.mark.parametrize("change,want", [
    (lambda d: server(d).update(remote_ip="10.10.0.200-210"),
     "nodes.vpn.pptp_server.remote_ip 10.10.0.200-210 overlaps networks.intranet (10.10.0.0/24): "
     "a client's tunnel address would also be a lab address"),
    (lambda d: server(d).update(local_ip="172.16.0.20"),
     "nodes.vpn.pptp_server.remote_ip 172.16.0.10-50 holds nodes.vpn.pptp_server.local_ip 172.16.0.20: "
     "a client would get the server's own end of the tunnel"),
    (lambda d: client(d).update(server="198.51.100.99"),
     "nodes.client.pptp_client.server 198.51.100.99: no node has that address (no interface, no static "
     "NAT's public address): the call cannot be answered"),
], ids=["pool on a network", "pool holds local_ip", "dials nowhere"])
def test_each_warning_names_its_keys(tmp_path, change, want):
    assert warned(tmp_path, change) == [want]


def test_a_pool_just_past_a_network_or_the_local_ip_does_not_warn(tmp_path):
    def past_the_network(d):
        d["networks"]["intranet"]["subnet"] = "10.10.0.0/25"  # .0-.127
        server(d).update(remote_ip="10.10.0.128-140")
    assert warned(tmp_path, past_the_network) == []
    assert warned(tmp_path, lambda d: server(d).update(local_ip="172.16.0.9")) == []  # the pool is .10-.50


def test_a_static_nats_public_address_answers(tmp_path):
    """server-behind-nat: its client dials the NAT's public address, which no interface holds."""
    topo = topology.load(REPO / "topologies" / "server-behind-nat.yaml")
    publics = {n.nat.public for n in topo.nodes.values() if getattr(n, "nat", None) and n.nat.mode == "static"}
    dialled = {n.pptp_client.server for n in topo.clients.values()}
    assert publics & dialled and not any(a in n.interfaces.values() for a in publics & dialled
                                         for n in topo.nodes.values())
    assert warnings.of(topo) == []


def test_a_client_expected_to_fail_may_dial_nowhere(tmp_path):
    def change(d):
        client(d).update(server="198.51.100.99")
        d["expect"] = {"clients": {"client": {"tunnel": "fails"}}}
    assert warned(tmp_path, change) == []


# ---------------------------------------------------------------- the commands

@pytest.fixture
def bad(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")  # no engine: its checks are skipped
    return default(tmp_path, lambda d: server(d).update(remote_ip="10.10.0.200-210"))


WARNED = "nodes.vpn.pptp_server.remote_ip 10.10.0.200-210 overlaps networks.intranet (10.10.0.0/24)"


def test_validate_warns_and_passes(bad):
    res = CliRunner().invoke(cli.app, ["validate", str(bad), "default"])
    assert res.exit_code == 0, res.output
    assert f"warning: {bad}: {WARNED}" in res.output and "error" not in res.output
    assert res.output.count("topology valid") == 2


def test_validate_strict_makes_warnings_errors(bad):
    res = CliRunner().invoke(cli.app, ["validate", "--strict", str(bad), "default"])
    assert res.exit_code == 1, res.output
    assert f"error: {bad}: {WARNED}" in res.output and "warning:" not in res.output
    assert res.output.count("topology valid") == 1  # default's; not the file that failed
    assert CliRunner().invoke(cli.app, ["validate", "--strict", "default"]).exit_code == 0


@pytest.mark.parametrize("verb", ["up", "test"])
def test_up_and_test_print_the_warnings_and_go_on(bad, monkeypatch, capsys, verb):
    class Chosen(Exception):
        pass

    def select(*a, **k):
        raise Chosen  # where the engine would be chosen: the warnings were said before

    monkeypatch.setattr(cli.engine_mod, "select", select)
    monkeypatch.setattr(sys, "argv", ["pptp-lab", verb, str(bad)])
    with pytest.raises(Chosen):
        cli.main()
    assert f"warning: {bad}: {WARNED}" in capsys.readouterr().err

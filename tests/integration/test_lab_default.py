"""The reference topology brought up for real: node state checked with testinfra, pings
through each tunnel to the intranet host, `up` twice changes nothing, a second lab runs
beside it, and `down` leaves nothing of either on the engine."""
import os

import pytest
import testinfra
import yaml

from lab.up import capture, lifecycle
from lab import pptp
from lab.model import topology
from lab.engines import obj_name
from lab.core.errors import LabError
from tests import REPO

LAB = "t-default"


@pytest.fixture(scope="module")
def default_lab(lab_engine):
    eng, _ = lab_engine
    topo = topology.load(REPO / "topologies" / "default.yaml", name=LAB)
    lifecycle.down(eng, LAB)
    rows = lifecycle.up(eng, topo)
    os.environ["DOCKER_HOST"] = eng.url  # testinfra's docker backend uses the docker CLI
    yield eng, topo, {r.name: r for r in rows}
    lifecycle.down(eng, LAB)


def host(name):
    return testinfra.get_host(f"docker://{obj_name(LAB, name)}")


def test_every_client_has_a_tunnel_with_a_pool_address(default_lab):
    _, topo, rows = default_lab
    pool = set(topo.servers["vpn"].pptp_server.pool)
    for name in topo.clients:
        assert rows[name].tunnel == "up", rows[name]
        assert rows[name].ppp_address in pool
        assert rows[name].peer_address == topo.servers["vpn"].pptp_server.local_ip
        ppp0 = host(name).interface("ppp0")
        assert ppp0.exists and rows[name].ppp_address in ppp0.addresses


def test_node_state_with_testinfra(default_lab):
    _, topo, _ = default_lab
    assert host("vpn").process.filter(comm="pptpd"), "pptpd is not running on vpn"
    for name in ("nat", "fw", "vpn"):
        assert host(name).sysctl("net.ipv4.ip_forward") == 1
    for name in topo.clients:
        assert host(name).process.filter(comm="pppd")
    # The NAT editor is assigned explicitly (the kernel never does it by itself).
    rules = host("nat").check_output("nft list table ip pptp_lab_nat")
    assert 'ct helper set "pptp"' in rules and "masquerade" in rules


def test_each_client_pings_the_intranet_host_through_its_tunnel(default_lab):
    eng, topo, _ = default_lab
    target = topo.nodes["intranet-host"].interfaces["intranet"]
    for name in topo.clients:
        c = eng.node(LAB, name)
        route = eng.exec(c, f"ip route get {target}").out
        assert "dev ppp0" in route, route
        res = eng.exec(c, f"ping -c 3 -i 0.3 -W 3 {target}", check=False)
        assert res.ok and " 0% packet loss" in res.out, f"{name}: {res.out}"


def test_traffic_really_crosses_the_nat_and_firewall(default_lab, tmp_path):
    eng, _, _ = default_lab
    files = capture.snapshot(eng, LAB, tmp_path)
    report = pptp.analyze(files)
    by_segment = {}
    for s in report.sessions:
        by_segment.setdefault(os.path.basename(s.source), []).append(s)
    # The home client's control connection is seen inside the NAT from its own address and
    # outside from the NAT's, with the call ID rewritten by the editor.
    home = [s for s in by_segment["home.pcap"] if s.client == "192.168.1.10"]
    outside = [s for s in by_segment["internet.pcap"] if s.client == "198.51.100.2"]
    assert home and outside
    assert any(link["client_call_id_rewritten"] for link in report.nat_links)
    # Both clients' sessions reach the perimeter, i.e. they crossed the firewall.
    assert {s.client for s in by_segment["perimeter.pcap"]} >= {"198.51.100.10", "198.51.100.2"}


def test_up_twice_changes_nothing(default_lab):
    eng, topo, _ = default_lab
    before = {c.name: c.id for c in eng.containers(LAB)}
    rows = lifecycle.up(eng, topo)
    after = {c.name: c.id for c in eng.containers(LAB)}
    assert before == after
    assert all(r.tunnel == "up" for r in rows if r.kind == "pptp-client")


def test_up_with_a_different_topology_under_the_same_name_is_refused(default_lab, tmp_path):
    eng, _, _ = default_lab
    data = yaml.safe_load((REPO / "topologies" / "default.yaml").read_text())
    del data["nodes"]["home-client"]
    data.pop("expect")
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(LabError, match="is up with a different topology"):
        lifecycle.up(eng, topology.load(path, name=LAB))


SECOND = {
    "networks": {"net": {"subnet": "10.98.0.0/24"}},
    "nodes": {
        "srv": {"kind": "pptp-server", "interfaces": {"net": "10.98.0.10"},
                "pptp_server": {"local_ip": "172.30.0.1", "remote_ip": "172.30.0.10-20",
                                "users": [{"name": "u", "secret": "s"}]}},
        "cli": {"kind": "pptp-client", "interfaces": {"net": "10.98.0.20"},
                "pptp_client": {"server": "10.98.0.10", "user": "u", "secret": "s"}},
    },
}


def test_a_second_lab_runs_beside_and_down_removes_only_its_own(default_lab, tmp_path):
    eng, _, _ = default_lab
    path = tmp_path / "t-second.yaml"
    path.write_text(yaml.safe_dump(SECOND))
    second = topology.load(path)
    try:
        rows = lifecycle.up(eng, second, with_capture=False)
        assert [r.tunnel for r in rows if r.kind == "pptp-client"] == ["up"]
    finally:
        gone, _ = lifecycle.down(eng, "t-second")
    assert gone == 3  # two nodes and one network
    assert not eng.containers("t-second") and not eng.networks("t-second")
    assert all(r.tunnel == "up" for r in lifecycle.status(eng, LAB) if r.kind == "pptp-client")


def test_overlapping_subnets_are_refused_before_anything_is_created(default_lab, tmp_path, monkeypatch):
    eng, _, _ = default_lab
    monkeypatch.setenv(lifecycle.WAIT_ENV, "0")  # pytest -n workers would wait for t-default to go
    data = {**SECOND, "networks": {"net": {"subnet": "198.51.100.0/25"}}}
    data["nodes"] = {"cli": {**SECOND["nodes"]["cli"], "interfaces": {"net": "198.51.100.20"}},
                     "srv": {**SECOND["nodes"]["srv"], "interfaces": {"net": "198.51.100.30"}}}
    path = tmp_path / "t-clash.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(LabError, match="overlaps Docker network t-default-internet"):
        lifecycle.up(eng, topology.load(path))
    assert not eng.containers("t-clash") and not eng.networks("t-clash")


def test_down_leaves_nothing_and_keeps_the_captures(lab_engine):
    eng, _ = lab_engine
    topo = topology.load(REPO / "topologies" / "default.yaml", name=LAB)
    if not eng.containers(LAB):
        lifecycle.up(eng, topo)
    gone, run = lifecycle.down(eng, LAB)
    assert gone >= len(topo.nodes) + len(topo.networks)
    assert not eng.containers(LAB) and not eng.networks(LAB)
    assert {p.name for p in run.iterdir()} >= {f"{n}.pcap" for n in topo.networks} | {"manifest.json"}
    # A second down is harmless.
    assert lifecycle.down(eng, LAB) == (0, None)

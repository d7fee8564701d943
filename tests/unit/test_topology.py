"""Topology loader: the shipped files load; every bad input names the file and key path."""
import json

import pytest
import yaml

from lab.model import topology
from lab.core.errors import LabError
from tests import REPO

SHIPPED = sorted((REPO / "topologies").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_topologies_load(path):
    t = topology.load(path)
    assert t.servers and t.clients


def test_default_is_the_reference_layout():
    t = topology.load(REPO / "topologies" / "default.yaml")
    roles = {n: net.role for n, net in t.networks.items()}
    assert set(roles.values()) == {"internet", "perimeter", "intranet", "home"}
    assert t.nodes["fw"].kind == "firewall" and set(t.nodes["fw"].interfaces) == {"internet", "perimeter"}
    assert set(t.nodes["vpn"].interfaces) == {"perimeter", "intranet"}
    assert t.nodes["nat"].nat.pptp_editor
    assert t.servers["vpn"].pptp_server.pool[0] == "172.16.0.10"


def write(tmp_path, data, name="t.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return p


def base():
    return {"name": "t", "networks": {"a": {"subnet": "10.1.0.0/24"}, "b": {"subnet": "10.2.0.0/24"}},
            "nodes": {"srv": {"kind": "pptp-server", "interfaces": {"a": "10.1.0.10"},
                              "pptp_server": {"local_ip": "172.16.0.1", "remote_ip": "172.16.0.10-20",
                                              "users": [{"name": "u", "secret": "s"}]}},
                      "cli": {"kind": "pptp-client", "interfaces": {"a": "10.1.0.20"},
                              "pptp_client": {"server": "10.1.0.10", "user": "u", "secret": "s"}}}}


def broken(mutate):
    data = base()
    mutate(data)
    return data


@pytest.mark.parametrize("mutate,expect", [
    (lambda d: d["nodes"]["srv"].update(colour="red"), "nodes.srv.colour: unknown key"),
    (lambda d: d.update(extra=1), "extra: unknown key"),
    (lambda d: d["nodes"]["cli"]["interfaces"].update(c="10.3.0.1"), "nodes.cli.interfaces.c: unknown network 'c'"),
    (lambda d: d["nodes"]["cli"]["interfaces"].update(a="10.9.0.5"), "nodes.cli.interfaces.a: 10.9.0.5 is not a host address of a"),
    (lambda d: d["nodes"]["cli"]["interfaces"].update(a="10.1.0.10"), "10.1.0.10 is already used by nodes."),
    (lambda d: d["nodes"]["cli"]["interfaces"].update(a="10.1.0.254"), "reserved for the engine's bridge"),
    (lambda d: d["nodes"]["cli"].update(routes=[{"to": "default", "via": "10.1.0.1"}, {"to": "default", "via": "10.1.0.2"}]),
     "nodes.cli: two default routes"),
    (lambda d: d["nodes"]["cli"].update(routes=[{"to": "default", "via": "10.2.0.1"}]), "nodes.cli.routes[0].via: 10.2.0.1 is on none of cli's networks"),
    (lambda d: d["nodes"]["cli"].update(kind="switch"), "nodes.cli.kind"),
    (lambda d: d["nodes"]["cli"].pop("pptp_client"), "nodes.cli: a pptp-client node needs a pptp_client block"),
    (lambda d: d["nodes"]["srv"]["pptp_server"].update(remote_ip="172.16.0.20-10"), "nodes.srv.pptp_server.remote_ip"),
    (lambda d: d["networks"]["b"].update(subnet="10.1.0.0/16"), "networks.b.subnet"),
    (lambda d: d["networks"]["b"].update(subnet="10.1.0.128/25"), "overlaps networks.a"),
    (lambda d: d["nodes"]["cli"]["interfaces"].update(a="not-an-ip"), "nodes.cli.interfaces: a: Expected 4 octets"),
    (lambda d: d.update(name="Bad_Name"), "name"),
])
def test_bad_input_names_file_and_key(tmp_path, mutate, expect):
    path = write(tmp_path, broken(mutate))
    with pytest.raises(LabError) as err:
        topology.load(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: ") and expect in msg, msg
    assert "\n" not in msg


def test_static_nat_addresses_are_checked(tmp_path):
    data = base()
    data["nodes"]["nat"] = {"kind": "nat", "interfaces": {"a": "10.1.0.1", "b": "10.2.0.1"},
                            "nat": {"mode": "static", "outside": "a", "public": "10.2.0.99", "private": "10.2.0.10"}}
    with pytest.raises(LabError, match=r"nodes\.nat\.nat\.public: 10\.2\.0\.99 is not on a"):
        topology.load(write(tmp_path, data))
    data["nodes"]["nat"]["nat"].update(public="10.1.0.10")
    with pytest.raises(LabError, match=r"nodes\.nat\.nat\.public: 10\.1\.0\.10 is already used"):
        topology.load(write(tmp_path, data))


def test_yaml_syntax_error_gives_the_line(tmp_path):
    path = write(tmp_path, "networks:\n  a: {subnet: [\n")
    with pytest.raises(LabError, match=rf"{path}:\d+: not valid YAML"):
        topology.load(path)


def test_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(LabError, match="no such topology file"):
        topology.load(tmp_path / "nope.yaml")
    with pytest.raises(LabError, match="a topology is a mapping"):
        topology.load(write(tmp_path, "- a\n- b\n"))


def test_name_override_and_default_from_file_name(tmp_path):
    data = base()
    del data["name"]
    assert topology.load(write(tmp_path, data, "my-lab.yaml")).name == "my-lab"
    assert topology.load(write(tmp_path, data, "my-lab.yaml"), name="other").name == "other"


def test_model_is_immutable():
    t = topology.load(REPO / "topologies" / "default.yaml")
    with pytest.raises(Exception):
        t.nodes["fw"].kind = "host"


def test_shipped_json_schema_is_current():
    shipped = REPO / "topologies" / "topology.schema.json"
    assert json.loads(shipped.read_text()) == json.loads(topology.json_schema()), \
        "regenerate with: pptp-lab schema > topologies/topology.schema.json"

"""Node kinds (lab.kinds): the registry, what each kind declares, and the hooks a new kind
plugs into (validation, files, contributions to other nodes, start, status), proven with a
fake kind registered for a test only."""
import json
import subprocess
from types import SimpleNamespace
from typing import Optional

import pytest
import yaml

from lab.model import kinds, render, topology
from lab.up import lifecycle
from lab.core.errors import LabError
from lab.model.types import PppSecret, Strict
from lab.model.tunnels import Tunnel
from tests import REPO

from .test_hostile import HOSTILE, pppd_words
from .test_topology import base

SHIPPED = ("pptp-server", "pptp-client", "nat", "firewall", "router", "host")  # first, in this order
ADDED = ("radius",)  # kinds added as modules since (lab/kinds/radius.py), after them by name


def load(tmp_path, data):
    p = tmp_path / "t.yaml"
    p.write_text(yaml.safe_dump(data, allow_unicode=True))
    return topology.load(p)


def test_the_registry_holds_the_six_kinds_in_order():
    assert tuple(kinds.KINDS) == SHIPPED + ADDED
    assert all(kinds.get(n).name == n for n in SHIPPED + ADDED)
    with pytest.raises(KeyError, match="no node kind 'switch'"):
        kinds.get("switch")
    schema = json.loads(topology.json_schema())
    assert tuple(schema["$defs"]["Node"]["properties"]["kind"]["enum"]) == SHIPPED + ADDED


def test_every_package_a_kind_needs_is_in_the_node_image():
    listed = {line.strip() for line in (REPO / "images/node/packages.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    for kind in kinds.KINDS.values():
        assert set(kind.packages) <= listed, (kind.name, set(kind.packages) - listed)


def test_blocks_and_their_owners():
    assert kinds.owners() == {"pptp_server": ["pptp-server"], "pptp_client": ["pptp-client", "pptp-server"],
                              "nat": ["nat"], "policy": ["firewall"], "policy_without": ["firewall"],
                              "filters": ["firewall"], "vpn": ["firewall"], "radius": ["radius"],
                              "ruleset": ["nat", "firewall", "router"], "count": ["pptp-client"]}
    assert list(topology.Node.model_fields) == ["kind", "interfaces", "routes", "image", "rp_filter", "pptp_server", "pptp_client",
                                                "count", "nat", "ruleset", "policy", "policy_without", "filters", "vpn",
                                                "radius"]


@pytest.mark.parametrize("node,block,expect", [
    ("cli", {"nat": {"outside": "a"}}, "nodes.cli: nat is only for kind nat"),
    ("cli", {"pptp_server": {"local_ip": "172.16.0.1", "remote_ip": "172.16.0.10-20"}},
     "nodes.cli: pptp_server is only for kind pptp-server"),
    ("cli", {"policy": "pptp-documented"}, "nodes.cli: policy is only for kind firewall"),
    ("cli", {"vpn": "10.1.0.10"}, "nodes.cli: vpn is only for kind firewall"),
    ("srv", {"pptp_server": None}, "nodes.srv: a pptp-server node needs a pptp_server block"),
])
def test_a_block_on_the_wrong_kind_or_a_missing_one_is_named(tmp_path, node, block, expect):
    data = base()
    data["nodes"][node].update(block)
    with pytest.raises(LabError) as err:
        load(tmp_path, data)
    assert expect in str(err.value), str(err.value)


def test_pptp_client_block_goes_on_a_client_or_a_calling_router(tmp_path):
    data = base()
    data["nodes"]["h"] = {"kind": "host", "interfaces": {"a": "10.1.0.30"},
                          "pptp_client": dict(data["nodes"]["cli"]["pptp_client"])}
    with pytest.raises(LabError, match="nodes.h: pptp_client is only for kind pptp-client or pptp-server"):
        load(tmp_path, data)


def test_a_server_without_users_needs_a_node_that_authenticates_them(tmp_path):
    data = base()
    data["nodes"]["srv"]["pptp_server"]["users"] = []
    with pytest.raises(LabError, match=r"nodes\.srv\.pptp_server\.users: empty, and no node authenticates srv's"):
        load(tmp_path, data)


def test_tunnel_interfaces():
    topo = topology.load(REPO / "topologies" / "router-to-router.yaml")
    for name, node in topo.nodes.items():
        assert render.tunnel_if(node) == ("ppp100" if node.kind == "pptp-server" else "ppp0")
    # status() asks by a NodeStatus, which only has the kind (from the container's label)
    assert render.tunnel_if(SimpleNamespace(kind="pptp-server")) == "ppp100"
    assert render.tunnel_if(SimpleNamespace(kind="pptp-client")) == "ppp0"


class FakeRun:
    """run(cmd) of a node: records commands, answers from a table (prefix -> output)."""

    def __init__(self, answers=None):
        self.cmds, self.answers = [], answers or {}

    def __call__(self, cmd):
        self.cmds.append(cmd)
        out = next((v for k, v in self.answers.items() if cmd.startswith(k)), "")
        return SimpleNamespace(ok=True, rc=0, out=out)


def test_start_hooks():
    runs = {name: FakeRun() for name in SHIPPED}
    for name, run in runs.items():
        kinds.get(name).start(run)
    assert runs["pptp-server"].cmds == ["pgrep -x pptpd >/dev/null || pptpd"]
    assert all(not run.cmds for name, run in runs.items() if name != "pptp-server")


def test_start_servers_runs_the_start_hook_of_each_node_in_it():
    """lifecycle.start_servers with a fake engine: pptpd starts on the servers only."""
    topo = topology.load(REPO / "topologies" / "router-to-router.yaml")
    ran = []
    eng = SimpleNamespace(node=lambda lab, name: f"{lab}-{name}",
                          exec=lambda node, cmd, check=True: ran.append((node, cmd)))
    lifecycle.start_servers(eng, topo)
    assert sorted(ran) == sorted((f"{topo.name}-{n}", "pgrep -x pptpd >/dev/null || pptpd") for n in topo.servers)


def test_status_hooks():
    st = lifecycle.NodeStatus("cli", "pptp-client", "running", {"a": "10.1.0.20"})
    run = FakeRun({"ip -o link show dev ppp0": "5: ppp0: <POINTOPOINT,UP> mtu 1396 qdisc fq_codel state UNKNOWN\n"
                   "5: ppp0    inet 172.16.0.10 peer 172.16.0.1/32 scope global ppp0"})
    seen = Tunnel("a", "7/9", 60.0, None, "", 10, 9, 0, 1, 2.0, None, "1400/1400", "1437/1396")
    kinds.get("pptp-client").status(run, st, {"10.1.0.20": [seen]})
    assert (st.tunnel, st.ppp_address, st.peer_address, st.call_ids) == ("up", "172.16.0.10", "172.16.0.1", "7/9")
    assert (st.tunnel_mtu, st.mru, st.outer) == (1396, "1400/1400", "1437/1396")  # SPEC S29, status --wide
    assert (st.seen_on, st.gre_out, st.gre_in, st.lost_in, st.age_s) == ("a", 10, 9, 1, 60.0)
    down = lifecycle.NodeStatus("cli", "pptp-client", "running", {"a": "10.1.0.21"})
    kinds.get("pptp-client").status(FakeRun(), down, {})
    assert (down.tunnel, down.ppp_address, down.call_ids) == ("down", "", "")

    srv = lifecycle.NodeStatus("srv", "pptp-server", "running", {"a": "10.1.0.10"})
    links = "\n".join(["1: lo: <LOOPBACK>", "7: ppp0: <POINTOPOINT>", "8: ppp1: <POINTOPOINT>",
                       "9: ppp100: <POINTOPOINT>", "10: eth0@if11: <BROADCAST>"])
    kinds.get("pptp-server").status(FakeRun({"ip -o link show": links}), srv, {})
    assert srv.tunnel == "2 call(s)"  # its own outgoing ppp100 is not a call it answers
    for name in ("nat", "firewall", "router", "host"):
        st = lifecycle.NodeStatus("x", name, "running", {})
        run = FakeRun()
        kinds.get(name).status(run, st, {})
        assert not run.cmds and st.tunnel == ""


# A kind that serves another node: "relay" authenticates a pptp-server's users and gives it
# a pppd plugin with options, and a file. Registered for one test, removed after it.

class Relay(Strict):
    serves: str
    secret: PppSecret


class RelayKind(kinds.Kind):
    name = "relay"
    blocks = {"relay": (Optional[Relay], None)}
    required = ("relay",)

    def check(self, topo, name, node):
        target = topo.nodes.get(node.relay.serves)
        if target is None or target.kind != "pptp-server":
            return [f"nodes.{name}.relay.serves: no pptp-server {node.relay.serves!r}"]
        return []

    def files(self, topo, name, node, ctx):
        return {"/etc/relay/clients": (f"{topo.nodes[node.relay.serves].interfaces['a']}\n", 0o600)}

    def contribute(self, topo, name, node):
        return {node.relay.serves: kinds.Contribution(
            files={"/etc/ppp/relay.conf": (f"server {node.interfaces['a']}\n", 0o600)},
            pppd_options=(("plugin", "relay.so"), ("relay-secret", node.relay.secret)),
            authenticates=True)}


@pytest.fixture
def relay():
    kind = kinds.register(RelayKind())
    try:
        yield kind
    finally:
        kinds.unregister("relay")


def relay_topology(secret="s3cret"):
    data = base()
    data["nodes"]["srv"]["pptp_server"]["users"] = []
    data["nodes"]["auth"] = {"kind": "relay", "interfaces": {"a": "10.1.0.30"},
                             "relay": {"serves": "srv", "secret": secret}}
    return data


@pytest.mark.parametrize("secret", [HOSTILE["double quote"], HOSTILE["template"], HOSTILE["command substitution"]])
def test_a_kind_registered_later_is_validated_rendered_and_contributes(tmp_path, relay, secret):
    topo = load(tmp_path, relay_topology(secret))
    assert topo.nodes["auth"].kind == "relay" and "relay" in topology.json_schema()
    srv = render.node_files(topo, "srv")
    options = pppd_words(srv["/etc/ppp/pptpd-options"][0])
    assert options[-1] == ["file", "/etc/ppp/pptp-lab.d/relay.options"]
    assert pppd_words(srv["/etc/ppp/pptp-lab.d/relay.options"][0]) == [["plugin", "relay.so"],
                                                                        ["relay-secret", secret]]
    assert srv["/etc/ppp/relay.conf"] == ("server 10.1.0.30\n", 0o600)
    assert "/etc/ppp/chap-secrets" not in srv  # its users live on the relay node
    assert secret not in srv[render.SCRIPT][0]
    auth = render.node_files(topo, "auth")
    assert auth["/etc/relay/clients"] == ("10.1.0.10\n", 0o600)
    assert subprocess.run(["sh", "-n"], input=auth[render.SCRIPT][0], text=True).returncode == 0
    # Nodes it gives nothing are as before.
    assert not any("relay" in path for path in render.node_files(topo, "cli"))


def test_a_registered_kind_is_checked_like_the_shipped_ones(tmp_path, relay):
    data = relay_topology()
    data["nodes"]["auth"]["relay"]["serves"] = "cli"
    with pytest.raises(LabError, match=r"nodes\.auth\.relay\.serves: no pptp-server 'cli'"):
        load(tmp_path, data)
    data = relay_topology()
    del data["nodes"]["auth"]["relay"]
    with pytest.raises(LabError, match="nodes.auth: a relay node needs a relay block"):
        load(tmp_path, data)
    data = relay_topology()
    data["nodes"]["cli"]["relay"] = {"serves": "srv", "secret": "x"}
    with pytest.raises(LabError, match="nodes.cli: relay is only for kind relay"):
        load(tmp_path, data)
    data = relay_topology("a\nplugin evil.so")
    with pytest.raises(LabError, match=r"nodes\.auth\.relay\.secret: .*control character"):
        load(tmp_path, data)


def test_a_contributed_file_never_replaces_one_of_the_node(tmp_path, relay, monkeypatch):
    topo = load(tmp_path, relay_topology())
    monkeypatch.setattr(RelayKind, "contribute", lambda self, topo, name, node: {
        "srv": kinds.Contribution(files={"/etc/ppp/pptpd-options": ("plugin evil.so\n", 0o644)})})
    with pytest.raises(LabError, match="gives srv the file /etc/ppp/pptpd-options"):
        render.node_files(topo, "srv")
    monkeypatch.setattr(RelayKind, "contribute", lambda self, topo, name, node: {
        "cli": kinds.Contribution(pppd_options=(("plugin", "relay.so"),))})
    with pytest.raises(LabError, match="nodes.cli: given pppd options by relay, but it runs no pptpd"):
        render.node_files(topo, "cli")
    monkeypatch.setattr(RelayKind, "contribute", lambda self, topo, name, node: {
        "srv": kinds.Contribution(pppd_options=(("plugin x\nevil", "relay.so"),), authenticates=True)})
    with pytest.raises(LabError, match="is no pppd option name"):
        render.node_files(topo, "srv")


def test_after_unregistering_the_kind_is_unknown_again(tmp_path):
    kinds.register(RelayKind())
    kinds.unregister("relay")
    with pytest.raises(LabError, match="nodes.auth.kind"):
        load(tmp_path, relay_topology())
    assert json.loads(topology.json_schema()) == json.loads((REPO / "topologies/topology.schema.json").read_text())


def test_a_kind_declaring_a_block_otherwise_is_refused():
    class Clash(kinds.Kind):
        name = "clash"
        blocks = {"nat": (Optional[str], None)}

    with pytest.raises(ValueError, match="block nat is declared otherwise by kind nat"):
        kinds.register(Clash())
    assert "clash" not in kinds.KINDS


def test_ppp_timers_become_option_lines_with_numbers_only(tmp_path):
    data = yaml.safe_load((REPO / "topologies/default.yaml").read_text())
    data["nodes"]["client"]["pptp_client"]["ppp"] = {"lcp_echo_interval": 2, "lcp_echo_failure": 3,
                                                     "persist": True, "holdoff": 1, "maxfail": 0}
    data["nodes"]["vpn"]["pptp_server"]["ppp"] = {"lcp_echo_interval": 5}
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(data))
    topo = topology.load(tmp_path / "t.yaml")
    peer = render.node_files(topo, "client")["/etc/ppp/peers/lab"][0].splitlines()
    assert peer[-5:] == ["lcp-echo-interval 2", "lcp-echo-failure 3", "persist", "holdoff 1", "maxfail 0"]
    opts = render.node_files(topo, "vpn")["/etc/ppp/pptpd-options"][0].splitlines()
    assert "lcp-echo-interval 5" in opts and "persist" not in opts
    assert render.node_files(topo, "home-client")["/etc/ppp/peers/lab"][0].splitlines()[-1] == "mru 1400"
    for bad in ({"lcp_echo_interval": "2\nplugin x.so"}, {"persist": "yes please"}, {"holdoff": -1},
                {"lcp_echo_failure": 0}, {"debug": True}):
        data["nodes"]["client"]["pptp_client"]["ppp"] = bad
        (tmp_path / "t.yaml").write_text(yaml.safe_dump(data))
        with pytest.raises(LabError, match="nodes.client.pptp_client.ppp"):
            topology.load(tmp_path / "t.yaml")
    data["nodes"]["client"]["pptp_client"]["ppp"] = {}
    data["nodes"]["vpn"]["pptp_server"]["ppp"] = {"persist": True}  # a server's pppd never dials
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(LabError, match="nodes.vpn.pptp_server.ppp"):
        topology.load(tmp_path / "t.yaml")


def test_status_reads_the_kernel_and_the_pptp_program_versions():
    out = "6.12.117+deb13-amd64\nppp 2.5.2-1+1\npptpd 1.4.0-12+b2\n"
    assert lifecycle.parse_versions(out) == {"kernel": "6.12.117+deb13-amd64", "ppp": "2.5.2-1+1",
                                             "pptpd": "1.4.0-12+b2"}
    assert lifecycle.parse_versions("") == {}
    assert lifecycle.parse_versions("bash 5.2\nppp 2.4.9\n") == {"ppp": "2.4.9"}  # no kernel line
    # what does not look like a release or a version is not shown
    assert lifecycle.parse_versions("<b>6.1\nppp 2.4.9 <i>\npptpd 1.4.0-12\n") == {"pptpd": "1.4.0-12"}

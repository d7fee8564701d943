"""`pptp-lab graph` and lab.graph: the topology drawn without deploying it, with a running
lab's state when given one (a hand-made state here: the engine side needs a lab)."""
import json
import xml.etree.ElementTree as ET
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from lab import cli
from lab.reports import graph
from lab.up import lifecycle
from lab.core import names
from lab.model import topology
from lab import engines as engine_mod
from lab.core.errors import LabError
from lab.up.lifecycle import NodeStatus
from tests import REPO

from .bigtopo import big_topology

NS = "{http://www.w3.org/2000/svg}"
runner = CliRunner()


def load(name: str):
    return topology.load(REPO / "topologies" / f"{name}.yaml")


def texts(svg: str) -> list[str]:
    return [t.text for t in ET.fromstring(svg).iter(f"{NS}text")]


def test_every_address_role_and_tunnel_is_drawn_in_full():
    topo = load("default")
    svg = graph.topology_svg(topo)
    words = texts(svg)
    for name, node in topo.nodes.items():
        assert name in words and node.kind in words
        for net, addr in node.interfaces.items():
            assert f"{net} {addr}" in words
    for net, n in topo.networks.items():
        assert net in words and f"{n.subnet} · {n.role}" in words
    assert {"NAT masquerade, outside internet", "PPTP editor on", "policy open", "PPTP server 172.16.0.1",
            "pool 172.16.0.10-50", "dials 192.0.2.10 (vpn)"} <= set(words)
    tunnels = [p for p in ET.fromstring(svg).iter(f"{NS}path") if p.get("class") == "tunnel"]
    assert sorted(p.find(f"{NS}title").text for p in tunnels) == [
        "client dials 192.0.2.10 (vpn)", "home-client dials 192.0.2.10 (vpn)"]
    assert all(p.get("stroke-dasharray") for p in tunnels)


def test_static_nat_firewall_policy_and_a_server_that_dials():
    words = texts(graph.topology_svg(load("server-behind-nat")))
    assert {"NAT static, outside internet", "public 198.51.100.100 → 10.20.0.10", "PPTP editor off",
            "dials 198.51.100.100 (nat)"} <= set(words)
    words = texts(graph.topology_svg(load("router-to-router")))
    assert {"policy pptp-documented-router", "dials 198.51.100.50 (remote)", "dials 192.0.2.10 (vpn)"} <= set(words)
    words = texts(graph.topology_svg(big_topology()))
    assert {"policy pptp-documented", "without S12b", "dials 10.30.0.10 (remote)"} <= set(words)


def test_networks_are_ordered_so_routers_join_neighbouring_buses():
    assert graph.network_order(load("default")) == ["home", "internet", "perimeter", "intranet"]
    assert graph.network_order(load("nat-clients")) == ["home", "internet", "intranet"]


def overlap(a, b) -> bool:
    return a.x < b.x + b.w and b.x < a.x + a.w and a.y < b.y + b.h and b.y < a.y + a.h


@pytest.mark.parametrize("topo", [load("default"), load("nat-clients"), big_topology()], ids=["default", "nat", "big"])
def test_boxes_never_share_room_and_the_picture_holds_them_all(topo):
    _, boxes, geo = graph.layout(topo)
    assert len(boxes) == len(topo.nodes)
    for i, a in enumerate(boxes):
        assert a.x >= geo["left"] and a.x + a.w <= geo["right"] and a.y + a.h <= geo["height"]
        assert max(graph.text_width(t) for t, _ in a.lines) + 2 * graph.PAD <= a.w
        for b in boxes[i + 1:]:
            assert not overlap(a, b), (a.name, b.name)
            # a box's wires run inside its own column through every band it spans
            if set(a.span) & set(b.span):
                assert a.x + a.w <= b.x or b.x + b.w <= a.x, (a.name, b.name)
    for b in boxes:
        for k in b.buses:  # wires end on a bus above or below the box, never through it
            assert geo["bus_y"][k] <= b.y or geo["bus_y"][k] >= b.y + b.h


def test_the_picture_grows_with_the_topology():
    small, big = (ET.fromstring(graph.topology_svg(t)) for t in (load("default"), big_topology()))
    assert int(big.get("width")) > int(small.get("width")) and int(big.get("height")) > int(small.get("height"))
    assert len(big_topology().nodes) >= 20


def test_a_running_labs_state_is_drawn_on_its_boxes_and_tunnels():
    state = {"client": {"state": "running", "tunnel": "up", "ppp_address": "172.16.0.10",
                        "peer_address": "172.16.0.1", "call_ids": "50229/128"},
             "home-client": {"state": "running", "tunnel": "down", "ppp_address": "", "peer_address": "",
                             "call_ids": ""},
             "vpn": {"state": "running", "tunnel": "1 call(s)"},
             "fw": {"state": "exited"}}
    svg = graph.topology_svg(load("default"), state)
    words = texts(svg)
    assert {"tunnel up", "PPP 172.16.0.10 → 172.16.0.1", "call IDs 50229/128", "tunnel down", "1 call(s)",
            "state exited"} <= set(words)
    tunnels = {p.find(f"{NS}title").text: p.get("stroke") for p in ET.fromstring(svg).iter(f"{NS}path")
               if p.get("class") == "tunnel"}
    assert tunnels == {"client dials 192.0.2.10 (vpn): tunnel up": graph.COLOURS["up"],
                       "home-client dials 192.0.2.10 (vpn): tunnel down": graph.COLOURS["down"]}


def test_state_from_status_rows():
    rows = [NodeStatus("client", "pptp-client", "running", {"internet": "198.51.100.10"}, "up", "172.16.0.10",
                       "172.16.0.1", "1/2")]
    assert graph.state_from(rows) == {"client": {"state": "running", "tunnel": "up", "ppp_address": "172.16.0.10",
                                                 "peer_address": "172.16.0.1", "call_ids": "1/2"}}


def test_text_width_is_generous_and_wrap_keeps_every_character():
    assert graph.text_width("198.51.100.10") >= 13 * 0.602 * graph.FONT  # DejaVu Sans Mono's advance
    assert graph.text_width("→") > graph.text_width("a") and graph.text_width("日") > graph.text_width("a")
    text = "one two " + "x" * 90 + " three"
    lines = graph.wrap(text, 200)
    assert all(graph.text_width(x) <= 200 for x in lines) and len(lines) > 2
    assert "".join(lines).replace(" ", "") == text.replace(" ", "")


# ------------------------------------------------------------------ the command
@pytest.fixture
def no_engine(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")


def test_graph_writes_svg_html_or_stdout(tmp_path, monkeypatch, no_engine):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(cli.app, ["graph", "default"])
    assert res.exit_code == 0, res.output
    assert "wrote default.svg" in res.output and (tmp_path / "default.svg").read_text().startswith("<svg")
    res = runner.invoke(cli.app, ["graph", str(REPO / "topologies" / "nat-clients.yaml"), "-o", "x.html"])
    assert res.exit_code == 0 and "<h1>topology natclients</h1>" in (tmp_path / "x.html").read_text()
    res = runner.invoke(cli.app, ["graph", "default", "-o", "-"])
    assert res.exit_code == 0 and res.output.startswith("<svg") and "dials 192.0.2.10 (vpn)" in res.output
    ET.fromstring(res.output)  # well-formed on its own


def test_graph_refuses_other_file_kinds_and_unknown_names(tmp_path, no_engine):
    res = runner.invoke(cli.app, ["graph", "default", "-o", str(tmp_path / "x.png")])
    assert isinstance(res.exception, LabError) and "give a .svg or .html file name" in str(res.exception)
    res = runner.invoke(cli.app, ["graph", "no-such-lab"])
    assert isinstance(res.exception, LabError) and "no such topology file" in str(res.exception)


def test_a_topology_file_is_drawn_without_asking_any_engine(tmp_path, monkeypatch):
    def boom(*_):
        raise AssertionError("a file needs no engine")
    monkeypatch.setattr(engine_mod, "running", boom)
    res = runner.invoke(cli.app, ["graph", str(REPO / "topologies" / "default.yaml"), "-o", str(tmp_path / "d.svg")])
    assert res.exit_code == 0, res.output


def test_a_running_labs_name_draws_its_recorded_topology_with_its_status(tmp_path, monkeypatch):
    """The wiring only: engine, labs, recorded topology and status stand in for a real lab."""
    topo = load("default")
    monkeypatch.setattr(engine_mod, "running", lambda choice=None, kernel=None: SimpleNamespace(labs=lambda: {"mylab"}))
    monkeypatch.setattr(lifecycle, "recorded_topology", lambda c, lab: topo)
    monkeypatch.setattr(lifecycle, "status", lambda c, lab: [
        NodeStatus("client", "pptp-client", "running", {}, "up", "172.16.0.10", "172.16.0.1", "7/8")])
    res = runner.invoke(cli.app, ["graph", "mylab", "-o", str(tmp_path / "live.svg")])
    assert res.exit_code == 0 and "(live)" in res.output, res.output
    words = texts((tmp_path / "live.svg").read_text())
    assert "tunnel up" in words and "call IDs 7/8" in words


# ------------------------------------------------------------------ the recorded topology
def test_up_records_the_topology_on_its_networks_without_secrets(monkeypatch):
    topo = load("default")
    made = {}
    eng = SimpleNamespace(create_network=lambda lab, name, subnet, gw, labels, mtu=None:
                          made.setdefault(name, labels),
                          create_node=lambda *a, **k: None, url="unix:///fake", networks=lambda lab=None: [])
    lifecycle.create(eng, topo, "image")
    labels = made["internet"]
    assert labels[names.TOPOLOGY] == lifecycle.topo_hash(topo)
    assert "secret" not in labels[names.MODEL].replace('"secret":"(removed)"', "")  # every secret replaced
    assert "alice-secret" not in labels[names.MODEL] and "bob-secret" not in labels[names.MODEL]

    network = SimpleNamespace(attrs={"Labels": labels})
    back = lifecycle.recorded_topology(SimpleNamespace(networks=lambda lab: [network]), "default")
    assert back == topology.Topology.model_validate(topology.public_data(topo))
    assert graph.topology_svg(back) == graph.topology_svg(topo)  # secrets are not drawn


def test_a_lab_without_a_recorded_topology_is_a_clear_error(monkeypatch):
    eng = SimpleNamespace(networks=lambda lab: [SimpleNamespace(attrs={"Labels": {}})])
    with pytest.raises(LabError, match="lab old has no recorded topology"):
        lifecycle.recorded_topology(eng, "old")


def test_the_hash_on_the_labels_did_not_change():
    """Labs brought up before the topology was recorded keep matching their topology."""
    import hashlib

    data = load("default").model_dump(mode="json")
    del data["engine"]  # unset suites (issue #11) are left out of what is hashed
    for want in data["expect"]["clients"].values():
        del want["cause"], want["transfer"]  # so are an unset cause (issue #25) and transfer (#29)
    for node in data["nodes"].values():
        del node["image"], node["rp_filter"], node["count"]  # and an unset rp_filter (#25), count (#30)
    for net in data["networks"].values():
        del net["mtu"], net["netem"]  # and an unset network MTU and netem (issue #29)
    for node in data["nodes"].values():
        for block in ("pptp_client", "pptp_server"):  # and unset pppd sizes (issue #29)
            if node.get(block):
                del node[block]["ppp"]["mtu"], node[block]["ppp"]["mru"]
        for user in (node.get("pptp_server") or {}).get("users", []):
            user["secret"] = ""
        if node.get("pptp_client"):
            node["pptp_client"]["secret"] = ""
    assert lifecycle.topo_hash(load("default")) == hashlib.sha256(
        json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


def test_the_readmes_picture_is_what_graph_draws_today():
    """docs/topology-default.svg: `pptp-lab graph topologies/default.yaml -o docs/topology-default.svg`."""
    assert (REPO / "docs" / "topology-default.svg").read_text() == graph.topology_svg(load("default")) + "\n"


def test_many_networks_are_ordered_along_their_routers():
    """Past 7 networks not every order is tried: a chain of 10 is still followed link by link."""
    chain = [0, 5, 2, 7, 1, 9, 3, 8, 4, 6]
    nodes = {f"r{a}-{b}": {"kind": "router", "interfaces": {f"n{a}": f"10.{a}.0.{b + 10}",
                                                            f"n{b}": f"10.{b}.0.{a + 100}"}}
             for a, b in zip(chain, chain[1:])}
    topo = topology.Topology.model_validate({
        "name": "chain", "networks": {f"n{i}": {"subnet": f"10.{i}.0.0/24"} for i in range(10)}, "nodes": nodes})
    assert graph.network_order(topo) == [f"n{i}" for i in chain]


# ------------------------------------------------------------------ a failing client's packet
def traced_path(rule: str = 'iifname "perimeter" ip protocol gre drop', client: str = "home-client") -> dict:
    from . import synthrun

    return synthrun.traced(load("default"), client, synthrun.FW_TRACE.replace(
        'iifname "perimeter" ip protocol gre drop', rule))["path"]


def test_without_a_path_the_picture_is_unchanged():
    topo = load("default")
    plain = graph.topology_svg(topo)
    assert graph.topology_svg(topo, paths=[]) == plain and graph.topology_svg(topo, None, None) == plain
    # Not paths (a hand-edited checks.json): nothing drawn, nothing broken.
    junk = [5, "x", {}, {"segments": "home"}, {"segments": [], "nodes": []}, {"segments": [1], "nodes": []}]
    assert graph.topology_svg(topo, paths=junk) == plain


def test_a_dropped_packet_is_drawn_on_its_way():
    p = traced_path()
    assert p == {"client": "home-client", "server": "vpn", "segments": ["home", "internet", "perimeter"],
                 "nodes": ["nat", "fw"], "packet": "GRE to the client",
                 "seen": {"home": False, "internet": False, "perimeter": True}, "at": "fw",
                 "rule": 'table inet fw, chain forward, rule `iifname "perimeter" ip protocol gre drop` (handle 7)',
                 "action": "dropped"}
    svg = graph.topology_svg(load("default"), paths=[p])
    root = ET.fromstring(svg)
    lines = [ln for ln in root.iter(f"{NS}line") if ln.get("class", "").startswith("path-")]
    on_buses = {ln.get("data-segment"): ln.get("class") for ln in lines if ln.find(f"{NS}title") is not None}
    assert on_buses == {"home": "path-unseen", "internet": "path-unseen", "perimeter": "path-seen"}
    assert all(ln.get("stroke-dasharray") for ln in lines if ln.get("class") == "path-unseen")
    assert not any(ln.get("stroke-dasharray") for ln in lines if ln.get("class") == "path-seen")
    # The wires of the way: the client's, the NAT's two, the firewall's two, the server's.
    assert len(lines) - len(on_buses) == 6
    (fw,) = [g for g in root.iter(f"{NS}g") if g.get("data-name") == "fw"]
    assert fw.find(f"{NS}title").text == f"home-client: GRE to the client dropped by fw, {p['rule']}"
    assert fw.find(f"{NS}rect").get("stroke") == "#b00"
    assert "✕ dropped here: GRE to the client" in [t.text for t in fw.iter(f"{NS}text")]
    (legend,) = [t for t in root.iter(f"{NS}text") if t.get("class") == "legend path-legend"]
    assert "".join(legend.itertext()) == ("home-client: GRE to the client  ━ seen on perimeter  "
                                          "✕ dropped by fw (its box: the rule)  ┅ not seen on home, internet")
    # Only the marked box changed; the rest of the picture is where it was.
    assert int(root.get("height")) == int(ET.fromstring(graph.topology_svg(load("default"))).get("height")) + 16 + 16


def test_the_rule_and_names_from_a_file_are_escaped():
    hostile = '</title><script>alert(1)</script>&"'
    p = traced_path(rule=f'iifname "perimeter" ip protocol gre drop comment "{hostile}"')
    p["packet"] = p["client"] = hostile
    svg = graph.topology_svg(load("default"), paths=[p])
    assert "<script" not in svg and "&lt;/title&gt;&lt;script&gt;" in svg
    root = ET.fromstring(svg)  # well-formed
    (fw,) = [g for g in root.iter(f"{NS}g") if g.get("data-name") == "fw"]
    assert hostile in fw.find(f"{NS}title").text and fw.find(f"{NS}title").text.startswith(hostile)
    assert {ln.get("data-client") for ln in root.iter(f"{NS}line") if ln.get("data-client")} == {hostile}
    # A path naming what the topology does not have draws only what it has.
    p = dict(traced_path(), at="nowhere", segments=["home", "nowhere", "perimeter"])
    root = ET.fromstring(graph.topology_svg(load("default"), paths=[p]))
    assert {ln.get("data-segment") for ln in root.iter(f"{NS}line") if ln.get("data-segment")} == {"home", "perimeter"}
    assert all(g.find(f"{NS}title") is None for g in root.iter(f"{NS}g") if g.get("class") == "node")


def test_a_packet_lost_with_no_rule_traced_and_two_clients():
    untraced = dict(traced_path(), rule="", action="")
    other = dict(traced_path(), client="client", segments=["internet", "perimeter"], nodes=["fw"])
    root = ET.fromstring(graph.topology_svg(load("default"), paths=[untraced, other]))
    (fw,) = [g for g in root.iter(f"{NS}g") if g.get("data-name") == "fw"]
    assert fw.find(f"{NS}title").text.splitlines() == [
        "home-client: GRE to the client went missing at fw: no rule traced a drop (routing? rp_filter? "
        "a conntrack INVALID drop outside nft?)",
        f"client: GRE to the client dropped by fw, {other['rule']}"]
    assert fw.find(f"{NS}rect").get("stroke") == "#b00"  # one of them was traced
    words = [t.text for t in fw.iter(f"{NS}text")]
    assert "? GRE to the client lost here" in words and "✕ dropped here: GRE to the client" in words
    assert len([t for t in root.iter(f"{NS}text") if t.get("class") == "legend path-legend"]) == 2


def test_a_kind_says_what_the_picture_shows_of_it():
    """Issue #27: the three-legged firewall is drawn with its ruleset, not as "policy open";
    a NAT with its forwards; the picture asks the kind, not the other way round."""
    from lab.model import topology
    from lab.reports import graph as g

    t = topology.load(REPO / "topologies" / "examples" / "three-legged.yaml")
    texts = [text for text, _ in g._lines(t, "fw", t.nodes["fw"], None)]
    assert "ruleset nft three-legged.nft" in texts and not any(x.startswith("policy") for x in texts)
    svg = g.topology_svg(t)
    assert "three-legged.nft" in svg and "policy open" not in svg
    t = topology.load(REPO / "tests" / "integration" / "topologies" / "causes.yaml")
    texts = [text for text, _ in g._lines(t, "gw", t.nodes["gw"], None)]
    assert texts[-2:] == ["PPTP editor off", "forward tcp 1723 → 10.202.1.10"]

"""A pptp-client node with a count (issue #30): its members, what refuses a count, the files
each member dials with, the status rows and the dial and hang-up execs, without Docker."""
import copy
import subprocess
from types import SimpleNamespace

import pytest
import yaml

from lab.core import names
from lab.core.errors import LabError
from lab.model import members, render, topology
from lab.model.kinds.pptp_client import KIND as CLIENT, tunnel_links
from lab.up import lifecycle

from .test_hostile import HOSTILE, pppd_words
from .test_topology import base


def counted(n=5, **client):
    data = base()
    data["nodes"]["cli"].update(count=n, **client)
    return data


def load(tmp_path, data):
    p = tmp_path / "t.yaml"
    p.write_text(yaml.safe_dump(data, allow_unicode=True))
    return topology.load(p)


def refused(tmp_path, data) -> str:
    with pytest.raises(LabError) as exc:
        load(tmp_path, data)
    return str(exc.value)


def test_members_are_named_addressed_and_numbered_from_the_interface(tmp_path):
    topo = load(tmp_path, counted(3))
    ms = members.members(topo)
    assert list(ms) == ["cli#1", "cli#2", "cli#3"]
    m = ms["cli#3"]
    assert (m.node, m.index, m.network, m.address, m.prefixlen) == ("cli", 3, "a", "10.1.0.22", 24)
    assert (m.ifname, m.peer, m.log) == ("ppp2", "lab-3", "/var/log/ppp-3.log")
    assert m.dial_args() == ["lab-3", "/var/log/ppp-3.log", "10.1.0.22"]
    assert members.resolve(topo, "cli#2").address == "10.1.0.21"
    with pytest.raises(LabError, match=r"no client 'cli#4' in lab t \(clients: cli#1, cli#2, cli#3\)"):
        members.resolve(topo, "cli#4")
    assert [x.name for x in members.of_nodes(topo, ["cli"])] == list(ms)


def test_a_node_without_a_count_is_one_member_named_like_it(tmp_path):
    topo = load(tmp_path, base())
    (m,) = members.members(topo).values()
    assert (m.name, m.node, m.index, m.ifname, m.peer, m.log) == ("cli", "cli", 0, "ppp0", "lab", names.PPP_LOG)
    assert m.dial_args() == []  # the dial script's defaults: the argv of before
    assert "count" not in topology.public_data(topo)["nodes"]["cli"]  # its hash is the one of before


@pytest.mark.parametrize("mutate,expect", [
    (lambda d: d["nodes"]["srv"].update(count=3), "nodes.srv: count is only for kind pptp-client"),
    (lambda d: d["nodes"]["cli"].update(count=1), "nodes.cli.count: Input should be greater than or equal to 2"),
    (lambda d: d["nodes"]["cli"].update(count=251), "nodes.cli.count: Input should be less than or equal to 250"),
    (lambda d: d["nodes"]["cli"].update(count="many"), "nodes.cli.count"),
    (lambda d: d["nodes"]["cli"].update(count=3, interfaces={"a": "10.1.0.20", "b": "10.2.0.20"}),
     "a node with a count has one interface"),
    (lambda d: d["nodes"]["cli"]["pptp_client"].update(routes=["10.9.0.0/24"]) or d["nodes"]["cli"].update(count=3),
     "pptp_client.routes are not yet for a node with a count"),
    (lambda d: d["nodes"]["cli"]["pptp_client"].update(options={"localbind": "10.1.0.20"})
     or d["nodes"]["cli"].update(count=3), "localbind is set by the lab"),
    (lambda d: d["nodes"]["cli"].update(count=40, interfaces={"a": "10.1.0.230"}),
     "nodes.cli.count: 40 addresses from 10.1.0.230 run to 10.1.1.13, past the end of a (10.1.0.0/24)"),
    (lambda d: d["nodes"]["cli"].update(count=40, interfaces={"a": "10.1.0.220"}),
     "nodes.cli.count: 40 addresses from 10.1.0.220 run to 10.1.1.3, past the end of a"),
    (lambda d: d["nodes"]["srv"].update(interfaces={"a": "10.1.0.22"}) or d["nodes"]["cli"].update(count=5),
     "nodes.srv.interfaces.a: 10.1.0.22 is a member's of nodes.cli.count"),
    (lambda d: d["nodes"]["cli"].update(count=5, interfaces={"a": "10.1.0.250"}),
     "nodes.cli.count: 5 addresses from 10.1.0.250 run to 10.1.0.254; 10.1.0.254 is the engine's bridge on a"),
    (lambda d: d["nodes"].update(cli2={**copy.deepcopy(d["nodes"]["cli"]), "interfaces": {"a": "10.1.0.30"}, "count": 3})
     or d["nodes"]["cli"].update(count=12),
     "nodes.cli2.interfaces.a: 10.1.0.30 is a member's of nodes.cli.count"),
    (lambda d: d["nodes"].update(cli2={**copy.deepcopy(d["nodes"]["cli"]), "interfaces": {"a": "10.1.0.40"}, "count": 3})
     or d["nodes"]["cli"].update(count=22), "10.1.0.41 is also nodes.cli2.count"),
    (lambda d: d["nodes"]["cli"].update(count=3) or d.update(expect={"clients": {"cli": {"tunnel": "up"}}}),
     "expect.clients.cli: not yet for a node with a count"),
    (lambda d: d["nodes"]["cli"].update(count=3) or d.update(expect={"clients": {"cli#2": {"tunnel": "up"}}}),
     "expect.clients.cli#2: no pptp-client node"),
])
def test_what_a_count_refuses_names_its_key(tmp_path, mutate, expect):
    data = base()
    mutate(data)
    assert expect in refused(tmp_path, data)


def test_a_topology_asks_for_at_most_a_thousand_members(tmp_path):
    data = base()
    data["networks"]["a"]["subnet"] = "10.1.0.0/20"
    for i in range(5):
        data["nodes"][f"c{i}"] = {**copy.deepcopy(data["nodes"]["cli"]), "interfaces": {"a": f"10.1.{i + 1}.1"}, "count": 201}
    assert "the counted nodes make 1005 clients in all, more than the 1000" in refused(tmp_path, data)


def test_each_member_dials_its_own_peer_bound_to_its_own_address(tmp_path):
    topo = load(tmp_path, counted(3, ))
    files = render.node_files(topo, "cli")
    assert "/etc/ppp/peers/lab" not in files
    for i in (1, 2, 3):
        words = pppd_words(files[f"/etc/ppp/peers/lab-{i}"][0])
        assert ["pty", f"pptp 10.1.0.10 --nolaunchpppd --localbind 10.1.0.{19 + i}"] in words
        for line in (["unit", str(i - 1)], ["linkname", f"lab-{i}"], ["ipparam", f"lab-{i}"]):
            assert line in words
    script = files[render.SCRIPT][0]
    assert "echo address replace 10.1.0.21/24 dev \"$dev\"" in script and "10.1.0.22/24" in script
    assert "10.1.0.20/24" not in script  # the first is the engine's
    assert subprocess.run(["sh", "-n", "-c", script]).returncode == 0
    assert files[render.DIAL][1] == 0o755
    chap = files["/etc/ppp/chap-secrets"]
    assert chap[1] == 0o600 and len([w for w in pppd_words(chap[0]) if w]) == 1  # one user, every member


def test_hostile_credentials_of_a_counted_node_stay_literal(tmp_path):
    value = HOSTILE["double quote"] + HOSTILE["template"]
    data = counted(2)
    data["nodes"]["cli"]["pptp_client"]["user"] = value
    data["nodes"]["srv"]["pptp_server"]["users"][0]["name"] = value
    topo = load(tmp_path, data)
    files = render.node_files(topo, "cli")
    for i in (1, 2):
        assert ["name", value] in pppd_words(files[f"/etc/ppp/peers/lab-{i}"][0])


def test_a_servers_connections_follow_its_pool(tmp_path):
    data = base()
    data["nodes"]["srv"]["pptp_server"]["remote_ip"] = "172.16.0.10-250"
    conf = render.node_files(load(tmp_path, data), "srv")["/etc/pptpd.conf"][0]
    assert "connections 241" in conf
    assert "connections 64" in render.node_files(load(tmp_path, base()), "srv")["/etc/pptpd.conf"][0]


LINKS = """\
5: ppp0: <POINTOPOINT,MULTICAST,NOARP,UP,LOWER_UP> mtu 1400 qdisc fq_codel state UNKNOWN
6: ppp1: <POINTOPOINT,MULTICAST,NOARP> mtu 1500 qdisc noop state DOWN
7: ppp2: <POINTOPOINT,MULTICAST,NOARP,UP,LOWER_UP> mtu 1396 qdisc fq_codel state UNKNOWN
5: ppp0    inet 172.16.0.11 peer 172.16.0.1/32 scope global ppp0\\       valid_lft forever
7: ppp2    inet 172.16.0.13 peer 172.16.0.1/32 scope global ppp2\\       valid_lft forever
"""


def test_one_exec_reads_every_members_tunnel_and_the_node_sums_them_up():
    calls = []

    def run(cmd):
        calls.append(cmd)
        return SimpleNamespace(ok=True, out=LINKS, rc=0)

    assert tunnel_links(run) == {"ppp0": ("up", "172.16.0.11", "172.16.0.1", 1400),
                                 "ppp1": ("down", "", "", 1500), "ppp2": ("up", "172.16.0.13", "172.16.0.1", 1396)}
    st = lifecycle.NodeStatus("cli", "pptp-client", "running", {"a": "10.1.0.20"}, members=4)
    calls.clear()
    rows = CLIENT.status(run, st, {})
    assert len(calls) == 1
    assert [(r.name, r.addresses, r.tunnel, r.ppp_address) for r in rows] == [
        ("cli#1", {"a": "10.1.0.20"}, "up", "172.16.0.11"), ("cli#2", {"a": "10.1.0.21"}, "down", ""),
        ("cli#3", {"a": "10.1.0.22"}, "up", "172.16.0.13"), ("cli#4", {"a": "10.1.0.23"}, "down", "")]
    assert st.tunnel == "2/4 up"


class Execs:
    """An engine that records execs and says every call came up."""
    def __init__(self):
        self.execs = []

    def node(self, lab, name):
        return name

    def exec(self, c, cmd, check=True):
        self.execs.append((c, cmd))
        return SimpleNamespace(ok=True, out="", rc=0)


def test_the_dial_is_one_exec_per_member_with_its_own_peer_log_and_address(tmp_path):
    topo = load(tmp_path, counted(3))
    eng = Execs()
    lifecycle.dial_clients(eng, topo, timeout=30)
    assert sorted(eng.execs) == [("cli", [render.DIAL, f"ppp{i - 1}", "30", "3", "3", f"lab-{i}",
                                          f"/var/log/ppp-{i}.log", f"10.1.0.{19 + i}"]) for i in (1, 2, 3)]
    eng.execs.clear()
    lifecycle.dial_clients(eng, topo, timeout=30, only=["cli#2"])
    assert [cmd[5] for _, cmd in eng.execs] == ["lab-2"]


def test_a_member_hangs_up_by_its_pid_file_and_a_node_hangs_up_all(tmp_path):
    eng = Execs()
    lifecycle.hang_up(eng, "t", ["cli#2"])
    (node, cmd), = eng.execs
    assert node == "cli" and cmd[-1] == "/var/run/ppp-lab-2.pid" and cmd[:2] == ["sh", "-c"]
    eng.execs.clear()
    lifecycle.hang_up(eng, "t", ["cli"])
    assert "pkill -TERM -f '^pppd call lab'" in eng.execs[0][1]  # lab-1, lab-2... too
    for bad in ("cli#x", "cli#0", "cli#99999", "cli#"):
        with pytest.raises(LabError, match="NODE#NUMBER"):
            lifecycle.hang_up(eng, "t", [bad])


def test_the_table_shows_a_big_nodes_members_that_are_not_up_and_wide_shows_all():
    from lab.cli import status_table

    from .test_tables import render as text

    node = lifecycle.NodeStatus("cs", "pptp-client", "running", {"home": "10.9.0.11"}, tunnel="19/20 up",
                                members=20)
    rows = [node] + [lifecycle.NodeStatus(f"cs#{i}", "pptp-client", "running", {"home": f"10.9.0.{10 + i}"},
                                          tunnel="down" if i == 7 else "up") for i in range(1, 21)]
    out = "\n".join(text(status_table(rows, "lab many")))
    assert "cs#7" in out and "cs#6" not in out and "19/20 up" in out
    assert "19 member(s) with their tunnel up not shown" in " ".join(out.split())
    wide = "\n".join(text(status_table(rows, "lab many", wide=True), width=260))
    assert all(f"cs#{i} " in wide for i in range(1, 21))


def test_more_members_than_the_servers_pool_is_a_warning(tmp_path):
    from lab.model import warnings

    assert warnings.of(load(tmp_path, counted(11))) == []  # the pool: .10-.20, 11 addresses
    (line,) = warnings.of(load(tmp_path, counted(12)))
    assert line.startswith("nodes.srv.pptp_server.remote_ip 172.16.0.10-20: 11 addresses for 12 calls (from cli)")


def test_the_picture_says_how_many_clients_a_node_holds(tmp_path):
    topo = load(tmp_path, counted(4))
    assert ("4 clients 10.1.0.20-10.1.0.23", "role") in CLIENT.labels(topo, "cli", topo.nodes["cli"])


def test_logs_reads_a_members_own_log_or_every_log_of_the_node():
    from lab.up import queries

    eng = Execs()
    queries.ppp_log(eng, "cs", 7)
    queries.ppp_log(eng, "client")
    assert eng.execs[0][1].startswith("cat /var/log/ppp-7.log 2>/dev/null;")
    assert eng.execs[1][1].startswith(f"cat {names.PPP_LOG} /var/log/ppp-[0-9]*.log 2>/dev/null;")
    assert members.split("cs#7") == ("cs", 7) and members.split("client") == ("client", 0)
    with pytest.raises(LabError, match=r"cs#x: a member of a node with a count is NODE#NUMBER \(e.g. cs#1\)"):
        members.split("cs#x")

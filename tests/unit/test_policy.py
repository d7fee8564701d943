"""Firewall filter policies (SPEC S12-S15): the documented filters, their nftables form, the
drop-counter diagnosis, conntrack parsing, and bad policy input in topologies."""
import json

import pytest
import yaml

from lab.model import render, policy, topology
from lab.core.errors import LabError
from tests import REPO


def test_documented_filters_are_the_reference_ones():
    ids = [f.id for f in policy.filters("pptp-documented")]
    assert ids == ["S12a", "S12b", "S13a", "S13b", "S14a", "S14b", "S15a", "S15b"]
    router = [f.id for f in policy.filters("pptp-documented-router")]
    assert set(router) - set(ids) == {"S12c", "S13c", "S14c", "S15c"}
    by = {f.id: f for f in policy.filters("pptp-documented-router")}
    assert by["S12a"].describe() == "internet in: dst VPN TCP dst port 1723"
    assert by["S13b"].describe() == "internet out: src VPN IP protocol 47"
    assert by["S14c"].describe() == "perimeter in: src VPN TCP dst port 1723"
    assert by["S15c"].describe() == "perimeter out: dst VPN TCP src port 1723"
    assert policy.filters("open") == []


def test_without_leaves_out_one_filter():
    assert "S12b" not in [f.id for f in policy.filters("pptp-documented", without=["S12b"])]


def test_ruleset_matches_and_default_drop_counters():
    text = policy.nft_ruleset(policy.filters("pptp-documented"), "192.0.2.10")
    assert "policy drop;" in text
    assert 'ip daddr 192.0.2.10 ip protocol tcp tcp dport 1723 counter goto out_check comment "S12a' in text
    assert 'ip saddr 192.0.2.10 ip protocol gre counter accept comment "S13b' in text
    for iface in ("internet", "perimeter"):
        for d in ("in", "out"):
            assert f'ip protocol gre counter drop comment "drop {iface} {d} GRE"' in text


NFT_JSON = {"nftables": [
    {"metainfo": {}},
    {"rule": {"chain": "in_internet", "comment": "S12a internet in: dst VPN TCP dst port 1723",
              "expr": [{"match": {}}, {"counter": {"packets": 12, "bytes": 900}}, {"goto": {"target": "out_check"}}]}},
    {"rule": {"chain": "in_internet", "comment": "drop internet in GRE",
              "expr": [{"counter": {"packets": 7, "bytes": 700}}, {"drop": None}]}},
    {"rule": {"chain": "out_perimeter", "comment": "drop perimeter out TCP",
              "expr": [{"counter": {"packets": 0, "bytes": 0}}, {"drop": None}]}},
]}


def test_counters_parse_and_diagnosis_names_the_missing_filter():
    rows = policy.parse_counters(json.dumps(NFT_JSON))
    assert rows[0] == {"chain": "in_internet", "comment": "S12a internet in: dst VPN TCP dst port 1723",
                       "packets": 12, "bytes": 900}
    causes = policy.diagnose(rows, policy.filters("pptp-documented", without=["S12b"]))
    assert causes == ["internet in dropped 7 GRE packet(s): missing S12b (internet in: dst VPN IP protocol 47)"]


def test_conntrack_lines_give_call_ids():
    text = ("tcp      6 431999 ESTABLISHED src=192.168.1.10 dst=192.0.2.10 sport=33210 dport=1723 "
            "src=192.0.2.10 dst=198.51.100.2 sport=1723 dport=33210 [ASSURED] mark=0 helper=pptp use=1\n"
            "gre      47 179 timeout=180, stream_timeout=18000 src=192.168.1.10 dst=192.0.2.10 srckey=0x0 "
            "dstkey=0x80 src=192.0.2.10 dst=198.51.100.2 srckey=0x80 dstkey=0x81ba [ASSURED] mark=0 use=1\n")
    tcp, gre = policy.parse_conntrack(text)
    assert tcp["helper"] == "pptp" and tcp["state"] == "ESTABLISHED"
    assert tcp["reply"] == "192.0.2.10 -> 198.51.100.2 (1723 -> 33210)"
    assert gre["orig_call_ids"] == "0 -> 128" and gre["reply_call_ids"] == "128 -> 33210"


def documented_topology(tmp_path, **fw):
    data = yaml.safe_load((REPO / "topologies" / "default.yaml").read_text())
    data["nodes"]["fw"].update(fw)
    path = tmp_path / "fw.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_firewall_files_render_the_policy_for_the_vpn_address(tmp_path):
    topo = topology.load(documented_topology(tmp_path, policy="pptp-documented", policy_without=["S15a"]))
    files = render.node_files(topo, "fw")
    ruleset, script = files["/etc/pptp-lab/filter.nft"][0], files[render.SCRIPT][0]
    assert "ifname 198.51.100.1)" in script and "ifname 192.0.2.1)" in script
    assert "nft -f /etc/pptp-lab/filter.nft" in script
    assert "ip daddr 192.0.2.10" in ruleset and "S15a" not in ruleset
    assert ruleset.startswith('include "/etc/pptp-lab/filter-ifaces.nft"')


@pytest.mark.parametrize("fw,expect", [
    ({"policy": "strict"}, "nodes.fw: policy 'strict' is unknown"),
    ({"policy": "pptp-documented", "policy_without": ["S99z"]}, "nodes.fw.policy_without[0]: no filter 'S99z'"),
    ({"policy": "pptp-documented", "vpn": "10.77.0.1"}, "nodes.fw.vpn: 10.77.0.1 is on none of fw's networks"),
    ({"policy": "custom", "filters": [{"id": "x", "interface": "dmz", "direction": "in", "protocol": "tcp"}]},
     "nodes.fw.filters[0].interface: 'dmz' is neither internet, perimeter nor a network fw is on"),
    ({"policy": "custom", "filters": [{"id": "x", "interface": "internet", "direction": "in", "protocol": "tcp",
                                       "dst": "10.77.0.1"}]}, "nodes.fw.filters[0].dst: 10.77.0.1 is on none"),
    ({"filters": [{"id": "x", "interface": "internet", "direction": "in", "protocol": "gre"}]},
     "filters are given with policy: custom"),
])
def test_bad_policy_input_is_refused_before_anything_is_created(tmp_path, fw, expect):
    with pytest.raises(LabError) as err:
        topology.load(documented_topology(tmp_path, **fw))
    assert expect in str(err.value), str(err.value)


def test_policy_needs_both_roles(tmp_path):
    data = yaml.safe_load((REPO / "topologies" / "default.yaml").read_text())
    data["networks"]["perimeter"]["role"] = "other"
    data["nodes"]["fw"]["policy"] = "pptp-documented"
    data["nodes"]["fw"]["vpn"] = "192.0.2.10"
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(LabError, match="has no interface on a network with role perimeter"):
        topology.load(path)

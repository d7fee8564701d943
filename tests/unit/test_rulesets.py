"""Rulesets from files (lab.rulesets), port forwarding, interfaces named after their
networks, custom filters by network name. A ruleset file comes with a stranger's topology:
it must stay inside the topology's folder and be text of a sane size."""
import json
import os
import stat

import pytest
import yaml

from lab.up import lifecycle
from lab.model import policy, render, rulesets, topology
from lab.core.errors import LabError

NFT = "#!/usr/sbin/nft -f\nflush ruleset\ntable inet mine {\n\tchain fwd { type filter hook forward priority 0; }\n}\n"
IPT = "*filter\n:FORWARD DROP [0:0]\n-A FORWARD -p tcp --dport 1723 -j ACCEPT\nCOMMIT\n"


def data(kind="firewall", ruleset=None, **node):
    d = {"name": "t", "networks": {"internet": {"subnet": "10.1.0.0/24", "role": "internet"},
                                   "dmz": {"subnet": "10.2.0.0/24", "role": "perimeter"}},
         "nodes": {"fw": {"kind": kind, "interfaces": {"internet": "10.1.0.1", "dmz": "10.2.0.1"}, **node},
                   "srv": {"kind": "host", "interfaces": {"dmz": "10.2.0.5"}}}}
    if ruleset is not None:
        d["nodes"]["fw"]["ruleset"] = ruleset
    return d


def write(folder, d, name="topo.yaml"):
    p = folder / name
    p.write_text(yaml.safe_dump(d, sort_keys=False))
    return p


def refused(path, *expect):
    with pytest.raises(LabError) as err:
        topology.load(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: ") and "\n" not in msg, msg
    for e in expect:
        assert e in msg, msg
    return msg


# -- reading the file

@pytest.mark.parametrize("flavour,text", [("nft", NFT), ("iptables", IPT)])
def test_ruleset_is_read_relative_to_the_topology_and_rendered_unchanged(tmp_path, flavour, text):
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "fw.rules").write_bytes(text.encode())
    topo = topology.load(write(tmp_path, data(ruleset={flavour: "rules/fw.rules"})))
    rs = topo.nodes["fw"].ruleset
    assert (rs.flavour, rs.path, rs.text) == (flavour, "rules/fw.rules", text)
    files = render.node_files(topo, "fw")
    body, mode = files[rulesets.PATHS[flavour]]
    assert body.encode() == (tmp_path / "rules" / "fw.rules").read_bytes() and mode == 0o600
    script = files[render.SCRIPT][0]
    apply = {"nft": "\nnft -f /etc/pptp-lab/ruleset.nft\n",
             "iptables": "\niptables-restore < /etc/pptp-lab/ruleset.iptables\n"}[flavour]
    assert apply in script
    # after renaming and routes, before the lab's own (here: the open policy's) table
    assert script.index("named _pl1 dmz") < script.index("ip route") if "ip route" in script else True
    assert script.index("named _pl1 dmz") < script.index(apply) < script.index("nft delete table inet pptp_lab_filter")


def test_crlf_tabs_and_unicode_are_kept_byte_for_byte(tmp_path):
    raw = "table ip x {\r\n\tchain c { comment \"café ✓\"; }\r\n}\r\n".encode()
    (tmp_path / "r.nft").write_bytes(raw)
    topo = topology.load(write(tmp_path, data(kind="router", ruleset={"nft": "r.nft"})))
    assert render.node_files(topo, "fw")["/etc/pptp-lab/ruleset.nft"][0].encode() == raw


def test_rulesets_on_nat_and_router_nodes(tmp_path):
    (tmp_path / "r.ipt").write_text(IPT)
    for kind in ("nat", "router"):
        topo = topology.load(write(tmp_path, data(kind=kind, ruleset={"iptables": "r.ipt"})))
        files = render.node_files(topo, "fw")
        assert files["/etc/pptp-lab/ruleset.iptables"] == (IPT, 0o600)
    assert "/etc/pptp-lab/nat.nft" not in files or kind != "nat"


def hostile(tmp_path, rel):
    (tmp_path / "lab").mkdir(exist_ok=True)
    return write(tmp_path / "lab", data(ruleset={"nft": rel}))


def test_dotdot_is_refused(tmp_path):
    (tmp_path / "x").write_text(NFT)
    refused(hostile(tmp_path, "../x"), "nodes.fw.ruleset.nft: ../x: '..' leads out of the topology file's folder")
    refused(hostile(tmp_path, "sub/../../x"), "'..'")


def test_absolute_paths_are_refused(tmp_path):
    refused(hostile(tmp_path, "/etc/shadow"), "nodes.fw.ruleset.nft: /etc/shadow: an absolute path")
    refused(hostile(tmp_path, "~/.ssh/id_rsa"), "an absolute path")


def test_a_symlink_out_of_the_folder_is_refused(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("table ip stolen {}\n")
    path = hostile(tmp_path, "fw.nft")
    (tmp_path / "lab" / "fw.nft").symlink_to(secret)
    refused(path, "nodes.fw.ruleset.nft: fw.nft: a symlink that leads out of the topology file's folder")
    (tmp_path / "lab" / "d").symlink_to(tmp_path)
    refused(hostile(tmp_path, "d/secret"), "a symlink that leads out")


def test_a_symlink_inside_the_folder_is_followed(tmp_path):
    path = hostile(tmp_path, "link.nft")
    (tmp_path / "lab" / "real.nft").write_text(NFT)
    (tmp_path / "lab" / "link.nft").symlink_to("real.nft")
    assert topology.load(path).nodes["fw"].ruleset.text == NFT


def test_missing_directory_fifo_loop(tmp_path):
    path = hostile(tmp_path, "rules/fw.nft")
    refused(path, f"nodes.fw.ruleset.nft: rules/fw.nft: no such file (looked in {(tmp_path / 'lab').resolve()})")
    (tmp_path / "lab" / "rules").mkdir()
    refused(hostile(tmp_path, "rules"), "nodes.fw.ruleset.nft: rules: a directory")
    os.mkfifo(tmp_path / "lab" / "fifo")
    refused(hostile(tmp_path, "fifo"), "nodes.fw.ruleset.nft: fifo: not a regular file")
    (tmp_path / "lab" / "loop").symlink_to("loop")
    refused(hostile(tmp_path, "loop"), "nodes.fw.ruleset.nft: loop: cannot be resolved")


def test_too_big_binary_and_not_utf8(tmp_path):
    path = hostile(tmp_path, "fw.nft")
    (tmp_path / "lab" / "fw.nft").write_bytes(b"# x\n" * (300 << 8))  # 300 KiB
    refused(path, "nodes.fw.ruleset.nft: fw.nft: larger than 256 KiB")
    (tmp_path / "lab" / "fw.nft").write_bytes(b"table ip x {}\n\0\x7fELF")
    refused(path, "fw.nft: binary data (NUL byte at offset 14)")
    (tmp_path / "lab" / "fw.nft").write_bytes(b"table\n\xff\n")
    refused(path, "fw.nft: not UTF-8 text (byte 0xff on line 2)")
    (tmp_path / "lab" / "fw.nft").write_bytes(b"# x\n" * (64 << 10))  # 256 KiB exactly: fine
    assert len(topology.load(path).nodes["fw"].ruleset.text) == 256 << 10


def test_an_nft_include_is_refused(tmp_path):
    path = hostile(tmp_path, "fw.nft")
    (tmp_path / "lab" / "fw.nft").write_text('flush ruleset\ninclude "/etc/ppp/chap-secrets"\n')
    refused(path, "fw.nft: an nftables include")


def test_several_bad_files_are_named_in_one_line(tmp_path):
    d = data(ruleset={"nft": "a.nft"})
    d["nodes"]["r"] = {"kind": "router", "interfaces": {"dmz": "10.2.0.2"}, "ruleset": {"iptables": "/b"}}
    msg = refused(write(tmp_path, d), "nodes.fw.ruleset.nft: a.nft: no such file", "nodes.r.ruleset.iptables: /b:")
    assert msg.count("; ") == 1


@pytest.mark.parametrize("ruleset,expect", [
    ({"nft": "a", "iptables": "b"}, "nodes.fw.ruleset: Value error, give exactly one" if False else "give exactly one"),
    ({}, "give exactly one of nft: FILE or iptables: FILE"),
    ({"pf": "x"}, "nodes.fw.ruleset.pf: unknown key"),
    ({"nft": "r.nft", "text": "table ip x {}"}, "nodes.fw.ruleset.text: unknown key"),
    ({"nft": ""}, "nodes.fw.ruleset.nft: an empty file name"),
])
def test_bad_ruleset_blocks(tmp_path, ruleset, expect):
    (tmp_path / "r.nft").write_text(NFT)
    refused(write(tmp_path, data(ruleset=ruleset)), expect)


def test_the_text_is_never_taken_from_the_topology_file_but_json_of_the_model_loads(tmp_path):
    (tmp_path / "r.nft").write_text(NFT)
    topo = topology.load(write(tmp_path, data(ruleset={"nft": "r.nft"})))
    public = topology.public_data(topo)
    assert public["nodes"]["fw"]["ruleset"] == {"nft": "r.nft", "iptables": None, "text": NFT}
    assert topology.Topology.model_validate(json.loads(json.dumps(public))) == topo
    del public["nodes"]["fw"]["ruleset"]["text"]
    with pytest.raises(ValueError, match=r"nodes\.fw\.ruleset\n.*the text of r\.nft is missing"):
        topology.Topology.model_validate(public)
    assert '"text"' not in topology.json_schema()


def test_labels_carry_short_rulesets_and_say_when_a_long_one_is_left_off(tmp_path):
    (tmp_path / "r.nft").write_text(NFT)
    (tmp_path / "big.nft").write_text("# x\n" * (40 << 8))
    d = data(ruleset={"nft": "r.nft"})
    d["nodes"]["r"] = {"kind": "router", "interfaces": {"dmz": "10.2.0.2"}, "ruleset": {"nft": "big.nft"}}
    topo = topology.load(write(tmp_path, d))
    label = topology.public_data(topo, label=True)["nodes"]
    assert label["fw"]["ruleset"]["text"] == NFT
    assert "is longer than 16 KiB and not recorded on the engine's labels" in label["r"]["ruleset"]["text"]
    assert topology.Topology.model_validate(topology.public_data(topo, label=True))  # graph can draw it
    assert topology.public_data(topo)["nodes"]["r"]["ruleset"]["text"] == "# x\n" * (40 << 8)  # runs/
    other = (tmp_path / "big.nft").write_text("# y\n" * (40 << 8))
    assert other and lifecycle.topo_hash(topology.load(tmp_path / "topo.yaml")) != lifecycle.topo_hash(topo)


# -- what combines with what

@pytest.mark.parametrize("node,expect", [
    ({"policy": "pptp-documented"}, "nodes.fw: ruleset and policy pptp-documented: the filters come from one place"),
    ({"policy": "custom", "filters": [{"id": "a", "interface": "internet", "direction": "in", "protocol": "tcp"}]},
     "ruleset and policy custom, filters"),
    ({"policy_without": ["S12b"]}, "ruleset and policy_without"),
])
def test_a_firewall_ruleset_excludes_the_policy(tmp_path, node, expect):
    (tmp_path / "r.nft").write_text(NFT)
    refused(write(tmp_path, data(ruleset={"nft": "r.nft"}, **node)), expect)


def test_a_nat_node_has_nat_or_ruleset(tmp_path):
    (tmp_path / "r.nft").write_text(NFT)
    refused(write(tmp_path, data(kind="nat", ruleset={"nft": "r.nft"}, nat={"outside": "internet"})),
            "nodes.fw: the ruleset is the NAT: give nat or ruleset, not both")
    refused(write(tmp_path, data(kind="nat")), "nodes.fw: a nat node needs a nat block or a ruleset")
    d = data(kind="nat", ruleset={"nft": "r.nft"})
    d["expect"] = {"nat": {"fw": {}}}
    refused(write(tmp_path, d), "expect.nat.fw: fw's NAT is its ruleset")
    script = render.node_files(topology.load(write(tmp_path, data(kind="nat", ruleset={"nft": "r.nft"}))),
                               "fw")[render.SCRIPT][0]
    assert "nft -f /etc/pptp-lab/nat.nft" not in script and "nft delete table ip pptp_lab_nat" in script


def test_rulesets_only_on_firewall_nat_router(tmp_path):
    (tmp_path / "r.nft").write_text(NFT)
    refused(write(tmp_path, data(kind="host", ruleset={"nft": "r.nft"})),
            "nodes.fw: ruleset is only for kind nat or firewall or router")


@pytest.mark.parametrize("net,why", [("a-very-long-name", "name longer than 15 characters"),
                                     ("ppp0", "a name the kernel or pppd use"), ("lo", "a name the kernel")])
def test_a_ruleset_node_on_a_network_that_cannot_name_its_interface(tmp_path, net, why):
    (tmp_path / "r.nft").write_text(NFT)
    d = data(kind="router", ruleset={"nft": "r.nft"})
    d["networks"][net] = {"subnet": "10.3.0.0/24"}
    d["nodes"]["fw"]["interfaces"][net] = "10.3.0.1"
    refused(write(tmp_path, d), f"networks.{net}: {why}", "cannot name fw's interface, which its ruleset may refer to")
    del d["nodes"]["fw"]["ruleset"]  # without a ruleset it keeps Docker's name
    files = render.node_files(topology.load(write(tmp_path, d)), "fw")
    assert f"_pl2 {net}" not in files[render.SCRIPT][0]


# -- interfaces named after their networks

def test_every_interface_is_renamed_first_with_quoted_values(tmp_path):
    d = data(kind="router")
    d["networks"]["eth1"] = {"subnet": "10.3.0.0/24"}
    d["nodes"]["fw"]["interfaces"]["eth1"] = "10.3.0.1"
    d["nodes"]["fw"]["routes"] = [{"to": "10.9.0.0/24", "via": "10.3.0.2"}]
    script = render.node_files(topology.load(write(tmp_path, d)), "fw")[render.SCRIPT][0]
    lines = script.splitlines()
    renames = [ln for ln in lines if ln.startswith(("away ", "named "))]
    assert renames == ["away 10.1.0.1 internet _pl0", "away 10.2.0.1 dmz _pl1", "away 10.3.0.1 eth1 _pl2",
                       "named _pl0 internet", "named _pl1 dmz", "named _pl2 eth1"]
    assert lines.index(renames[-1]) < lines.index("ip route replace 10.9.0.0/24 via 10.3.0.2")
    assert 'ip link set dev "$dev" name "$3"' in script and 'ip link set dev "$2" up' in script


def test_renaming_quotes_what_it_is_given():
    ctx = {"routes": [], "scripts": [], "ruleset": None,
           "renames": [{"address": "10.0.0.1", "name": "$(touch /tmp/pwned)"}]}
    assert "away 10.0.0.1 '$(touch /tmp/pwned)' _pl0" in render.render("configure.sh.j2", **ctx)


def test_names_interface():
    from lab.core import names
    assert names.interface("internet") == "internet" and names.interface("a" * 15) == "a" * 15
    assert names.interface("a" * 16) is None and names.interface("ppp12") is None and names.interface("lo") is None


# -- custom filters by network name

def test_custom_filters_name_networks_literally_and_roles_keep_their_defines(tmp_path):
    d = data(policy="custom", vpn="10.2.0.5", filters=[
        {"id": "x1", "interface": "lan", "direction": "in", "protocol": "tcp", "dport": 1723},
        {"id": "x2", "interface": "dmz", "direction": "out", "protocol": "gre"},
        {"id": "x3", "interface": "internet", "direction": "in", "protocol": "gre"}])
    d["networks"]["lan"] = {"subnet": "10.3.0.0/24"}
    d["nodes"]["fw"]["interfaces"]["lan"] = "10.3.0.1"
    topo = topology.load(write(tmp_path, d))
    nft = render.node_files(topo, "fw")["/etc/pptp-lab/filter.nft"][0]
    assert 'iifname "lan" counter jump in_n_lan comment "from lan"' in nft
    assert 'oifname "lan" jump out_n_lan' in nft
    assert "iifname $internet counter jump in_internet" in nft and "iifname $perimeter" in nft
    # dmz is fw's perimeter network: its filter is one of the perimeter's
    out_perimeter = nft.split("chain out_perimeter {")[1].split("}")[0]
    assert "x2 perimeter out" in out_perimeter


def test_custom_filters_on_unknown_or_long_networks_are_refused(tmp_path):
    d = data(policy="custom", vpn="10.2.0.5",
             filters=[{"id": "x", "interface": "elsewhere", "direction": "in", "protocol": "tcp"}])
    refused(write(tmp_path, d), "nodes.fw.filters[0].interface: 'elsewhere' is neither internet, perimeter "
                                "nor a network fw is on (internet, dmz)")
    d["networks"]["a-very-long-name"] = {"subnet": "10.3.0.0/24"}
    d["nodes"]["fw"]["interfaces"]["a-very-long-name"] = "10.3.0.1"
    d["nodes"]["fw"]["filters"][0]["interface"] = "a-very-long-name"
    refused(write(tmp_path, d), "nodes.fw.filters[0].interface: fw's interface on a-very-long-name keeps the engine's")
    d["nodes"]["fw"]["filters"][0]["interface"] = 'x" accept'
    refused(write(tmp_path, d), "nodes.fw.filters[0].interface: String should match pattern")


def test_the_reference_policies_render_as_before():
    rules = policy.filters("pptp-documented")
    nft = policy.nft_ruleset(rules, "192.0.2.10")
    assert '"' + "internet" + '"' not in nft and nft.count("chain ") == 6


# -- port forwarding

def nat_data(**nat):
    d = data(kind="nat", nat={"mode": "masquerade", "outside": "internet", **nat})
    return d


def test_forwards_render_in_a_dstnat_chain(tmp_path):
    topo = topology.load(write(tmp_path, nat_data(forward=[
        {"proto": "tcp", "port": 1723, "to": "10.2.0.5"}, {"proto": "gre", "to": "10.2.0.5"},
        {"proto": "udp", "port": 500, "to": "10.2.0.5", "to_port": 4500}])))
    nft = render.node_files(topo, "fw")["/etc/pptp-lab/nat.nft"][0]
    chain = nft.split("chain portforward {")[1].split("}")[0]
    assert chain.splitlines()[1:] == [
        "        type nat hook prerouting priority dstnat; policy accept;",
        "        iifname $outside tcp dport 1723 dnat to 10.2.0.5",
        "        iifname $outside ip protocol gre dnat to 10.2.0.5",
        "        iifname $outside udp dport 500 dnat to 10.2.0.5:4500",
        "    "]
    assert 'tcp dport 1723 ct helper set "pptp"' in nft and "oifname $outside masquerade" in nft
    plain = render.node_files(topology.load(write(tmp_path, nat_data())), "fw")["/etc/pptp-lab/nat.nft"][0]
    assert "portforward" not in plain


@pytest.mark.parametrize("forward,expect", [
    ([{"proto": "tcp", "to": "10.2.0.5"}], "nodes.fw.nat.forward[0]: proto tcp needs a port"),
    ([{"proto": "gre", "port": 1, "to": "10.2.0.5"}], "nodes.fw.nat.forward[0]: proto gre has no ports"),
    ([{"proto": "tcp", "port": 0, "to": "10.2.0.5"}], "nodes.fw.nat.forward[0].port"),
    ([{"proto": "tcp", "port": 80, "to_port": 70000, "to": "10.2.0.5"}], "nodes.fw.nat.forward[0].to_port"),
    ([{"proto": "icmp", "to": "10.2.0.5"}], "nodes.fw.nat.forward[0].proto"),
    ([{"proto": "gre", "to": "10.1.0.7"}], "nodes.fw.nat.forward[0].to: 10.1.0.7 is on none of fw's inside networks"),
    ([{"proto": "gre", "to": "$(id)"}], "nodes.fw.nat.forward[0].to"),
])
def test_bad_forwards_are_named(tmp_path, forward, expect):
    refused(write(tmp_path, nat_data(forward=forward)), expect)


def test_forward_only_with_masquerade(tmp_path):
    d = nat_data(mode="static", public="10.1.0.50", private="10.2.0.5",
                 forward=[{"proto": "gre", "to": "10.2.0.5"}])
    refused(write(tmp_path, d), "nodes.fw.nat: Value error, forward is for mode masquerade"
            if False else "forward is for mode masquerade")


# -- checking a ruleset before anything is created

def test_check_argv():
    assert rulesets.check_argv("nft") == ["nft", "-c", "-f", "/etc/pptp-lab/ruleset.nft"]
    assert rulesets.check_argv("iptables") == ["iptables-restore", "/etc/pptp-lab/ruleset.iptables"]
    with pytest.raises(ValueError):
        rulesets.check_argv("pf")


@pytest.mark.parametrize("output,expect", [
    ("/etc/pptp-lab/ruleset.nft:12:5-10: Error: syntax error, unexpected string, expecting '{'\n"
     "    chain fwd\n    ^^^^^^\n",
     "nodes.fw.ruleset.nft: rules/fw.nft:12:5-10: syntax error, unexpected string, expecting '{'"),
    ("/etc/pptp-lab/ruleset.nft:3:1-30: Error: Could not process rule: No such file or directory\n"
     "add rule ip filter input accept\n^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n",
     "nodes.fw.ruleset.nft: rules/fw.nft:3:1-30: Could not process rule: No such file or directory"),
    ("/etc/pptp-lab/ruleset.nft:7:9-17: Error: conflicting protocols specified: inet-service vs. gre\n",
     "rules/fw.nft:7:9-17: conflicting protocols"),
    ("netlink: Error: cache initialization failed: Operation not permitted\n",
     "nodes.fw.ruleset.nft: rules/fw.nft: cache initialization failed: Operation not permitted"),
    ("Error: Could not open file \"/etc/pptp-lab/ruleset.nft\": No such file or directory\n",
     "rules/fw.nft: Could not open file \"rules/fw.nft\": No such file or directory"),
])
def test_explain_nft(output, expect):
    line = rulesets.explain("nft", output, "nodes.fw.ruleset.nft", "rules/fw.nft")
    assert expect in line and line.startswith("nodes.fw.ruleset.nft: rules/fw.nft") and "\n" not in line, line
    assert "/etc/pptp-lab" not in line and "add rule" not in line and "^^^" not in line, line


# Outputs of iptables-restore v1.8.9 (nf_tables), Debian bookworm, and of older/legacy ones.
@pytest.mark.parametrize("output,expect", [
    ("iptables-restore v1.8.9 (nf_tables): invalid port/service `99999' specified\nError occurred at line: 4\n"
     "Try `iptables-restore -h' or 'iptables-restore --help' for more information.\n",
     "nodes.r.ruleset.iptables: fw.ipt:4: invalid port/service `99999' specified"),
    ("iptables-restore v1.8.9 (nf_tables): Chain 'NOSUCH' does not exist\nError occurred at line: 4\n"
     "Try `iptables-restore -h' or 'iptables-restore --help' for more information.\n",
     "nodes.r.ruleset.iptables: fw.ipt:4: Chain 'NOSUCH' does not exist"),
    ("iptables-restore v1.8.9 (nf_tables): Couldn't load match `nosuchmatch':No such file or directory\n\n"
     "Error occurred at line: 3\nTry `iptables-restore -h' or 'iptables-restore --help' for more information.\n",
     "fw.ipt:3: Couldn't load match `nosuchmatch':No such file or directory"),
    ("iptables-restore: COMMIT expected at line 3\n", "nodes.r.ruleset.iptables: fw.ipt:3: COMMIT expected"),
    ("iptables-restore: line 7 failed\n", "nodes.r.ruleset.iptables: fw.ipt:7: failed"),
    ("iptables-restore: line 7 failed: Invalid argument.\n", "nodes.r.ruleset.iptables: fw.ipt:7: Invalid argument"),
    ("iptables-restore v1.8.1 (nf_tables): \nline 5: RULE_APPEND failed (No such file or directory): rule in chain INPUT\n",
     "fw.ipt:5: RULE_APPEND failed (No such file or directory): rule in chain INPUT"),
    ("iptables-restore v1.8.9 (nf_tables): unknown option \"--bogus\"\nError occurred at line: 2\n"
     "Try `iptables-restore -h' or 'iptables-restore --help' for more information.\n",
     "fw.ipt:2: unknown option \"--bogus\""),
    ("iptables-restore: unable to initialize table 'raw'\n", "fw.ipt: unable to initialize table 'raw'"),
    ("", "nodes.r.ruleset.iptables: fw.ipt: the check failed without a message"),
])
def test_explain_iptables(output, expect):
    line = rulesets.explain("iptables", output, "nodes.r.ruleset.iptables", "fw.ipt")
    assert expect in line and line.startswith("nodes.r.ruleset.iptables: fw.ipt") and "\n" not in line, line
    assert "Try `" not in line and "v1.8" not in line, line


def test_explain_strips_control_characters_and_keeps_one_short_line():
    out = "/etc/pptp-lab/ruleset.nft:1:1-2: Error: \x1b[31mbad\x1b[0m " + "x" * 1000 + "\n"
    line = rulesets.explain("nft", out, "nodes.fw.ruleset.nft", "fw.nft")
    assert "\x1b" not in line and len(line) <= 240 and line.startswith("nodes.fw.ruleset.nft: fw.nft:1:1-2: ")


def test_the_mode_of_the_rendered_ruleset(tmp_path):
    (tmp_path / "r.nft").write_text(NFT)
    files = render.node_files(topology.load(write(tmp_path, data(ruleset={"nft": "r.nft"}))), "fw")
    assert stat.S_IMODE(files["/etc/pptp-lab/ruleset.nft"][1]) == 0o600

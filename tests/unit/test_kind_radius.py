"""The radius kind (lab/kinds/radius.py): FreeRADIUS 3.2 single-quoted literals and pppd's
radius servers file (checked against a real freeradius 3.2.1 with MS-CHAPv2:
docs/radius-notes.md), the block's validation and the files for both sides."""
import pytest
from hypothesis import given, strategies as st

from lab.model.kinds.radius import RadiusQuoteError, radius, radius_conf, radius_name, servers_secret


def read_back_value(quoted: str) -> str:
    """What FreeRADIUS 3.2 reads from a users-file value written by `radius` (a model of
    token.c getthing(unescape=false) followed by value.c's double-quoted unescaping, for
    the subset `radius` writes); used by the tests."""
    assert quoted[0] == quoted[-1] == "'"
    body, out, i = quoted[1:-1], [], 0
    while i < len(body):          # token.c, unescape=false
        if body[i] == "\\":
            if body[i + 1] == "'":
                out.append("'")
            else:
                out.append(body[i:i + 2])
            i += 2
            continue
        if body[i] == "'":
            raise ValueError("unescaped quote ends the string early")
        out.append(body[i])
        i += 1
    s, res, i = "".join(out), [], 0
    while i < len(s):             # value.c, quote '"'
        if s[i] == "\\":
            nxt = s[i + 1]
            res.append({"n": "\n", "r": "\r", "t": "\t", "\\": "\\"}.get(nxt, nxt if nxt == '"' else "\\" + nxt))
            i += 2
            continue
        res.append(s[i])
        i += 1
    return "".join(res)


HOSTILE = "pw 'q' \"dq\" \\b\\ #h %{exec:/bin/touch /tmp/radius-pwned} ${confdir} `id` \\n\\'"


def test_plain_and_hostile_values_are_single_quoted_and_read_back():
    assert radius("alicepw") == "'alicepw'"
    assert radius("'") == "'\\''"
    assert radius("a\\") == "'a\\\\'"
    q = radius(HOSTILE)
    assert q.startswith("'") and q.endswith("'") and '"' + HOSTILE not in q
    assert read_back_value(q) == HOSTILE


printable = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF, blacklist_categories=("Cc", "Cs")),
                    min_size=1, max_size=80)


@given(printable)
def test_any_printable_value_reads_back_exactly(s):
    assert read_back_value(radius(s)) == s


@pytest.mark.parametrize("bad", ["", "a\nb", "a\rb", "a\x00b", "tab\there", "x" * 256])
def test_values_refused(bad):
    with pytest.raises(RadiusQuoteError):
        radius(bad)


def test_conf_values_keep_backslashes_raw_and_refuse_what_cannot_be_written():
    assert radius_conf("s3c'r\\e\"t#%{exec:x}") == "'s3c\\'r\\e\"t#%{exec:x}'"
    for bad in ["a\\", "a\\'b", "", "a\nb"]:
        with pytest.raises(RadiusQuoteError):
            radius_conf(bad)


def test_names():
    assert radius_name("o'brien \"x\" #1 %{exec:y}") == "'o\\'brien \"x\" #1 %{exec:y}'"
    for bad in ["DEFAULT", "DOM\\user", "", "a\nb", "x" * 254]:
        with pytest.raises(RadiusQuoteError):
            radius_name(bad)
    assert radius_name("default") == "'default'"


def test_servers_secret():
    assert servers_secret("s3c'r\\e\"t#%{x}") == "s3c'r\\e\"t#%{x}"
    for bad in ["with space", "tab\t", "", "x" * 49, "caf\u00e9"]:
        with pytest.raises(RadiusQuoteError):
            servers_secret(bad)
    assert servers_secret("x" * 48) == "x" * 48


# ------------------------------------------------------------------ the kind in a topology
from types import SimpleNamespace  # noqa: E402

import yaml  # noqa: E402

from lab.model import kinds, render, topology  # noqa: E402
from lab.up import lifecycle  # noqa: E402
from lab.core.errors import LabError  # noqa: E402
from tests import REPO  # noqa: E402

TOPO = REPO / "tests" / "integration" / "topologies" / "radius.yaml"


def variant(tmp_path, change):
    data = yaml.safe_load(TOPO.read_text())
    change(data)
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data))
    return topology.load(path)


def test_the_radius_topology_loads_and_each_side_gets_its_files():
    topo = topology.load(TOPO)
    aaa = render.node_files(topo, "aaa")
    users = aaa["/etc/freeradius/pptp-lab/users"]
    assert users[1] == 0o600
    assert "'alice'\tCleartext-Password := 'alice \\'pw\\' %{exec:/bin/touch /tmp/pwned} \\\\'" in users[0]
    assert read_back_value(users[0].split(":= ")[1].splitlines()[0]) == "alice 'pw' %{exec:/bin/touch /tmp/pwned} \\"
    clients = aaa["/etc/freeradius/pptp-lab/clients.conf"][0]
    assert "ipaddr = 10.74.0.10" in clients and "secret = 'lab-shared:s3cret%{exec:/bin/id}'" in clients
    assert "ipaddr = 10.74.0.30" in aaa["/etc/freeradius/pptp-lab/radiusd.conf"][0]
    vpn = render.node_files(topo, "vpn")
    servers, mode = vpn["/etc/pptp-lab/radiusclient/servers"]
    assert servers.endswith("\n10.74.0.30\tlab-shared:s3cret%{exec:/bin/id}\n") and mode == 0o600
    assert "authserver\t10.74.0.30:1812" in vpn["/etc/pptp-lab/radiusclient/radiusclient.conf"][0]
    opts = vpn["/etc/ppp/pptp-lab.d/radius.options"][0]
    assert 'plugin "radius.so"' in opts and 'radius-config-file "/etc/pptp-lab/radiusclient/radiusclient.conf"' in opts
    assert 'file "/etc/ppp/pptp-lab.d/radius.options"' in vpn["/etc/ppp/pptpd-options"][0]
    assert "/etc/ppp/chap-secrets" not in vpn  # the users are on the RADIUS server only
    assert "/etc/pptp-lab/radiusclient/servers" not in render.node_files(topo, "alice")


@pytest.mark.parametrize("change, error", [
    (lambda d: d["nodes"]["aaa"]["radius"].update(serves=["alice"]), r"radius.serves\[0\]: no pptp-server node 'alice'"),
    (lambda d: d["nodes"]["aaa"]["radius"].update(secret="has space"), r"nodes.aaa.radius.secret: .*printable ASCII"),
    (lambda d: d["nodes"]["aaa"]["radius"].update(secret="x" * 49), r"nodes.aaa.radius.secret: .*48"),
    (lambda d: d["nodes"]["aaa"]["radius"]["users"].append({"name": "DEFAULT", "secret": "x"}),
     r"nodes.aaa.radius.users\[2\].name: 'DEFAULT'"),
    (lambda d: d["nodes"]["aaa"]["radius"]["users"].append({"name": "dom\\bob", "secret": "x"}),
     r"users\[2\].name: a RADIUS user name may not hold a backslash"),
    (lambda d: d["nodes"]["vpn"]["pptp_server"].update(users=[{"name": "a", "secret": "b"}]),
     r"vpn's users live on aaa: leave nodes.vpn.pptp_server.users out"),
    (lambda d: d["nodes"]["aaa"].update(interfaces={"lan2": "10.75.0.30"}) or d["networks"].update(lan2={"subnet": "10.75.0.0/24"}),
     r"serves\[0\]: vpn shares no network with aaa"),
    (lambda d: d["nodes"]["aaa"].pop("radius"), r"a radius node needs a radius block"),
])
def test_bad_radius_blocks_are_refused_naming_the_key(tmp_path, change, error):
    with pytest.raises(LabError, match=error):
        variant(tmp_path, change)


def test_without_the_radius_node_the_server_needs_users_again(tmp_path):
    with pytest.raises(LabError, match=r"nodes.vpn.pptp_server.users: empty, and no node authenticates"):
        variant(tmp_path, lambda d: d["nodes"].pop("aaa"))


def test_start_and_status_hooks():
    ran = []
    kinds.get("radius").start(lambda cmd: ran.append(cmd))
    assert ran == ["sh /etc/pptp-lab/radius-start.sh"]
    st = lifecycle.NodeStatus("aaa", "radius", "running", {})
    kinds.get("radius").status(lambda cmd: SimpleNamespace(out="UNCONN 0 0 10.74.0.30:1812 0.0.0.0:*\n"), st, {})
    assert st.tunnel == "RADIUS listening"


def test_its_secrets_never_reach_labels_or_runs():
    topo = topology.load(TOPO)
    data = topology.public_data(topo)
    text = str(data)
    assert "s3cret" not in text and "alice 'pw'" not in text and "eve-wrong-secret" not in text
    assert data["nodes"]["aaa"]["radius"]["secret"] == "(removed)"
    assert {u["secret"] for u in data["nodes"]["aaa"]["radius"]["users"]} == {"(removed)"}
    assert topology.Topology.model_validate(data).nodes["aaa"].radius.serves == ["vpn"]  # reloads (graph, report)

"""A topology is written by a stranger: hostile values through validation, the rendered
node files and the Ansible inventory. Nothing may become code: values are refused with the
key named, or carried literally (checked by reading the files back the way pppd does)."""
import base64
import io
import shlex
import subprocess
import tarfile

import pytest
import yaml

from lab.up import configure
from lab.model import render, topology
from lab.engines import tar_of
from lab.core.errors import LabError
from tests import REPO

from .test_topology import base

HOSTILE = {
    "template": "{{ 7*7 }}",
    "lookup": "{{ lookup('ansible.builtin.pipe', 'id > /tmp/pwned') }}",
    "jinja block": "{% for x in range(3) %}x{% endfor %}",
    "hash": "a#b # c",
    "star": "a*b",
    "double quote": 'say "hi"',
    "single quote": "it's",
    "backslash": "DOMAIN\\user\\",
    "command substitution": "$(touch /tmp/pwned)",
    "backticks": "`touch /tmp/pwned`",
    "dollar": "$HOME ${PATH}",
    "heredoc marker": "PPTP_LAB_EOF",
    "spaces": "  two  spaces  ",
    "leading dash": "-oplugin",
    "pppd option": "x plugin rp-pppoe.so",
    "unicode": "pässwörd✓",
}
REFUSED = {
    "newline": ("a\nplugin /tmp/evil.so", "control character"),
    "carriage return": ("a\rb", "control character"),
    "NUL": ("a\x00b", "control character"),
    "tab": ("a\tb", "control character"),
    "1000 characters": ("x" * 1000, "at most 255"),
    "empty": ("", "empty"),
}
FIELDS = {  # key path -> how to set it in the base topology
    "nodes.cli.pptp_client.secret": lambda d, v: d["nodes"]["cli"]["pptp_client"].update(secret=v),
    "nodes.cli.pptp_client.user": lambda d, v: d["nodes"]["cli"]["pptp_client"].update(user=v),
    "nodes.cli.pptp_client.server_name": lambda d, v: d["nodes"]["cli"]["pptp_client"].update(server_name=v),
    "nodes.srv.pptp_server.name": lambda d, v: d["nodes"]["srv"]["pptp_server"].update(name=v),
    "nodes.srv.pptp_server.users[0].name": lambda d, v: d["nodes"]["srv"]["pptp_server"]["users"][0].update(name=v),
    "nodes.srv.pptp_server.users[0].secret": lambda d, v: d["nodes"]["srv"]["pptp_server"]["users"][0].update(secret=v),
}


def load(tmp_path, data):
    p = tmp_path / "t.yaml"
    p.write_text(yaml.safe_dump(data, allow_unicode=True))
    return topology.load(p)


def pppd_words(text: str) -> list[list[str]]:
    """Lines of words as pppd's getword() reads them (options.c): '#' starts a comment
    between words, "..." and '...' quote, backslash escapes. The test's own reading."""
    lines, words, word, quote, esc, in_word, comment = [], [], "", None, False, False, False
    for c in text + "\n":
        if comment:
            if c == "\n":
                comment = False
                lines.append(words) if words else None
                words = []
            continue
        if esc:
            word += {"n": "\n", "t": "\t", "s": " "}.get(c, c)
            esc, in_word = False, True
        elif c == "\\":
            esc = True
        elif quote:
            if c == quote:
                quote = None
            else:
                word += c
        elif c in "\"'":
            quote, in_word = c, True
        elif c.isspace() or (c == "#" and not in_word):
            if in_word:
                words.append(word)
            word, in_word = "", False
            if c == "#":
                comment = True
            elif c == "\n":
                lines.append(words) if words else None
                words = []
        else:
            word += c
            in_word = True
    return lines


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("label", REFUSED)
def test_values_no_file_can_carry_are_refused_naming_the_key(tmp_path, field, label):
    value, words = REFUSED[label]
    data = base()
    FIELDS[field](data, value)
    with pytest.raises(LabError) as err:
        load(tmp_path, data)
    msg = str(err.value)
    assert f"{field}:" in msg and words in msg and "\n" not in msg, msg


@pytest.mark.parametrize("field", ["nodes.cli.pptp_client.user", "nodes.cli.pptp_client.server_name",
                                   "nodes.srv.pptp_server.name", "nodes.srv.pptp_server.users[0].name"])
def test_the_chap_secrets_wildcard_is_no_name(tmp_path, field):
    data = base()
    FIELDS[field](data, "*")
    with pytest.raises(LabError, match=rf"{field.replace('[', '.').replace(']', '.')}.*wildcard"):
        load(tmp_path, data)


def test_a_secret_naming_a_file_is_refused(tmp_path):
    data = base()
    FIELDS["nodes.cli.pptp_client.secret"](data, "@/etc/shadow")
    with pytest.raises(LabError, match="nodes.cli.pptp_client.secret: .*file name"):
        load(tmp_path, data)


def hostile_topology(tmp_path, value):
    data = base()
    for set_field in FIELDS.values():
        set_field(data, value)
    # The client's own credentials must match a server user: the same hostile words.
    return load(tmp_path, data)


@pytest.mark.parametrize("label", HOSTILE)
def test_hostile_values_are_carried_literally_into_pppd_files(tmp_path, label):
    value = HOSTILE[label]
    topo = hostile_topology(tmp_path, value)
    srv, cli = render.node_files(topo, "srv"), render.node_files(topo, "cli")
    assert pppd_words(srv["/etc/ppp/chap-secrets"][0]) == [[value, value, value, "*"]]
    assert pppd_words(cli["/etc/ppp/chap-secrets"][0]) == [[value, value, value, "*"]]
    peer = pppd_words(cli["/etc/ppp/peers/lab"][0])
    assert ["name", value] in peer and ["remotename", value] in peer
    assert ["name", value] in pppd_words(srv["/etc/ppp/pptpd-options"][0])
    # The pty command (run by a shell) holds only the address and fixed words.
    (pty,) = [w[1] for w in peer if w[0] == "pty"]
    assert shlex.split(pty) == ["pptp", "10.1.0.10", "--nolaunchpppd"]
    # No value reaches a shell script.
    for files in (srv, cli):
        assert value.strip() not in files[render.SCRIPT][0]


def test_secret_files_are_owner_only(tmp_path):
    topo = hostile_topology(tmp_path, "s")
    for name in ("srv", "cli"):
        files = render.node_files(topo, name)
        assert files["/etc/ppp/chap-secrets"][1] == 0o600
        with tarfile.open(fileobj=io.BytesIO(tar_of(files))) as tar:
            assert tar.getmember("etc/ppp/chap-secrets").mode == 0o600


def test_pptp_options_are_typed_and_become_fixed_words(tmp_path):
    data = base()
    data["nodes"]["cli"]["pptp_client"]["options"] = {"idle_wait": 5, "max_echo_wait": 3, "nobuffer": True,
                                                      "localbind": "10.1.0.20"}
    topo = load(tmp_path, data)
    (pty,) = [w[1] for w in pppd_words(render.node_files(topo, "cli")["/etc/ppp/peers/lab"][0]) if w[0] == "pty"]
    assert shlex.split(pty) == ["pptp", "10.1.0.10", "--nolaunchpppd", "--idle-wait", "5", "--max-echo-wait",
                                "3", "--localbind", "10.1.0.20", "--nobuffer"]
    for bad, words in ((";reboot", "valid dictionary"), ({"connect": "x"}, "options.connect: unknown key"),
                       ({"idle_wait": "5; reboot"}, "options.idle_wait")):
        data["nodes"]["cli"]["pptp_client"]["options"] = bad
        with pytest.raises(LabError, match=words):
            load(tmp_path, data)


def test_the_inventory_marks_every_value_unsafe_for_ansible(tmp_path):
    """Ansible itself loads the inventory and templates the variables: hostile values come
    back as they were written, never evaluated."""
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar, trust_as_template
    from ansible.vars.manager import VariableManager

    value = HOSTILE["template"] + HOSTILE["lookup"]
    topo = hostile_topology(tmp_path, value)
    inv_file = tmp_path / "hosts.yml"
    inv_file.write_text(configure.inventory_yaml(topo, "tcp://127.0.0.1:1"))
    loader = DataLoader()
    inv = InventoryManager(loader=loader, sources=[str(inv_file)])
    hv = VariableManager(loader=loader, inventory=inv).get_vars(host=inv.get_host("t-srv"))
    templar = Templar(loader=loader, variables=hv)
    # The playbook's own expressions are trusted templates; the values they reach are not.
    bundle = templar.template(trust_as_template("{{ lab_bundle }}"))
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(bundle))) as tar:
        secrets = tar.extractfile("etc/ppp/chap-secrets").read().decode()
    assert pppd_words(secrets) == [[value, value, value, "*"]]
    assert templar.template(trust_as_template("{{ lab_node }}")) == "srv"
    assert not (tmp_path / "pwned").exists()
    # Nothing of the topology is in clear in the inventory, and every lab_* string is
    # tagged !unsafe for Ansible (its templating would evaluate an untagged one).
    text = inv_file.read_text()
    assert "7*7" not in text and "lookup" not in text
    node = yaml.compose(text)
    hosts = {k.value: v for k, v in node.value[0][1].value[1][1].value[0][1].value[0][1].value}
    for scalar in _scalars(hosts["t-srv"]):
        key, value = scalar
        if key.startswith("lab_"):
            assert value.tag == "!unsafe", (key, value.tag)
    assert templar.template(trust_as_template("{{ 7*7 }}")) == 49  # what an untagged value risks


def _scalars(node, key=""):
    """(host variable name, scalar node) of every string under a host's mapping node."""
    if isinstance(node, yaml.ScalarNode):
        yield key, node
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from _scalars(item, key)
    else:
        for k, v in node.value:
            yield from _scalars(v, key or k.value)


@pytest.mark.parametrize("path", sorted((REPO / "topologies").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_node_of_every_shipped_topology_renders(path):
    """Every template a shipped topology needs renders (no undefined name, no stray value),
    and every configure script is valid shell."""
    topo = topology.load(path)
    for name in topo.nodes:
        files = render.node_files(topo, name)
        script = files[render.SCRIPT][0]
        assert subprocess.run(["sh", "-n"], input=script, text=True).returncode == 0, (name, script)
        for p, (text, mode) in files.items():
            assert text.strip() and mode & 0o600 == 0o600, p

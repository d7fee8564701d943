"""Topology files that are not topologies: every one ends in a one-line LabError naming the
file, never in a traceback, and YAML that PyYAML would silently accept (duplicate keys,
alias bombs) is refused."""
from pathlib import Path

import pytest
import yaml

from lab.model import topology
from lab.core.errors import LabError
from tests import REPO

DEFAULT = (REPO / "topologies" / "default.yaml").read_text()


def refused(path, match: str) -> str:
    with pytest.raises(LabError) as err:
        topology.load(path)
    msg = str(err.value)
    assert msg.startswith(str(path)) and "\n" not in msg, msg
    assert match in msg, msg
    return msg


def test_binary_file(tmp_path):
    p = tmp_path / "bin.yaml"
    p.write_bytes(b"name: x\n\x00\x01\x02\xff\xfe binary")
    refused(p, "binary data (NUL byte at offset 8)")


def test_invalid_utf8(tmp_path):
    p = tmp_path / "latin1.yaml"
    p.write_bytes("name: x\ndescription: caf\xe9\n".encode("latin-1"))
    refused(p, f"{p}:2: not UTF-8 text (byte 0xe9")


def test_control_character(tmp_path):
    p = tmp_path / "ctl.yaml"
    p.write_bytes(b"name: x\ndescription: a\x01b\n")
    refused(p, f"{p}:2: not valid YAML (character #x0001")


def test_unreadable_file(tmp_path, monkeypatch):
    p = tmp_path / "secret.yaml"
    p.write_text(DEFAULT)

    def denied(self, *a, **kw):
        raise PermissionError(13, "Permission denied", str(self))

    for meth in ("open", "read_text", "read_bytes"):  # tests run as root: chmod 000 would not stop us
        monkeypatch.setattr(Path, meth, denied)
    refused(p, "cannot read the topology file (Permission denied)")


def test_directory(tmp_path):
    refused(tmp_path, "is a directory")


def test_too_big(tmp_path):
    p = tmp_path / "big.yaml"
    p.write_text(DEFAULT + "#" * topology.MAX_BYTES)
    refused(p, "larger than 1 MiB")


def test_utf8_bom_is_fine(tmp_path):
    p = tmp_path / "bom.yaml"
    p.write_bytes(b"\xef\xbb\xbf" + DEFAULT.encode())
    assert topology.load(p).name == "default"


@pytest.mark.parametrize("text,line,key,first", [
    ("name: a\nname: b\n", 2, "name", 1),  # top level
    (DEFAULT.replace("  home-client:\n", "  client:\n", 1), 40, "client", 30),  # nodes: one silently lost before
    ("nodes:\n  n:\n    interfaces: {a: 10.0.0.1, a: 10.0.0.2}\n", 3, "a", 3),  # flow mapping
    ("networks:\n  a:\n    subnet: 10.0.0.0/24\n    role: home\n    subnet: 10.1.0.0/24\n", 5, "subnet", 3),
    ("x:\n  - {k: 1}\n  - k: 1\n    j: 2\n    k: 3\n", 5, "k", 3),  # inside a list
])
def test_duplicate_keys_name_line_and_key(tmp_path, text, line, key, first):
    p = tmp_path / "dup.yaml"
    p.write_text(text)
    msg = refused(p, f"{p}:{line}: duplicate key {key!r} (first at line {first})")
    assert msg == f"{p}:{line}: duplicate key {key!r} (first at line {first})"
    yaml.safe_load(text)  # PyYAML alone takes it silently, keeping the last value


def test_merge_key_may_be_overridden(tmp_path):
    p = tmp_path / "merge.yaml"
    p.write_text("a:\n  <<: {x: 1, y: 2}\n  x: 3\n")
    assert topology._parse(p) == {"a": {"x": 3, "y": 2}}
    p.write_text("a:\n  <<: {x: 1, x: 2}\n")
    refused(p, "duplicate key 'x'")


def test_billion_laughs_is_refused_without_expanding(tmp_path):
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    p = tmp_path / "lol.yaml"
    p.write_text("\n".join(lines) + "\nname: lol\nnodes: *a9\n")
    refused(p, f"{p}:2: alias *a0: anchors and aliases are not allowed")


def test_deep_nesting(tmp_path):
    p = tmp_path / "deep.yaml"
    p.write_text("name: " + "[" * 50000)
    refused(p, "nested too deeply")


def test_key_path_messages_are_kept(tmp_path):
    p = tmp_path / "t.yaml"
    p.write_text(DEFAULT.replace("policy: open", "policy: open\n    colour: red"))
    refused(p, f"{p}: nodes.fw.colour: unknown key")

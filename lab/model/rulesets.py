"""Rulesets from files: a firewall, nat or router node's `ruleset: {nft: FILE}` or
`ruleset: {iptables: FILE}` (iptables-save format, IPv4).

The file is read by lab.model.topology.load, relative to the topology file's folder, and the
model carries its text (`Ruleset.text`), so rendering needs no file system. A topology may
come from a stranger: the file must resolve (symlinks followed) to a regular file inside
the topology's folder, at most MAX_BYTES of UTF-8 text without NUL. Its text is written
unchanged into the node (PATHS, mode 0600) and applied there by fixed commands (APPLY,
playbooks/templates/ruleset.sh.j2); no part of it becomes shell code or template text.

Before a lab is created, the lead checks each ruleset in a throwaway container (its own
network namespace, NET_ADMIN): the file written at PATHS[flavour], `check_argv(flavour)`
run, and a failure turned into one line by `explain`."""
from __future__ import annotations

import hashlib
import os
import re
import stat
import unicodedata
from pathlib import Path
from typing import Optional

from pydantic import Field, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from .types import Strict

FLAVOURS = ("nft", "iptables")
MAX_BYTES = 256 << 10
IFNAMSIZ = 15  # an interface name is at most 15 bytes (IFNAMSIZ 16 with its NUL)
# Where a node (and the throwaway checking container) holds its ruleset.
PATHS = {"nft": "/etc/pptp-lab/ruleset.nft", "iptables": "/etc/pptp-lab/ruleset.iptables"}
# How a node applies it: each is atomic (nft -f: one transaction; iptables-restore: one
# commit per table).
APPLY = {"nft": f"nft -f {PATHS['nft']}", "iptables": f"iptables-restore < {PATHS['iptables']}"}
LABEL_MAX = 16 << 10  # a ruleset longer than this is not copied onto the engine's labels


class RulesetError(ValueError):
    """A ruleset file that may not be read (the message names the key and the file)."""


def _path_value(v: Optional[str]) -> Optional[str]:
    if v is None:
        return v
    if not v:
        raise ValueError("an empty file name")
    if any(unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") for c in v):
        raise ValueError("a file name with a control character")
    return v


class Ruleset(Strict):
    """A node's own ruleset, from a file next to the topology file."""
    nft: Optional[str] = Field(None, description="an nftables file (applied with nft -f), relative to "
                               "the topology file's folder")
    iptables: Optional[str] = Field(None, description="an iptables-save file, IPv4 (applied with "
                                    "iptables-restore), relative to the topology file's folder")
    # Filled by lab.model.topology.load from the file; never given in a topology file (the loader
    # refuses the key), but kept in the model's JSON (engine labels, runs/topology.json).
    text: SkipJsonSchema[Optional[str]] = None

    @field_validator("nft", "iptables")
    @classmethod
    def _paths(cls, v: Optional[str]) -> Optional[str]:
        return _path_value(v)

    @model_validator(mode="after")
    def _one(self):
        given = [f for f in FLAVOURS if getattr(self, f) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of nft: FILE or iptables: FILE")
        if self.text is None:
            raise ValueError(f"the text of {self.path} is missing: a topology with a ruleset is "
                             "loaded from its file, which the ruleset's path is relative to")
        problem = text_problem(self.text.encode("utf-8", "surrogatepass"), self.flavour)
        if problem:
            raise ValueError(f"{self.path}: {problem}")
        return self

    @property
    def flavour(self) -> str:
        return "nft" if self.nft is not None else "iptables"

    @property
    def path(self) -> str:
        """The file as the topology gives it."""
        return self.nft if self.nft is not None else self.iptables  # type: ignore[return-value]

    @property
    def node_path(self) -> str:
        return PATHS[self.flavour]


# The block the firewall, nat and router kinds declare (one object: kinds compare it).
BLOCK = (Optional[Ruleset], Field(None, description="the node's own ruleset from a file: {nft: FILE} or "
                                  "{iptables: FILE} (iptables-save format, IPv4), relative to the "
                                  "topology file's folder (firewall, nat, router)"))


def text_problem(raw: bytes, flavour: str) -> str | None:
    """Why these bytes are no ruleset file (None when they are fine)."""
    if len(raw) > MAX_BYTES:
        return f"larger than {MAX_BYTES >> 10} KiB ({len(raw)} bytes), too big for a ruleset"
    if b"\0" in raw:
        return f"binary data (NUL byte at offset {raw.index(0)}), not a ruleset"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        return f"not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line})"
    if flavour == "nft" and re.search(r'^[ \t]*include[ \t]+"|;[ \t]*include[ \t]+"', text, re.M):
        return "an nftables include: a ruleset is one file of its own (it must not read the node's other files)"
    return None


def read(folder: Path, rel: str, key: str, flavour: str) -> str:
    """The text of ruleset file `rel` (as the topology at `key` gives it), relative to
    `folder`; RulesetError (one line naming key and file) when it may not be read."""
    where = f"{key}: {rel}"
    try:
        _path_value(rel)
    except ValueError as exc:
        raise RulesetError(f"{key}: {exc}") from None
    p = Path(rel)
    if p.is_absolute() or rel.startswith("~"):
        raise RulesetError(f"{where}: an absolute path (give a path relative to the topology file's folder)")
    if ".." in p.parts:
        raise RulesetError(f"{where}: '..' leads out of the topology file's folder (keep rulesets in it or below)")
    base = folder.resolve()
    try:
        target = (base / p).resolve(strict=True)
    except FileNotFoundError:
        raise RulesetError(f"{where}: no such file (looked in {base})") from None
    except (OSError, RuntimeError) as exc:  # a symlink loop, a component that is no directory
        raise RulesetError(f"{where}: cannot be resolved ({getattr(exc, 'strerror', None) or exc})") from None
    if not target.is_relative_to(base):
        raise RulesetError(f"{where}: a symlink that leads out of the topology file's folder ({base})")
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; O_NOFOLLOW: the resolved
        # path must not have become a symlink since.
        fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except IsADirectoryError:
        raise RulesetError(f"{where}: a directory, not a ruleset file") from None
    except OSError as exc:
        raise RulesetError(f"{where}: cannot be read ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise RulesetError(f"{where}: a directory, not a ruleset file")
        if not stat.S_ISREG(st.st_mode):
            raise RulesetError(f"{where}: not a regular file")
        chunks, size = [], 0
        while size <= MAX_BYTES:
            chunk = os.read(fd, MAX_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        raw = b"".join(chunks)
    except OSError as exc:
        raise RulesetError(f"{where}: cannot be read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    problem = text_problem(raw, flavour)
    if problem:
        raise RulesetError(f"{where}: {problem}")
    return raw.decode("utf-8")


def files(node, ctx: dict) -> dict[str, tuple[str, int]]:
    """The node's ruleset file (written unchanged, 0600) and its part of the configure
    script's context (ruleset.sh.j2 applies it)."""
    rs = node.ruleset
    if rs is None:
        return {}
    ctx["ruleset"] = rs.flavour
    return {rs.node_path: (rs.text, 0o600)}


def for_label(text: str) -> str:
    """What of a ruleset's text goes onto the engine's labels: the text itself up to
    LABEL_MAX, beyond that a comment saying so (labels ride on every call that lists the
    lab's networks; the topology file, runs/topology.json and the node hold the text)."""
    raw = text.encode()
    if len(raw) <= LABEL_MAX:
        return text
    return (f"# pptp-lab: this ruleset ({len(raw)} bytes, sha256 {hashlib.sha256(raw).hexdigest()}) "
            f"is longer than {LABEL_MAX >> 10} KiB and not recorded on the engine's labels\n")


# -- checking a ruleset before anything is created

def check_argv(flavour: str) -> list[str]:
    """The fixed command that checks the file written at PATHS[flavour] in a throwaway
    container (its own network namespace, NET_ADMIN).

    nft: `nft -c -f PATH` (the batch goes to the kernel, which validates it, then is not
    committed). iptables: `iptables-restore PATH`, applied for real in the throwaway
    namespace: iptables 1.8.9 (nf_tables, Debian bookworm) with --test only parses and
    never asks the kernel, so it passes e.g. a jump to a chain that does not exist, which
    the real restore refuses ("Chain 'X' does not exist", "Error occurred at line: N")."""
    if flavour == "nft":
        return ["nft", "-c", "-f", PATHS["nft"]]
    if flavour == "iptables":
        return ["iptables-restore", PATHS["iptables"]]
    raise ValueError(f"no ruleset flavour {flavour!r} (flavours: {', '.join(FLAVOURS)})")


_NFT_LOC = re.compile(r"^(?P<file>[^\s:]+):(?P<line>\d+):(?P<col>\d+(?:-\d+)?): (?:Error: )?(?P<msg>.*)$")
_IPT_AT = re.compile(r"^Error occurred at line: (\d+)\s*$")
_IPT_LINE_FAILED = re.compile(r"^\S*-restore: line (\d+) failed:?\s*(.*)$")
_IPT_LINE_N = re.compile(r"^line (\d+): (.*)$")
_IPT_AT_LINE = re.compile(r"^(?:\S*-restore: )?(.*?) at line:? (\d+)\s*$")
_IPT_PREFIX = re.compile(r"^\S*-restore(?: v[\d.]+(?: \([^)]*\))?)?: ")


def _clean(text: str, limit: int = 240) -> str:
    text = "".join(c if unicodedata.category(c)[0] != "C" else " " for c in text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def explain(flavour: str, output: str, topo_key: str, user_path: str) -> str:
    """One line from a failed check's output: the topology key, the user's file (the
    container's path mapped back to it), the line (and column) when the checker names one,
    and the checker's message. The offending source line nft echoes is left out."""
    node_path = PATHS.get(flavour, "")
    lines = [ln.rstrip() for ln in output.replace("\r", "").split("\n")]
    lines = [ln for ln in lines if ln.strip()]
    where, msg = "", ""
    if flavour == "nft":
        for ln in lines:
            m = _NFT_LOC.match(ln)
            if m:
                where, msg = f":{m['line']}:{m['col']}", m["msg"]
                break
        if not msg:
            msg = next((ln.split("Error: ", 1)[1] for ln in lines if "Error: " in ln),
                       lines[0] if lines else "the check failed without a message")
    else:
        for i, ln in enumerate(lines):
            m = _IPT_AT.match(ln)
            if m:
                where = f":{m[1]}"
                before = [x for x in lines[:i] if not x.startswith("Try `")]
                msg = _IPT_PREFIX.sub("", before[-1]) if before else ""
                # "iptables-restore v1.8.9 (nf_tables): Couldn't load match `x':No such file..."
                break
            m = _IPT_LINE_FAILED.match(ln)
            if m:
                where, msg = f":{m[1]}", m[2] or "failed"
                break
            m = _IPT_LINE_N.match(ln)
            if m:
                where, msg = f":{m[1]}", m[2]
                break
            m = _IPT_AT_LINE.match(ln)
            if m and not ln.startswith("Try `"):
                where, msg = f":{m[2]}", _IPT_PREFIX.sub("", m[1]) if m[1] else m[1]
                break
        if not msg:
            useful = [_IPT_PREFIX.sub("", x) for x in lines if not x.startswith("Try `")]
            msg = next((x for x in useful if x.strip()), "the check failed without a message")
    msg = msg.replace(node_path, user_path) if node_path else msg
    return _clean(f"{topo_key}: {user_path}{where}: {msg.strip().rstrip('.')}")

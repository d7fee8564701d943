"""Node kinds: one module per kind, each a `Kind` registered here under its name.

A kind declares the node keys (blocks) it owns with their pydantic types, which of them a
node of the kind must have, the Debian packages it needs in the node image, its checks
against the whole topology, the files it renders into a node (and its part of the node's
configure script), its tunnel interface, and what `up` and `status` do on its nodes.
lab.model.topology builds its Node model from the registry; lab.model.render, lab.up.lifecycle call the
hooks. Adding a kind is one module here, its templates in playbooks/templates and tests.

A topology is untrusted: a kind hands topology values to templates as data (quoted there
with the `pppd` or `sh` filter), never as template text, shell code or a config directive.

Kinds never import lab.model.topology at module level (it imports this package)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping, Protocol

from pydantic.fields import FieldInfo

if TYPE_CHECKING:
    from ..topology import Topology

Files = dict[str, tuple[str, int]]  # path -> (text, mode)


class Result(Protocol):
    ok: bool
    out: str
    rc: int


Run = Callable[[str], Result]  # runs a shell command in the node


@dataclass(frozen=True)
class Contribution:
    """What a node of one kind gives another node (a kind that serves others, e.g. an
    authentication server for a pptp-server)."""
    files: Mapping[str, tuple[str, int]] = field(default_factory=dict)  # extra files for that node
    # pppd option lines for that node's pptpd-options: (option, value, ...). The option is a
    # word of the kind's own; the values are quoted for pppd. They land in
    # /etc/ppp/pptp-lab.d/<kind>.options, which pptpd-options includes with `file`.
    pppd_options: tuple[tuple[str, ...], ...] = ()
    authenticates: bool = False  # that node's (a pptp-server's) users live here, not in its chap-secrets


OPTION = re.compile(r"^[a-z][a-z0-9-]*$")  # a pppd option name a kind may contribute


class Kind:
    """A node kind: subclass it in a module of this package (KIND = an instance) and
    register it below."""
    name: ClassVar[str] = ""
    # node key -> (type, default or pydantic Field(...)). Two kinds may own the same key
    # (a pptp-server may dial out: pptp_client); they declare it identically.
    blocks: ClassVar[dict[str, tuple[Any, Any]]] = {}
    required: ClassVar[tuple[str, ...]] = ()    # blocks a node of the kind must have
    packages: ClassVar[tuple[str, ...]] = ()    # Debian packages (images/node/packages.txt)
    script: ClassVar[str | None] = None         # its part of configure.sh (a template name)
    # Where its blocks hold secrets, as paths into a node's JSON data ("block.key", "[]" for
    # every item of a list): lab.model.topology.public_data replaces them before anything is
    # written where others may read it (engine labels, runs/).
    secrets: ClassVar[tuple[str, ...]] = ()
    # Jinja filters its templates quote values with (name -> function), for files whose
    # quoting rules are the kind's own (e.g. FreeRADIUS's); they refuse what they cannot carry.
    filters: ClassVar[dict[str, Callable[[Any], str]]] = {}

    def validate(self, node) -> None:
        """Checks of the node alone (raise ValueError; reported at nodes.NAME)."""

    def check(self, topo: Topology, name: str, node) -> list[str]:
        """Errors against the whole topology, each starting with its key path."""
        return []

    def files(self, topo: Topology, name: str, node, ctx: dict) -> Files:
        """Files of the node (path -> (text, mode)); fill the kind's part of `ctx`, the
        configure script's context (`users` collects chap-secrets lines)."""
        return {}

    def contribute(self, topo: Topology, name: str, node) -> dict[str, Contribution]:
        """What node `name` (of this kind) gives other nodes, by their names."""
        return {}

    def tunnel_if(self, node) -> str:
        """The interface of the node's own outgoing tunnel."""
        return "ppp0"

    def start(self, run: Run) -> None:
        """Run at `up` once the node is configured (run raises on a failing command)."""

    def labels(self, topo: Topology, name: str, node) -> list[tuple[str, str]]:
        """What pictures and reports show of the node's role, as (text, style) lines (style
        "role", or "tunnel" for a call it makes): its ruleset by default; a kind adds its
        own (policy, NAT, pool, the server it dials), so lab.reports.graph knows no kind."""
        return ruleset_labels(node) + dial_labels(topo, node)

    def status(self, run: Run, st, seen: Mapping[str, list]) -> list | None:
        """Fill the tunnel columns of `st` (a lifecycle.NodeStatus) of a running node;
        `seen`: client address -> its tunnels as the live capture shows them (lab.model.tunnels).
        A node making several calls (a count) returns a row for each, to follow its own."""

    def __repr__(self) -> str:
        return f"<kind {self.name}>"


def ruleset_labels(node) -> list[tuple[str, str]]:
    """`ruleset nft FILE` (or iptables) for a node with its own ruleset."""
    rs = getattr(node, "ruleset", None)
    if rs is None:
        return []
    return [(f"ruleset nft {rs.nft}" if rs.nft else f"ruleset iptables {rs.iptables}", "role")]


def dial_labels(topo, node) -> list[tuple[str, str]]:
    """`dials ADDRESS (NODE)` for a node that makes a call."""
    client = getattr(node, "pptp_client", None)
    if client is None:
        return []
    target = topo.reached_at(client.server)
    return [(f"dials {client.server} " + (f"({target})" if target else "(not in the lab)"), "tunnel")]


KINDS: dict[str, Kind] = {}
_listeners: list[Callable[[], None]] = []


def _same(a: tuple, b: tuple) -> bool:
    return a[0] == b[0] and repr(a[1]) == repr(b[1])


def register(kind: Kind) -> Kind:
    """Add a kind; the topology model is rebuilt to know it."""
    if not kind.name or kind.name in KINDS:
        raise ValueError(f"kind {kind.name!r}: no name, or registered already")
    for block, spec in kind.blocks.items():
        for other in KINDS.values():
            if block in other.blocks and not _same(spec, other.blocks[block]):
                raise ValueError(f"kind {kind.name}: block {block} is declared otherwise by kind {other.name}")
    missing = set(kind.required) - set(kind.blocks)
    if missing:
        raise ValueError(f"kind {kind.name}: requires blocks it does not declare: {', '.join(sorted(missing))}")
    KINDS[kind.name] = kind
    _changed()
    return kind


def unregister(name: str) -> None:
    del KINDS[name]
    _changed()


def on_change(fn: Callable[[], None]) -> None:
    """Call fn whenever the registry changes (lab.model.topology rebuilds its models)."""
    _listeners.append(fn)


def _changed() -> None:
    for fn in _listeners:
        fn()


def get(name: str) -> Kind:
    try:
        return KINDS[name]
    except KeyError:
        raise KeyError(f"no node kind {name!r} (kinds: {', '.join(KINDS)})") from None


def block_fields() -> dict[str, tuple[Any, Any]]:
    """Every block of every kind, in registry order: the Node model's fields after its base."""
    out: dict[str, tuple[Any, Any]] = {}
    for kind in KINDS.values():
        for block, spec in kind.blocks.items():
            out.setdefault(block, spec)
    return out


def owners() -> dict[str, list[str]]:
    """block -> the kinds that own it, the kind that requires it first."""
    out: dict[str, list[str]] = {}
    for kind in KINDS.values():
        for block in kind.blocks:
            out.setdefault(block, []).append(kind.name)
    return {b: sorted(ks, key=lambda k: b not in KINDS[k].required) for b, ks in out.items()}


def default(block: str):
    spec = block_fields()[block][1]
    return spec.get_default(call_default_factory=True) if isinstance(spec, FieldInfo) else spec


def is_set(node, block: str) -> bool:
    """Does the node give the block (a value other than its default)?"""
    return getattr(node, block, None) != default(block)


def of(node) -> list[Kind]:
    """The kinds at work on a node: its own, then every kind whose required block it has
    (a pptp-server with a pptp_client block also dials, as a pptp-client does)."""
    own = get(node.kind)
    return [own] + [k for k in KINDS.values()
                    if k is not own and k.required and all(is_set(node, b) for b in k.required)]


def contributions(topo: Topology, name: str) -> list[tuple[Kind, str, Contribution]]:
    """(kind, giving node, contribution) of every node that gives node `name` something."""
    out = []
    for other, node in topo.nodes.items():
        for kind in of(node):
            c = kind.contribute(topo, other, node).get(name)
            if c is not None:
                out.append((kind, other, c))
    return out


def hide_secrets(node: dict, placeholder: str) -> None:
    """Replace, in one node's JSON data, every secret any kind declares (Kind.secrets)."""
    def walk(value, parts):
        if not isinstance(value, dict) or not parts:
            return
        head, rest = parts[0], parts[1:]
        if head.endswith("[]"):
            for item in value.get(head[:-2]) or []:
                walk(item, rest)
        elif rest:
            walk(value.get(head), rest)
        elif value.get(head) is not None:
            value[head] = placeholder

    for kind in KINDS.values():
        for path in kind.secrets:
            walk(node, path.split("."))


def authenticated_elsewhere(topo: Topology, name: str) -> bool:
    return any(c.authenticates for _, _, c in contributions(topo, name))


# Every module of this package with a KIND is a kind: the first six in this order (the
# order of the schema's enum of kinds), any other after them by module name. Adding a kind
# is adding its module; nothing here changes.
FIRST = ("pptp_server", "pptp_client", "nat", "firewall", "router", "host")


def _discover() -> None:
    import importlib
    import pkgutil

    found = sorted((m.name for m in pkgutil.iter_modules(__path__)), key=lambda n: (n not in FIRST,
                   FIRST.index(n) if n in FIRST else 0, n))
    for module in found:
        kind = getattr(importlib.import_module(f"{__name__}.{module}"), "KIND", None)
        if isinstance(kind, Kind):
            register(kind)


_discover()

"""Topology files: load, validate everything, return an immutable model.

Errors name the file and the key path (`topologies/x.yaml: nodes.fw.interfaces.dmz: ...`),
and nothing is created before the whole file is known to be good."""
from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Literal, Optional

import yaml
from pydantic import Field, ValidationError, create_model, field_validator, model_validator

from . import causes, kinds, members, rulesets
from ..core import names, suites
from ..core.errors import LabError
from .kinds.firewall import interface as _firewall_interface, vpn_address as _vpn_address
from .types import NAME, ROLES, IPv4, Network, PppName, PppSecret, Route, Strict  # noqa: F401 (re-exported)
from ..pptp import FAIL_PHASES


# rp_filter: the value of net.ipv4.conf.all.rp_filter (the kernel takes the higher of `all`
# and the interface's own).
RP_FILTER = {"off": "0", "strict": "1", "loose": "2"}


class NodeBase(Strict):
    """What every node has; the Node model adds the blocks of the registered kinds
    (lab.model.kinds), and `kind` becomes one of their names."""
    kind: str
    interfaces: dict[str, str] = Field(min_length=1, description="network name -> IPv4 address")
    routes: list[Route] = Field(default_factory=list)
    image: Optional[Literal[suites.USERLANDS]] = Field(  # type: ignore[valid-type]
        None, description="the node's userland (pppd, pptpd, pptp-linux, ...) from this Debian suite; "
        "default: the suite of the VM it runs in (bookworm on other engines)")
    rp_filter: Optional[Literal[tuple(RP_FILTER)]] = Field(  # type: ignore[valid-type]
        None, description="the kernel's reverse-path filter on all its interfaces: off (the lab's "
        "default), loose, or strict (a packet must come in where the node would route its answer)")

    @field_validator("interfaces")
    @classmethod
    def _addresses(cls, v: dict[str, str]) -> dict[str, str]:
        out = {}
        for k, a in v.items():
            try:
                out[k] = str(ipaddress.IPv4Address(a))
            except ValueError as exc:
                raise ValueError(f"{k}: {exc}") from None
        return out

    @model_validator(mode="after")
    def _kind_settings(self):
        kind = kinds.get(self.kind)
        for block in kind.required:
            if not kinds.is_set(self, block):
                raise ValueError(f"a {self.kind} node needs a {block} block")
        for block, owners in kinds.owners().items():
            if self.kind not in owners and kinds.is_set(self, block):
                raise ValueError(f"{block} is only for kind {' or '.join(owners)}")
        if sum(1 for r in self.routes if r.to == "default") > 1:
            raise ValueError("two default routes")
        for k in kinds.of(self):
            k.validate(self)
        return self


def _node_model() -> type[NodeBase]:
    """Node: the base plus every block the registered kinds declare."""
    return create_model("Node", __base__=NodeBase, __module__=__name__,
                        kind=(Literal[tuple(kinds.KINDS)], ...), **kinds.block_fields())


Node = _node_model()


FILTERING_KINDS = ("firewall", "nat", "router")  # the nodes whose rulesets can drop a tunnel


class TransferExpect(Strict):
    """A TCP transfer through the tunnel (SPEC S30), and the packet sizes it rests on (S29)."""
    to: IPv4 = Field(description="the far end: an address of a node, or a server's tunnel address (local_ip)")
    bytes: int = Field(ge=1, le=100_000_000, description="random bytes sent from the client, "
                       "checked at the far end by size and SHA-256")
    timeout: int = Field(30, ge=1, le=600, description="seconds the transfer may take")
    min_mtu: Optional[int] = Field(None, ge=68, le=1500, description="the largest packet with DF set "
                                   "that passes the tunnel (each way, found with real pings) is at least this")


class ClientExpect(Strict):
    """What a user expects of one client (checked by `pptp-lab test TOPOLOGY`)."""
    tunnel: Literal["up", "fails"] = "up"
    phase: Optional[Literal[FAIL_PHASES]] = Field(  # type: ignore[valid-type]
        None, description="with tunnel: fails, the phase the analyser must find the session stopped in")
    reach: list[str] = Field(default_factory=list, description="addresses pinged through the tunnel")
    unreachable: list[str] = Field(default_factory=list, description="addresses that must not answer")
    dropped_by: Optional[str] = Field(
        None, description="with tunnel: fails, the firewall, nat or router node whose ruleset must "
        "be found dropping the client's packets (kernel tracing, lab.why)")
    rule: Optional[str] = Field(
        None, min_length=1, description="with dropped_by, a part of the text of the rule that drops "
        "them (as `nft list ruleset` prints it)")
    cause: Optional[Literal[causes.NAMES]] = Field(  # type: ignore[valid-type]
        None, description="with tunnel: fails, why it must fail (README: Why it failed): "
        + ", ".join(causes.NAMES))
    transfer: Optional[TransferExpect] = Field(None, description="a TCP transfer through the tunnel "
                                               "that must complete (SPEC S29-S31)")

    @field_validator("reach", "unreachable")
    @classmethod
    def _addrs(cls, v: list[str]) -> list[str]:
        return [str(ipaddress.IPv4Address(a)) for a in v]

    @model_validator(mode="after")
    def _drop(self):
        if self.dropped_by is not None and self.tunnel != "fails":
            raise ValueError("dropped_by is only for tunnel: fails")
        if self.rule is not None and self.dropped_by is None:
            raise ValueError("rule needs dropped_by (the node whose rule it is)")
        if self.cause is not None and self.tunnel != "fails":
            raise ValueError("cause is only for tunnel: fails")
        if self.transfer is not None and self.tunnel != "up":
            raise ValueError("transfer is only for tunnel: up")
        return self


class NatExpect(Strict):
    unique_outside_call_ids: bool = True


class Expect(Strict):
    clients: dict[str, ClientExpect] = Field(default_factory=dict)
    nat: dict[str, NatExpect] = Field(default_factory=dict)


class EngineSettings(Strict):
    """What the lab needs of its engine."""
    kernel: Optional[Literal[suites.KERNELS]] = Field(  # type: ignore[valid-type]
        None, description="the VM's kernel, from this Debian suite (the VM's userland too); default "
        "bookworm. --kernel overrides it; it overrides PPTP_LAB_KERNEL")


class Topology(Strict):
    name: str = Field(pattern=NAME)
    description: str = ""
    engine: Optional[EngineSettings] = Field(None, description="what the lab needs of its engine")
    networks: dict[str, Network] = Field(min_length=1)
    nodes: dict[str, Node] = Field(min_length=1)
    expect: Optional[Expect] = Field(None, description="expected results, checked by `pptp-lab test`")

    @model_validator(mode="after")
    def _references(self):
        errors: list[str] = []
        seen: dict[str, str] = {}
        for n in list(self.networks) + list(self.nodes):
            if not re.match(NAME, n):
                errors.append(f"{n}: names are lower-case letters, digits and '-', at most 24")
        nets = list(self.networks.items())
        for i, (a, na) in enumerate(nets):
            for b, nb in nets[i + 1:]:
                if na.net.overlaps(nb.net):
                    errors.append(f"networks.{b}.subnet: {nb.subnet} overlaps networks.{a} ({na.subnet})")
        counted = members.used_addresses(self)  # the other addresses of nodes with a count
        for name, node in self.nodes.items():
            for net, addr in node.interfaces.items():
                where = f"nodes.{name}.interfaces.{net}"
                if net not in self.networks:
                    errors.append(f"{where}: unknown network {net!r} (networks: {', '.join(self.networks)})")
                    continue
                netw = self.networks[net]
                ip = ipaddress.IPv4Address(addr)
                if ip not in netw.net or ip in (netw.net.network_address, netw.net.broadcast_address):
                    errors.append(f"{where}: {addr} is not a host address of {net} ({netw.subnet})")
                elif addr == netw.bridge_address:
                    errors.append(f"{where}: {addr} is reserved for the engine's bridge on {net}")
                if addr in seen:
                    errors.append(f"{where}: {addr} is already used by {seen[addr]}")
                seen[addr] = where
                if addr in counted:
                    errors.append(f"{where}: {addr} is a member's of {counted[addr]}")
            for i, r in enumerate(node.routes):
                if not any(ipaddress.IPv4Address(r.via) in self.networks[n].net
                           for n in node.interfaces if n in self.networks):
                    errors.append(f"nodes.{name}.routes[{i}].via: {r.via} is on none of {name}'s networks")
        if self.expect:
            for name in self.expect.clients:
                if name not in self.nodes or self.nodes[name].kind != "pptp-client":
                    errors.append(f"expect.clients.{name}: no pptp-client node {name!r}")
                elif self.nodes[name].count:
                    errors.append(f"expect.clients.{name}: not yet for a node with a count (its members "
                                  "are each judged `tunnel up`)")
                by = self.expect.clients[name].dropped_by
                move = self.expect.clients[name].transfer
                if move is not None and self.holder(move.to) is None:
                    errors.append(f"expect.clients.{name}.transfer.to: no node has {move.to} (an interface "
                                  "address, or a pptp-server's local_ip)")
                if by is not None and (by not in self.nodes or self.nodes[by].kind not in FILTERING_KINDS):
                    errors.append(f"expect.clients.{name}.dropped_by: no {', '.join(FILTERING_KINDS[:-1])} "
                                  f"or {FILTERING_KINDS[-1]} node {by!r}")
            for name in self.expect.nat:
                if name not in self.nodes or self.nodes[name].kind != "nat":
                    errors.append(f"expect.nat.{name}: no nat node {name!r}")
                elif self.nodes[name].nat is None:
                    errors.append(f"expect.nat.{name}: {name}'s NAT is its ruleset: the lab knows no "
                                  "outside network to check")
        for name, node in self.nodes.items():
            if getattr(node, "ruleset", None) is None:
                continue
            for net in node.interfaces:  # a ruleset may name the node's interfaces (= its networks)
                if net in self.networks and names.interface(net) is None:
                    why = (f"name longer than {names.IFNAMSIZ} characters" if len(net.encode()) > names.IFNAMSIZ
                           else "a name the kernel or pppd use for interfaces of their own")
                    errors.append(f"networks.{net}: {why} cannot name {name}'s interface, which its "
                                  "ruleset may refer to")
        for name, node in self.nodes.items():
            for kind in kinds.of(node):
                errors += kind.check(self, name, node)
        if errors:
            raise ValueError("; ".join(errors))
        return self

    def firewall_interface(self, node: Node, role: str) -> str | None:
        """The network of a firewall node that plays `role` (internet | perimeter)."""
        return _firewall_interface(self, node, role)

    def vpn_address(self, node: Node) -> str | None:
        return _vpn_address(self, node)

    def reached_at(self, address: str) -> str | None:
        """The node a client reaches when it dials `address` (a static NAT's public address
        belongs to the NAT node)."""
        for name, node in self.nodes.items():
            nat = getattr(node, "nat", None)
            if address in node.interfaces.values() or (nat is not None and nat.public == address):
                return name
        return None

    def holder(self, address: str) -> str | None:
        """The node that holds `address`: on an interface, or as a server's tunnel address."""
        for name, node in self.nodes.items():
            server = getattr(node, "pptp_server", None)
            if address in node.interfaces.values() or (server is not None and server.local_ip == address):
                return name
        return None

    @property
    def servers(self) -> dict[str, Node]:
        return {n: v for n, v in self.nodes.items() if v.kind == "pptp-server"}

    @property
    def clients(self) -> dict[str, Node]:
        """Every node that dials: pptp-client nodes and servers that are calling routers."""
        return {n: v for n, v in self.nodes.items() if v.pptp_client is not None}


REMOVED = "(removed)"  # a secret's place in a topology written out


def public_data(topo: Topology, placeholder: str = REMOVED, label: bool = False) -> dict:
    """The topology as JSON data with every secret replaced by `placeholder`: what may be
    put on an engine's labels or into runs/ (which CI keeps as an artefact). Rulesets are
    no secrets and keep their text; with `label`, a long one is replaced by a comment saying
    so (lab.model.rulesets.for_label): labels ride on every call that lists the lab's networks."""
    data = topo.model_dump(mode="json")
    # Unset suites are left out: a topology without them hashes (lifecycle.topo_hash) and
    # records as it did before they existed, so labs already up stay recognised.
    if data.get("engine") is None:
        data.pop("engine", None)
    for want in ((data.get("expect") or {}).get("clients") or {}).values():
        for key in ("cause", "transfer"):
            if want.get(key) is None:
                want.pop(key, None)  # unset: as before the key existed
    for net in data["networks"].values():
        for key in ("mtu", "netem"):
            if net.get(key) is None:
                net.pop(key, None)  # unset: as before the key existed
    for node in data["nodes"].values():
        for key in ("image", "rp_filter", "count"):  # unset: as before the key existed (labs up match)
            if node.get(key) is None:
                node.pop(key, None)
        for block in ("pptp_client", "pptp_server"):
            ppp = (node.get(block) or {}).get("ppp") or {}
            for key in ("mtu", "mru"):
                if key in ppp and ppp[key] is None:
                    del ppp[key]
        kinds.hide_secrets(node, placeholder)
        if label and node.get("ruleset"):
            node["ruleset"]["text"] = rulesets.for_label(node["ruleset"]["text"])
    return data


def _key_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith(("function-", "literal[")):
            continue  # pydantic's own validator names, not keys of the file
        else:
            out += ("." if out else "") + str(part)
    return out


MAX_BYTES = 1 << 20  # far beyond any real topology: a bigger file is refused before it is parsed


class _Refused(yaml.MarkedYAMLError):
    """Valid YAML that a topology file does not allow (duplicate keys, aliases)."""


class _StrictLoader(yaml.SafeLoader):
    """yaml.safe_load that refuses duplicate keys (PyYAML keeps the last one silently) and
    aliases (a few nested ones expand to billions of nodes: "billion laughs")."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _Refused(problem=f"alias *{event.anchor}: anchors and aliases are not allowed "
                           "in a topology file (write the value out)", problem_mark=event.start_mark)
        return super().compose_node(parent, index)

    def _check_duplicates(self, node: yaml.MappingNode, seen: dict) -> None:
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: {...}`: merged keys may be overridden
                for sub in value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]:
                    if isinstance(sub, yaml.MappingNode):
                        self._check_duplicates(sub, {})
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                continue  # a complex key: the constructor refuses it
            key = self.construct_object(key_node)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:
                continue
            if first is not key_node:
                raise _Refused(problem=f"duplicate key {key!r} (first at line {first.start_mark.line + 1})",
                               problem_mark=key_node.start_mark)

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            self._check_duplicates(node, {})
        return super().construct_mapping(node, deep=deep)


def _parse(path: Path):
    """The file's YAML document; LabError naming the file (and line) on any fault."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise LabError(f"{path}: no such topology file") from None
    except IsADirectoryError:
        raise LabError(f"{path}: is a directory, not a topology file") from None
    except OSError as exc:
        raise LabError(f"{path}: cannot read the topology file ({exc.strerror or exc})") from None
    if len(raw) > MAX_BYTES:
        raise LabError(f"{path}: larger than {MAX_BYTES >> 20} MiB, too big for a topology file")
    if b"\0" in raw:
        raise LabError(f"{path}: binary data (NUL byte at offset {raw.index(0)}), not a YAML topology")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise LabError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader)
    except RecursionError:
        raise LabError(f"{path}: nested too deeply for a topology file") from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1  # the character: an int (its code point)
        raise LabError(f"{path}:{line}: not valid YAML (character #x{exc.character:04x}: "
                       f"{exc.reason})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())  # one line
        raise LabError(f"{path}{where}: {problem}" if isinstance(exc, _Refused)
                       else f"{path}{where}: not valid YAML ({problem})") from None


def load(path: str | Path, name: str | None = None, folder: Path | None = None) -> Topology:
    """Read and validate a topology file; raise LabError naming file and key on any fault.
    Ruleset files are relative to `folder` (default: the topology file's own)."""
    path = Path(path)
    data = _parse(path)
    if not isinstance(data, dict):
        raise LabError(f"{path}: a topology is a mapping with networks and nodes")
    data = {"name": name or data.get("name") or path.stem, **{k: v for k, v in data.items() if k != "name"}}
    if name:
        data["name"] = name
    _read_rulesets(path, data, folder or path.parent)
    try:
        return Topology.model_validate(data)
    except ValidationError as exc:
        raise LabError(f"{path}: {validation_message(exc)}") from None


def validation_message(exc: ValidationError) -> str:
    """One line: every fault with its key path (`nodes.fw.policy: ...; ...`)."""
    msgs = []
    for err in exc.errors():
        key = _key_path(err["loc"])
        text = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            text = "unknown key"
        msgs.append(f"{key}: {text}" if key else text)
    return "; ".join(msgs)


def _read_rulesets(path: Path, data: dict, folder: Path) -> None:
    """Put the text of every node's ruleset file into its `ruleset` block (a topology file
    never gives the text itself); LabError naming file and key when one may not be read."""
    nodes = data.get("nodes")
    if not isinstance(nodes, dict):
        return  # the model reports it
    errors = []
    for name, node in nodes.items():
        block = node.get("ruleset") if isinstance(node, dict) else None
        if not isinstance(block, dict):
            continue
        key = f"nodes.{name}.ruleset"
        if "text" in block:
            errors.append(f"{key}.text: unknown key (a ruleset is read from its file: nft: FILE or iptables: FILE)")
            continue
        given = [f for f in rulesets.FLAVOURS if f in block]
        if len(given) != 1 or not isinstance(block[given[0]], str):
            continue  # the model reports it
        try:
            text = rulesets.read(folder, block[given[0]], f"{key}.{given[0]}", given[0])
        except rulesets.RulesetError as exc:
            errors.append(str(exc))
            continue
        node["ruleset"] = {**block, "text": text}
    if errors:
        raise LabError(f"{path}: " + "; ".join(errors))


def _rebuild() -> None:
    """The kind registry changed (a kind registered or removed): a new Node model, and a
    Topology whose nodes are of it."""
    global Node
    Node = _node_model()
    Topology.model_fields["nodes"].annotation = dict[str, Node]
    Topology.model_rebuild(force=True)


kinds.on_change(_rebuild)


def json_schema() -> str:
    return json.dumps(Topology.model_json_schema(), indent=1) + "\n"

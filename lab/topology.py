"""Topology files: load, validate everything, return an immutable model.

Errors name the file and the key path (`topologies/x.yaml: nodes.fw.interfaces.dmz: ...`),
and nothing is created before the whole file is known to be good."""
from __future__ import annotations

import ipaddress
import json
import re
import unicodedata
from pathlib import Path
from typing import Annotated, Literal, Optional

import yaml
from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator,
                      model_validator)

from .errors import LabError
from .pptp import FAIL_PHASES

NAME = r"^[a-z][a-z0-9-]{0,23}$"
KINDS = ("pptp-server", "pptp-client", "nat", "firewall", "router", "host")
ROLES = ("internet", "perimeter", "intranet", "home", "other")
POOL = re.compile(r"(\d+\.\d+\.\d+\.)(\d+)-(\d+)")  # A.B.C.X-Y, pptpd's remoteip form


MAX_WORD = 255  # octets: pppd keeps names and secrets in 256-byte buffers


def _word(v: str, what: str) -> str:
    """A value that lands in a pppd options file or chap-secrets. Those files quote words
    with "..." and backslash escapes, so any printable text is carried literally; what no
    quoting can carry (line breaks, NUL, other control characters) is refused here."""
    bad = next((c for c in v if unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp")), None)
    if bad is not None:
        raise ValueError(f"{what} holds the control character {bad!r}: pppd's files cannot carry it")
    if not v:
        raise ValueError(f"{what} is empty")
    if len(v.encode()) > MAX_WORD:
        raise ValueError(f"{what} is {len(v.encode())} octets long: pppd takes at most {MAX_WORD}")
    return v


def _name(v: str) -> str:
    _word(v, "a name")
    if v == "*":
        raise ValueError("'*' is chap-secrets' wildcard (any name), not a name")
    return v


def _secret(v: str) -> str:
    _word(v, "a secret")
    if v.startswith("@/"):
        raise ValueError("a secret starting with '@/' is read by pppd as a file name: not allowed")
    return v


# Names (users, servers) and secrets: any printable text, quoted per file when written.
PppName = Annotated[str, AfterValidator(_name)]
PppSecret = Annotated[str, AfterValidator(_secret)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Network(Strict):
    subnet: str
    role: Literal[ROLES] = "other"  # type: ignore[valid-type]

    @field_validator("subnet")
    @classmethod
    def _subnet(cls, v: str) -> str:
        net = ipaddress.IPv4Network(v, strict=True)
        if net.prefixlen > 29:
            raise ValueError(f"{v} is too small for a lab segment (use /29 or larger)")
        return str(net)

    @property
    def net(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet)

    @property
    def bridge_address(self) -> str:
        """The engine's own address on the segment (Docker's gateway): the last usable one,
        kept free of nodes; lab traffic is routed through lab nodes, never through it."""
        return str(self.net.broadcast_address - 1)


class Route(Strict):
    to: str
    via: str

    @field_validator("to")
    @classmethod
    def _to(cls, v: str) -> str:
        return v if v == "default" else str(ipaddress.IPv4Network(v, strict=True))

    @field_validator("via")
    @classmethod
    def _via(cls, v: str) -> str:
        return str(ipaddress.IPv4Address(v))


class User(Strict):
    name: PppName
    secret: PppSecret


class PptpServer(Strict):
    local_ip: str
    remote_ip: str = Field(description="pool, e.g. 172.16.0.10-50")
    users: list[User] = Field(min_length=1)
    name: PppName = "pptpd"
    mppe: bool = True

    @field_validator("local_ip")
    @classmethod
    def _local(cls, v: str) -> str:
        return str(ipaddress.IPv4Address(v))

    @field_validator("remote_ip")
    @classmethod
    def _pool(cls, v: str) -> str:
        m = POOL.fullmatch(v)
        if not m or not int(m.group(2)) <= int(m.group(3)) <= 254:
            raise ValueError(f"{v!r}: give a pool as A.B.C.X-Y with X <= Y <= 254")
        ipaddress.IPv4Address(m.group(1) + m.group(2))
        return v

    @property
    def pool(self) -> list[str]:
        prefix, lo, hi = POOL.fullmatch(self.remote_ip).groups()
        return [f"{prefix}{i}" for i in range(int(lo), int(hi) + 1)]


class PptpOptions(Strict):
    """pptp-linux's own options (its man page), typed: each becomes fixed argv words."""
    idle_wait: Optional[int] = Field(None, ge=1, le=86400, description="--idle-wait: seconds "
                                     "idle before a PPTP Echo-Request (default 60)")
    max_echo_wait: Optional[int] = Field(None, ge=1, le=86400, description="--max-echo-wait: seconds "
                                         "to wait for an Echo-Reply (default 60)")
    timeout: Optional[float] = Field(None, gt=0, le=60, description="--timeout: seconds to wait "
                                     "for reordered GRE packets (default 0.3)")
    localbind: Optional[str] = Field(None, description="--localbind: source address of the PPTP connection")
    loglevel: Optional[int] = Field(None, ge=0, le=2, description="--loglevel: 0 (errors) to 2 (debug)")
    sync: bool = Field(False, description="--sync: synchronous HDLC framing (pppd needs `sync` too)")
    nobuffer: bool = Field(False, description="--nobuffer: no GRE reordering buffer")
    nohostroute: bool = Field(False, description="--nohostroute: no host route to the server")
    quirks: Optional[Literal["BEZEQ_ISRAEL"]] = Field(None, description="--quirks (the one pptp-linux knows)")

    @field_validator("localbind")
    @classmethod
    def _localbind(cls, v: str | None) -> str | None:
        return None if v is None else str(ipaddress.IPv4Address(v))

    def argv(self) -> list[str]:
        out: list[str] = []
        for key in ("idle_wait", "max_echo_wait", "timeout", "localbind", "loglevel", "quirks"):
            value = getattr(self, key)
            if value is not None:
                out += ["--" + key.replace("_", "-"), str(value)]
        return out + ["--" + key for key in ("sync", "nobuffer", "nohostroute") if getattr(self, key)]


class PptpClient(Strict):
    server: str = Field(description="the server address this client dials")
    user: PppName
    secret: PppSecret
    server_name: PppName = "pptpd"
    mppe: bool = True
    routes: list[str] = Field(default_factory=list, description="networks reached through the tunnel")
    options: PptpOptions = Field(default_factory=PptpOptions, description="pptp-linux options")
    pin_random: Optional[int] = Field(None, ge=0, le=255, description="pptp-linux reads its call ID "
                                      "from /dev/random: the node's /dev/random becomes this byte repeated, "
                                      "so clients with the same value choose the same call ID (SPEC S20)")

    @field_validator("server")
    @classmethod
    def _server(cls, v: str) -> str:
        return str(ipaddress.IPv4Address(v))

    @field_validator("routes")
    @classmethod
    def _routes(cls, v: list[str]) -> list[str]:
        return [str(ipaddress.IPv4Network(x, strict=True)) for x in v]


class Nat(Strict):
    mode: Literal["masquerade", "static"] = "masquerade"
    outside: str = Field(description="the network on the outside (public) side")
    pptp_editor: bool = True
    public: Optional[str] = Field(None, description="static: the public address mapped ...")
    private: Optional[str] = Field(None, description="static: ... to this inside address")

    @model_validator(mode="after")
    def _static(self):
        if self.mode == "static" and not (self.public and self.private):
            raise ValueError("mode static needs public and private addresses")
        return self


class FilterSpec(Strict):
    """One packet filter in the reference's terms (used with policy: custom)."""
    id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    interface: Literal["internet", "perimeter"]
    direction: Literal["in", "out"]
    protocol: Literal["tcp", "gre"]
    src: str = ""
    dst: str = ""
    sport: Optional[int] = Field(None, ge=1, le=65535)
    dport: Optional[int] = Field(None, ge=1, le=65535)

    @field_validator("src", "dst")
    @classmethod
    def _addr(cls, v: str) -> str:
        return v if v in ("", "VPN") else str(ipaddress.IPv4Address(v))


class Node(Strict):
    kind: Literal[KINDS]  # type: ignore[valid-type]
    interfaces: dict[str, str] = Field(min_length=1, description="network name -> IPv4 address")
    routes: list[Route] = Field(default_factory=list)
    pptp_server: Optional[PptpServer] = None
    pptp_client: Optional[PptpClient] = None
    nat: Optional[Nat] = None
    policy: str = Field("open", description="firewall filter policy: open, pptp-documented, "
                        "pptp-documented-router or custom (firewall nodes)")
    policy_without: list[str] = Field(default_factory=list, description="filter IDs left out, e.g. S12b")
    filters: list[FilterSpec] = Field(default_factory=list, description="the filters of policy custom")
    vpn: Optional[str] = Field(None, description="the VPN server address the filters protect "
                               "(default: the pptp-server on the firewall's perimeter network)")

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
        if self.kind == "pptp-server" and not self.pptp_server:
            raise ValueError("a pptp-server node needs a pptp_server block")
        if self.kind == "pptp-client" and not self.pptp_client:
            raise ValueError("a pptp-client node needs a pptp_client block")
        if self.kind == "nat" and not self.nat:
            raise ValueError("a nat node needs a nat block")
        for block, kinds in (("pptp_server", ("pptp-server",)), ("nat", ("nat",)),
                             ("pptp_client", ("pptp-client", "pptp-server"))):  # a server may dial out (S17)
            if getattr(self, block) is not None and self.kind not in kinds:
                raise ValueError(f"{block} is only for kind {' or '.join(kinds)}")
        if sum(1 for r in self.routes if r.to == "default") > 1:
            raise ValueError("two default routes")
        from .policy import POLICIES

        if self.policy not in POLICIES:
            raise ValueError(f"policy {self.policy!r} is unknown: use one of {', '.join(POLICIES)}")
        if self.kind != "firewall" and (self.policy != "open" or self.filters or self.policy_without):
            raise ValueError("policy, filters and policy_without are for firewall nodes")
        if self.filters and self.policy != "custom":
            raise ValueError("filters are given with policy: custom")
        return self


class ClientExpect(Strict):
    """What a user expects of one client (checked by `pptp-lab test TOPOLOGY`)."""
    tunnel: Literal["up", "fails"] = "up"
    phase: Optional[Literal[FAIL_PHASES]] = Field(  # type: ignore[valid-type]
        None, description="with tunnel: fails, the phase the analyser must find the session stopped in")
    reach: list[str] = Field(default_factory=list, description="addresses pinged through the tunnel")
    unreachable: list[str] = Field(default_factory=list, description="addresses that must not answer")

    @field_validator("reach", "unreachable")
    @classmethod
    def _addrs(cls, v: list[str]) -> list[str]:
        return [str(ipaddress.IPv4Address(a)) for a in v]


class NatExpect(Strict):
    unique_outside_call_ids: bool = True


class Expect(Strict):
    clients: dict[str, ClientExpect] = Field(default_factory=dict)
    nat: dict[str, NatExpect] = Field(default_factory=dict)


class Topology(Strict):
    name: str = Field(pattern=NAME)
    description: str = ""
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
            for i, r in enumerate(node.routes):
                if not any(ipaddress.IPv4Address(r.via) in self.networks[n].net
                           for n in node.interfaces if n in self.networks):
                    errors.append(f"nodes.{name}.routes[{i}].via: {r.via} is on none of {name}'s networks")
        if self.expect:
            for name in self.expect.clients:
                if name not in self.nodes or self.nodes[name].kind != "pptp-client":
                    errors.append(f"expect.clients.{name}: no pptp-client node {name!r}")
            for name in self.expect.nat:
                if name not in self.nodes or self.nodes[name].kind != "nat":
                    errors.append(f"expect.nat.{name}: no nat node {name!r}")
        for name, node in self.nodes.items():
            if node.nat:
                errors += self._nat_errors(name, node, seen)
            if node.kind == "firewall" and node.policy != "open":
                errors += self._firewall_errors(name, node)
        if errors:
            raise ValueError("; ".join(errors))
        return self

    def _nat_errors(self, name: str, node: Node, seen: dict[str, str]) -> list[str]:
        nat, where = node.nat, f"nodes.{name}.nat"
        if nat.outside not in node.interfaces:
            return [f"{where}.outside: {name} has no interface on {nat.outside!r}"]
        errors = []
        if nat.mode == "static":
            outside = self.networks[nat.outside].net
            if ipaddress.IPv4Address(nat.public) not in outside:
                errors.append(f"{where}.public: {nat.public} is not on {nat.outside} ({outside})")
            elif nat.public in seen:
                errors.append(f"{where}.public: {nat.public} is already used by {seen[nat.public]}")
            inside = [self.networks[n].net for n in node.interfaces if n != nat.outside and n in self.networks]
            if not any(ipaddress.IPv4Address(nat.private) in net for net in inside):
                errors.append(f"{where}.private: {nat.private} is on none of {name}'s inside networks")
        return errors

    def firewall_interface(self, node: Node, role: str) -> str | None:
        """The network of a firewall node that plays `role` (internet | perimeter)."""
        return next((n for n in node.interfaces if n in self.networks and self.networks[n].role == role), None)

    def vpn_address(self, node: Node) -> str | None:
        if node.vpn:
            return node.vpn
        perimeter = self.firewall_interface(node, "perimeter")
        return next((s.interfaces[perimeter] for s in self.servers.values() if perimeter in s.interfaces), None)

    def _firewall_errors(self, name: str, node: Node) -> list[str]:
        from .policy import DOCUMENTED, ROUTER

        where, errors = f"nodes.{name}", []
        for role in ("internet", "perimeter"):
            if not self.firewall_interface(node, role):
                errors.append(f"{where}.policy: {name} has no interface on a network with role {role}")
        vpn = self.vpn_address(node)
        if vpn is None:
            errors.append(f"{where}.vpn: no pptp-server on {name}'s perimeter network; give vpn: ADDRESS")
        elif not any(ipaddress.IPv4Address(vpn) in self.networks[n].net for n in node.interfaces
                     if n in self.networks):
            errors.append(f"{where}.vpn: {vpn} is on none of {name}'s networks")
        for i, f in enumerate(node.filters):
            for key in ("src", "dst"):
                addr = getattr(f, key)
                if addr not in ("", "VPN") and not any(ipaddress.IPv4Address(addr) in net.net
                                                       for net in self.networks.values()):
                    errors.append(f"{where}.filters[{i}].{key}: {addr} is on none of the lab's networks")
        known = {f.id for f in DOCUMENTED + ROUTER} | {f.id for f in node.filters}
        for i, fid in enumerate(node.policy_without):
            if fid not in known:
                errors.append(f"{where}.policy_without[{i}]: no filter {fid!r} in policy {node.policy}")
        return errors

    @property
    def servers(self) -> dict[str, Node]:
        return {n: v for n, v in self.nodes.items() if v.kind == "pptp-server"}

    @property
    def clients(self) -> dict[str, Node]:
        """Every node that dials: pptp-client nodes and servers that are calling routers."""
        return {n: v for n, v in self.nodes.items() if v.pptp_client is not None}


REMOVED = "(removed)"  # a secret's place in a topology written out


def public_data(topo: Topology, placeholder: str = REMOVED) -> dict:
    """The topology as JSON data with every secret replaced by `placeholder`: what may be
    put on an engine's labels or into runs/ (which CI keeps as an artefact)."""
    data = topo.model_dump(mode="json")
    for node in data["nodes"].values():
        for user in (node.get("pptp_server") or {}).get("users", []):
            user["secret"] = placeholder
        if node.get("pptp_client"):
            node["pptp_client"]["secret"] = placeholder
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


def load(path: str | Path, name: str | None = None) -> Topology:
    """Read and validate a topology file; raise LabError naming file and key on any fault."""
    path = Path(path)
    data = _parse(path)
    if not isinstance(data, dict):
        raise LabError(f"{path}: a topology is a mapping with networks and nodes")
    data = {"name": name or data.get("name") or path.stem, **{k: v for k, v in data.items() if k != "name"}}
    if name:
        data["name"] = name
    try:
        return Topology.model_validate(data)
    except ValidationError as exc:
        msgs = []
        for err in exc.errors():
            key = _key_path(err["loc"])
            text = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                text = "unknown key"
            msgs.append(f"{key}: {text}" if key else text)
        raise LabError(f"{path}: " + "; ".join(msgs)) from None


def json_schema() -> str:
    return json.dumps(Topology.model_json_schema(), indent=1) + "\n"

"""nat: a NAT router (masquerade or static 1:1, port forwarding) with the PPTP NAT editor
(the kernel's pptp conntrack/NAT helper) when asked; or the node's own ruleset from a file
(lab.model.rulesets), which then is the NAT."""
from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from .. import render, rulesets
from ..types import IPv4, Strict
from . import Kind, ruleset_labels


class Forward(Strict):
    """A port forward of a masquerading NAT: what arrives on the outside goes to `to`."""
    proto: Literal["tcp", "udp", "gre"]
    port: Optional[int] = Field(None, ge=1, le=65535, description="tcp, udp: the outside port")
    to: IPv4 = Field(description="an address on one of the NAT's inside networks")
    to_port: Optional[int] = Field(None, ge=1, le=65535, description="tcp, udp: the inside port "
                                   "(default: port)")

    @model_validator(mode="after")
    def _ports(self):
        if self.proto == "gre" and (self.port is not None or self.to_port is not None):
            raise ValueError("proto gre has no ports")
        if self.proto != "gre" and self.port is None:
            raise ValueError(f"proto {self.proto} needs a port")
        return self


class Nat(Strict):
    mode: Literal["masquerade", "static"] = "masquerade"
    outside: str = Field(description="the network on the outside (public) side")
    pptp_editor: bool = True
    public: Optional[str] = Field(None, description="static: the public address mapped ...")
    private: Optional[str] = Field(None, description="static: ... to this inside address")
    forward: list[Forward] = Field(default_factory=list, description="masquerade: port forwards")

    @model_validator(mode="after")
    def _static(self):
        if self.mode == "static" and not (self.public and self.private):
            raise ValueError("mode static needs public and private addresses")
        if self.forward and self.mode != "masquerade":
            raise ValueError("forward is for mode masquerade (a static NAT maps every port already)")
        return self


def outside_calls(node, sessions) -> list[tuple[object, object]]:
    """(session, call) of each answered call a NAT node's outside segment carried: sessions
    whose client is its outside address, read on that segment only (the same call seen at
    another capture point further on is not a second call). `sessions`: lab.pptp's."""
    outside = node.interfaces[node.nat.outside]
    return [(s, c) for s in sessions
            if not s.gre_only and s.client == outside and Path(s.source).stem == node.nat.outside
            for c in s.calls if c.reply.get("out_result") == 1]


def nat_labels(node) -> list[tuple[str, str]]:
    nat = node.nat
    out = [(f"NAT {nat.mode}, outside {nat.outside}", "role")]
    if nat.mode == "static":
        out.append((f"public {nat.public} → {nat.private}", "role"))
    out.append((f"PPTP editor {'on' if nat.pptp_editor else 'off'}", "role"))
    for f in nat.forward:
        port = f" {f.port}" if f.port else ""
        to_port = f":{f.to_port}" if f.to_port else ""
        out.append((f"forward {f.proto}{port} → {f.to}{to_port}", "role"))
    return out


class NatKind(Kind):
    name = "nat"
    blocks = {"nat": (Optional[Nat], None), "ruleset": rulesets.BLOCK}
    # nat or ruleset (validate): a nat node's ruleset is its NAT.
    packages = ("nftables", "iptables", "conntrack")
    script = "nat.sh.j2"

    def labels(self, topo, name, node):
        return (nat_labels(node) if node.nat is not None else []) + ruleset_labels(node)

    def validate(self, node):
        if node.nat is None and node.ruleset is None:
            raise ValueError("a nat node needs a nat block or a ruleset")
        if node.nat is not None and node.ruleset is not None:
            raise ValueError("the ruleset is the NAT: give nat or ruleset, not both")

    def check(self, topo, name, node):
        nat, where = node.nat, f"nodes.{name}.nat"
        if nat is None:
            return []
        if nat.outside not in node.interfaces:
            return [f"{where}.outside: {name} has no interface on {nat.outside!r}"]
        errors = []
        inside = [topo.networks[n].net for n in node.interfaces if n != nat.outside and n in topo.networks]
        for i, f in enumerate(nat.forward):
            if not any(ipaddress.IPv4Address(f.to) in net for net in inside):
                errors.append(f"{where}.forward[{i}].to: {f.to} is on none of {name}'s inside networks")
        if nat.mode == "static":
            # Every node address on a known network, by the key that gives it (the last one).
            used = {addr: f"nodes.{n}.interfaces.{net}" for n, other in topo.nodes.items()
                    for net, addr in other.interfaces.items() if net in topo.networks}
            outside = topo.networks[nat.outside].net
            if ipaddress.IPv4Address(nat.public) not in outside:
                errors.append(f"{where}.public: {nat.public} is not on {nat.outside} ({outside})")
            elif nat.public in used:
                errors.append(f"{where}.public: {nat.public} is already used by {used[nat.public]}")
            if not any(ipaddress.IPv4Address(nat.private) in net for net in inside):
                errors.append(f"{where}.private: {nat.private} is on none of {name}'s inside networks")
        return errors

    def files(self, topo, name, node, ctx):
        n = node.nat
        if n is None:  # the ruleset is the NAT
            ctx["nat"] = None
            return rulesets.files(node, ctx)
        ctx["nat"] = {"mode": n.mode, "pptp_editor": n.pptp_editor, "public": n.public, "private": n.private,
                      "outside_address": node.interfaces[n.outside],
                      "outside_prefix": topo.networks[n.outside].net.prefixlen,
                      "forward": [f.model_dump() for f in n.forward]}
        return {"/etc/pptp-lab/nat.nft": (render.render("nat.nft.j2", nat=ctx["nat"]), 0o644)}


KIND = NatKind()

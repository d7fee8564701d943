"""nat: a NAT router (masquerade or static 1:1) with the PPTP NAT editor (the kernel's
pptp conntrack/NAT helper) when asked."""
from __future__ import annotations

import ipaddress
from typing import Literal, Optional

from pydantic import Field, model_validator

from .. import render
from ..model import Strict
from . import Kind


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


class NatKind(Kind):
    name = "nat"
    blocks = {"nat": (Optional[Nat], None)}
    required = ("nat",)
    packages = ("nftables", "conntrack")
    script = "nat.sh.j2"

    def check(self, topo, name, node):
        nat, where = node.nat, f"nodes.{name}.nat"
        if nat.outside not in node.interfaces:
            return [f"{where}.outside: {name} has no interface on {nat.outside!r}"]
        errors = []
        if nat.mode == "static":
            # Every node address on a known network, by the key that gives it (the last one).
            used = {addr: f"nodes.{n}.interfaces.{net}" for n, other in topo.nodes.items()
                    for net, addr in other.interfaces.items() if net in topo.networks}
            outside = topo.networks[nat.outside].net
            if ipaddress.IPv4Address(nat.public) not in outside:
                errors.append(f"{where}.public: {nat.public} is not on {nat.outside} ({outside})")
            elif nat.public in used:
                errors.append(f"{where}.public: {nat.public} is already used by {used[nat.public]}")
            inside = [topo.networks[n].net for n in node.interfaces if n != nat.outside and n in topo.networks]
            if not any(ipaddress.IPv4Address(nat.private) in net for net in inside):
                errors.append(f"{where}.private: {nat.private} is on none of {name}'s inside networks")
        return errors

    def files(self, topo, name, node, ctx):
        n = node.nat
        ctx["nat"] = {"mode": n.mode, "pptp_editor": n.pptp_editor, "public": n.public, "private": n.private,
                      "outside_address": node.interfaces[n.outside],
                      "outside_prefix": topo.networks[n.outside].net.prefixlen}
        return {"/etc/pptp-lab/nat.nft": (render.render("nat.nft.j2", nat=ctx["nat"]), 0o644)}


KIND = NatKind()

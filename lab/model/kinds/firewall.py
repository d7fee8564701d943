"""firewall: forwards between an internet and a perimeter network, filtering by one of the
reference's policies (SPEC S12-S15, lab.model.policy) or custom filters; or by the node's own
ruleset from a file (lab.model.rulesets)."""
from __future__ import annotations

import ipaddress
from typing import Literal, Optional

from pydantic import Field, field_validator

from ...core import names
from .. import policy, rulesets
from ..types import Strict
from . import Kind, ruleset_labels


class FilterSpec(Strict):
    """One packet filter in the reference's terms (used with policy: custom)."""
    id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    interface: str = Field(pattern=r"^[a-z][a-z0-9-]{0,23}$", description="internet or perimeter (the "
                           "firewall's networks of those roles), or the name of a network the firewall is on")
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


def interface(topo, node, role: str) -> str | None:
    """The network of a firewall node that plays `role` (internet | perimeter)."""
    return next((n for n in node.interfaces if n in topo.networks and topo.networks[n].role == role), None)


def vpn_address(topo, node) -> str | None:
    """The VPN server address the filters protect: `vpn`, or the pptp-server on the
    firewall's perimeter network."""
    if node.vpn:
        return node.vpn
    perimeter = interface(topo, node, "perimeter")
    return next((s.interfaces[perimeter] for s in topo.servers.values() if perimeter in s.interfaces), None)


def _role(topo, node, network: str) -> str | None:
    """The role (internet | perimeter) `network` plays for a firewall node, or None."""
    if network in ("internet", "perimeter"):
        return network
    return next((r for r in ("internet", "perimeter") if interface(topo, node, r) == network), None)


class FirewallKind(Kind):
    name = "firewall"
    blocks = {
        "policy": (str, Field("open", description="firewall filter policy: open, pptp-documented, "
                              "pptp-documented-router or custom (firewall nodes)")),
        "policy_without": (list[str], Field(default_factory=list, description="filter IDs left out, e.g. S12b")),
        "filters": (list[FilterSpec], Field(default_factory=list, description="the filters of policy custom")),
        "vpn": (Optional[str], Field(None, description="the VPN server address the filters protect "
                                     "(default: the pptp-server on the firewall's perimeter network)")),
        "ruleset": rulesets.BLOCK,
    }
    packages = ("nftables", "iptables")
    script = "firewall.sh.j2"

    def labels(self, topo, name, node):
        if node.ruleset is not None:  # its own ruleset replaces the lab's filters
            return ruleset_labels(node)
        policy = f"policy {node.policy}" + (f" ({len(node.filters)} filters)" if node.filters else "")
        out = [(policy, "role")]
        if node.policy_without:
            out.append(("without " + ", ".join(node.policy_without), "role"))
        return out

    def validate(self, node):
        if node.policy not in policy.POLICIES:
            raise ValueError(f"policy {node.policy!r} is unknown: use one of {', '.join(policy.POLICIES)}")
        if node.filters and node.policy != "custom":
            raise ValueError("filters are given with policy: custom")
        if node.ruleset is not None:
            given = [k for k, v in (("policy " + node.policy, node.policy != "open"), ("filters", node.filters),
                                    ("policy_without", node.policy_without)) if v]
            if given:
                raise ValueError(f"ruleset and {', '.join(given)}: the filters come from one place, "
                                 "the ruleset or the policy")

    def check(self, topo, name, node):
        if node.policy == "open":
            return []
        where, errors = f"nodes.{name}", []
        for role in ("internet", "perimeter"):
            if not interface(topo, node, role):
                errors.append(f"{where}.policy: {name} has no interface on a network with role {role}")
        vpn = vpn_address(topo, node)
        if vpn is None:
            errors.append(f"{where}.vpn: no pptp-server on {name}'s perimeter network; give vpn: ADDRESS")
        elif not any(ipaddress.IPv4Address(vpn) in topo.networks[n].net for n in node.interfaces
                     if n in topo.networks):
            errors.append(f"{where}.vpn: {vpn} is on none of {name}'s networks")
        for i, f in enumerate(node.filters):
            for key in ("src", "dst"):
                addr = getattr(f, key)
                if addr not in ("", "VPN") and not any(ipaddress.IPv4Address(addr) in net.net
                                                       for net in topo.networks.values()):
                    errors.append(f"{where}.filters[{i}].{key}: {addr} is on none of the lab's networks")
        for i, f in enumerate(node.filters):
            if f.interface in ("internet", "perimeter"):
                continue
            if f.interface not in node.interfaces:
                errors.append(f"{where}.filters[{i}].interface: {f.interface!r} is neither internet, perimeter "
                              f"nor a network {name} is on ({', '.join(node.interfaces)})")
            elif names.interface(f.interface) is None and _role(topo, node, f.interface) is None:
                errors.append(f"{where}.filters[{i}].interface: {name}'s interface on {f.interface} keeps the "
                              "engine's name (the network's name cannot name an interface): use its role")
        known = {f.id for f in policy.DOCUMENTED + policy.ROUTER} | {f.id for f in node.filters}
        for i, fid in enumerate(node.policy_without):
            if fid not in known:
                errors.append(f"{where}.policy_without[{i}]: no filter {fid!r} in policy {node.policy}")
        return errors

    def files(self, topo, name, node, ctx):
        # A filter on a network that plays a role on this firewall is a filter of the role.
        custom = [policy.Filter(**{**f.model_dump(), "interface": _role(topo, node, f.interface) or f.interface})
                  for f in node.filters]
        rules = policy.filters(node.policy, custom, node.policy_without)
        inet, perim = interface(topo, node, "internet"), interface(topo, node, "perimeter")
        ruleset = policy.nft_ruleset(rules, vpn_address(topo, node) or "") if node.policy != "open" else ""
        ctx["fw"] = {"internet_address": node.interfaces.get(inet, ""),
                     "perimeter_address": node.interfaces.get(perim, ""), "ruleset": bool(ruleset)}
        if not ruleset:
            return rulesets.files(node, ctx)
        return {"/etc/pptp-lab/filter.nft": ('include "/etc/pptp-lab/filter-ifaces.nft"\n'
                                             f"table {names.FILTER_TABLE}\n"
                                             f"delete table {names.FILTER_TABLE}\n" + ruleset + "\n", 0o644)}


KIND = FirewallKind()

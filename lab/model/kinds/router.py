"""router: forwards between its networks along its routes; its own ruleset from a file
when it has one (lab.model.rulesets)."""
from __future__ import annotations

from .. import rulesets
from . import Kind


class RouterKind(Kind):
    name = "router"
    blocks = {"ruleset": rulesets.BLOCK}
    packages = ("nftables", "iptables")

    def files(self, topo, name, node, ctx):
        return rulesets.files(node, ctx)


KIND = RouterKind()

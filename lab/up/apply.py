"""`pptp-lab apply LAB NODE ...`: change a running lab's firewall, NAT or router rules
without redeploying (issue #10). The node's files are rendered from the changed topology
and applied by the same playbook as at `up`, for that node only; the lab's own nftables
tables replace themselves in one transaction each, a user's ruleset as its file says
(`flush ruleset` at its top makes it one transaction too). Switching between a user's
ruleset and the lab's own rules first flushes the node's ruleset: the one moment the node
forwards without rules. Tunnels are left alone unless asked to redial.

What was applied is kept in the node (/etc/pptp-lab/applied.json): the topology recorded
on the engine's labels is fixed at `up`, so a later apply (or `why`) starts from the node's
own record of its rules."""
from __future__ import annotations

import difflib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from . import configure, lifecycle
from ..model import rulesets
from ..engines import Engine
from ..core.errors import LabError
from ..model.topology import Topology, public_data, validation_message

APPLIED = "/etc/pptp-lab/applied.json"
KINDS = ("firewall", "nat", "router")
IPTABLES_SUFFIXES = (".rules", ".iptables", ".save", ".v4")


@dataclass
class Change:
    node: str
    before: str
    after: str
    seconds: float
    redialled: list[str] = field(default_factory=list)

    def diff(self) -> str:
        return "".join(difflib.unified_diff(self.before.splitlines(True), self.after.splitlines(True),
                                             "rules before", "rules after", n=1))


def flavour_of(path: Path, text: str) -> str:
    """nft or iptables (iptables-save format), by the file's name, else by its text."""
    if path.suffix == ".nft":
        return "nft"
    if path.suffix in IPTABLES_SUFFIXES:
        return "iptables"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    return "iptables" if lines and lines[0].startswith("*") and "COMMIT" in lines else "nft"


def current(eng: Engine, lab: str) -> Topology:
    """The running lab's topology: recorded at `up`, with what `apply` changed since."""
    topo = lifecycle.recorded_topology(eng, lab)
    data = topo.model_dump(mode="json")
    for name, node in topo.nodes.items():
        if node.kind in KINDS:
            res = eng.exec(eng.node(lab, name), f"cat {APPLIED} 2>/dev/null", check=False)
            if res.ok and res.out.strip():
                data["nodes"][name] = json.loads(res.out)
    return Topology.model_validate(data)


def changed(topo: Topology, name: str, ruleset: Path | None = None, policy: str | None = None,
            without: list[str] | None = None, nat_editor: bool | None = None) -> Topology:
    """The topology with node `name`'s rules changed; LabError naming what is wrong."""
    if name not in topo.nodes:
        raise LabError(f"lab {topo.name} has no node {name}")
    node = topo.nodes[name]
    if node.kind not in KINDS:
        raise LabError(f"{name} is a {node.kind} node: apply changes firewall, nat and router nodes")
    if sum(x is not None for x in (ruleset, policy, nat_editor)) != 1:
        raise LabError("apply: give one of --ruleset FILE, --policy NAME or --nat-editor on|off")
    data = topo.model_dump(mode="json")
    n = data["nodes"][name]
    if ruleset is not None:
        try:
            text = rulesets.read(ruleset.parent, ruleset.name, "--ruleset", "iptables")
            kind = flavour_of(ruleset, text)
            problem = rulesets.text_problem(text.encode(), kind)
            if problem:
                raise rulesets.RulesetError(f"--ruleset: {ruleset}: {problem}")
        except rulesets.RulesetError as exc:
            raise LabError(str(exc)) from None
        n["ruleset"] = {kind: ruleset.name, "text": text}
        n.update(policy="open", filters=[], policy_without=[])
        if node.kind == "nat":
            n["nat"] = None  # the ruleset is the NAT
    elif policy is not None:
        if node.kind != "firewall":
            raise LabError(f"--policy: {name} is a {node.kind} node, policies are a firewall's")
        n.update(ruleset=None, policy=policy, policy_without=list(without or []))
    else:
        if not node.nat:
            raise LabError(f"--nat-editor: {name} has no nat block" + (" (its ruleset is the NAT: apply "
                           "another --ruleset)" if node.ruleset else ""))
        n["nat"]["pptp_editor"] = nat_editor
    try:
        return Topology.model_validate(data)
    except ValidationError as exc:
        raise LabError(f"apply {name}: {validation_message(exc)}") from None


def rules(eng: Engine, node) -> str:
    return eng.exec(node, "nft list ruleset 2>&1", check=False).out


def apply(eng: Engine, topo: Topology, new: Topology, name: str, redial: bool = False) -> Change:
    """Apply `new`'s rules for node `name` of running lab `topo.name` (topo: as it runs)."""
    lab, box = topo.name, eng.node(topo.name, name)
    sub = new.model_copy(update={"nodes": {name: new.nodes[name]}})
    lifecycle.check_rulesets(eng, sub, lifecycle.node_images(eng, sub))
    before = rules(eng, box)
    start = time.monotonic()
    if topo.nodes[name].ruleset or new.nodes[name].ruleset:
        eng.exec(box, "nft flush ruleset")  # a user's tables and the lab's never mix
    configure.apply(new, eng.url, nodes=[name])
    eng.put_files(box, {APPLIED: (json.dumps(public_data(new)["nodes"][name]), 0o600)})
    took = time.monotonic() - start
    change = Change(name, before, rules(eng, box), took)
    if redial:
        clients = list(new.clients)
        lifecycle.hang_up(eng, lab, clients)
        lifecycle.start_servers(eng, new)
        try:
            lifecycle.dial_clients(eng, new, timeout=30)
        except LabError as exc:
            change.redialled = [f"not every tunnel came back: {exc}"]
        else:
            change.redialled = clients
    return change

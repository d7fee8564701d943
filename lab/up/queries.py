"""What a running node says about itself, read the same way by the CLI, `pptp-lab test` and
the pytest plugin: the commands live here, not in the front ends."""
from __future__ import annotations

from ..core import names
from ..model import members, policy
from ..core.errors import LabError

PPP_LOG = names.PPP_LOG


def filter_counters(eng, node) -> list[dict]:
    """The firewall's rules with packet counters (lab.model.policy.parse_counters rows)."""
    res = eng.exec(node, f"nft -j list table {names.FILTER_TABLE}", check=False)
    if not res.ok:
        raise LabError(f"{node.name} has no lab filter table (policy open, or not a firewall node)")
    return policy.parse_counters(res.out)


def nat_entries(eng, node) -> list[dict]:
    """Conntrack entries for TCP 1723 and GRE (lab.model.policy.parse_conntrack rows)."""
    out = eng.exec(node, "conntrack -L -p tcp --dport 1723 2>/dev/null; conntrack -L -p gre 2>/dev/null",
                     check=False).out
    return policy.parse_conntrack(out)


def ppp_log(eng, node, member: int = 0) -> str:
    """pppd's log and the PPTP processes running on a node: of one member of a node with a
    count (lab.model.members: its own log), else every log the node has."""
    logs = members.log(member) if member else f"{PPP_LOG} /var/log/ppp-[0-9]*.log"
    return eng.exec(node, f"cat {logs} 2>/dev/null; ps -o pid,args -C pptpd,pppd,pptp 2>/dev/null",
                    check=False).out

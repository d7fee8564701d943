"""Node configuration through Ansible: an inventory generated from the topology, the playbook
in playbooks/ run by ansible-runner over the community.docker.docker_api connection."""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from .deploy import obj_name
from .errors import LabError
from .host import console
from .paths import REPO
from .topology import Topology

PLAYBOOKS = REPO / "playbooks"
PEER = "lab"  # the pppd peer name every client dials (`pppd call lab`)


def tunnel_if(node) -> str:
    """A client's tunnel interface: ppp0; a VPN server that also dials out (a calling router,
    S17) uses ppp100 so it never clashes with the interfaces of the calls it answers."""
    return "ppp100" if node.kind == "pptp-server" else "ppp0"
GROUPS = {"pptp-server": "pptp_servers", "pptp-client": "pptp_clients", "nat": "nat",
          "firewall": "firewall", "router": "routers", "host": "hosts"}


def host_vars(topo: Topology, name: str) -> dict:
    node = topo.nodes[name]
    hv: dict = {"lab_node": name, "lab_kind": node.kind, "lab_policy": node.policy,
                "lab_routes": [{"to": r.to, "via": r.via} for r in node.routes]}
    users: list[dict] = []  # chap-secrets: the server's users and the client's own credentials
    if node.pptp_server:
        s = node.pptp_server
        hv.update(local_ip=s.local_ip, remote_range=s.remote_ip, server_name=s.name, mppe=s.mppe,
                  connections=64)
        users += [{"name": u.name, "secret": u.secret, "server": s.name} for u in s.users]
    if node.pptp_client:
        c = node.pptp_client
        hv.update(peer=PEER, server=c.server, user=c.user, remote_name=c.server_name, mppe=c.mppe,
                  pptp_options=c.options, tunnel_routes=c.routes, unit=int(tunnel_if(node)[3:]),
                  pin_random=c.pin_random)
        users.append({"name": c.user, "secret": c.secret, "server": c.server_name})
    hv["users"] = users
    if node.kind == "firewall":
        hv["fw"] = firewall_vars(topo, node)
    if node.nat:
        n = node.nat
        hv["nat"] = {"mode": n.mode, "pptp_editor": n.pptp_editor, "public": n.public,
                     "private": n.private, "outside_address": node.interfaces[n.outside],
                     "outside_prefix": topo.networks[n.outside].net.prefixlen}
    return hv


def firewall_vars(topo: Topology, node) -> dict:
    from . import policy

    custom = [policy.Filter(**f.model_dump()) for f in node.filters]
    rules = policy.filters(node.policy, custom, node.policy_without)
    inet, perim = topo.firewall_interface(node, "internet"), topo.firewall_interface(node, "perimeter")
    return {"internet_address": node.interfaces.get(inet, ""), "perimeter_address": node.interfaces.get(perim, ""),
            "ruleset": policy.nft_ruleset(rules, topo.vpn_address(node) or "") if node.policy != "open" else ""}


def inventory(topo: Topology, docker_url: str) -> dict:
    hosts = {obj_name(topo.name, n): host_vars(topo, n) for n in topo.nodes}
    children: dict = {g: {"hosts": {}} for g in GROUPS.values()}
    for n, node in topo.nodes.items():
        children[GROUPS[node.kind]]["hosts"][obj_name(topo.name, n)] = {}
    return {"all": {"hosts": hosts, "children": children, "vars": {
        "ansible_connection": "community.docker.docker_api",
        "ansible_docker_docker_host": docker_url,
        "ansible_python_interpreter": "/usr/bin/python3",
    }}}


def apply(topo: Topology, docker_url: str, playbook: str = "lab.yml", nodes: list[str] | None = None) -> float:
    """Run the playbook against the lab's nodes (or only `nodes`); raise LabError naming the
    failed task and node."""
    import ansible_runner  # heavy import: only when configuring

    start = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="pptp-lab-ansible-"))  # holds secrets: removed below
    failures: list[str] = []

    def on_event(ev: dict) -> bool:
        data = ev.get("event_data", {})
        if ev.get("event") in ("runner_on_failed", "runner_on_unreachable") and not data.get("ignore_errors"):
            res = data.get("res", {})
            msg = res.get("msg") or res.get("stderr") or res.get("stdout") or "failed"
            failures.append(f"task {data.get('task')!r} on {data.get('host')}: {str(msg).strip()[:300]}")
        elif ev.get("event") == "playbook_on_task_start":
            status.update(f"configuring {topo.name} with Ansible: {data.get('task')} "
                          f"({time.monotonic() - start:.0f}s)")
        return True

    try:
        shutil.copytree(PLAYBOOKS, tmp / "project")
        with console.status(f"configuring {topo.name} with Ansible") as status:
            r = ansible_runner.run(
                private_data_dir=str(tmp), playbook=playbook, inventory=inventory(topo, docker_url),
                quiet=True, forks=16, event_handler=on_event,
                limit=",".join(obj_name(topo.name, n) for n in nodes) if nodes else None,
                envvars={"PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
                         "ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_NOCOLOR": "1",
                         "ANSIBLE_DOCKER_TIMEOUT": "120", "ANSIBLE_RETRY_FILES_ENABLED": "False"})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if r.rc != 0 or failures:
        raise LabError(f"configuring {topo.name} failed: " + ("; ".join(failures) or f"ansible-runner rc {r.rc}"))
    took = time.monotonic() - start
    console.print(f"[green]✓[/] configured {len(nodes or topo.nodes)} nodes with Ansible ({took:.0f}s)")
    return took

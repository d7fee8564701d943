"""A lab's life: up (validate, create, configure, capture, dial, wait), status, down.

Everything is validated before anything is created; a failure while creating removes what
was created; `up` on a lab that is already up changes nothing; `down` removes exactly the
objects labelled with the lab's name, also after a crash half-way."""
from __future__ import annotations

import fcntl
import hashlib
import ipaddress
import json
import os
import re
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import docker.errors
import requests

from . import capture, configure, kinds, names, queries, render
from .engines import Engine
from .errors import LabError
from .host import console
from .paths import private_dir, state_dir
from .topology import Topology, public_data

TUNNEL_TIMEOUT = 90  # seconds for every client's ppp0 to get an address
EARLY_VERDICT_MAX = 4  # calls dialled at once up to which a failure is judged early
HASH_LABEL = names.TOPOLOGY


def topo_hash(topo: Topology) -> str:
    """Tells one topology from another on the engine's labels. Secrets are left out: a label
    anyone with the engine can read must not carry a hash that could be cracked offline."""
    data = public_data(topo, placeholder="")
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class NodeStatus:
    name: str
    kind: str
    state: str
    addresses: dict
    tunnel: str = ""
    ppp_address: str = ""
    peer_address: str = ""
    call_ids: str = ""
    extra: dict = field(default_factory=dict)


def _parallel(fn, items, workers: int = 16):
    items = list(items)
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        return list(pool.map(fn, items))


def existing(eng: Engine, lab: str) -> dict[str, object]:
    return {c.labels.get(names.NODE): c for c in eng.containers(lab)
            if c.labels.get(names.NODE)}


def node_images(eng: Engine, topo: Topology, default: str | None = None) -> dict[str, str]:
    """Node name -> the image tag it runs: its own `image:` suite's, else the engine's own
    (`default` when the caller has it: the userland of the VM's kernel, bookworm elsewhere).
    Each image is loaded once."""
    tags: dict[str | None, str] = {None: default} if default else {}
    for suite in dict.fromkeys(n.image for n in topo.nodes.values()):
        if suite not in tags:
            tags[suite] = eng.ensure_image(suite)
    return {name: tags[node.image] for name, node in topo.nodes.items()}


def _image_of(image: str | dict[str, str], name: str) -> str:
    """`image` is one tag for every node, or node_images()."""
    return image if isinstance(image, str) else image[name]


def create(eng: Engine, topo: Topology, image: str | dict[str, str]) -> None:
    """Networks and node containers; on any failure, remove what was made (nothing half-built).
    `image`: one tag for every node, or node name -> tag (node_images)."""
    labels = {HASH_LABEL: topo_hash(topo)}
    # The topology itself rides on the networks, so `pptp-lab graph LAB` can draw a running
    # lab without its file (the secrets are not in it: anyone with the engine reads labels).
    # A ruleset longer than lab.rulesets.LABEL_MAX is not copied there (a comment says so).
    net_labels = {**labels, names.MODEL: json.dumps(public_data(topo, label=True), separators=(",", ":"))}
    try:
        with _subnets_claimed(eng, topo), console.status(f"creating {len(topo.networks)} networks") as st:
            for name, net in topo.networks.items():
                st.update(f"creating network {name} ({net.subnet})")
                eng.create_network(topo.name, name, net.subnet, net.bridge_address, net_labels)

        def make(item):
            name, node = item
            tag = _image_of(image, name)
            try:
                return eng.create_node(topo.name, name, tag, dict(node.interfaces), node.kind, labels)
            except requests.ConnectionError:
                # A busy engine behind QEMU's port forward now and then drops a connection:
                # clear what the first try may have made and try once more.
                eng.forget_node(topo.name, name)
                return eng.create_node(topo.name, name, tag, dict(node.interfaces), node.kind, labels)

        start = time.monotonic()
        with console.status(f"starting {len(topo.nodes)} nodes"):
            # More than a few at once gains nothing: the engine creates containers one by one.
            _parallel(make, topo.nodes.items(), workers=4)
        console.print(f"[green]✓[/] {len(topo.networks)} networks, {len(topo.nodes)} nodes "
                      f"({time.monotonic() - start:.0f}s)")
    except BaseException:
        eng.remove_lab(topo.name)
        raise


WAIT_ENV = "PPTP_LAB_WAIT_SUBNETS"  # seconds to wait for another lab holding our subnets to go


def _overlap(eng: Engine, topo: Topology) -> tuple[str, str] | None:
    """(why, the other lab or "") when a subnet the lab needs is taken on the engine; a
    network of our name that is not ours is a LabError at once."""
    for n in eng.networks():
        try:
            n.reload()
        except docker.errors.NotFound:
            continue  # another lab's, removed meanwhile (labs side by side come and go)
        if n.name.startswith(f"{topo.name}-") and n.attrs["Labels"].get(names.LAB) != topo.name:
            raise LabError(f"Docker network {n.name} exists and is not this lab's: pick another lab name")
        for cfg in (n.attrs.get("IPAM") or {}).get("Config") or []:
            if not cfg.get("Subnet") or ":" in cfg["Subnet"]:
                continue
            theirs = ipaddress.IPv4Network(cfg["Subnet"])
            for name, net in topo.networks.items():
                if net.net.overlaps(theirs):
                    owner = n.attrs["Labels"].get(names.LAB) or ""
                    return (f"networks.{name}: {net.subnet} overlaps Docker network {n.name} ({theirs}"
                            + (f", lab {owner}" if owner else "") + "): labs side by side need "
                            "distinct subnets"), owner
    return None


def check_free(eng: Engine, topo: Topology) -> None:
    """Names and subnets the lab needs must not be taken on the engine (Docker refuses
    overlapping subnets): say so before creating anything. With $PPTP_LAB_WAIT_SUBNETS set
    (tests sharing one engine), a subnet held by another lab is waited for that long."""
    deadline = time.monotonic() + float(os.environ.get(WAIT_ENV) or 0)
    told = False
    while (busy := _overlap(eng, topo)) is not None:
        why, owner = busy
        if not owner or owner == topo.name or time.monotonic() >= deadline:
            raise LabError(why)
        if not told:
            console.print(f"lab {topo.name} waits for lab {owner}, which holds a subnet it needs")
            told = True
        time.sleep(2)


@contextmanager
def _subnets_claimed(eng: Engine, topo: Topology):
    """Check and create a lab's networks as one step against other processes using the same
    engine from this host (tests sharing one VM): a lab that has to wait waits outside it."""
    lock = private_dir(state_dir() / "locks") / (hashlib.sha256(eng.url.encode()).hexdigest()[:16] + ".lock")
    while True:
        with open(lock, "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            if _overlap(eng, topo) is None:
                yield
                return
        check_free(eng, topo)  # waits (or fails) without holding the lock


# The throwaway check container first makes a dummy interface per network name (the node's
# interfaces are named after its networks: a ruleset may refer to them), then runs the check.
CHECK_SCRIPT = ('n=$1; shift; while [ "$n" -gt 0 ]; do ip link add "$1" type dummy 2>/dev/null; '
                'shift; n=$((n - 1)); done; exec "$@"')


def check_rulesets(eng: Engine, topo: Topology, image: str | dict[str, str]) -> None:
    """Every node's own ruleset checked in a throwaway container (nft -c, iptables-restore
    in a namespace of its own) before anything of the lab exists; LabError naming the key,
    the user's file and the line. Each is checked in its node's image (`image`: one tag, or
    node_images): nft and iptables differ between suites."""
    from . import rulesets

    todo = [(name, node) for name, node in topo.nodes.items() if getattr(node, "ruleset", None)]
    if not todo:
        return
    with console.status(f"checking {len(todo)} ruleset(s)"):
        for name, node in todo:
            r = node.ruleset
            nets = list(node.interfaces)
            argv = ["sh", "-c", CHECK_SCRIPT, "sh", str(len(nets)), *nets, *rulesets.check_argv(r.flavour)]
            res = eng.scratch_run(_image_of(image, name), {r.node_path: (r.text, 0o600)}, argv)
            if not res.ok:
                raise LabError(rulesets.explain(r.flavour, res.out, f"nodes.{name}.ruleset.{r.flavour}", r.path))
    console.print(f"[green]✓[/] {len(todo)} ruleset(s) checked")


def preflight(eng: Engine, topo: Topology) -> dict[str, object]:
    """Every check `up` makes on the engine before creating anything (after the topology's
    own validation). Returns the lab's containers when the same lab is already up (then
    `up` creates nothing), else {}."""
    have = existing(eng, topo.name)
    if have:
        hashes = {c.labels.get(HASH_LABEL) for c in have.values()}
        if hashes != {topo_hash(topo)} or set(have) != set(topo.nodes):
            raise LabError(f"lab {topo.name} is up with a different topology: "
                           f"`pptp-lab down {topo.name}` first, or give another --name")
        return have
    check_free(eng, topo)
    return {}


def up(eng: Engine, topo: Topology, with_capture: bool = True, dial: bool = True) -> list[NodeStatus]:
    have = preflight(eng, topo)
    if have:
        for c in have.values():
            if c.status != "running":
                c.start()
        console.print(f"lab {topo.name} is already up; checking its tunnels")
    else:
        image = eng.ensure_image()  # the engine's own: the capture helper's too
        per_node = node_images(eng, topo, image)
        check_rulesets(eng, topo, per_node)
        create(eng, topo, per_node)
        try:
            if with_capture:
                capture.start(eng, topo.name, image)
            configure.apply(topo, eng.url)
        except BaseException:
            capture.stop(eng, topo.name)
            eng.remove_lab(topo.name)
            raise
    if dial:
        start_servers(eng, topo)
        dial_clients(eng, topo)
    return status(eng, topo)


def node(eng: Engine, lab: str, name: str):
    return eng.node(lab, name)


def start_servers(eng: Engine, topo: Topology) -> None:
    """Each node's kinds start what they run (Kind.start: pptpd on a pptp-server)."""
    for name, n in topo.nodes.items():
        def run(cmd: str, name=name):
            return eng.exec(eng.node(topo.name, name), cmd)
        for kind in kinds.of(n):
            kind.start(run)


def dial_clients(eng: Engine, topo: Topology, timeout: float = TUNNEL_TIMEOUT) -> None:
    """Dial every client that has no tunnel and wait for each ppp0 to get an address."""
    names = list(topo.clients)
    if not names:
        return

    start = time.monotonic()
    # Early verdicts (dial.sh.j2) hold for a few calls at once; with more, a server busy
    # starting pppds answers late and looked blocked (50 clients: all judged failed, all came
    # up), so only pppd's and the kernel's own limits end a call then.
    limits = ["3", "3"] if len(names) <= EARLY_VERDICT_MAX else ["10", "7"]

    def dial_and_wait(name) -> str:
        # One exec per client that dials and blocks until its tunnel has an address, or the
        # failure is certain (dial.sh.j2 says which): polling from here would flood a slow
        # engine with execs. "" when the tunnel is up, else why not.
        c = eng.node(topo.name, name)
        r = eng.exec(c, [render.DIAL, render.tunnel_if(topo.nodes[name]), str(int(timeout)), *limits], check=False)
        return "" if r.ok else (r.out.strip().splitlines() or [f"exit {r.rc}"])[-1]

    with console.status(f"dialling {len(names)} client(s) and waiting for their tunnels"):
        failed = {n: why for n, why in zip(names, _parallel(dial_and_wait, names)) if why}
    if failed:
        raise LabError(f"no tunnel for {', '.join(sorted(failed))} (`pptp-lab analyze` the capture for the phase): "
                       + "; ".join(f"{n}: {failed[n]}" for n in sorted(failed)))
    console.print(f"[green]✓[/] {len(names)} tunnel(s) up ({time.monotonic() - start:.0f}s)")


def hang_up(eng: Engine, lab: str, clients) -> None:
    """End each client's own outgoing call (a calling router keeps the calls it answers)."""
    for c in clients:
        eng.exec(eng.node(lab, c), f"pkill -TERM -f '^pppd call {render.PEER}'; sleep 0.5; "
                                    "pkill -KILL -f '^pptp '; true", check=False)


def ppp_state(eng: Engine, c, ifname: str = "ppp0") -> tuple[str, str, str]:
    """("up"|"down", local address, peer address) of a node's tunnel interface."""
    out = eng.exec(c, f"ip -4 -o addr show dev {ifname} 2>/dev/null", check=False).out
    m = re.search(r"inet (\S+) peer (\S+?)/", out)
    return ("up", m.group(1), m.group(2)) if m else ("down", "", "")


def _call_ids(eng: Engine, lab: str) -> dict[str, str]:
    """Client address -> "client/server" call IDs, read from the live capture."""
    from . import pptp

    with tempfile.TemporaryDirectory() as tmp:
        files = capture.snapshot(eng, lab, Path(tmp))
        if not files:
            return {}
        report = pptp.analyze(files)
    out: dict[str, str] = {}
    for s in report.sessions:
        for c in s.calls:
            if c.server_call_id is not None:
                out.setdefault(s.client, f"{c.client_call_id}/{c.server_call_id}")
    return out


def status(eng: Engine, topo_or_lab) -> list[NodeStatus]:
    lab = topo_or_lab if isinstance(topo_or_lab, str) else topo_or_lab.name
    have = existing(eng, lab)
    if not have and not eng.networks(lab):
        raise LabError(f"no lab {lab} on the {eng.name} engine (labs there: {', '.join(sorted(eng.labs())) or 'none'})")
    ids = _call_ids(eng, lab)

    def one(item):
        name, c = item
        c.reload()
        addrs = {k.removeprefix(f"{lab}-"): v.get("IPAddress") for k, v in
                 c.attrs["NetworkSettings"]["Networks"].items()}
        st = NodeStatus(name, c.labels.get(names.ROLE, "?"), c.status, addrs)
        if c.status == "running" and st.kind in kinds.KINDS:  # its tunnel, by its kind (Kind.status)
            kinds.KINDS[st.kind].status(lambda cmd: eng.exec(c, cmd, check=False), st, ids)
        return st

    return sorted(_parallel(one, have.items()), key=lambda s: s.name)


def recorded_topology(eng: Engine, lab: str) -> Topology:
    """The topology a running lab was brought up with, read from its networks' labels."""
    for n in eng.networks(lab):
        raw = (n.attrs.get("Labels") or {}).get(names.MODEL)
        if raw:
            try:
                return Topology.model_validate(json.loads(raw))
            except ValueError as exc:
                why = " ".join(str(exc).split())
                raise LabError(f"lab {lab}: its recorded topology does not load: {why}") from None
    raise LabError(f"lab {lab} has no recorded topology (brought up by an older pptp-lab): "
                   f"give its topology file instead")


def down(eng: Engine, lab: str) -> tuple[int, Path | None]:
    run = capture.stop(eng, lab)
    return eng.remove_lab(lab), run


def to_json(rows: list[NodeStatus]) -> str:
    return json.dumps([r.__dict__ for r in rows], indent=1)

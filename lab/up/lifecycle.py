"""A lab's life: up (validate, create, configure, capture, dial, wait), status, down.

Everything is validated before anything is created; a failure or Ctrl-C while creating removes
what was created; `up` on a lab that is already up changes nothing; `down` removes exactly the
objects labelled with the lab's name, also after a crash half-way (an `up` killed while building
leaves a note on this host, so the next `up` says to take it down and `down` sweeps again for
requests the engine was still carrying out)."""
from __future__ import annotations

import fcntl
import hashlib
import ipaddress
import json
import os
import re
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import docker.errors
import requests

from . import capture, configure, queries
from ..model import kinds, members, render, tunnels
from ..model.kinds.pptp_client import tunnel_state
from ..core import names, timing
from ..core.pool import parallel
from ..engines import Engine
from ..core.errors import LabError
from ..core.host import console
from ..core.paths import private_dir, state_dir
from ..model.topology import RP_FILTER, Topology, public_data

TUNNEL_TIMEOUT = 90  # seconds for every client's ppp0 to get an address
EARLY_VERDICT_MAX = 4  # calls dialled at once up to which a failure is judged early
# Calls under way at once. 20 clients dialled at once on the 2-CPU emulated guest: 6 of 20
# failed (server pppd silent for 30 s, IPCP or CHAP unfinished); 4 at a time: all came up.
DIAL_AT_ONCE_ENV, DIAL_AT_ONCE = "PPTP_LAB_DIAL_AT_ONCE", 4
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
    # A client's tunnel as the capture shows it (lab.model.tunnels.Tunnel): None without a capture.
    seen_on: str = ""
    age_s: float | None = None
    last_echo_s: float | None = None
    last_echo: str = ""
    gre_out: int | None = None
    gre_in: int | None = None
    lost_out: int | None = None
    lost_in: int | None = None
    last_gre_in_s: float | None = None
    unanswered_s: float | None = None
    mru: str = ""
    outer: str = ""
    tunnel_mtu: int | None = None  # the tunnel interface's MTU (pppd's, after the negotiation)
    members: int = 0  # a pptp-client node with a count: its calls (rows NODE#1.. follow it)
    # The kernel and the PPTP programs a pptp node runs (issue #11: which versions met).
    versions: dict = field(default_factory=dict)


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
    """Networks and node containers (`up` removes them again when anything fails).
    `image`: one tag for every node, or node name -> tag (node_images)."""
    labels = {HASH_LABEL: topo_hash(topo)}
    # The topology itself rides on the networks, so `pptp-lab graph LAB` can draw a running
    # lab without its file (the secrets are not in it: anyone with the engine reads labels).
    # A ruleset longer than lab.model.rulesets.LABEL_MAX is not copied there (a comment says so).
    net_labels = {**labels, names.MODEL: json.dumps(public_data(topo, label=True), separators=(",", ":"))}
    with _subnets_claimed(eng, topo), timing.phase("networks"), \
            console.status(f"creating {len(topo.networks)} networks") as st:
        for name, net in topo.networks.items():
            st.update(f"creating network {name} ({net.subnet})")
            eng.create_network(topo.name, name, net.subnet, net.bridge_address, net_labels, net.mtu)
    console.print(f"[green]✓[/] {len(topo.networks)} network(s) created")

    def make(item):
        name, node = item
        tag = _image_of(image, name)
        own = {**labels, names.MEMBERS: str(node.count)} if getattr(node, "count", None) else labels
        # Only values of the fixed table, never the topology's text, become sysctls.
        sysctls = {"net.ipv4.conf.all.rp_filter": RP_FILTER[node.rp_filter]} if node.rp_filter else None
        try:
            return eng.create_node(topo.name, name, tag, dict(node.interfaces), node.kind, own, sysctls)
        except requests.ConnectionError:
            # A busy engine behind QEMU's port forward now and then drops a connection:
            # clear what the first try may have made and try once more.
            eng.forget_node(topo.name, name)
            return eng.create_node(topo.name, name, tag, dict(node.interfaces), node.kind, own, sysctls)

    start = time.monotonic()
    with timing.phase("nodes"), console.status(f"starting {len(topo.nodes)} nodes"):
        # More than a few at once gains nothing: the engine creates containers one by one.
        parallel(make, topo.nodes.items(), workers=4)
    console.print(f"[green]✓[/] {len(topo.nodes)} node(s) created ({time.monotonic() - start:.0f}s)")


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
        if owner == topo.name:  # its own networks without its nodes: an `up` that did not finish
            raise LabError(f"lab {topo.name} is half-built on the {eng.name} engine (networks without nodes): "
                           f"`pptp-lab down {topo.name}` first")
        if not owner or time.monotonic() >= deadline:
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
    from ..model import rulesets

    todo = [(name, node) for name, node in topo.nodes.items() if getattr(node, "ruleset", None)]
    if not todo:
        return

    def check(item):
        name, node = item
        r = node.ruleset
        nets = list(node.interfaces)
        argv = ["sh", "-c", CHECK_SCRIPT, "sh", str(len(nets)), *nets, *rulesets.check_argv(r.flavour)]
        return eng.scratch_run(_image_of(image, name), {r.node_path: (r.text, 0o600)}, argv)

    with console.status(f"checking {len(todo)} ruleset(s)"):
        # At once: each is a container's start (about 2 s in the emulated guest).
        done = parallel(check, todo, workers=4)
    for (name, node), res in zip(todo, done):  # the first in the topology's order is said
        if not res.ok:
            r = node.ruleset
            raise LabError(rulesets.explain(r.flavour, res.out, f"nodes.{name}.ruleset.{r.flavour}", r.path))
    console.print(f"[green]✓[/] {len(todo)} ruleset(s) checked")


def preflight(eng: Engine, topo: Topology) -> dict[str, object]:
    """Every check `up` makes on the engine before creating anything (after the topology's
    own validation). Returns the lab's containers when the same lab is already up (then
    `up` creates nothing), else {}."""
    building = _building(eng, topo.name)
    if building is not None:
        pid, running = building
        if running:
            raise LabError(f"lab {topo.name} is being brought up by process {pid}: wait for it, or "
                           f"`pptp-lab down {topo.name}`")
        if topo.name in eng.labs():
            raise LabError(f"lab {topo.name} is half-built: its `up` (process {pid}) stopped before it was done; "
                           f"`pptp-lab down {topo.name}` first")
    have = existing(eng, topo.name)
    if have:
        hashes = {c.labels.get(HASH_LABEL) for c in have.values()}
        if hashes == {topo_hash(topo)} and set(have) < set(topo.nodes):
            raise LabError(f"lab {topo.name} is half-built (no node {', '.join(sorted(set(topo.nodes) - set(have)))}): "
                           f"`pptp-lab down {topo.name}` first")
        if hashes != {topo_hash(topo)} or set(have) != set(topo.nodes):
            raise LabError(f"lab {topo.name} is up with a different topology: "
                           f"`pptp-lab down {topo.name}` first, or give another --name")
        return have
    check_free(eng, topo)
    return {}


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during `up`, after what that `up` had created was dealt with: its text is one
    line saying what became of the lab."""


def up(eng: Engine, topo: Topology, with_capture: bool = True, dial: bool = True,
       with_status: bool = True) -> list[NodeStatus]:
    """Bring the lab up (or check the one that is up); its status rows, or [] without
    `with_status` (a caller that reads nothing of them saves an exec per node under TCG)."""
    configure.require()  # a missing Ansible is said before the engine is asked anything
    phase = "checks"  # then "was up" (nothing of it is this run's) or "building", "built"
    try:
        have = preflight(eng, topo)
        if have:
            phase = "was up"
            for c in have.values():
                if c.status != "running":
                    c.start()
            console.print(f"lab {topo.name} is already up; checking its tunnels")
        else:
            with timing.phase("images and rulesets"):
                image = eng.ensure_image()  # the engine's own: the capture helper's too
                per_node = node_images(eng, topo, image)
                check_rulesets(eng, topo, per_node)
            phase = "building"
            _mark(eng, topo.name)
            create(eng, topo, per_node)
            if with_capture:
                with timing.phase("capture"):
                    capture.start(eng, topo.name, image)
                console.print(f"[green]✓[/] capturing on {len(topo.networks)} segment(s)")
            console.print(f"configuring {len(topo.nodes)} node(s) with Ansible")
            with timing.phase("configure"):
                configure.apply(topo, eng.url)
            _unmark(eng, topo.name)  # whole: a failed dial leaves it up to be looked at
            phase = "built"
        if dial:
            if topo.clients:
                calls = len(members.members(topo))
                console.print(f"dialling {calls} client(s)" + (f" from {len(topo.clients)} node(s)"
                                                             if calls != len(topo.clients) else ""))
            with timing.phase("dial"):
                start_servers(eng, topo)
                dial_clients(eng, topo)
    except KeyboardInterrupt:
        if phase in ("building", "built"):
            # A request the interrupt cut short may still be carried out: sweep until it would have been.
            line = _undo(eng, topo.name, settle_until=time.monotonic() + SETTLE)[1]
        else:
            line = (f"lab {topo.name} was up before and is left as it was" if phase == "was up"
                    else f"nothing of lab {topo.name} was created")
        raise Interrupted(line) from None
    except BaseException:
        if phase == "building":
            done, line = _undo(eng, topo.name)
            if not done:
                console.print(line, soft_wrap=True, markup=False, highlight=False)
        raise
    return status(eng, topo) if with_status else []


def _undo(eng: Engine, lab: str, settle_until: float = 0.0) -> tuple[bool, str]:
    """Remove what this process's `up` created, sweeping again until `settle_until`; (done,
    one line saying so or what to run)."""
    try:
        with console.status(f"removing lab {lab}"):
            capture.stop(eng, lab)
            gone = _sweep(eng, lab, settle_until)
    except BaseException as exc:  # noqa: BLE001 - a second Ctrl-C too: say what is left to do
        return False, f"removing lab {lab} failed ({type(exc).__name__}): run `pptp-lab down {lab}`"
    _unmark(eng, lab)
    return True, f"removed what lab {lab} had created ({gone} objects)"


# ---------------------------------------------------------------- an `up` under way
# While `up` builds a lab (first object to configured) a note on this host names its
# process. A note whose process is gone means that `up` was killed: the next `up` refuses
# the half-built lab, and `down` knows to sweep again.

SETTLE = 6.0  # seconds a cut-off `up`'s last request (a container create: ~3 s under TCG) may take


def _note(eng: Engine, lab: str) -> Path:
    key = hashlib.sha256(f"{eng.key}\0{lab}".encode()).hexdigest()[:16]
    return private_dir(state_dir() / "building") / f"{key}.json"


def _started(pid: int) -> str | None:
    """A process's start time (tells it from a later one with the same pid); None when it is
    gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def _mark(eng: Engine, lab: str) -> None:
    note = _note(eng, lab)
    tmp = note.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "started": _started(os.getpid()), "lab": lab,
                               "engine": eng.name}))
    tmp.replace(note)  # whole or not there, whenever this process is killed


def _unmark(eng: Engine, lab: str) -> None:
    _note(eng, lab).unlink(missing_ok=True)


def _building(eng: Engine, lab: str) -> tuple[int, bool] | None:
    """(pid, still running) of an unfinished `up` of this lab from this host, or None. This
    process's own note is a stale one: it builds a lab once at a time."""
    try:
        data = json.loads(_note(eng, lab).read_text())
        pid = int(data["pid"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return 0, False  # unreadable: written by a process killed while writing it
    return pid, pid != os.getpid() and _started(pid) == data.get("started")


def node(eng: Engine, lab: str, name: str):
    return eng.node(lab, name)


def start_servers(eng: Engine, topo: Topology) -> None:
    """Each node's kinds start what they run (Kind.start: pptpd on a pptp-server)."""
    for name, n in topo.nodes.items():
        def run(cmd: str, name=name):
            return eng.exec(eng.node(topo.name, name), cmd)
        for kind in kinds.of(n):
            kind.start(run)


def dial_at_once() -> int:
    raw = os.environ.get(DIAL_AT_ONCE_ENV, "")
    if not raw:
        return DIAL_AT_ONCE
    if not raw.isdigit() or not 1 <= int(raw) <= 64:
        raise LabError(f"{DIAL_AT_ONCE_ENV}={raw[:20]!r}: give how many calls to dial at once, 1 to 64")
    return int(raw)


def dial_clients(eng: Engine, topo: Topology, timeout: float = TUNNEL_TIMEOUT, only=None) -> None:
    """Dial every client (member: lab.model.members) that has no tunnel, or those of `only`
    (node or member names), and wait for each tunnel interface to get an address."""
    calls = members.members(topo) if only is None else {m.name: m for m in members.of_nodes(topo, only)}
    names = list(calls)
    if not names:
        return

    start = time.monotonic()
    at_once = dial_at_once()
    # Early verdicts (dial.sh.j2) hold for a few calls at once; with more, a server busy
    # starting pppds answers late and looked blocked (50 clients: all judged failed, all came
    # up), so only pppd's and the kernel's own limits end a call then.
    limits = ["3", "3"] if min(len(names), at_once) <= EARLY_VERDICT_MAX else ["10", "7"]

    def dial_and_wait(name) -> str:
        # One exec per client that dials and blocks until its tunnel has an address, or the
        # failure is certain (dial.sh.j2 says which): polling from here would flood a slow
        # engine with execs. "" when the tunnel is up, else why not.
        m = calls[name]
        c = eng.node(topo.name, m.node)
        r = eng.exec(c, [render.DIAL, m.ifname, str(int(timeout)), *limits, *m.dial_args()], check=False)
        return "" if r.ok else (r.out.strip().splitlines() or [f"exit {r.rc}"])[-1]

    with console.status(f"dialling {len(names)} client(s) and waiting for their tunnels"):
        failed = {n: why for n, why in zip(names, parallel(dial_and_wait, names, workers=at_once)) if why}
    if failed:
        raise LabError(f"no tunnel for {', '.join(sorted(failed))} (`pptp-lab analyze` the capture for the phase): "
                       + "; ".join(f"{n}: {failed[n]}" for n in sorted(failed)))
    console.print(f"[green]✓[/] {len(names)} tunnel(s) up ({time.monotonic() - start:.0f}s)")


def hang_up(eng: Engine, lab: str, clients) -> None:
    """End each client's own outgoing call (a calling router keeps the calls it answers): a
    node's every call, or one member's (NODE#I: its pppd, by the pid file its linkname names)."""
    for c in clients:
        node, index = members.split(c)
        if index:
            pid = f"/var/run/ppp-{members.peer(index)}.pid"
            eng.exec(eng.node(lab, node), ["sh", "-c", 'kill -TERM "$(head -n 1 "$1")" 2>/dev/null; true', "-", pid],
                     check=False)
            continue
        eng.exec(eng.node(lab, c), f"pkill -TERM -f '^pppd call {render.PEER}'; sleep 0.5; "
                                    "pkill -KILL -f '^pptp '; true", check=False)


def ppp_state(eng: Engine, c, ifname: str = "ppp0") -> tuple[str, str, str]:
    """("up"|"down", local address, peer address) of a node's tunnel interface: the client
    kind's own reading (status reads it the same way)."""
    return tunnel_state(lambda cmd: eng.exec(c, cmd, check=False), ifname)


def _seen(eng: Engine, lab: str) -> dict[str, list[tunnels.Tunnel]]:
    """Client address -> its tunnels as the live capture shows them (one snapshot, one
    analysis for every node)."""
    from .. import pptp

    box = capture.container(eng, lab)
    if box is None:
        return {}
    # Read before the snapshot, on the capture's clock: no packet in it is older than it looks.
    # A stopped capture cannot run `date` (its pcaps are still read): the host's clock then.
    offset = capture.clock_offset(eng, box) if box.status == "running" else None
    now = time.time() + (offset or 0.0)
    with tempfile.TemporaryDirectory() as tmp:
        files = capture.snapshot(eng, lab, Path(tmp))
        if not files:
            return {}
        report = pptp.analyze(files)
    return tunnels.summarise(report.sessions, now)


def status(eng: Engine, topo_or_lab) -> list[NodeStatus]:
    lab = topo_or_lab if isinstance(topo_or_lab, str) else topo_or_lab.name
    have = existing(eng, lab)
    if not have and not eng.networks(lab):
        raise LabError(f"no lab {lab} on the {eng.name} engine (labs there: {', '.join(sorted(eng.labs())) or 'none'})")
    seen = _seen(eng, lab)
    found = versions(eng, have)

    def one(item):
        name, c = item
        c.reload()
        addrs = {k.removeprefix(f"{lab}-"): v.get("IPAddress") for k, v in
                 c.attrs["NetworkSettings"]["Networks"].items()}
        st = NodeStatus(name, c.labels.get(names.ROLE, "?"), c.status, addrs)
        count = c.labels.get(names.MEMBERS, "")
        st.members = int(count) if count.isdigit() and 2 <= int(count) <= members.MAX_MEMBERS else 0
        rows = []
        if c.status == "running" and st.kind in kinds.KINDS:  # its tunnel, by its kind (Kind.status)
            rows = kinds.KINDS[st.kind].status(lambda cmd: eng.exec(c, cmd, check=False), st, seen) or []
            st.versions = found.get(name, {})
        return [st, *rows]

    # A counted node's member rows follow it (NODE, NODE#1, NODE#2...).
    return [row for rows in sorted(parallel(one, have.items()), key=lambda r: r[0].name) for row in rows]


PPTP_PACKAGES = ("ppp", "pptpd", "pptp-linux")
VERSIONED = ("pptp-client", "pptp-server")  # the kinds whose versions status shows
VERSIONS_CMD = ("uname -r; dpkg-query -W -f='${Package} ${Version}\\n' " + " ".join(PPTP_PACKAGES)
                + " 2>/dev/null; true")


# Debian versions and kernel releases are made of these: anything else is not shown.
VERSION_TEXT = re.compile(r"[A-Za-z0-9.+~:_-]{1,64}")


def parse_versions(out: str) -> dict[str, str]:
    """{"kernel": ..., package: version} from VERSIONS_CMD's output; what is not installed
    (pptpd on a client) or not shaped like a version is left out."""
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    found = {"kernel": lines[0]} if lines and VERSION_TEXT.fullmatch(lines[0]) else {}
    for line in lines[1:] if found else lines:
        name, _, version = line.partition(" ")
        if name in PPTP_PACKAGES and VERSION_TEXT.fullmatch(version):
            found[name] = version
    return found


def versions(eng: Engine, have: dict[str, object]) -> dict[str, dict[str, str]]:
    """Node name -> parse_versions() for the running nodes of VERSIONED kinds (`have`:
    existing()). Nodes of one image in one engine run the same kernel and packages: one
    VERSIONS_CMD per image."""
    pptp = {n: c for n, c in have.items() if c.status == "running" and c.labels.get(names.ROLE) in VERSIONED}
    firsts = {c.attrs.get("Image"): c for c in reversed(list(pptp.values()))}
    by_image = dict(zip(firsts, parallel(lambda c: parse_versions(eng.exec(c, VERSIONS_CMD, check=False).out),
                                          firsts.values())))
    return {n: dict(by_image.get(c.attrs.get("Image"), {})) for n, c in pptp.items()}


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


def _sweep(eng: Engine, lab: str, until: float = 0.0) -> int:
    """Remove the lab's objects, and again once a second until `until`: what a killed or
    interrupted `up` had asked for can land after a pass (a network still held by a
    container landing then is removed by the next). Only the last pass may fail."""
    gone = 0
    while True:
        last = time.monotonic() >= until
        try:
            gone += eng.remove_lab(lab)
        except docker.errors.APIError:
            if last:
                raise
        if last:
            return gone
        time.sleep(max(0.0, min(1.0, until - time.monotonic())))


def down(eng: Engine, lab: str) -> tuple[int, Path | None]:
    building = _building(eng, lab)
    cut_short = building is not None and not building[1]  # its `up` was killed half-way
    run = capture.stop(eng, lab)
    gone = _sweep(eng, lab, time.monotonic() + SETTLE if cut_short else 0.0)
    if cut_short:
        configure.sweep()  # its Ansible run's scratch directory, secrets and all
        _unmark(eng, lab)
    return gone, run


def to_json(rows: list[NodeStatus]) -> str:
    return json.dumps([r.__dict__ for r in rows], indent=1)

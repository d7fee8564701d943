"""Faults on a running lab (issue #12): `pptp-lab fault LAB VERB ...` and the plugin's
`lab.fault(...)`. The path breaks the way real ones do: a PPTP program dies, a node
restarts, a link goes down or flaps, netem adds loss and delay, a NAT forgets its
connections, a firewall reloads its rules.

Every value is checked before anything runs: the node and network against the lab's
recorded topology, the rest against a fixed list or a strict pattern that turns it into
a number. Values reach the node as argv words only; the fixed scripts below take theirs
as positional arguments ("$1"), never pasted into their text.

Each verb returns a Fault (what ran in the node, when, and the verb that undoes it) and
appends it to the lab's fault log (lab.up.faultlog), which the run's manifest.json gets when
the capture stops, so a report can draw it on the session ladder."""
from __future__ import annotations

import ipaddress
import json
import re
import shlex
import time
from dataclasses import asdict, dataclass, field
from decimal import Decimal

from . import apply, faultlog, lifecycle
from ..model import kinds, render, rulesets
from ..core import names
from .capture import clock_offset
from ..engines import Engine, ExecResult
from ..core.errors import LabError
from ..model.types import NAME

USAGE = {
    "kill": "kill NODE pptpd|pppd|pptp",
    "restart": "restart NODE",
    "link": "link NODE NET down|up|flap SECONDS",
    "netem": "netem NODE NET [loss=P%] [delay=Tms] [reorder=P%] [duplicate=P%] | clear",
    "conntrack-flush": "conntrack-flush NODE",
    "reload": "reload NODE",
}
PROGRAMS = ("pptpd", "pppd", "pptp")
NAT_RULES, FILTER_RULES = "/etc/pptp-lab/nat.nft", "/etc/pptp-lab/filter.nft"  # kinds/nat.py, kinds/firewall.py
# A node's rule files in the order configure.sh applies them (ruleset.sh.j2, then the kinds').
RULE_FILES = (rulesets.PATHS["nft"], rulesets.PATHS["iptables"], NAT_RULES, FILTER_RULES)
SAVED_ROUTES = "/etc/pptp-lab/fault-link-{dev}.json"  # routes of a link a fault took down
IFNAME = re.compile(r"[A-Za-z0-9_.-]{1,15}")
PERCENT = re.compile(r"(\d{1,3}(?:\.\d{1,3})?)%")
DURATION = re.compile(r"(\d{1,5}(?:\.\d{1,3})?)(us|ms|s)")
SECONDS = re.compile(r"(\d{1,4}(?:\.\d{1,3})?)(ms|s)?")
MAX_DELAY_US = 60_000_000  # netem delay: at most a minute
MAX_FLAP_MS = 3_600_000    # a flap: at most an hour down
NETEM_KEYS = ("delay", "loss", "duplicate", "reorder")  # tc-netem(8)'s order

# `ip link set down` removes the routes through the link; only the connected ones come
# back with `up`. These put the others back: three words each (dst, gateway or -, metric).
RESTORE = ('while [ $# -ge 3 ]; do if [ "$2" = - ]; then ip route replace "$1" dev "$dev" metric "$3"; '
           'else ip route replace "$1" via "$2" dev "$dev" metric "$3"; fi || exit 1; shift 3; done')
# Times on the node's clock, which is the capture's: the outage is measured where it happened.
UP_SCRIPT = 'dev=$1; shift; ip link set dev "$dev" up || exit 1; echo "up $(date +%s.%N)"; ' + RESTORE
# A flap's times are read after `down` and before `up`, so the link was down for all of
# [down_at, up_at]: under emulation each `ip` takes up to a few hundred ms.
FLAP_SCRIPT = ('dev=$1 secs=$2; shift 2; ip link set dev "$dev" down || exit 1; echo "down $(date +%s.%N)"; '
               'sleep "$secs"; echo "up $(date +%s.%N)"; ip link set dev "$dev" up || exit 1; ' + RESTORE)
# One exec, so the node is without rules only as long as nft takes to load them again.
RELOAD_SCRIPT = ('nft flush ruleset || exit 1; for f; do case "$f" in *.iptables) iptables-restore "$f" ;; '
                 '*) nft -f "$f" ;; esac || exit 1; done')


@dataclass
class Fault:
    verb: str
    node: str
    args: list[str]
    started: float  # host wall clock, epoch seconds
    ended: float
    done: str       # what happened, one line
    commands: list[list[str]] = field(default_factory=list)  # every argv run in the node, in order
    undo: list[str] | None = None  # the verb and arguments that undo it (inject(eng, lab, *undo))
    clock_offset: float | None = None  # the engine's clock minus the host's (faultlog.engine_time)
    detail: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def shown(value) -> str:
    """A value for a one-line error: as given when plain, else quoted with escapes."""
    text = str(value)
    return text if re.fullmatch(r"[\w.:%=/+-]{1,64}", text) else repr(text)[:80]


# ---------------------------------------------------------------- checks

def lab_topology(eng: Engine, lab: str, applied: bool = False):
    """The running lab's topology (with what `apply` changed since `up` when `applied`)."""
    if not re.fullmatch(NAME, lab):
        raise LabError(f"fault: {shown(lab)} is no lab name")
    if not eng.networks(lab):
        raise LabError(f"no lab {lab} on the {eng.name} engine")
    return apply.current(eng, lab) if applied else lifecycle.recorded_topology(eng, lab)


def check_node(topo, node: str) -> None:
    if node not in topo.nodes:
        raise LabError(f"lab {topo.name} has no node {shown(node)} (nodes: {', '.join(topo.nodes)})")


def check_net(topo, node: str, net: str) -> None:
    check_node(topo, node)
    if net not in topo.nodes[node].interfaces:
        raise LabError(f"{node} has no interface on {shown(net)} (its networks: "
                       f"{', '.join(topo.nodes[node].interfaces)})")


def percent(key: str, text: str) -> str:
    """A netem percentage: 0-100 with up to 3 decimals, written back plainly (10%, 0.5%)."""
    m = PERCENT.fullmatch(text)
    if not m or Decimal(m[1]) > 100:
        raise LabError(f"netem {key}={shown(text)}: give a percentage from 0% to 100%, e.g. {key}=10%")
    return f"{Decimal(m[1]).normalize():f}%"


def delay_us(text: str) -> int:
    m = DURATION.fullmatch(text)
    us = int(Decimal(m[1]) * {"us": 1, "ms": 1000, "s": 1_000_000}[m[2]]) if m else -1
    if not 0 <= us <= MAX_DELAY_US:
        raise LabError(f"netem delay={shown(text)}: give a time up to 60s with its unit, e.g. delay=50ms")
    return us


def netem_words(params: list[str]) -> list[str]:
    """KEY=VALUE words as tc-netem's argv words, in its order; at least one."""
    given: dict[str, str] = {}
    for p in params:
        key, eq, value = p.partition("=")
        if not eq or key not in NETEM_KEYS:
            raise LabError(f"netem: {shown(p)} is not one of {', '.join(k + '=...' for k in NETEM_KEYS)} or clear")
        if key in given:
            raise LabError(f"netem: {key} given twice")
        given[key] = value
    if not given:
        raise LabError(f"netem: give at least one of {', '.join(k + '=...' for k in NETEM_KEYS)}, or clear")
    words = []
    if "delay" in given:
        us = delay_us(given["delay"])
        words += ["delay", f"{us // 1000}ms" if us % 1000 == 0 else f"{us}us"]
    elif "reorder" in given:
        raise LabError("netem reorder: needs a delay (netem reorders by sending some packets at once "
                       "while delaying the rest), e.g. delay=50ms reorder=25%")
    for key in ("loss", "duplicate", "reorder"):
        if key in given:
            words += [key, percent(key, given[key])]
    return words


def flap_ms(text: str) -> int:
    m = SECONDS.fullmatch(text)
    ms = int(Decimal(m[1]) * (1 if m[2] == "ms" else 1000)) if m else 0
    if not 0 < ms <= MAX_FLAP_MS:
        raise LabError(f"link flap {shown(text)}: give how long the link stays down, more than 0 and up to "
                       "3600 seconds, e.g. 3 or 2.5s or 500ms")
    return ms


def route_words(rows) -> list[list[str]]:
    """Routes through a link (`ip -j route` rows) to put back after it comes up, each as
    [dst, gateway or -, metric]. Connected routes come back by themselves; a row of any
    other form (multipath, a table of its own) is not one the lab makes and is left out."""
    out = []
    for r in rows if isinstance(rows, list) else []:
        if not isinstance(r, dict) or r.get("protocol") == "kernel" or "nexthops" in r:
            continue
        try:
            dst = r["dst"] if r.get("dst") == "default" else str(ipaddress.IPv4Network(r["dst"]))
            via = str(ipaddress.IPv4Address(r["gateway"])) if "gateway" in r else "-"
            metric = int(r.get("metric", 0))
        except (KeyError, TypeError, ValueError):
            continue
        if 0 <= metric < 2 ** 32:
            out.append([dst, via, str(metric)])
    return out


# ---------------------------------------------------------------- running a fault

class Run:
    """One fault's execs in one node, in order, and when it began."""

    def __init__(self, eng: Engine, lab: str, node: str):
        self.eng, self.lab, self.node = eng, lab, node
        self.box = eng.node(lab, node)
        self.clock_offset = clock_offset(eng, self.box)
        self.started = time.time()
        self.commands: list[list[str]] = []
        # (verb, args, what was done) once the node has been changed: a step failing after
        # that is still a fault on the time line (recorded as failed half-way).
        self.changed: tuple[str, list[str], str] | None = None

    def __call__(self, argv: list[str], check: bool = True) -> ExecResult:
        self.commands.append(list(argv))
        res = self.eng.exec(self.box, list(argv), check=False)
        if check and not res.ok:
            said = " ".join(res.out.split())[-200:] or "no output"
            err = f"{self.node}: `{shlex.join(argv)}` failed (exit {res.rc}): {said}"
            if self.changed:
                verb, args, what = self.changed
                self.finish(verb, args, f"FAILED half-way ({what}): {err}", failed=True)
            raise LabError(err)
        return res

    def finish(self, verb: str, args: list[str], done: str, undo: list[str] | None = None,
               **detail) -> Fault:
        f = Fault(verb, self.node, list(args), self.started, time.time(), done, self.commands, undo,
                  self.clock_offset, detail)
        faultlog.append(self.lab, f.to_dict())
        return f


def ifname(run: Run, topo, node: str, net: str) -> str:
    """The node's interface on `net`: named after the network, else found by its address."""
    name = names.interface(net)
    if name:
        return name
    addr = topo.nodes[node].interfaces[net]
    for line in run(["ip", "-o", "-4", "addr", "show"]).out.splitlines():
        m = re.match(r"\d+:\s+([^\s@]+)\S*\s+inet\s+([\d.]+)/", line)
        if m and m[2] == addr and IFNAME.fullmatch(m[1]):
            return m[1]
    raise LabError(f"{node}: no interface holds {addr}, its address on {net}")


def parsed(text: str, what: str):
    """JSON the node printed (`ip -j`) or keeps (saved routes); [] for nothing."""
    try:
        return json.loads(text) if text.strip() else []
    except ValueError:
        raise LabError(f"{what}: not JSON: {' '.join(text.split())[:80]}") from None


def node_time(out: str, word: str) -> float | None:
    m = re.search(rf"^{word} (\d+\.\d+)$", out, re.M)
    return float(m[1]) if m else None


# ---------------------------------------------------------------- the verbs

def kill(eng: Engine, lab: str, node: str, program: str) -> Fault:
    """SIGKILL every process of that name in the node (no clean-up, no message on the wire)."""
    topo = lab_topology(eng, lab)
    check_node(topo, node)
    if program not in PROGRAMS:
        raise LabError(f"kill: {shown(program)} is not one of {', '.join(PROGRAMS)}")
    run = Run(eng, lab, node)
    res = run(["pkill", "-KILL", "-e", "-x", program], check=False)
    if res.rc == 1:
        raise LabError(f"kill: no {program} process runs in {node}")
    if not res.ok:
        raise LabError(f"kill {node} {program}: pkill failed (exit {res.rc}): {' '.join(res.out.split())[-200:]}")
    pids = [int(p) for p in re.findall(r"\(pid (\d+)\)", res.out)]
    return run.finish("kill", [program], f"SIGKILL to {program} (pid {', '.join(map(str, pids)) or '?'})",
                      pids=pids)


def restart(eng: Engine, lab: str, node: str) -> Fault:
    """Restart the node's container: same networks and addresses, a fresh network namespace
    and nothing running. Its configure script runs again (interface names, routes, rules)
    and its kinds start what they run at `up` (pptpd); a client's tunnel is not dialled."""
    topo = lab_topology(eng, lab)
    check_node(topo, node)
    run = Run(eng, lab, node)
    eng.restart_node(run.box)
    run.changed = ("restart", [], "the container restarted")
    run(["sh", render.SCRIPT])
    started = []
    for kind in kinds.of(topo.nodes[node]):
        if type(kind).start is not kinds.Kind.start:
            kind.start(lambda cmd: run(["sh", "-c", cmd]))
            started.append(kind.name)
    return run.finish("restart", [], "container restarted, configured again"
                      + (f", started what its kind runs ({', '.join(started)})" if started else ""))


def link(eng: Engine, lab: str, node: str, net: str, action: str, seconds: str | None = None) -> Fault:
    """`ip link set` on the node's interface on `net`: down, up, or flap (down for SECONDS,
    then up, in one exec). The routes through it that `down` removes are put back on up."""
    topo = lab_topology(eng, lab)
    check_net(topo, node, net)
    if action not in ("down", "up", "flap"):
        raise LabError(f"link: {shown(action)} is not down, up or flap")
    if action == "flap" and seconds is None:
        raise LabError(f"link flap: give how long the link stays down: {USAGE['link']}")
    if action != "flap" and seconds is not None:
        raise LabError(f"link {action}: takes no SECONDS (only flap does)")
    ms = flap_ms(seconds) if action == "flap" else 0
    run = Run(eng, lab, node)
    dev = ifname(run, topo, node, net)
    saved = SAVED_ROUTES.format(dev=dev)
    if action == "up":
        kept = run(["cat", saved], check=False)
        routes = route_words(parsed(kept.out, saved)) if kept.ok else []
        run.changed = ("link", [net, "up"], f"{dev} may be up without its routes")
        out = run(["sh", "-c", UP_SCRIPT, "sh", dev, *sum(routes, [])]).out
        run(["rm", "-f", saved])
        return run.finish("link", [net, "up"], f"{dev} up, {len(routes)} route(s) put back",
                          interface=dev, up_at=node_time(out, "up"))
    if run(["cat", saved], check=False).ok:  # its routes are gone already: none to keep
        raise LabError(f"link: {node}'s {dev} is down (a fault took it down): "
                       f"`pptp-lab fault {lab} link {node} {net} up` first")
    routes = route_words(parsed(run(["ip", "-j", "-4", "route", "show", "dev", dev]).out, "ip -j route"))
    if action == "down":
        eng.put_files(run.box, {saved: (json.dumps([{"dst": d, **({"gateway": g} if g != "-" else {}),
                                                      "metric": int(m)} for d, g, m in routes]), 0o600)})
        try:
            run(["ip", "link", "set", "dev", dev, "down"])
        except LabError:
            run(["rm", "-f", saved], check=False)  # still up: nothing for `up` to put back
            raise
        return run.finish("link", [net, "down"], f"{dev} down ({len(routes)} route(s) kept for up)",
                          undo=["link", node, net, "up"], interface=dev)
    secs = f"{ms // 1000}" if ms % 1000 == 0 else f"{ms / 1000}"
    run.changed = ("link", [net, "flap", secs], f"{dev} may be left down")
    out = run(["sh", "-c", FLAP_SCRIPT, "sh", dev, secs, *sum(routes, [])]).out
    return run.finish("link", [net, "flap", secs], f"{dev} down for {secs}s, then up, "
                      f"{len(routes)} route(s) put back", interface=dev,
                      down_at=node_time(out, "down"), up_at=node_time(out, "up"))


def netem(eng: Engine, lab: str, node: str, net: str, *params: str) -> Fault:
    """Loss, delay, reordering, duplication on the node's interface on `net` (leaving the
    node), as its root qdisc; `clear` removes it."""
    topo = lab_topology(eng, lab)
    check_net(topo, node, net)
    clear = list(params) == ["clear"]
    words = [] if clear else netem_words(list(params))
    run = Run(eng, lab, node)
    dev = ifname(run, topo, node, net)
    if clear:
        res = run(["tc", "qdisc", "del", "dev", dev, "root"], check=False)
        nothing = "handle of zero" in res.out or "No such file" in res.out
        if not res.ok and not nothing:
            raise LabError(f"{node}: removing the qdisc of {dev} failed (exit {res.rc}): "
                           f"{' '.join(res.out.split())[-200:]}")
        return run.finish("netem", [net, "clear"], f"{dev}: " + ("no qdisc to remove" if nothing
                                                                else "netem removed"), interface=dev)
    run(["tc", "qdisc", "replace", "dev", dev, "root", "netem", *words])
    return run.finish("netem", [net, *params], f"{dev}: netem {' '.join(words)}",
                      undo=["netem", node, net, "clear"], interface=dev)


def conntrack_flush(eng: Engine, lab: str, node: str) -> Fault:
    """Empty the node's conntrack table: NAT bindings and helper state are forgotten (a home
    router that rebooted)."""
    topo = lab_topology(eng, lab)
    check_node(topo, node)
    run = Run(eng, lab, node)
    out = run(["conntrack", "-F"]).out
    m = re.search(r"(\d+) flow entries", out)
    return run.finish("conntrack-flush", [], " ".join(out.split())[-200:] or "conntrack table emptied",
                      entries=int(m[1]) if m else None)


def reload(eng: Engine, lab: str, node: str) -> Fault:
    """Flush the node's whole ruleset and load its rule files again (those of its current
    rules: what `apply` changed included), as a firewall reloading its rules does. Unlike
    `apply`, nothing else is redone: conntrack keeps its entries."""
    topo = lab_topology(eng, lab, applied=True)
    check_node(topo, node)
    files = render.node_files(topo, node)
    rules = [p for p in RULE_FILES if p in files]
    if not rules:
        raise LabError(f"reload: {node} ({topo.nodes[node].kind}) has no rules of the lab's to load again "
                       "(a firewall with a policy other than open, a nat, or a node with a ruleset has)")
    run = Run(eng, lab, node)
    run.changed = ("reload", [], "the ruleset may be flushed and not loaded again")
    run(["sh", "-c", RELOAD_SCRIPT, "sh", *rules])
    return run.finish("reload", [], f"nft flush ruleset, then {', '.join(rules)} loaded again", files=rules)


# ---------------------------------------------------------------- by name

VERBS = {  # verb -> (function, fewest and most arguments after the verb)
    "kill": (kill, 2, 2), "restart": (restart, 1, 1), "link": (link, 3, 4),
    "netem": (netem, 3, 3 + len(NETEM_KEYS)), "conntrack-flush": (conntrack_flush, 1, 1),
    "reload": (reload, 1, 1),
}


def word(value) -> str:
    """An argument as given to a verb: a string, or a number (lab.fault("link", ..., 3))."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:g}" if isinstance(value, float) else str(value)
    raise LabError(f"fault: {shown(value)} is neither a word nor a number")


def inject(eng: Engine, lab: str, verb: str, *args) -> Fault:
    """A fault by its verb and words, as `pptp-lab fault LAB VERB ARGS...` gives them."""
    if verb not in VERBS:
        raise LabError(f"fault: no verb {shown(verb)} (verbs: {', '.join(VERBS)})")
    fn, fewest, most = VERBS[verb]
    words = [word(a) for a in args]
    if not fewest <= len(words) <= most:
        raise LabError(f"fault {verb}: give {USAGE[verb]}")
    return fn(eng, lab, *words)


def undo(eng: Engine, lab: str, fault: Fault) -> Fault | None:
    """Undo a fault that can be undone (link down, netem); None for one that cannot."""
    return inject(eng, lab, *fault.undo) if fault.undo else None


class Active:
    """A fault in place, as `lab.fault(...)` returns it: `.fault` is its record; `.undo()`
    (or leaving its `with` block) undoes it once, `.undone` is the record of the undo."""

    def __init__(self, eng: Engine, lab: str, fault: Fault):
        self.eng, self.lab, self.fault = eng, lab, fault
        self.undone: Fault | None = None
        self._done = False

    def undo(self) -> Fault | None:
        if not self._done:
            self._done = True
            self.undone = undo(self.eng, self.lab, self.fault)
        return self.undone

    def __enter__(self) -> Active:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is None:
            self.undo()
            return
        try:  # the block's own error is the one to see; a failed undo is noted on it
            self.undo()
        except LabError as err:
            exc.add_note(f"undoing the fault failed too: {err}")

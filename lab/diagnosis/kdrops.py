"""The kernel's own word on dropped packets (SPEC S32), recorded in the VM guest while a
lab looks for a cause: the `skb:kfree_skb` tracepoint (each IPv4 packet the kernel frees
as dropped, with a drop reason since 5.17 and the kernel function that dropped it: a
stack trace) and `net:netif_receive_skb` (the interface each packet came in on, which
ties a drop to a node: a lab node's interfaces are named after their networks).

It runs in a tracefs instance of its own, so it leaves the guest's tracing as it was and
two labs never read each other's buffer. The scripts are fixed text: the only argument
is the instance's name, made here. The reason names are read from the running kernel's
output (their numbers change between versions); bullseye's 5.10 gives none, only the
function.

The guest holds these tracepoints enabled from its boot (lab.engines.tracehold: enabling
one patches kernel text, which under TCG can hang the guest); START makes sure of it."""
from __future__ import annotations

import os
import re
import secrets
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

from ..engines import tracehold

START = tracehold.HOLD + r"""I=$T/instances/$1
mkdir "$I"
echo 4096 > "$I/buffer_size_kb"
E=$I/events
echo 'protocol == 2048' > "$E/skb/kfree_skb/filter"
echo 'stacktrace if protocol == 2048' > "$E/skb/kfree_skb/trigger" || true
echo 1 > "$E/skb/kfree_skb/enable"
echo 1 > "$E/net/netif_receive_skb/enable"
echo 1 > "$I/tracing_on"
"""
STOP = r"""I=/sys/kernel/tracing/instances/$1
[ -d "$I" ] || exit 0
echo 0 > "$I/tracing_on"
echo "# kernel $(uname -r) reasons $(grep -c 'reason' "$I/events/skb/kfree_skb/format")"
grep -v '^#' "$I/trace"
echo '!stacktrace if protocol == 2048' > "$I/events/skb/kfree_skb/trigger" 2>/dev/null || true
rmdir "$I"
"""
CAPS = tracehold.CAPS

_EVENT = re.compile(r"^\s*(?P<task>.+?)\s+\[\d+\]\s+\S+\s+(?P<ts>\d+\.\d+):\s+(?P<event>[\w<> ]+?):?\s(?P<rest>.*)$")
_DROP = re.compile(r"skbaddr=(?P<skb>\S+) protocol=(?P<proto>\d+) location=(?P<loc>\S+)(?: reason: (?P<reason>\w+))?")
_RECV = re.compile(r"dev=(?P<dev>\S+) skbaddr=(?P<skb>\S+) len=(?P<len>\d+)")
# The frames of freeing itself, above the function that decided the drop.
_FREEING = re.compile(r"^(?:kfree_skb|__kfree_skb|sk_skb_reason_drop|kfree_skbmem|skb_release|"
                      r"trace_|__traceiter|event_trigger|__bpf_trace|perf_trace)")


@dataclass
class KernelDrop:
    ts: float
    dev: str | None          # the interface it came in on (None: sent by the node itself)
    reason: str | None       # e.g. IP_RPFILTER; None on a kernel without reasons
    function: str = ""       # the kernel function that dropped it (from the stack)
    length: int | None = None

    def text(self) -> str:
        what = self.reason or "a drop (this kernel gives no reason)"
        fn = f" in {self.function}" if self.function else ""
        return f"{what}{fn}" + (f", came in on {self.dev}" if self.dev else "")


@dataclass
class Recording:
    available: bool
    why_not: str = ""        # when not available: what the kernel or the engine could not give
    kernel: str = ""
    reasons: bool = False    # the kernel gives drop reasons
    drops: list[KernelDrop] = field(default_factory=list)

    def on(self, devs: set[str]) -> list[KernelDrop]:
        """The drops of packets that came in on one of these interfaces."""
        return [d for d in self.drops if d.dev in devs]


def _function(frames: list[str]) -> str:
    names = [f.split("+")[0] for f in frames]
    last = max((i for i, n in enumerate(names) if _FREEING.match(n)), default=-1)
    rest = [n for n in names[last + 1:] if n]
    return rest[0] if rest else ""


def parse(text: str) -> Recording:
    """The instance's trace text (STOP's output) as drops, each with its interface (the last
    netif_receive_skb of the same skb before it) and its function."""
    rec = Recording(True)
    m = re.search(r"^# kernel (\S+) reasons (\d+)", text, re.M)
    if m:
        rec.kernel, rec.reasons = m[1], int(m[2]) > 0
    last_dev: dict[str, tuple[str, int]] = {}
    # The stack a drop's trigger printed follows its kfree_skb line at once; any other line
    # in between means the stack is not that drop's.
    current: KernelDrop | None = None
    frames: list[str] | None = None
    for line in text.splitlines():
        if line.lstrip().startswith("=>"):
            if frames is not None:
                frames.append(line.split("=>", 1)[1].strip())
            continue
        if current is not None and frames:
            current.function = _function(frames)
        if line.rstrip().endswith("<stack trace>"):
            frames = [] if current is not None and frames is None else None
            continue
        current, frames = None, None
        e = _EVENT.match(line)
        if not e:
            continue
        if e["event"] == "netif_receive_skb" and (r := _RECV.search(e["rest"])):
            last_dev[r["skb"]] = (r["dev"], int(r["len"]))
        elif e["event"] == "kfree_skb" and (d := _DROP.search(e["rest"])):
            dev, length = last_dev.pop(d["skb"], (None, None))
            current = KernelDrop(float(e["ts"]), dev, d["reason"], length=length)
            rec.drops.append(current)
    if current is not None and frames:
        current.function = _function(frames)
    return rec


@contextmanager
def recording(eng) -> Iterator[Recording]:
    """Record the guest's packet drops while the block runs; the Recording it yields is
    filled on exit. On an engine that is not the lab's VM: not available, and why."""
    rec = Recording(False)
    run = getattr(eng, "guest_exec", None)
    if run is None:
        rec.why_not = f"the {eng.name} engine's kernel is not the lab's own (no drop reasons recorded)"
        yield rec
        return
    name = f"pptp-lab-{os.getpid()}-{secrets.token_hex(3)}"
    try:
        rc, out = run(["sh", "-c", START, "sh", name], CAPS)
    except Exception as exc:  # noqa: BLE001 - the cause is then sought without it
        rc, out = 1, str(exc)
    if rc != 0:
        rec.why_not = f"the guest's kernel tracing could not start: {' '.join(out.split())[-200:]}"
        _stop(run, name)
        yield rec
        return
    try:
        yield rec
    finally:
        got = parse(_stop(run, name))
        rec.available, rec.kernel, rec.reasons, rec.drops = True, got.kernel, got.reasons, got.drops
        if not got.reasons:
            rec.why_not = f"kernel {got.kernel or '?'} gives no drop reasons (only the function)"


def _stop(run, name: str) -> str:
    try:
        return run(["sh", "-c", STOP, "sh", name], CAPS)[1]
    except Exception:  # noqa: BLE001 - a guest gone by now: nothing recorded
        return ""

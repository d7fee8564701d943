"""Kernel tracing of PPTP packets in a lab's filtering nodes (nftables `meta nftrace`, read
with `nft monitor trace`), on only while the lab looks for a cause: during `pptp-lab test`'s
dial and during `pptp-lab why`'s redial. lab.diagnosis.why turns what it records into "dropped by
NODE, table, chain, rule". Rulesets loaded with iptables-restore are traced too: on Debian
they run on the same nf_tables backend."""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

from . import evidence, kdrops, why
from ..up import lifecycle
from ..engines import Engine
from ..core.errors import LabError
from ..core.host import console
from ..model.topology import Topology

FILTERING = ("firewall", "nat", "router")
ON, OFF = "/etc/pptp-lab/trace-on.nft", "/etc/pptp-lab/trace-off.nft"
LOG, PID = "/tmp/pptp-lab-trace.log", "/tmp/pptp-lab-trace.pid"


def filtering_nodes(topo: Topology) -> list[str]:
    return [n for n, node in topo.nodes.items() if node.kind in FILTERING]


@contextmanager
def tracing(eng: Engine, topo: Topology, nodes: list[str]) -> Iterator[dict[str, str]]:
    """Trace PPTP packets in `nodes` while the block runs; the dict it yields is filled with
    each node's `nft monitor trace` text on exit. The trace table is removed in any case."""
    traces: dict[str, str] = {}
    boxes = {n: eng.node(topo.name, n) for n in nodes}
    started = []
    try:
        for n, box in boxes.items():
            eng.put_files(box, {ON: (why.trace_on_script(), 0o600), OFF: (why.trace_off_script(), 0o600)})
            # One exec for both (each costs the guest about 0.3 s of CPU under TCG).
            res = eng.exec(box, f"nft -f {ON} || exit 3; rm -f {LOG}; "
                                f"nohup {why.MONITOR_COMMAND} >{LOG} 2>&1 </dev/null & echo $! >{PID}", check=False)
            if res.rc != 3:
                started.append(n)  # its trace table is in: removed below, whatever follows
            if not res.ok:
                raise LabError(f"{n}: tracing could not start (exit {res.rc}): {res.out.strip()[-300:]}")
        if started:
            time.sleep(0.5)  # the monitors subscribe before the first packet
        yield traces
    finally:
        for n in started:
            box = boxes[n]
            time.sleep(0.2)
            res = eng.exec(box, f"kill $(cat {PID}) 2>/dev/null; sleep 0.2; cat {LOG}; rm -f {LOG} {PID}; "
                                f"nft -f {OFF}", check=False)
            traces[n] = res.out


def redial(eng: Engine, topo: Topology, clients: list[str], timeout: float = 30):
    """Hang the clients up and dial them again with tracing on and the kernel's drops
    recorded; (start time, traces, lab.diagnosis.kdrops.Recording, each node's reason counters
    before: lab.diagnosis.evidence.counters, so the redial's own count)."""
    nodes = filtering_nodes(topo)
    lifecycle.hang_up(eng, topo.name, clients)
    sub = topo.model_copy(update={"nodes": {k: v for k, v in topo.nodes.items() if k in clients or v.pptp_client is None}})
    before = {n: evidence.counters(eng, topo.name, n) for n in [*nodes, *topo.servers]}
    since = time.time()
    with tracing(eng, topo, nodes) as traces, kdrops.recording(eng) as kernel:
        try:
            lifecycle.dial_clients(eng, sub, timeout=timeout)
        except LabError as exc:
            console.print(f"[yellow]{exc}[/]")
    return since, traces, kernel, before

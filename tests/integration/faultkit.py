"""Steps the fault scenarios share (SPEC S23-S28): a bounded traffic stream through a
tunnel, the engine's clock, waiting for a tunnel to go, and the GRE packets each capture
saw. Times are on the engine's clock: the captures' timestamps are."""
from __future__ import annotations

import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from lab.up import capture
from lab.pptp import analyze, reader


def now(lab, node: str = "client") -> float:
    """The engine's clock (a VM's guest clock), read in a node."""
    return float(lab.run(node, "date +%s.%N").out.strip())


def fault_time(active) -> float:
    """When a fault began, on the engine's clock."""
    f = active.fault
    return f.started + (f.clock_offset or 0.0)


def ensure_tunnel(lab, client: str = "client") -> tuple[str, str, str]:
    if lab.tunnel(client)[0] != "up":
        lab.stop_client(client)  # a pppd left waiting (persist, holdoff) would hold the unit
        lab.dial(client, timeout=40)
    return lab.tunnel(client)


def wait_down(lab, client: str, timeout: float) -> float | None:
    """The engine time at which the client's tunnel was first seen gone; None if it stayed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lab.tunnel(client)[0] != "up":
            return now(lab, client)
        time.sleep(0.25)
    return None


def wait_ended(lab, client: str, timeout: float = 20) -> None:
    """Until the client's pppd and pptp have exited (the call's teardown is on the wire)."""
    lab.wait_ended(client, timeout)


def wait_up(lab, client: str, timeout: float) -> float | None:
    """The engine time at which the client's tunnel was first seen up again; None if not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lab.tunnel(client)[0] == "up":
            return now(lab, client)
        time.sleep(0.25)
    return None


@dataclass
class Stream:
    """A ping through the tunnel, bounded by its count, running in the client's node."""
    lab: object
    client: str
    log: str

    def result(self, timeout: float = 90) -> tuple[int, int]:
        """(sent, received) once ping has ended."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.lab.run(self.client, f"cat {self.log}", check=False).out
            m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
            if m:
                return int(m[1]), int(m[2])
            time.sleep(0.5)
        raise AssertionError(f"{self.client}: the ping stream did not end in {timeout:.0f}s")


def stream(lab, client: str, target: str, count: int, interval: float = 0.2) -> Stream:
    log = f"/tmp/stream-{time.monotonic_ns()}.log"
    lab.run(client, f"nohup setsid ping -q -n -i {interval} -c {count} -W 1 {lab.via(client)}{target} >{log} 2>&1 "
                    "</dev/null &")
    return Stream(lab, client, log)


@dataclass
class Gre:
    ts: float
    src: str
    dst: str
    call_id: int
    seq: int | None


def wire(lab, *segments: str) -> dict[str, tuple[list[Gre], list]]:
    """segment -> (GRE packets, analysed sessions) of the live capture, every segment from
    the same snapshot, so a packet forwarded from one to the other is in both or in neither
    but the last few milliseconds."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        files = {f.stem: f for f in capture.snapshot(lab.eng, lab.name, Path(tmp))}
        for seg in segments:
            assert seg in files, f"no capture of segment {seg} (captured: {', '.join(files)})"
            packets = [Gre(p.ts, p.src, p.dst, p.gre.call_id, p.gre.seq if p.gre.payload else None)
                       for p in reader.packets(files[seg]) if p.kind == "gre" and p.gre is not None]
            out[seg] = (packets, analyze([files[seg]]).sessions)
    return out


def seqs(packets: list[Gre], src: str, dst: str, since: float = 0, until: float = float("inf")) -> set[int]:
    """Sequence numbers of the data packets from src to dst seen in [since, until]."""
    return {p.seq for p in packets if p.src == src and p.dst == dst and p.seq is not None and since <= p.ts <= until}


def count(packets: list[Gre], src: str, dst: str, since: float = 0, until: float = float("inf")) -> int:
    return sum(1 for p in packets if p.src == src and p.dst == dst and since <= p.ts <= until)

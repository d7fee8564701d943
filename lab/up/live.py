"""Live captures of a running lab: a pcap stream of one segment (for Wireshark or tshark),
and the PPTP events the analyser sees, one line each, as they happen.

tcpdump runs in the lab's capture container (the engine's namespace, where the segment
bridges are) beside the lab's own capture, which keeps running. The BPF filter is an argv
word, never shell text; the tcpdump started here is stopped when the reader goes away."""
from __future__ import annotations

import io
import json
import secrets
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

from . import capture
from ..core import names
from .. import pptp
from ..core.errors import LabError
from ..pptp.reader import packets
from ..pptp.session import Analyzer, judge

# sh runs tcpdump with the segment's bridge and the filter as positional arguments ("$@"):
# no value is ever part of the script text.
TCPDUMP = 'echo $$ > "$1"; shift; exec tcpdump -U -n -s 0 -w - -i "$@" 2>/dev/null'


def _box(eng, lab: str):
    box = capture.container(eng, lab)
    if box is None or box.status != "running":
        raise LabError(f"lab {lab} has no capture running (`pptp-lab up` captures unless --no-capture)")
    return box


def segments(eng, lab: str) -> dict[str, str]:
    """segment -> bridge of a lab's capture."""
    return json.loads(_box(eng, lab).labels.get(names.SEGMENTS, "{}"))


def stop(eng, lab: str, pidfiles: list[str]) -> None:
    """End the tcpdumps started for live streams (their pid files name them)."""
    if pidfiles:
        eng.exec(_box(eng, lab), ["sh", "-c", 'for f; do kill "$(cat "$f")" 2>/dev/null; rm -f "$f"; done',
                                       "sh", *pidfiles], check=False)


@contextmanager
def stream(eng, lab: str, segment: str, bpf: str = "",
           pidfiles: list[str] | None = None) -> Iterator[Iterator[bytes]]:
    """The pcap bytes of one segment, live, until the caller stops reading. A filter tcpdump
    refuses ends the stream at once and raises LabError."""
    box = _box(eng, lab)
    bridges = json.loads(box.labels.get(names.SEGMENTS, "{}"))
    if segment not in bridges:
        raise LabError(f"lab {lab} has no segment {segment!r} (segments: {', '.join(sorted(bridges))})")
    pidfile = f"{capture.DIR}/live-{secrets.token_hex(6)}.pid"
    if pidfiles is not None:
        pidfiles.append(pidfile)
    argv = ["sh", "-c", TCPDUMP, "sh", pidfile, bridges[segment]] + ([bpf] if bpf else [])
    stopped = False
    with eng.exec_stream(box, argv) as (chunks, exit_code):
        try:
            yield chunks
        except BaseException:
            stopped = True
            raise
        finally:
            stop(eng, lab, [pidfile])
        code = exit_code()
    if not stopped and code not in (None, 0, 143):  # 143: ended by our kill (SIGTERM)
        raise LabError(f"tcpdump on segment {segment} of lab {lab} ended with exit {code}"
                       + (f": is --filter {bpf!r} a valid BPF expression?" if bpf else ""))


class _Chunks(io.RawIOBase):
    """A file-like view of a generator of byte chunks (blocking reads), for the pcap reader."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks, self.rest = chunks, b""

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        while not self.rest:
            try:
                self.rest = next(self.chunks)
            except StopIteration:
                return 0
        n = min(len(buf), len(self.rest))
        buf[:n], self.rest = self.rest[:n], self.rest[n:]
        return n


def events(chunks: Iterator[bytes], source: str) -> Iterator[str]:
    """One line per new PPTP event the analyser sees on a live stream: control messages and
    PPP steps as they arrive, phase changes, and GRE losses as they are counted."""
    a = Analyzer(source=source)
    shown: dict[int, int] = {}
    phases: dict[int, str] = {}
    lost: dict[int, int] = {}
    for pkt in packets(io.BufferedReader(_Chunks(chunks))):
        a.add(pkt)
        for s in a.sessions:
            if s.end < pkt.ts and shown.get(s.id) == len(s.events):
                continue  # not touched by this packet (a live stream's times only grow)
            who = f"{source} #{s.id} {s.client} -> {s.server}"
            for e in s.events[shown.get(s.id, 0):]:
                yield f"{_clock(e.ts)} {who} {e.sender}: {e.what}" + (f" ({e.detail})" if e.detail else "")
            shown[s.id] = len(s.events)
            phase, verdict = judge(s)
            if phase != phases.get(s.id):
                phases[s.id] = phase
                # Mid-session, a verdict about why a session stopped is not yet true: the
                # phase it is in is; the verdict is shown once the tunnel is up or down.
                yield f"{_clock(pkt.ts)} {who} phase {phase}" + (
                    f": {verdict}" if phase in ("data", "teardown") else "")
            n = sum(d.lost for c in s.calls for d in (c.to_server, c.to_client) if d)
            if n > lost.get(s.id, 0):
                yield f"{_clock(pkt.ts)} {who} GRE lost {n - lost.get(s.id, 0)} (total {n})"
                lost[s.id] = n


def _clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int(ts * 1000) % 1000:03d}"


def watch(eng, lab: str, write: Callable[[str], None], done: threading.Event | None = None) -> None:
    """Print the events of every segment of a lab, live, until `done` is set or Ctrl-C."""
    done = done or threading.Event()
    errors: list[BaseException] = []
    pidfiles: list[str] = []

    def follow(segment: str) -> None:
        try:
            with stream(eng, lab, segment, "tcp port 1723 or ip proto 47", pidfiles) as chunks:
                for line in events(chunks, segment):
                    write(line)
                    if done.is_set():
                        return
        except BaseException as exc:  # noqa: BLE001  (reported by the main thread)
            errors.append(exc)

    threads = [threading.Thread(target=follow, args=(seg,), daemon=True) for seg in segments(eng, lab)]
    for t in threads:
        t.start()
    try:
        while any(t.is_alive() for t in threads) and not done.wait(0.5):
            pass
    finally:
        done.set()
        stop(eng, lab, pidfiles)  # the reader threads may be blocked on their streams
    if errors and not isinstance(errors[0], (KeyboardInterrupt, BrokenPipeError)):
        raise errors[0]

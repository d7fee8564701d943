"""Traffic capture on every lab segment: tcpdump on each network's bridge in the engine's
own namespace (a promiscuous bridge passes every frame up to it), in one capture container
per lab. Collected pcaps go to runs/<lab>/<run-id>/ with a manifest."""
from __future__ import annotations

import io
import json
import os
import re
import tarfile
import time
from datetime import datetime, timezone
from pathlib import Path

import docker.errors

from . import faultlog
from ..core import names
from ..engines import Engine
from ..engines.docker import remove_container
from ..core.errors import LabError
from ..core.paths import private_dir, runs_dir

ROLE = "capture"
DIR = "/captures"
WAIT = 30.0  # seconds for tcpdump to listen on every segment
BUFFER_KIB = 8192  # tcpdump -B: its kernel capture buffer per segment
MANIFEST = "manifest.json"
# tcpdump's statistics: what the kernel could not hand it is missing from the capture, not
# from the network. At exit a line each ("12 packets received by filter"); on SIGUSR1 one
# line ("tcpdump: 6 packets captured, 12 packets received by filter, 0 packets dropped by kernel").
_STATS = re.compile(r"\b(\d+) packets? (captured|received by filter|dropped by kernel)\b")


def container(eng: Engine, lab: str):
    found = eng.containers(lab, role=ROLE)
    return found[0] if found else None


def start(eng: Engine, lab: str, image: str):
    """Start capturing on every network of the lab (idempotent: one capture per lab)."""
    existing = container(eng, lab)
    if existing is not None and existing.status == "running":
        return existing
    if existing is not None:
        existing.remove(force=True)
    segments = {n.attrs["Labels"][names.NETWORK]: eng.bridge(n) for n in eng.networks(lab)}
    script = [f"mkdir -p {DIR}", f"date +%s.%N > {DIR}/started"]
    # --immediate-mode: each packet reaches tcpdump at once, not when the kernel's capture
    # buffer block times out (up to a second or more under emulation), so a snapshot read
    # right after a dial or a ping holds its packets; -U writes each one out.
    # -B: that mode's ring has one slot per packet, each of 64 KiB on a bridge with offloads,
    # so the default 2 MiB held 32 packets: 20 tunnels' pings starting at once while the
    # guest was starved overflowed it (S28 once saw 7 GRE packets missing on one segment
    # that the next segment and every ping's reply showed delivered). 8 MiB: 128 packets.
    for seg, br in segments.items():
        script.append(f"tcpdump -i {br} --immediate-mode -B {BUFFER_KIB} -U -n -s 0 -w {DIR}/{seg}.pcap "
                      f"2>{DIR}/{seg}.log &")
    script.append("trap 'kill -INT $(jobs -p) 2>/dev/null; wait; exit 0' TERM INT; wait")
    box = eng.run_helper(lab, ROLE, image, "\n".join(script), {names.SEGMENTS: json.dumps(segments)})
    # tcpdump needs a moment to open its interfaces; nothing of the lab's traffic may precede it.
    deadline = time.monotonic() + WAIT
    probe = " ".join(f"grep -q 'listening on' {DIR}/{seg}.log 2>/dev/null || echo {seg};" for seg in segments)
    while True:
        try:
            res = eng.exec(box, probe, check=False)  # one exec per poll: execs are slow
            missing = [seg for seg in res.out.split() if seg in segments] if res.ok else list(segments)
        except docker.errors.APIError:  # the container ended: every tcpdump in it failed
            missing = list(segments)
        if not missing:
            return box
        box.reload()
        if time.monotonic() > deadline or box.status != "running":
            logs = _logs(eng, box, missing)
            detail = "; ".join(f"{seg}: {' '.join(logs[seg].split())[:160]}" if logs.get(seg)
                               else f"{seg}: no output" for seg in missing)
            raise LabError(f"lab {lab}: no capture on segment(s) {', '.join(missing)} after "
                           f"{WAIT:.0f}s ({detail})")
        time.sleep(0.3)


def _logs(eng: Engine, box, segments: list[str]) -> dict[str, str]:
    """tcpdump's own words per segment, read through the archive API (works on a stopped
    container too)."""
    try:
        with tarfile.open(fileobj=io.BytesIO(eng.get_archive(box, DIR))) as tar:
            return {seg: tar.extractfile(m).read().decode(errors="replace").strip()
                    for seg in segments for m in tar.getmembers() if m.isfile() and m.name.endswith(f"/{seg}.log")}
    except (docker.errors.APIError, tarfile.TarError):
        return {}


def stats(log: str) -> dict[str, int]:
    """tcpdump's last statistics in its log: captured, received (by filter) and dropped (by
    kernel), each only when it printed them."""
    keys = {"captured": "captured", "received by filter": "received", "dropped by kernel": "dropped"}
    return {keys[what]: int(n) for n, what in _STATS.findall(log)}


def _extract(eng: Engine, box, dest: Path) -> tuple[list[Path], dict[str, str]]:
    """The pcaps copied into dest, and each segment's tcpdump log (from the same archive)."""
    data = io.BytesIO(eng.get_archive(box, DIR))
    private_dir(dest)
    out, logs = [], {}
    with tarfile.open(fileobj=data) as tar:
        for m in tar.getmembers():
            if m.isfile() and m.name.endswith(".pcap"):
                target = dest / Path(m.name).name
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(tar.extractfile(m).read())
                out.append(target)
            elif m.isfile() and m.name.endswith(".log"):
                logs[Path(m.name).stem] = tar.extractfile(m).read().decode(errors="replace")
    return out, logs


def clock_offset(eng: Engine, box) -> float | None:
    """The engine's clock minus the host's, to within half an exec: the capture's timestamps
    are the engine's (a VM's guest clock is not kept in step with the host's)."""
    before = time.time()
    res = eng.exec(box, ["date", "+%s.%N"], check=False)
    after = time.time()
    try:
        return round(float(res.out.strip()) - (before + after) / 2, 3)
    except ValueError:
        return None


def snapshot(eng: Engine, lab: str, dest: Path) -> list[Path]:
    """Copy the pcaps as they are now, capture still running (for status and checks)."""
    box = container(eng, lab)
    return _extract(eng, box, dest)[0] if box is not None else []


def drops(eng: Engine, lab: str) -> dict[str, int]:
    """segment -> packets its tcpdump has lost so far (the kernel's count, asked for with
    SIGUSR1); {} without a running capture."""
    box = container(eng, lab)
    if box is None or box.status != "running":
        return {}
    eng.exec(box, "pkill -USR1 tcpdump; sleep 0.3", check=False)
    return {seg: got["dropped"] for seg, log in _logs(eng, box, list(_segments(box))).items()
            if "dropped" in (got := stats(log))}


def _segments(box) -> dict[str, str]:
    return json.loads(box.labels.get(names.SEGMENTS, "{}"))


def stop(eng: Engine, lab: str) -> Path | None:
    """Stop capturing, collect the pcaps into runs/<lab>/<run-id>/ with manifest.json."""
    box = container(eng, lab)
    if box is None:
        return None
    segments = _segments(box)
    started = ""
    if box.status == "running":
        started = eng.exec(box, f"cat {DIR}/started", check=False).out.strip()
        eng.exec(box, "pkill -INT tcpdump; sleep 0.5", check=False)  # flush the pcaps
    stopped = time.time()
    run_id = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    dest = private_dir(runs_dir() / lab) / run_id
    try:
        files, logs = _extract(eng, box, dest)
    except docker.errors.APIError:
        # Never started (an `up` killed between creating and starting it): nothing captured.
        remove_container(box)
        return None
    since = float(started) if started else None
    write_manifest(dest, lab, run_id, files, segments, since, stopped, faultlog.take(lab, since),
                   {seg: stats(log) for seg, log in logs.items()})
    remove_container(box)
    return dest


def write_manifest(dest: Path, lab: str, run_id: str, files: list[Path], segments: dict,
                   started: float | None, stopped: float, faults: list[dict] | None = None,
                   tcpdump: dict[str, dict[str, int]] | None = None) -> Path:
    """manifest.json: the run's captures (what `pptp-lab report RUN_DIR` reads back), each
    with tcpdump's own counts when it gave them (`dropped`: packets the capture lost), and
    the faults injected while they ran (lab.up.fault records), when there were any."""
    tcpdump = tcpdump or {}
    manifest = {"lab": lab, "run_id": run_id, "captures": [
        {"segment": f.stem, "file": f.name, "interface": segments.get(f.stem), "node": "engine bridge",
         "start": started, "stop": stopped, "bytes": f.stat().st_size,
         **({"tcpdump": tcpdump[f.stem]} if tcpdump.get(f.stem) else {})}
        for f in sorted(files)]}
    if faults:
        manifest["faults"] = faults
    path = dest / MANIFEST
    path.write_text(json.dumps(manifest, indent=1))
    return path

"""A booted guest, saved: after a cold boot (Docker ready, node image loaded) QEMU's migration
writes the guest's RAM and device state to a file, and the disk it booted on is kept frozen
beside it. A later `vm up` starts QEMU on a fresh overlay of that disk with `-incoming`
from the file: seconds instead of a boot. Cached by every input the saved state depends on
(guest disk, node image, QEMU, accelerator, memory, CPUs), in cache/vmsnap-<key>/ (another
kernel's in cache/vmsnap-<kernel>-<key>/).

After a restore the guest's clock is set from the host (to within a Docker API round trip)
and its kernel RNG gets fresh seed:
QEMU's vmgenid device tells the kernel it is a new VM (the kernel reseeds at once), and host
randomness is mixed into /dev/urandom, so no two restores replay call IDs or MPPE keys."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Callable

from qemu.qmp import QMPError
from qemu.qmp.legacy import QEMUMonitorProtocol

from ..core import artifacts, suites
from ..core.errors import LabError

FORMAT = "2"  # bump when what is saved, or how, changes (2: tracepoints held, vm._hold_tracepoints)
DISABLE_ENV = "PPTP_LAB_VM_SNAPSHOT"  # =0: always boot cold (and save nothing); =1: always snapshot
SAVE_TIMEOUT = 180
# bullseye's kernel (5.10) has no vmgenid driver: a restored guest would not reseed its RNG
# at once and could replay call IDs and MPPE keys, so it boots cold unless asked (=1).
COLD_KERNELS = ("bullseye",)


def enabled(kernel: str = suites.DEFAULT) -> bool:
    """Whether `vm up` of this kernel's VM restores a snapshot: $PPTP_LAB_VM_SNAPSHOT when
    set, else yes except for COLD_KERNELS."""
    value = os.environ.get(DISABLE_ENV, "")
    if value:
        return value != "0"
    return kernel not in COLD_KERNELS


def key(vm_key: str, image_key: str, accel: str, memory_mb: int, cpus: int, qemu: str) -> str:
    version = subprocess.run([qemu, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    return artifacts.input_key([], vm_key, image_key, accel, str(memory_mb), str(cpus), version, FORMAT)


def monitor(sock: Path, running: Callable[[], bool], timeout: float = 30) -> QEMUMonitorProtocol:
    """A QMP connection to the QEMU listening on sock (it may still be starting); `running`
    tells whether that QEMU is still there."""
    deadline = time.monotonic() + timeout
    while True:
        if not running():
            raise LabError("QEMU exited before its monitor answered")
        qmp = QEMUMonitorProtocol(str(sock))
        try:
            qmp.connect()
            qmp.settimeout(60)
            return qmp
        except (OSError, QMPError):
            qmp.close()
            if time.monotonic() > deadline:
                raise LabError(f"QEMU's monitor at {sock} did not answer in {timeout:.0f}s")
            time.sleep(0.1)


def save(qmp: QEMUMonitorProtocol, ram: Path) -> None:
    """Pause the guest and write its RAM and device state to `ram` (QEMU's migration stream)."""
    qmp.cmd("stop")
    # QEMU runs exec: URIs through /bin/sh: the cache path (PPTP_LAB_CACHE) is quoted.
    qmp.cmd("migrate", uri=f"exec:cat > {shlex.quote(str(ram))}")
    deadline = time.monotonic() + SAVE_TIMEOUT
    while time.monotonic() < deadline:
        info = qmp.cmd("query-migrate")
        status = info.get("status")
        if status == "completed":
            return
        if status in ("failed", "cancelled"):
            raise LabError(f"saving the VM failed: {info.get('error-desc', status)}")
        time.sleep(0.2)
    raise LabError(f"saving the VM took over {SAVE_TIMEOUT}s")


def quit(qmp: QEMUMonitorProtocol) -> None:
    """Stop QEMU; it may close the monitor before its reply arrives (an EOF here)."""
    try:
        qmp.cmd("quit")
    except (EOFError, QMPError):
        pass


def close(qmp: QEMUMonitorProtocol) -> None:
    """Close the connection; after `quit` the QEMU may have closed it first, which the QMP
    library reports as an EOFError from close (seen: one save in two lost that way, the
    saved state itself complete)."""
    try:
        qmp.close()
    except (EOFError, OSError, QMPError):
        pass


def resume(qmp: QEMUMonitorProtocol, timeout: float = 120) -> None:
    """Wait for the incoming state to load, then run the guest (it was saved paused)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = qmp.cmd("query-status")["status"]
        if status == "running":
            return
        if status in ("paused", "postmigrate", "prelaunch"):
            qmp.cmd("cont")
            return
        if status != "inmigrate":
            raise LabError(f"the restored VM is {status}")
        time.sleep(0.1)
    raise LabError(f"loading the saved VM took over {timeout:.0f}s")


def clock_offset(client) -> float:
    """Host time minus the guest's, read through Docker's API (SystemTime, ns resolution);
    the round trip's midpoint stands for the moment it was read (tens of ms here)."""
    t0 = time.time()
    stamp = client.info()["SystemTime"]
    t1 = time.time()
    # RFC 3339 with up to 9 fractional digits; Python takes 6.
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", stamp)
    if not m:
        raise LabError(f"the guest's Docker gave an unreadable SystemTime {stamp!r}")
    guest = datetime.fromisoformat(m.group(1) + (m.group(3).replace("Z", "+00:00"))).timestamp()
    guest += float("0." + (m.group(2) or "0"))
    return (t0 + t1) / 2 - guest


def freshen_argv(offset: float) -> list[str]:
    """The command run in a guest to shift its clock by `offset` seconds (measured by
    clock_offset: a shift, so the time a container takes to start does not matter) and mix
    host randomness into the kernel's pool (after a restore vmgenid has made it reseed)."""
    script = ('now=$(date +%s.%N) && '
              'date -s "@$(awk -v n="$now" -v o="$1" \'BEGIN { printf "%.6f", n + o }\')" >/dev/null && '
              'printf %s "$2" > /dev/urandom')
    return ["sh", "-c", script, "sh", f"{offset:.6f}", os.urandom(64).hex()]

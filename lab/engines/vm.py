"""The VM engine: Debian's kernel (which has PPP) under QEMU, with dockerd inside.

The guest disk is built from Debian packages only (images/rootfs.sh vm) and cached by the
hash of its inputs. The first boot is saved (lab.engines.snapshot) and later `vm up`s restore
it on a fresh overlay; with snapshots off (PPTP_LAB_VM_SNAPSHOT=0) each boot is cold, on a
qcow2 overlay kept in the state directory (images loaded survive `vm down`/`vm up`). The guest's Docker API is
forwarded to a 127.0.0.1 port only, and its user-mode network is restricted (no way out).

Each kernel (lab.core.suites.KERNELS: a Debian suite's kernel with that suite's userland) is a VM
of its own: its own disk, snapshot, state directory, port and overlay, so VMs of several
kernels run at once. bookworm's keeps the names it had before kernels were a choice."""
from __future__ import annotations

import fcntl
import http.client
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import docker
import docker.errors
from rich.markup import escape
import requests
import urllib3

from ..core import artifacts, names, suites
from ..core.errors import LabError
from ..core.host import check_suite, console, debian_mirror, require_binary, require_root, run_logged
from ..core.paths import cache_dir, private_dir, resource, state_dir
from . import guestwatch, snapshot, tracehold
from .docker import DockerEngine, connect

QEMU = "qemu-system-x86_64"
MEMORY_MB = 2048
CPUS = 2
DISK_SIZE = "8G"
BOOT_TIMEOUT = 240  # seconds to Docker-ready; TCG on a busy 2-core host needs headroom
GUEST_DOCKER_PORT = 2375


# Several VMs may run side by side: one or more per kernel (`pptp-lab test -j N`). bookworm's
# instance 1 lives in state/vm, its instance N in state/vmN; another kernel's in
# state/vm-<kernel> and state/vm-<kernel>-N. Each has its own overlay, port and control
# socket. A process drives one VM at a time (`use`).
_instance = 1
_kernel = suites.DEFAULT


def use(instance: int, kernel: str = suites.DEFAULT) -> None:
    global _instance, _kernel
    if not 1 <= instance <= 16:
        raise LabError(f"VM instance {instance}: use 1 to 16")
    _kernel = suites.check_kernel(kernel, "VM kernel ")
    _instance = instance


def instance() -> int:
    return _instance


def kernel() -> str:
    return _kernel


def current() -> tuple[int, str]:
    """(instance, kernel) of the VM driven now: for use(*was) after driving others."""
    return _instance, _kernel


def vm_dir() -> Path:
    return private_dir(VmEngine.state_dir_of(_instance, _kernel))


def parse_state_dir(name: str) -> tuple[int, str] | None:
    """(instance, kernel) of a state directory's name (vm, vm2, vm-trixie, vm-trixie-2)."""
    m = re.fullmatch(r"vm([1-9][0-9]?)?", name)
    if m:
        return int(m.group(1) or 1), suites.DEFAULT
    m = re.fullmatch(r"vm-([a-z-]+?)(?:-([1-9][0-9]?))?", name)
    if m and m.group(1) in suites.KERNELS and m.group(1) != suites.DEFAULT:
        return int(m.group(2) or 1), m.group(1)
    return None


def known() -> list[tuple[int, str]]:
    """(instance, kernel) of every VM that has a state file: running, booting or crashed."""
    found = [parse_state_dir(d.name) for d in state_dir().glob("vm*") if (d / "state.json").is_file()]
    return sorted((x for x in found if x), key=lambda x: (suites.KERNELS.index(x[1]), x[0]))


@dataclass
class VmState:
    pid: int
    port: int
    accel: str
    key: str
    overlay: str
    started: float
    restored: bool = False  # from a snapshot: its console never shows the boot lines
    stopping: bool = False  # `vm down` is powering it off: its watchers stand down

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"


# ---------------------------------------------------------------- build

def vm_key(kernel: str = suites.DEFAULT) -> str:
    images = resource("images")
    return artifacts.input_key(
        artifacts.tree_files(images / "rootfs.sh", images / "vm", *suites.rootfs_inputs(images, kernel)),
        debian_mirror(kernel), kernel, DISK_SIZE)


def build(kernel: str | None = None) -> Path:
    """The cached guest artefacts directory (disk.img, vmlinuz, initrd.img) of `kernel`
    (default: the VM driven now); built if missing."""
    kernel = kernel or _kernel
    key = vm_key(kernel)
    name = suites.artefact("vm", kernel)

    def make(tmp: Path) -> None:
        require_root("building the VM disk")
        require_binary("debootstrap", "debootstrap")
        mkfs = require_binary("mkfs.ext4", "e2fsprogs")
        mirror = debian_mirror(kernel)
        if kernel != suites.DEFAULT:
            check_suite(mirror, kernel)
        log = tmp.parent / f"{name}-{key}.log"
        rootfs = tmp / "rootfs"
        try:
            run_logged(f"VM disk{'' if kernel == suites.DEFAULT else ' ' + kernel}: debootstrap (kernel, docker.io)",
                       suites.rootfs_argv(resource("images"), "vm", rootfs, mirror, kernel), log)
            boot = rootfs / "boot"
            kernels = sorted(boot.glob("vmlinuz-*"))
            initrds = sorted(boot.glob("initrd.img-*"))
            if not kernels or not initrds:
                raise LabError(f"VM disk: no kernel or initrd under {boot}: see {log}")
            shutil.copy(kernels[-1], tmp / "vmlinuz")
            shutil.copy(initrds[-1], tmp / "initrd.img")
            run_logged("VM disk: mkfs.ext4", [mkfs, "-q", "-F", "-L", "pptp-lab", "-d", str(rootfs),
                                              str(tmp / "disk.img"), DISK_SIZE], log)
        finally:
            subprocess.run(["rm", "-rf", str(rootfs)], check=False)

    return artifacts.cached_dir(name, key, make)


def build_beside() -> threading.Thread | None:
    """When this VM's disk is to be built (debootstrap, then mkfs: minutes), the node image's
    rootfs (another debootstrap, on the host too) is built at the same time in a thread, so a
    first `vm up` waits for the longer of the two, not their sum. None when the disk is
    cached (the node image, if it is missing, is built when it is needed) or the rootfs is."""
    from .images import base_key, base_tarball

    userland = suites.userland(_kernel)
    disk = cache_dir() / f"{suites.artefact('vm', _kernel)}-{vm_key(_kernel)}"
    rootfs = cache_dir() / f"{suites.artefact('node', userland)}-{base_key(userland)}"
    if disk.is_dir() or rootfs.is_dir():
        return None

    def run() -> None:
        try:
            base_tarball(userland)
        except Exception as exc:  # noqa: BLE001 - said here; it is built again when needed
            console.print(f"[yellow]node image rootfs, built beside the VM disk: {escape(str(exc))}[/]", soft_wrap=True)

    t = threading.Thread(target=run, name="node-rootfs", daemon=False)
    t.start()
    return t


# ---------------------------------------------------------------- state

# The functions taking `d` (a VM state directory) work on any VM, not only the one driven
# now: the guest watchdog's thread uses them.

def _state_file(d: Path | None = None) -> Path:
    return (d or vm_dir()) / "state.json"


def read_state(d: Path | None = None) -> VmState | None:
    try:
        return VmState(**json.loads(_state_file(d).read_text()))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as exc:
        raise LabError(f"VM state file {_state_file(d)} is unreadable ({exc}): "
                       "run `pptp-lab vm down` to clear it") from exc


def _write_state(st: VmState) -> None:
    tmp = _state_file().with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(st), indent=1))
    tmp.rename(_state_file())


def _clear_state(d: Path | None = None) -> None:
    _state_file(d).unlink(missing_ok=True)


def alive(pid: int, d: Path | None = None) -> bool:
    """True when pid is a QEMU of ours (not a reused pid of something else)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    # The directory with its slash: state/vm must not match state/vm2's QEMU.
    return b"qemu-system" in cmdline and (str(d or vm_dir()) + "/").encode() in cmdline


def client_for(st: VmState, timeout: int = 600) -> docker.DockerClient:
    return connect(st.url, timeout=timeout)


def docker_ready(st: VmState) -> bool:
    try:
        return bool(client_for(st, timeout=3).ping())
    except Exception:  # any failure to answer means not ready yet
        return False


# ---------------------------------------------------------------- accel

def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def probe_kvm(kernel: Path) -> tuple[bool, str]:
    """Boot the guest kernel under KVM to a deliberate root-mount panic; KVM works only if
    that finishes. On some hosts /dev/kvm exists but hangs or asserts (ENVIRONMENT.md)."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "no usable /dev/kvm"
    cache = cache_dir() / "kvm-probe.json"  # per host boot, shared by every state dir
    try:
        seen = json.loads(cache.read_text())
        if seen.get("boot_id") == _boot_id():
            return seen["ok"], seen["why"] + " (cached for this host boot)"
    except (OSError, ValueError, KeyError):
        pass
    cmd = [QEMU, "-accel", "kvm", "-m", "256", "-nodefaults", "-display", "none", "-no-reboot",
           "-serial", "stdio", "-kernel", str(kernel),
           "-append", "console=ttyS0 panic=-1 root=/dev/pptp-lab-probe rootwait=0"]
    start = time.monotonic()
    try:
        out = subprocess.run(cmd, capture_output=True, timeout=20).stdout
        ok = b"Kernel panic" in out
        why = (f"KVM booted the kernel in {time.monotonic() - start:.1f}s" if ok
               else "KVM boot did not reach the kernel's root mount")
    except subprocess.TimeoutExpired:
        ok, why = False, "KVM boot hung for 20s"
    cache.write_text(json.dumps({"boot_id": _boot_id(), "ok": ok, "why": why}))
    return ok, why


def choose_accel(kernel: Path) -> tuple[str, str]:
    forced = os.environ.get("PPTP_LAB_VM_ACCEL")
    if forced:
        if forced not in ("kvm", "tcg"):
            raise LabError(f"PPTP_LAB_VM_ACCEL={forced}: use kvm or tcg")
        return forced, "set by PPTP_LAB_VM_ACCEL"
    ok, why = probe_kvm(kernel)
    return ("kvm", why) if ok else ("tcg", why + "; using TCG (software emulation)")


# ---------------------------------------------------------------- lifecycle

def _pick_port() -> int:
    # The fixed port is the first bookworm VM's: VMs side by side each take a free one.
    wanted = os.environ.get("PPTP_LAB_VM_PORT") if (_instance, _kernel) == (1, suites.DEFAULT) else None
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", int(wanted or 0)))
        except OSError as exc:
            raise LabError(f"127.0.0.1:{wanted} is in use ({exc.strerror}): set PPTP_LAB_VM_PORT "
                           "to a free port or stop what holds it") from exc
        except ValueError as exc:
            raise LabError(f"PPTP_LAB_VM_PORT={wanted} is not a port number") from exc
        return s.getsockname()[1]


def tcg_threads() -> str:
    value = os.environ.get("PPTP_LAB_VM_TCG", "multi")
    if value not in ("single", "multi"):
        raise LabError(f"PPTP_LAB_VM_TCG={value}: use single or multi")
    return value


def _qemu_cmd(art: Path, overlay: Path, accel: str, port: int) -> list[str]:
    d = vm_dir()
    accel_args = (["-accel", "kvm"] if accel == "kvm"
                  else ["-accel", f"tcg,thread={tcg_threads()}", "-cpu", "max"])
    return [
        QEMU, *accel_args, "-smp", str(CPUS), "-m", str(MEMORY_MB),
        "-name", f"pptp-lab-{d.name}", "-nodefaults", "-display", "none", "-no-reboot",
        "-kernel", str(art / "vmlinuz"), "-initrd", str(art / "initrd.img"),
        "-append", "console=ttyS0 root=LABEL=pptp-lab rw init=/sbin/lab-init panic=-1 quiet",
        "-drive", f"file={overlay},if=virtio,format=qcow2,cache=unsafe",
        "-netdev", f"user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:{GUEST_DOCKER_PORT}",
        "-device", "virtio-net-pci,netdev=n0",
        "-chardev", f"socket,id=ctl,path={d / 'ctl.sock'},server=on,wait=off",
        "-device", "virtio-serial-pci", "-device", "virtserialport,chardev=ctl,name=lab.ctl",
        "-serial", f"file:{d / 'console.log'}",
        # A new generation ID on every start: a restored guest's kernel reseeds its RNG.
        "-device", "vmgenid",
        "-qmp", f"unix:{d / 'qmp.sock'},server=on,wait=off",
    ]


def _overlay(art: Path, key: str) -> Path:
    overlay = vm_dir() / f"overlay-{key}.qcow2"
    for old in vm_dir().glob("overlay-*.qcow2"):
        if old != overlay:
            old.unlink()  # its base disk changed: the old overlay is meaningless
    if not overlay.exists():
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw",
                        "-b", str(art / "disk.img"), str(overlay)], check=True)
    overlay.chmod(0o600)  # the guest's disk: node files with secrets end up in it
    return overlay


def _check_disk(disk: Path) -> None:
    """After QEMU died: repair the kept overlay it left (leaked clusters, metadata it had not
    written); one past repair is removed (the next cold boot makes a fresh one). A restore's
    run.qcow2 is made anew anyway."""
    if disk.parent != vm_dir() or not disk.name.startswith("overlay-") or not disk.is_file():
        return
    rc = subprocess.run(["qemu-img", "check", "-q", "-r", "all", str(disk)], capture_output=True).returncode
    if rc not in (0, 3):  # 3: leaked clusters left, harmless
        console.print(f"[yellow]the dead VM's disk {disk.name} is damaged (qemu-img check exit {rc}): "
                      "removed it; the node image is loaded again[/]")
        disk.unlink()


def _tail(path: Path, lines: int = 3) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def up() -> VmState:
    """Start the VM (idempotent) and return its state once its Docker answers. Processes
    starting the same instance at once (pytest-xdist workers) take turns: one boots it."""
    with open(vm_dir() / ".up.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        guestwatch.holding.add(str(vm_dir()))  # this process's watchers act without the lock
        try:
            st = _up()
        finally:
            guestwatch.holding.discard(str(vm_dir()))
    restored = guestwatch.mark_restored(vm_dir(), time.time())
    if restored:
        console.print(f"[yellow]VM {_engine_name()}: the guest that {restored.state} at {restored.when()} "
                      f"({escape(restored.reason)}) was replaced by a {'restored' if st.restored else 'booted'} one[/]")
    return st


def _engine_name(number: int | None = None, kernel: str | None = None) -> str:
    number, kernel = number or _instance, kernel or _kernel
    name = "vm" if number == 1 else f"vm:{number}"
    return name if kernel == suites.DEFAULT else f"{name} ({kernel})"


def lose(d: Path, generation: float, verdict: guestwatch.Verdict, name: str) -> guestwatch.Incident | None:
    """Stop a guest judged hung or dead and write its incident; the caller holds d's
    .up.lock. Nothing happens when the state file names another generation by now (another
    process restored it, or `vm down` stopped it)."""
    st = read_state(d)
    if st is None or st.started != generation or st.stopping:
        return None
    at = time.time()
    kept = guestwatch.keep_console(d, at)
    if alive(st.pid, d):
        os.kill(st.pid, signal.SIGKILL)  # hung or frozen: it would not act on SIGTERM
        deadline = time.monotonic() + 10
        while alive(st.pid, d) and time.monotonic() < deadline:
            _reap(st.pid)
            time.sleep(0.1)
    inc = guestwatch.Incident(vm=name, state=verdict.state, reason=verdict.reason, at=at, generation=generation,
                              pid=st.pid, lines=guestwatch.evidence(kept.read_text(errors="replace"))
                              if verdict.lines else [], console=str(kept))
    guestwatch.record(d, inc)
    _clear_state(d)
    return inc


def _on_lost(d: Path, generation: float, verdict: guestwatch.Verdict) -> None:
    """A watcher thread's action (it must not use the VM driven now: it names its own d)."""
    parsed = parse_state_dir(d.name)
    name = _engine_name(*parsed) if parsed else d.name
    if str(d) in guestwatch.holding:  # our main thread holds the lock, booting or saving this guest
        inc = lose(d, generation, verdict, name)
    else:
        with open(d / ".up.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            inc = lose(d, generation, verdict, name)
    if inc:  # escaped: its console lines hold "[pptpd:18600]"
        console.print(f"[red]{escape(inc.line())}[/]", soft_wrap=True)


def _watch(st: VmState) -> None:
    guestwatch.watch(vm_dir(), _engine_name(), st.pid, st.port, st.started, _on_lost)


def _up() -> VmState:
    st = read_state()
    if st and alive(st.pid):
        if docker_ready(st):
            _watch(st)
            return st
        st = _wait_found(st)  # None: it was hung, and is stopped now
        if st:
            _watch(st)
            return st
    elif st:
        console.print(f"[yellow]previous VM (pid {st.pid}) is gone; starting a new one[/]")
        _clear_state()
    strays = _kill_strays()  # a QEMU of ours that no state file names would hold the disk lock
    if strays:
        console.print(f"[yellow]{strays.lstrip('; ')}[/]")
    require_binary(QEMU, "qemu-system-x86")
    require_binary("qemu-img", "qemu-utils")
    if st:
        _check_disk(Path(st.overlay))
    beside = build_beside()
    try:
        art = build()
    finally:
        if beside is not None:
            beside.join()  # its artefact is cached (or its failure said) before anything else
    key = art.name.removeprefix("vm-")
    accel, why = choose_accel(art / "vmlinuz")
    console.print(f"VM accelerator: {accel} ({why})")
    if snapshot.enabled(_kernel):
        try:
            snap = _snapshot(art, accel)
        except Exception as exc:  # noqa: BLE001 - whatever stopped the save, a plain boot still works
            # QEMU's own words first: the cold boot below overwrites its log.
            said = _tail(vm_dir() / "qemu.log") or "nothing in qemu.log"
            console.print(f"[yellow]no VM snapshot ({type(exc).__name__}: {exc}; QEMU: {escape(said)}); cold boot[/]")
        else:
            try:
                return _restore(art, snap, accel)
            except LabError as exc:
                console.print(f"[yellow]VM snapshot {snap.name} unusable ({exc}): removed it; cold boot[/]")
                shutil.rmtree(snap, ignore_errors=True)
    elif _kernel in snapshot.COLD_KERNELS and not os.environ.get(snapshot.DISABLE_ENV):
        console.print(f"VM {_kernel}: no snapshot (its kernel has no vmgenid); cold boot")
    return _start(art, _overlay(art, key), accel)


def _start(art: Path, disk: Path, accel: str, incoming: Path | None = None) -> VmState:
    """QEMU on `disk`, booting, or loading the saved state `incoming`; returns at Docker-ready."""
    def launch() -> tuple[VmState, subprocess.Popen]:
        port = _pick_port()
        for stale in ("console.log", "qmp.sock", "ctl.sock"):  # a killed QEMU leaves its sockets
            (vm_dir() / stale).unlink(missing_ok=True)
        cmd = _qemu_cmd(art, disk, accel, port)
        if incoming is not None:
            cmd += ["-incoming", f"exec:cat {shlex.quote(str(incoming))}"]  # QEMU runs it through /bin/sh
        log = open(vm_dir() / "qemu.log", "wb")
        proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        st = VmState(pid=proc.pid, port=port, accel=accel, key=art.name.removeprefix("vm-"),
                     overlay=str(disk), started=time.time(), restored=incoming is not None)
        _write_state(st)
        return st, proc

    st, proc = launch()
    if incoming is None:
        for attempt in range(1, COLD_BOOT_TRIES + 1):
            try:
                _wait_ready(st, proc)
                break
            except LabError as exc:
                kept = _panicked_while_booting(attempt)
                if kept is None or attempt == COLD_BOOT_TRIES:
                    raise
                console.print(f"[yellow]VM: the guest kernel panicked while booting ({escape(str(exc))[:160]}; "
                              f"console kept in {kept}): booting again[/]")
                st, proc = launch()
        sync_clock(st)
        _hold_tracepoints()
        _watch(st)
        return st
    start = time.monotonic()
    try:
        with console.status("VM restoring from its snapshot"):
            qmp = snapshot.monitor(vm_dir() / "qmp.sock", lambda: proc.poll() is None)
            try:
                snapshot.resume(qmp)
            finally:
                qmp.close()
            deadline = time.monotonic() + 30
            while not docker_ready(st):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise LabError("its Docker did not answer after the restore")
                time.sleep(0.1)
            sync_clock(st, force=True)
    except (LabError, OSError) as exc:
        _kill(st.pid)
        _clear_state()
        raise LabError(str(exc)) from exc
    _watch(st)
    console.print(f"[green]✓[/] VM restored from snapshot, Docker ready at {st.url} "
                  f"({time.monotonic() - start:.1f}s, {accel})")
    return st


def _hold_tracepoints() -> None:
    """Enable, for the guest's life, the tracepoints labs record drops with (lab.engines.tracehold:
    patching kernel text under TCG can hang the guest, so it is done once, at boot, and a
    snapshot keeps it)."""
    rc, out = exec_in_guest(["sh", "-c", tracehold.HOLD], caps=tracehold.CAPS)
    if rc:
        console.print(f"[yellow]VM: holding the guest's tracepoints failed ({escape(out.strip()[-160:])}); "
                      "the first recording of drops will do it[/]")


CLOCK_TOLERANCE = 0.05  # seconds: captures are matched to host times (`since`) by tests and users


# A cold boot under TCG can panic before init runs ("Fatal exception in interrupt" at 3 s of a
# 6.12 guest, twice in three cold boots one afternoon, the third one fine): such a boot is tried
# again, a guest that fails the same way every time still fails.
COLD_BOOT_TRIES = 3


def _panicked_while_booting(attempt: int) -> Path | None:
    """The kept copy of the console when the boot that just failed shows a kernel panic;
    None when it does not (QEMU's own error, a timeout: not worth a second boot)."""
    console_log = vm_dir() / "console.log"
    try:
        text = console_log.read_text(errors="replace")
    except OSError:
        return None
    if not any(kind in guestwatch.FATAL for kind, _ in guestwatch.signs(text)):
        return None
    kept = vm_dir() / f"boot-panic-{attempt}.log"
    kept.write_text(text)
    kept.chmod(0o600)
    return kept


def sync_clock(st: VmState, force: bool = False) -> float:
    """Shift the guest's clock onto the host's (a restored guest is seconds behind; a booted
    one is off by up to a second: its RTC has whole seconds) and mix in host randomness;
    with force, also when the clock is already right. Returns the offset it corrected."""
    offset = snapshot.clock_offset(client_for(st, timeout=30))
    if abs(offset) < CLOCK_TOLERANCE and not force:
        return 0.0
    rc, out = exec_in_guest(snapshot.freshen_argv(offset), caps=["SYS_TIME"])
    if rc:
        raise LabError(f"setting the guest's clock failed: {out.strip()[-200:]}")
    return offset


def _snapshot(art: Path, accel: str) -> Path:
    """cache/vmsnap-<key>/ (disk.qcow2 + ram) for these inputs, vmsnap-<kernel>-<key>/ for a
    kernel other than bookworm; made by a cold boot when missing. art.name (vm-<kernel>-<key>)
    puts the kernel in the key too; bookworm's keys are as before."""
    from .images import ensure_node_image, node_key

    userland = suites.userland(_kernel)
    key = snapshot.key(art.name, node_key(userland), accel, MEMORY_MB, CPUS, QEMU)

    def make(tmp: Path) -> None:
        console.print("VM: no snapshot for these inputs yet: cold boot, then save the booted guest")
        disk = tmp / "disk.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw",
                        "-b", str(art / "disk.img"), str(disk)], check=True)
        disk.chmod(0o600)
        st = _start(art, disk, accel)
        try:
            ensure_node_image(client_for(st), userland)
            # Dropped page cache is RAM the snapshot need not hold.
            exec_in_guest(["sh", "-c", "sync; echo 3 > /proc/sys/vm/drop_caches"])
            st.stopping = True  # paused, then quit: its watcher stands down
            _write_state(st)
            started = time.monotonic()
            qmp = snapshot.monitor(vm_dir() / "qmp.sock", lambda: alive(st.pid))
            try:
                with console.status("VM: saving the booted guest"):
                    snapshot.save(qmp, tmp / "ram")
                snapshot.quit(qmp)
            finally:
                snapshot.close(qmp)
            _reap_wait(st.pid)
            (tmp / "ram").chmod(0o600)
            console.print(f"[green]✓[/] VM snapshot saved ({(tmp / 'ram').stat().st_size >> 20} MiB, "
                          f"{time.monotonic() - started:.0f}s)")
        finally:
            _kill(st.pid)
            _clear_state()

    return artifacts.cached_dir(suites.artefact("vmsnap", _kernel), key, make)


def _restore(art: Path, snap: Path, accel: str) -> VmState:
    """QEMU on a fresh overlay of the snapshot's disk, loading its saved state."""
    run = vm_dir() / "run.qcow2"
    run.unlink(missing_ok=True)  # the last run's writes: they do not match the saved RAM
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
                    "-b", str(snap / "disk.qcow2"), str(run)], check=True)
    run.chmod(0o600)
    return _start(art, run, accel, incoming=snap / "ram")


def _reap_wait(pid: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.1)


def _modules_loaded() -> bool:
    """lab-init prints this once PPP and the PPTP helper are loaded (after dockerd starts)."""
    try:
        return b"lab-init: PPP and PPTP modules loaded" in (vm_dir() / "console.log").read_bytes()
    except OSError:
        return False


def _wait_found(st: VmState) -> VmState | None:
    """A VM that runs but whose Docker does not answer, found by a process that did not start
    it: other processes' labs may be on it, so it is never stopped for being slow, only when
    the watchdog's judgement says hung or dead (then it is lost, and None is returned)."""
    w = guestwatch.Watchdog(vm_dir(), _engine_name(), st.pid, st.port, st.started, None)
    with console.status("VM not answering: waiting for it or for a verdict") as status:
        while True:
            silent_since = w.answered
            verdict = w.look(lambda: docker_ready(st))
            if w.answered > silent_since:
                return st
            if verdict.fell:
                inc = lose(vm_dir(), st.started, verdict, _engine_name())
                if inc:
                    console.print(f"[red]{escape(inc.line())}[/]", soft_wrap=True)
                return None
            status.update(f"VM not answering for {time.monotonic() - w.answered:.0f}s: "
                          "waiting for it or for a verdict")
            time.sleep(1)


def _wait_ready(st: VmState, proc: subprocess.Popen | None = None) -> VmState:
    start = time.monotonic()
    with console.status("VM booting") as status:
        while time.monotonic() - start < BOOT_TIMEOUT:
            # Our own child is judged by poll(); a VM found running (no Popen) by its pid.
            gone = proc.poll() is not None if proc is not None else not alive(st.pid)
            if gone:
                _kill(st.pid)
                _clear_state()
                raise LabError(f"QEMU exited while booting: {_tail(vm_dir() / 'qemu.log')} "
                               f"{_tail(vm_dir() / 'console.log')} (logs in {vm_dir()})")
            if docker_ready(st) and (st.restored or _modules_loaded()):
                console.print(f"[green]✓[/] VM Docker ready at {st.url} "
                              f"({time.monotonic() - start:.0f}s, {st.accel})")
                return st
            status.update(f"VM booting ({time.monotonic() - start:.0f}s, {st.accel}) "
                          f"[dim]{_tail(vm_dir() / 'console.log', 1)[:60]}[/]")
            time.sleep(1)
    _kill(st.pid)
    _clear_state()
    raise LabError(f"VM Docker not ready after {BOOT_TIMEOUT}s; stopped it. "
                   f"Console: {_tail(vm_dir() / 'console.log')} (logs in {vm_dir()})")


def _kill(pid: int, grace: float = 5) -> None:
    if not alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)
    _reap(pid)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def down(wipe: bool = False) -> str:
    """Power the guest off cleanly (then kill if it hangs); leave no QEMU behind."""
    try:
        st = read_state()
    except LabError:
        _clear_state()  # unreadable: nothing to power off that we could find
        return f"VM state file was unreadable; cleared it{_kill_strays()}"
    msg = "VM was not running"
    if st and alive(st.pid):
        st.stopping = True  # its watchers (here and in other processes) stand down
        _write_state(st)
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(3)
                s.connect(str(vm_dir() / "ctl.sock"))
                s.sendall(b"poweroff\n")
                time.sleep(1)  # let QEMU hand it to the guest before the socket closes
        except OSError:
            pass  # the control port is gone; fall through to the kill
        deadline = time.monotonic() + 30
        with console.status("VM powering off"):
            while alive(st.pid) and time.monotonic() < deadline:
                time.sleep(0.3)
                _reap(st.pid)
        msg = "VM powered off" if not alive(st.pid) else "VM did not power off in 30s; killed it"
        _kill(st.pid)
    elif st:
        msg = f"VM (pid {st.pid}) had already exited; cleared its state"
    _clear_state()
    if wipe:
        for old in [*vm_dir().glob("overlay-*.qcow2"), vm_dir() / "run.qcow2"]:
            old.unlink(missing_ok=True)
        for snap in artifacts.entries(suites.artefact("vmsnap", _kernel)):  # this kernel's only
            if snap.is_dir():
                shutil.rmtree(snap, ignore_errors=True)
            else:
                snap.unlink(missing_ok=True)  # its build log
        msg += "; overlay disk and saved snapshots wiped"
    return msg


def _kill_strays() -> str:
    """QEMUs of ours that no state file names (the file was lost or corrupted)."""
    killed = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and alive(int(p.name))]
    for pid in killed:
        _kill(pid)
    return f"; killed stray QEMU pid(s) {killed}" if killed else ""


def last_incident(within: float = 24 * 3600) -> guestwatch.Incident | None:
    """The newest hang or death of this VM's guest in the last `within` seconds."""
    found = guestwatch.incidents(vm_dir())
    return found[-1] if found and time.time() - found[-1].at < within else None


def incident_info(inc: guestwatch.Incident) -> dict:
    """An incident as status/doctor show it."""
    then = (f"restored {time.strftime('%H:%M:%S', time.localtime(inc.restored_at))}" if inc.restored_at
            else "not restored yet: `pptp-lab vm up` restores it")
    return {"guest lost": f"{inc.state} at {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(inc.at))}: "
                          f"{inc.reason}; {then}",
            "guest console": inc.lines or ["(nothing on its console)"], "guest console kept": inc.console}


def status() -> dict:
    st = read_state()
    info: dict = {"state": "stopped", "state_dir": str(vm_dir())}
    if _kernel != suites.DEFAULT:
        info["kernel"] = _kernel
    inc = last_incident()
    if inc:
        info.update(incident_info(inc))
    if st is None:
        return info
    info.update(asdict(st))
    info.pop("stopping", None)
    if not alive(st.pid):
        info["state"] = "crashed"
        info["hint"] = "QEMU is gone; `pptp-lab vm down` clears the state, `vm up` starts anew"
        return info
    info["state"] = "running" if docker_ready(st) else "booting"
    info["uptime_s"] = round(time.time() - st.started)
    info["docker_url"] = st.url
    return info


def exec_in_guest(cmd: list[str], caps: list[str] = (), client: docker.DockerClient | None = None,
                  kernel: str | None = None) -> tuple[int, str]:
    """Run a command in the guest's namespaces (through a throwaway container): the current
    VM's guest, or the one `client` talks to (of `kernel`)."""
    from .images import ensure_node_image

    if client is None:
        st = read_state()
        if not st or not alive(st.pid):
            raise LabError("the VM is not running: start it with `pptp-lab vm up`")
        client = client_for(st)
    tag = ensure_node_image(client, suites.userland(kernel or _kernel))
    container = client.containers.run(
        tag, entrypoint=["nsenter", "-t", "1", "-m", "-u", "-n", "-i", "-p", "--", *cmd],
        # Not --privileged: entering pid 1's namespaces needs setns (SYS_ADMIN) on another
        # process's /proc/1/ns (SYS_PTRACE), nothing more.
        cap_add=["SYS_ADMIN", "SYS_PTRACE", *caps], pid_mode="host", network_mode="host", detach=True,
        labels={names.ROLE: "vm-exec"})
    try:
        rc = container.wait()["StatusCode"]
        return rc, container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)


class VmEngine(DockerEngine):
    """The built-in VM: a Docker engine whose endpoint is the guest's forwarded API. `start`
    boots it when needed; instance N is `vm:N` (its own disk overlay, port and state), and
    each kernel has VMs of its own."""

    def __init__(self, number: int = 1, why: str = "", kernel: str = suites.DEFAULT):
        use(number, kernel)
        self.number, self.kernel = number, kernel
        self.userland = suites.userland(kernel)  # what its nodes run unless a node says otherwise
        name = "vm" if number == 1 else f"vm:{number}"
        super().__init__(name if kernel == suites.DEFAULT else f"{name} ({kernel})", "", why)

    @property
    def key(self) -> str:
        return self.name  # its URL's port changes with every boot

    @staticmethod
    def state_dir_of(number: int, kernel: str = suites.DEFAULT) -> Path:
        if kernel == suites.DEFAULT:
            return state_dir() / ("vm" if number == 1 else f"vm{number}")
        return state_dir() / (f"vm-{kernel}" if number == 1 else f"vm-{kernel}-{number}")

    _generation: float = 0.0  # VmState.started of the guest this engine's client talks to

    @property
    def client(self) -> docker.DockerClient:
        """The guest's Docker client; after a lost guest was replaced (restored from its
        snapshot), a client of the new one: labs made later run there. A call for a lab that
        was on the lost guest then finds nothing of it (engine_lost explains why)."""
        if self._client is not None and self._generation:
            d = self.state_dir_of(self.number, self.kernel)
            st = read_state(d)
            # Not after a `vm down` (no state, no incident): a VM stopped on purpose stays so.
            lost = st is None and any(i.generation == self._generation for i in guestwatch.incidents(d))
            if lost or (st is not None and st.started != self._generation):
                was = current()
                try:
                    self.start()
                finally:
                    use(*was)
        return super().client

    def start(self) -> "VmEngine":
        use(self.number, self.kernel)
        st = up()
        self.url, self._client, self._generation = st.url, client_for(st), st.started
        _watch(st)
        return self

    def attach(self) -> "VmEngine | None":
        """This engine if its VM is already running and answering, else None (starts nothing)."""
        use(self.number, self.kernel)
        st = read_state()
        if st and alive(st.pid) and docker_ready(st):
            self.url, self._client, self._generation = st.url, client_for(st), st.started
            _watch(st)
            return self
        return None

    def stop(self) -> str:
        use(self.number, self.kernel)
        return down()

    def guest_exec(self, cmd: list[str], caps: list[str] = ()) -> tuple[int, str]:
        """Run a command in this VM's guest (its root namespaces)."""
        return exec_in_guest(cmd, caps, self.client, self.kernel)

    def not_running(self) -> str:
        """Why attach() found nothing, as one line naming the command that helps."""
        use(self.number, self.kernel)
        what = "the VM" if self.number == 1 else f"the VM {self.name}"
        cmd = "pptp-lab vm up" if self.number == 1 else f"pptp-lab vm -n {self.number} up"
        if self.kernel != suites.DEFAULT:
            what, cmd = f"{what} of kernel {self.kernel}", f"{cmd} --kernel {self.kernel}"
        st = read_state()
        inc = last_incident()
        if st is None and inc and not inc.restored_at:
            return f"{what} is not running: its guest {inc.state} at {inc.when()} ({inc.reason}); `{cmd}` restores it"
        if st is None:
            return f"{what} is not running: `{cmd}` starts it"
        if not alive(st.pid):
            return f"{what} is not running: its QEMU (pid {st.pid}) is gone; `{cmd}` starts it again"
        return f"{what} runs (pid {st.pid}) but its Docker does not answer: `{cmd}` waits for it"


# What a Docker call raises when its engine went away under it (connection refused, reset,
# or a read that never ended).
LOST_CONNECTION = (requests.exceptions.RequestException, ConnectionError,
                   urllib3.exceptions.HTTPError, http.client.HTTPException)


def engine_lost(exc: BaseException) -> LabError | None:
    """The one-line error for a Docker failure caused by a lost guest this process used (its
    watchdog judged it hung or dead): None when no such guest explains it."""
    if isinstance(exc, LabError):
        return None
    if isinstance(exc, LOST_CONNECTION):
        found = guestwatch.wait_judged(time.monotonic())
    elif isinstance(exc, docker.errors.DockerException):
        found = guestwatch.lost_here()
    else:
        return None
    return LabError(found[-1].line()) if found else None


def one_line(exc: BaseException) -> str:
    """A Docker or connection failure as one line: the lost guest's incident when there is
    one, else the error itself with what failed."""
    lost = engine_lost(exc)
    if lost:
        return str(lost)
    text = " ".join(str(exc).split())
    return f"the Docker engine failed ({type(exc).__name__}): {text[:300]}"

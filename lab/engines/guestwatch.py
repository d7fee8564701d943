"""Is the VM guest still alive? A watchdog on its serial console and its Docker API.

A guest under software emulation can lock up (a soft lockup or an RCU stall that never
ends), panic, or have its QEMU frozen or killed. Every process that drives a VM watches the
guest generation it attached to (a thread, `Watchdog`). When the guest is judged hung or dead,
the first watcher to see it (under the VM's `.up.lock`, so processes take turns) stops that
QEMU, keeps the console lines that show why, and writes an incident to the VM's state
directory; the next `vm up` (any process's) restores the guest from its snapshot. Labs that
were on the lost guest fail with one line built from the incident (`explain`); a watcher that
finds another generation running does nothing, so a guest other processes restored is never
stopped twice.

This module knows the VM state directory only as a path: the watcher thread must not touch
lab.engines.vm's "VM driven now" (a process-wide choice the main thread makes)."""
from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

# What the guest kernel prints when it is in trouble, by kind; the first lines that match are
# kept as the incident's evidence.
SIGNS = (
    ("kernel panic", re.compile(r"Kernel panic - not syncing")),
    ("oops", re.compile(r"\bOops: |BUG: unable to handle|general protection fault")),
    ("soft lockup", re.compile(r"BUG: soft lockup - CPU#\d+ stuck")),
    ("hard lockup", re.compile(r"hard LOCKUP")),
    ("RCU stall", re.compile(r"rcu: INFO: rcu_\w+ (?:self-)?detected (?:stalls|stall)")),
    ("hung task", re.compile(r"blocked for more than \d+ seconds")),
)
FATAL = {"kernel panic"}  # the guest is gone whatever its Docker says
# Signs an emulated guest also prints when it is only starved of host CPU (vCPU threads not
# scheduled; this machine is itself a VM on a shared host): they do not shorten the wait. An
# RCU stall (ksoftirqd in nft_do_chain) and a soft lockup (rmdir waiting 23 s in
# smp_call_function_many_cond for the other vCPU, "rcu_preempt kthread starved for 5252
# jiffies" beside it) each cost a suite run when 20 s of silence after them were judged a
# hang; both guests were running again. One that is really stuck stays silent past SILENT_HUNG.
LOAD = {"RCU stall", "hung task", "soft lockup"}
CHECK_EVERY = 2.0  # seconds between looks
PING_TIMEOUT = 5  # seconds one Docker ping may take
# How long the Docker API may stay silent before the guest is judged hung: with a lockup or
# stall on its console, or its QEMU stopped (SIGSTOP: nothing runs), much sooner.
SILENT_HUNG = 60.0
SILENT_WITH_SIGN = 20.0
STOPPED_HUNG = 10.0
INCIDENTS = "incidents.jsonl"
KEEP_LINES = 12


def signs(text: str) -> list[tuple[str, str]]:
    """(kind, line) for each line of console text that shows trouble, in order."""
    out = []
    for line in text.splitlines():
        for kind, pattern in SIGNS:
            if pattern.search(line):
                out.append((kind, line.strip()))
                break
    return out


def evidence(text: str, limit: int = KEEP_LINES) -> list[str]:
    """The console lines worth showing: the trouble lines and the stack frames after the
    first of them (RIP, call trace), at most `limit`."""
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if any(p.search(line) for _, p in SIGNS)), None)
    if first is None:
        return [line.strip() for line in lines[-3:] if line.strip()]
    kept = [lines[first].strip()]
    for line in lines[first + 1:]:
        s = line.strip()
        if any(p.search(s) for _, p in SIGNS) or re.search(r"RIP: |Comm: | \? |\+0x[0-9a-f]+/0x", s):
            kept.append(s)
        if len(kept) >= limit:
            break
    return kept


def process_state(pid: int) -> str | None:
    """The kernel's one-letter state of pid (R, S, D, T, t, Z, ...), None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


@dataclass
class Verdict:
    state: str  # "ok", "hung" or "dead"
    reason: str = ""
    lines: list[str] = field(default_factory=list)

    @property
    def fell(self) -> bool:
        return self.state != "ok"


def limits() -> tuple[float, float, float]:
    """(STOPPED_HUNG, SILENT_WITH_SIGN, SILENT_HUNG) as they are now."""
    return STOPPED_HUNG, SILENT_WITH_SIGN, SILENT_HUNG


def judge(proc: str | None, found: list[tuple[str, str]], silent_for: float, stopped_for: float,
          within: tuple[float, float, float] | None = None) -> Verdict:
    """The guest's state from what a watcher saw: QEMU's process state (None: gone), the
    trouble lines its console printed since it started, how long its Docker API has not
    answered and how long its QEMU has been stopped; `within`: the limits (default limits())."""
    stopped_hung, silent_with_sign, silent_hung = within or limits()
    lines = [line for _, line in found]
    if proc is None or proc == "Z":
        kinds = [k for k, _ in found]
        why = f"QEMU exited after a {kinds[-1]}" if kinds else "QEMU exited"
        return Verdict("dead", why, lines)
    fatal = [k for k, _ in found if k in FATAL]
    if fatal:
        return Verdict("dead", fatal[0], lines)
    if proc in ("T", "t") and stopped_for >= stopped_hung:
        return Verdict("hung", f"QEMU stopped (SIGSTOP) for {stopped_for:.0f}s: the guest does not run", lines)
    grave = [k for k, _ in found if k not in LOAD]
    if grave and silent_for >= silent_with_sign:
        return Verdict("hung", f"{grave[0]}, and its Docker API silent for {silent_for:.0f}s", lines)
    if silent_for >= silent_hung:
        why = f"{found[0][0]}, and its " if found else "its "
        return Verdict("hung", f"{why}Docker API silent for {silent_for:.0f}s", lines)
    return Verdict("ok")


# ---------------------------------------------------------------- incidents

@dataclass
class Incident:
    vm: str  # the engine's name: vm, vm:2, vm (trixie)
    state: str  # hung or dead
    reason: str
    at: float  # when it was judged (host time)
    generation: float  # the lost guest's VmState.started
    pid: int
    lines: list[str] = field(default_factory=list)
    console: str = ""  # the kept copy of its console
    restored_at: float = 0.0  # when `vm up` restored it (0: not yet)

    def when(self) -> str:
        return time.strftime("%H:%M:%S", time.localtime(self.at))

    def line(self) -> str:
        """The one line a lab that was on this guest fails with."""
        shown = f" (console: {self.lines[0]!r})" if self.lines else ""
        then = (f"restored from its snapshot at {time.strftime('%H:%M:%S', time.localtime(self.restored_at))}"
                if self.restored_at else "`pptp-lab vm up` (or the next lab) restores it from its snapshot")
        return (f"the VM guest {self.vm} {'hung' if self.state == 'hung' else 'died'} at {self.when()}: "
                f"{self.reason}{shown}; labs that were on it are gone, {then}; console kept in {self.console}")


def record(vm_dir: Path, inc: Incident) -> None:
    with open(vm_dir / INCIDENTS, "a") as f:
        f.write(json.dumps(asdict(inc)) + "\n")


def incidents(vm_dir: Path) -> list[Incident]:
    out = []
    try:
        raw = (vm_dir / INCIDENTS).read_text().splitlines()
    except OSError:
        return out
    for line in raw:
        try:
            out.append(Incident(**json.loads(line)))
        except (ValueError, TypeError):
            continue  # a line cut by a crash: the others still count
    return out


def mark_restored(vm_dir: Path, when: float) -> Incident | None:
    """Note on the newest incident that the guest was restored (by the `vm up` after it)."""
    found = incidents(vm_dir)
    if not found or found[-1].restored_at:
        return None
    found[-1].restored_at = when
    tmp = vm_dir / (INCIDENTS + ".tmp")
    tmp.write_text("".join(json.dumps(asdict(i)) + "\n" for i in found))
    tmp.rename(vm_dir / INCIDENTS)
    return found[-1]


def keep_console(vm_dir: Path, at: float) -> Path:
    """A copy of the lost guest's console (the next start overwrites console.log)."""
    kept = vm_dir / "incidents" / time.strftime("%Y%m%d-%H%M%S-console.log", time.localtime(at))
    kept.parent.mkdir(mode=0o700, exist_ok=True)
    try:
        kept.write_bytes((vm_dir / "console.log").read_bytes())
    except OSError:
        kept.write_text("(no console log)\n")
    kept.chmod(0o600)
    return kept


# ---------------------------------------------------------------- the watcher

# Guest generations (vm dir, VmState.started) this process attached to: a lab this process
# drove was on them, so their incidents explain its errors.
_seen: set[tuple[str, float]] = set()
_watchers: dict[str, "Watchdog"] = {}
# VM state directories whose .up.lock this process holds (its main thread is booting, saving
# or restoring that VM): a watcher here acts at once, or it would wait for its own process.
holding: set[str] = set()
_lock = threading.Lock()


class Watchdog(threading.Thread):
    """Looks at one guest generation every CHECK_EVERY seconds until it is judged lost (then
    `on_lost(vm_dir, generation, verdict)` acts) or another generation replaces it."""

    def __init__(self, vm_dir: Path, name: str, pid: int, port: int, generation: float, on_lost):
        super().__init__(name=f"guestwatch-{vm_dir.name}", daemon=True)
        self.vm_dir, self.vm_name, self.pid, self.port = vm_dir, name, pid, port
        self.generation, self.on_lost = generation, on_lost
        # Its limits and pace as they are when it starts: a unit test that shortens them in a
        # pytest worker must not reach the watcher of a real guest that worker's labs use.
        self.within, self.every, self.ping_timeout = limits(), CHECK_EVERY, PING_TIMEOUT
        self.found: list[tuple[str, str]] = []
        self.answered = self._stopped_since = time.monotonic()  # last Docker answer; last seen not stopped
        self._offset = 0
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()

    def _console(self) -> None:
        """New trouble lines on the console since the last look."""
        try:
            with open(self.vm_dir / "console.log", "rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except OSError:
            return
        cut = chunk.rfind(b"\n") + 1  # whole lines only
        self._offset += cut
        self.found += signs(chunk[:cut].decode(errors="replace"))

    def _answers(self, api) -> bool:
        import docker.errors

        try:
            api.ping()
        except docker.errors.APIError:
            return True  # an HTTP answer, even an error, is a guest that runs
        except Exception:  # noqa: BLE001 - refused, reset, timed out: silence
            return False
        return True

    def look(self, answers) -> Verdict:
        """One look: QEMU's state, new console lines, and (only while QEMU runs) whether
        `answers()` says its Docker answered."""
        proc = process_state(self.pid)
        now = time.monotonic()
        if proc not in ("T", "t"):
            self._stopped_since = now
        self._console()
        if proc not in (None, "Z", "T", "t") and answers():
            self.answered = time.monotonic()
        return judge(proc, self.found, time.monotonic() - self.answered, now - self._stopped_since, self.within)

    def run(self) -> None:
        import docker

        # A fixed API version: "auto" would ask the guest at once, and it may be the silent
        # one. 1.24 is one every dockerd in the guests (20.10 and newer) serves.
        api = docker.APIClient(base_url=f"tcp://127.0.0.1:{self.port}", timeout=self.ping_timeout, version="1.24")
        while not self._halt.wait(self.every):
            if self._replaced():
                return
            verdict = self.look(lambda: self._answers(api))
            if verdict.fell:
                if not self._replaced():
                    self.on_lost(self.vm_dir, self.generation, verdict)
                return

    def _replaced(self) -> bool:
        """True when the state file names another guest (restored, or stopped by `vm down`)."""
        try:
            st = json.loads((self.vm_dir / "state.json").read_text())
        except (OSError, ValueError):
            return True
        return st.get("started") != self.generation or bool(st.get("stopping"))


def watch(vm_dir: Path, name: str, pid: int, port: int, generation: float, on_lost) -> None:
    """Watch this guest generation from this process (once per generation)."""
    with _lock:
        _seen.add((str(vm_dir), generation))
        running = _watchers.get(str(vm_dir))
        if running and running.is_alive() and running.generation == generation:
            return
        if running:
            running.stop()
        w = _watchers[str(vm_dir)] = Watchdog(vm_dir, name, pid, port, generation, on_lost)
        w.start()


def lost_here() -> list[Incident]:
    """Incidents of guest generations this process attached to, oldest first."""
    with _lock:
        seen = set(_seen)
    out = []
    for d in {Path(d) for d, _ in seen}:
        out += [i for i in incidents(d) if (str(d), i.generation) in seen]
    return sorted(out, key=lambda i: i.at)


def wait_judged(failed_at: float, timeout: float = SILENT_HUNG + 3 * CHECK_EVERY) -> list[Incident]:
    """After a Docker call lost its connection at `failed_at` (monotonic): give this process's
    watchers the time to judge the guest (one that stays silent is judged within SILENT_HUNG),
    and return the incidents they wrote. Returns at once when no guest is watched, and as soon
    as every watched guest answered again after the failure (the guest is fine)."""
    deadline = time.monotonic() + timeout
    while True:
        found = lost_here()
        with _lock:
            busy = [w for w in _watchers.values() if w.is_alive()]
        if found or not busy or time.monotonic() > deadline:
            return found
        if all(w.answered > failed_at for w in busy):
            return []
        time.sleep(0.5)

"""Crash safety of the lab itself (issue #12 item 4), through the `pptp-lab` command.

`pptp-lab up` is SIGKILLed (its whole process group) on reaching each stage: networks
created, nodes created, capturing, configuring, dialling. The next `up` then names
`pptp-lab down` in one line (a lab killed while dialling is whole: `up` again would redial
it), and `down` leaves nothing of the lab: no container, no network, no note of an
unfinished `up` on this host. Each stage's `up` gets past the stages before it, and after
all of them one `up` and `down` run through. Ctrl-C (SIGINT) during `up` removes what it
had created, says so in one line and exits 130.

A QEMU killed under a running lab, on a VM instance of its own (vm:8: the suite's VM is
shared by the xdist workers and never touched): `status` says so in one line naming
`pptp-lab vm -n 8 up`, `vm up` brings the guest back with a usable disk, `down` cleans up.

The lab's segment is its own (10.85.0.0/24): the module runs beside the others."""
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from lab.up import configure, lifecycle
from lab.engines.docker import DockerEngine
from lab.engines.vm import VmEngine
from lab.core.paths import runs_dir, state_dir
from tests import REPO

TOPO = Path(__file__).parent / "topologies" / "crash.yaml"
LAB = "t-crash"
# Ctrl-C's handler set explicitly: a child inherits an ignored SIGINT, and Python then sets none.
CLI = [sys.executable, "-c", "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
       "from lab.cli import main; main()"]
# stage -> (the line `up` prints on reaching it, seconds it runs on before the kill: into
# Ansible's playbook, into the client's dial)
STAGES = {
    "networks": (r"\d+ network\(s\) created", 0),
    "nodes": (r"\d+ node\(s\) created", 0),
    "capturing": (r"capturing on \d+ segment", 0),
    "configuring": (r"^configuring \d+ node\(s\) with Ansible", 1.0),
    "dialling": (r"^dialling \d+ client", 0.5),
}


def env() -> dict:
    return {**os.environ, "PYTHONIOENCODING": "utf-8"}  # this session's state, cache and runs/


def cli(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *map(str, args)], cwd=REPO, env=env(), capture_output=True, text=True,
                          encoding="utf-8", errors="replace", timeout=timeout)


class Up:
    """`pptp-lab up` in a process group of its own (as a shell runs it), its output (progress
    on stderr, the table on stdout) read line by line as it comes."""

    def __init__(self, *args):
        self.proc = subprocess.Popen([*CLI, "up", *map(str, args)], cwd=REPO, env=env(), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, encoding="utf-8", errors="replace",
                                     start_new_session=True)
        self.lines: list[str] = []
        self._queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                self.signal(signal.SIGKILL)
                raise AssertionError(f"no line /{pattern}/ from `up` in {timeout:.0f}s:\n" + "\n".join(self.lines))
            if line is None:
                raise AssertionError(f"`up` ended (exit {self.proc.wait()}) before a line /{pattern}/:\n"
                                     + "\n".join(self.lines))
            self.lines.append(line)
            if re.search(pattern, line):
                return

    def signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def finish(self, timeout: float = 180) -> int:
        rc = self.proc.wait(timeout)
        while (line := self._queue.get(timeout=30)) is not None:
            self.lines.append(line)
        return rc


def leftovers(eng, lab: str = LAB, noted=None) -> list[str]:
    """What of the lab is left: containers and networks labelled with it or named after it
    on the engine, this host's note of an `up` of it that did not finish (kept under the
    engine the CLI used: `noted`, default eng), and Ansible scratch left by a killed run."""
    api = eng.client.api
    found = {name.lstrip("/") for c in api.containers(all=True) for name in c["Names"]
             if name.lstrip("/").startswith(f"{lab}-") or (c.get("Labels") or {}).get("pptp-lab.lab") == lab}
    found |= {n["Name"] for n in api.networks()
              if n["Name"].startswith(f"{lab}-") or (n.get("Labels") or {}).get("pptp-lab.lab") == lab}
    noted = noted or eng
    if lifecycle._building(noted, lab) is not None:
        found.add(f"note of an unfinished `up` ({lifecycle._note(noted, lab)})")
    for run in (state_dir() / "ansible").glob("run-*"):  # scratch of an Ansible run whose process is gone
        if not Path(f"/proc/{run.name.split('-')[1]}").exists():
            found.add(str(run))
    return sorted(found)


def down(eng, lab: str = LAB) -> str:
    res = cli("down", lab, "--engine", eng.name)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stderr


@pytest.fixture(scope="module")
def engine(lab_engine, request):
    eng, _ = lab_engine
    down(eng)  # what an earlier run may have left
    configure.sweep()  # and dead Ansible runs of anyone's
    failed_before = request.session.testsfailed
    yield eng
    down(eng)
    if request.session.testsfailed == failed_before:
        shutil.rmtree(runs_dir() / LAB, ignore_errors=True)  # the killed runs' captures, unless something failed


@pytest.mark.parametrize("stage", list(STAGES))
def test_sigkill_during_up(engine, stage):
    pattern, runs_on = STAGES[stage]
    up = Up(TOPO, "--name", LAB, "--engine", engine.name)
    up.wait_for(pattern)
    time.sleep(runs_on)
    up.signal(signal.SIGKILL)
    rc = up.finish()
    assert rc == -signal.SIGKILL, f"`up` was done (exit {rc}) before the kill:\n" + "\n".join(up.lines)
    assert leftovers(engine), "the killed `up` left nothing to clean up: the stage line came too late"

    if stage != "dialling":
        again = cli("up", TOPO, "--name", LAB, "--engine", engine.name)
        errors = [line for line in again.stderr.splitlines() if line.startswith("error:")]
        assert again.returncode == 2 and len(errors) == 1 and f"`pptp-lab down {LAB}`" in errors[0], \
            again.stdout + again.stderr

    said = down(engine)
    assert re.search(rf"lab {LAB}: removed \d+ objects", said), said
    assert leftovers(engine) == []


def test_ctrl_c_during_up_removes_what_it_created(engine):
    up = Up(TOPO, "--name", LAB, "--engine", engine.name)
    up.wait_for(STAGES["nodes"][0])
    up.signal(signal.SIGINT)  # what Ctrl-C in a terminal sends: to the foreground process group
    rc = up.finish()
    said = [line for line in up.lines if line.startswith("interrupted:")]
    assert rc == 130 and len(said) == 1, "\n".join(up.lines)
    assert re.fullmatch(rf"interrupted: removed what lab {LAB} had created \(\d+ objects\)", said[0]), said
    assert leftovers(engine) == []


def test_up_and_down_after_the_crashes(engine):
    res = cli("up", TOPO, "--name", LAB, "--engine", engine.name, "--json", timeout=900)
    try:
        assert res.returncode == 0, res.stderr[-3000:]
        rows = {r["name"]: r for r in json.loads(res.stdout)}
        assert rows["client"]["tunnel"] == "up", rows
    finally:
        said = down(engine)
    assert re.search(rf"lab {LAB}: removed 3 objects", said), said  # lan, vpn, client (the capture goes first)
    assert leftovers(engine) == []


VM = 8
VM_LAB = "t-vmcrash"  # not t-crash-vm: its objects' names would start like t-crash's


def test_qemu_killed_under_a_running_lab(lab_engine):
    """After the suite's VM (lab_engine): its first boot saved the snapshot vm:8 restores."""
    own = ("--engine", f"vm:{VM}")
    state = VmEngine.state_dir_of(VM) / "state.json"
    try:
        res = cli("vm", "-n", VM, "up", timeout=900)
        assert res.returncode == 0, res.stderr[-3000:]
        assert cli("down", VM_LAB, *own).returncode == 0  # an earlier run's lab, on a kept disk
        res = cli("up", TOPO, "--name", VM_LAB, *own, timeout=900)
        assert res.returncode == 0, res.stderr[-3000:]

        pid = json.loads(state.read_text())["pid"]
        cmdline = Path(f"/proc/{pid}/cmdline")
        assert f"{state.parent}/".encode() in cmdline.read_bytes()  # vm:8's QEMU, nothing else
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if not cmdline.read_bytes():
                    break  # a zombie: gone for pptp-lab
            except OSError:
                break  # reaped
            time.sleep(0.1)

        res = cli("status", VM_LAB, *own, timeout=60)
        lines = [line for line in res.stderr.splitlines() if line.strip()]
        assert res.returncode == 2 and not res.stdout and lines == [
            f"error: the VM vm:{VM} is not running: its QEMU (pid {pid}) is gone; "
            f"`pptp-lab vm -n {VM} up` starts it again"], res.stdout + res.stderr

        res = cli("vm", "-n", VM, "up", timeout=900)
        assert res.returncode == 0 and f"previous VM (pid {pid}) is gone" in res.stderr, res.stderr[-3000:]
        res = cli("vm", "-n", VM, "exec", "sh", "-c", "echo ok > /root/crash-probe && sync && cat /root/crash-probe "
                  "&& rm /root/crash-probe", timeout=300)
        assert res.returncode == 0 and res.stdout.strip() == "ok", res.stdout + res.stderr  # its disk takes writes

        said = cli("down", VM_LAB, *own)
        assert said.returncode == 0 and f"lab {VM_LAB}: removed" in said.stderr, said.stderr
        # A plain client of vm:8's Docker: a VmEngine here would switch this process's VM instance.
        guest = DockerEngine(f"vm:{VM}", f"tcp://127.0.0.1:{json.loads(state.read_text())['port']}")
        assert leftovers(guest, VM_LAB, noted=SimpleNamespace(key=f"vm:{VM}")) == []
    finally:
        cli("vm", "-n", VM, "down", timeout=300)

"""Issue #26: a VM guest that hangs or dies under its labs.

Two labs of the same small topology (tests/integration/topologies/crash.yaml), one on a VM
instance of its own (vm:7) and one on the suite's VM. A command is under way in each. vm:7's
QEMU is frozen (SIGSTOP): the command on vm:7 fails with one line naming the hung guest, the
one on the suite's VM finishes, `status` of the lost lab says in one line what happened and
how to go on, and the next `up` on vm:7 runs on the guest restored from its snapshot. Then
vm:7's QEMU is killed under a command: that one fails with one line naming the dead guest.

vm:7 and the suite's VM are different engines, so both labs may use 10.85.0.0/24; this
module is in the own-VM scope with test_crash_safety (t-crash, the same subnet on the
suite's VM), so the two never run at once."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from lab.engines.vm import VmEngine
from tests import REPO

TOPO = Path(__file__).parent / "topologies" / "crash.yaml"
VM = 7
OWN = ("--engine", f"vm:{VM}")
SUITE = ("--engine", "vm")
CLI = [sys.executable, "-c", "from lab.cli import main; main()"]


def cli(*args, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *map(str, args)], cwd=REPO, env={**os.environ, "PYTHONIOENCODING": "utf-8"},
                          capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=timeout)


def background(*args) -> subprocess.Popen:
    return subprocess.Popen([*CLI, *map(str, args)], cwd=REPO, env={**os.environ, "PYTHONIOENCODING": "utf-8"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8",
                            errors="replace")


def errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def qemu_pid() -> int:
    return json.loads((VmEngine.state_dir_of(VM) / "state.json").read_text())["pid"]


def wait_started(proc: subprocess.Popen, seconds: float = 8) -> None:
    """Give a background command the time to reach its Docker call (it is then in flight)."""
    time.sleep(seconds)
    assert proc.poll() is None, proc.communicate()


def test_a_frozen_then_a_killed_guest_fail_only_their_labs(lab_engine):
    """After the suite's VM (lab_engine): its first boot saved the snapshot vm:7 restores."""
    try:
        res = cli("vm", "-n", VM, "up", timeout=900)
        assert res.returncode == 0, res.stderr[-3000:]
        for args in ((*OWN, "--name", "t-lost-a"), (*SUITE, "--name", "t-lost-b")):
            cli("down", args[-1], *args[:2])  # an earlier run's lab
            res = cli("up", TOPO, *args)
            assert res.returncode == 0, res.stderr[-3000:]

        # Frozen: the command in flight on vm:7 fails with one line, the other one finishes.
        lost = background("exec", *OWN, "t-lost-a", "client", "sleep", "300")
        kept = background("exec", *SUITE, "t-lost-b", "client", "sh", "-c", "sleep 45; echo alive")
        wait_started(lost)
        frozen = qemu_pid()
        os.kill(frozen, signal.SIGSTOP)
        try:
            out, err = lost.communicate(timeout=120)
        finally:
            try:
                os.kill(frozen, signal.SIGKILL)  # the watchdog killed it already; never leave it stopped
            except ProcessLookupError:
                pass
        assert lost.returncode == 2 and len(errors(err)) == 1, out + err
        said = errors(err)[0]
        assert said.startswith(f"error: the VM guest vm:{VM} hung at ") and "QEMU stopped (SIGSTOP)" in said, said
        assert "Traceback" not in err, err
        out, err = kept.communicate(timeout=120)
        assert kept.returncode == 0 and out.strip() == "alive", out + err

        res = cli("status", "t-lost-a", *OWN, timeout=60)
        assert res.returncode == 2 and errors(res.stderr) == [
            f"error: the VM vm:{VM} is not running: its guest hung at {said.split(' hung at ')[1][:8]} "
            f"(QEMU stopped (SIGSTOP) for {said.split('for ')[1].split('s:')[0]}s: the guest does not run); "
            f"`pptp-lab vm -n {VM} up` restores it"], res.stderr
        status = json.loads(cli("vm", "-n", VM, "status", "--json").stdout)
        assert status["state"] == "stopped" and "not restored yet" in status["guest lost"], status
        console = Path(status["guest console kept"])
        assert console.is_file() and oct(console.stat().st_mode & 0o777) == "0o600"

        # The next lab on vm:7 runs on the guest restored from its snapshot.
        cli("down", "t-lost-a", *OWN)  # nothing left of it on the new guest: it says so and goes on
        res = cli("up", TOPO, *OWN, "--name", "t-lost-a")
        assert res.returncode == 0, res.stderr[-3000:]
        assert "was replaced by a restored one" in res.stderr and "VM restored from snapshot" in res.stderr, res.stderr
        status = json.loads(cli("vm", "-n", VM, "status", "--json").stdout)
        assert status["state"] == "running" and "; restored " in status["guest lost"], status
        res = cli("exec", *OWN, "t-lost-a", "client", "ip", "-o", "addr", "show", "ppp0")
        assert res.returncode == 0 and "inet 172.19.0." in res.stdout, res.stdout + res.stderr

        # Killed: the watchdog of the command in flight sees its QEMU gone.
        lost = background("exec", *OWN, "t-lost-a", "client", "sleep", "300")
        wait_started(lost)
        os.kill(qemu_pid(), signal.SIGKILL)
        out, err = lost.communicate(timeout=120)
        assert lost.returncode == 2 and len(errors(err)) == 1 and "Traceback" not in err, out + err
        assert errors(err)[0].startswith(f"error: the VM guest vm:{VM} died at ") and "QEMU exited" in err, err
    finally:
        cli("down", "t-lost-b", *SUITE)
        cli("vm", "-n", VM, "down", timeout=300)

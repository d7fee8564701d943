"""Engine/VM/artefact logic that needs no Docker and no QEMU: bad input and stale state."""
import socket
import subprocess
import sys

import pytest

from lab.core import artifacts, host
from lab import engines as engine
from lab.engines import vm
from lab.core.errors import LabError


def test_input_key_follows_file_bytes_and_values(tmp_path):
    f = tmp_path / "packages.txt"
    f.write_text("ppp\n")
    k1 = artifacts.input_key([f], "mirror-a")
    assert k1 == artifacts.input_key([f], "mirror-a")
    assert k1 != artifacts.input_key([f], "mirror-b")
    f.write_text("ppp\npptpd\n")
    assert k1 != artifacts.input_key([f], "mirror-a")


def test_cached_dir_builds_once_and_a_failed_build_leaves_nothing():
    calls = []

    def good(tmp):
        calls.append(tmp)
        (tmp / "out").write_text("x")

    first = artifacts.cached_dir("thing", "k1", good)
    assert artifacts.cached_dir("thing", "k1", good) == first and len(calls) == 1

    def bad(tmp):
        (tmp / "half").write_text("x")
        raise LabError("boom")

    with pytest.raises(LabError):
        artifacts.cached_dir("other", "k2", bad)
    leftovers = [p.name for p in first.parent.iterdir() if "other" in p.name and not p.name.endswith(".lock")]
    assert leftovers == []


def test_new_key_replaces_the_old_artefact():
    old = artifacts.cached_dir("disk", "k1", lambda t: None)
    new = artifacts.cached_dir("disk", "k2", lambda t: None)
    assert new.is_dir() and not old.exists()


def test_debian_mirror_from_deb822_and_one_line_sources(tmp_path, monkeypatch):
    monkeypatch.delenv("PPTP_LAB_MIRROR")
    sources = tmp_path / "debian.sources"
    sources.write_text("Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\n\n"
                       "Types: deb\nURIs: http://m.example/debian\nSuites: bookworm bookworm-updates\n")
    monkeypatch.setattr(host, "SOURCES", [sources])
    assert host.debian_mirror() == "http://m.example/debian"
    listing = tmp_path / "sources.list"
    listing.write_text("deb [arch=amd64] http://n.example/debian bookworm main\n")
    monkeypatch.setattr(host, "SOURCES", [listing])
    assert host.debian_mirror() == "http://n.example/debian"
    monkeypatch.setattr(host, "SOURCES", [])
    with pytest.raises(LabError, match="PPTP_LAB_MIRROR"):
        host.debian_mirror()


def test_missing_binary_names_the_package():
    with pytest.raises(LabError, match="apt-get install qemu-system-x86"):
        host.require_binary("qemu-system-nonexistent-arch", "qemu-system-x86")


def test_busy_port_is_a_clear_error(monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        monkeypatch.setenv("PPTP_LAB_VM_PORT", str(s.getsockname()[1]))
        with pytest.raises(LabError, match=r"127\.0\.0\.1:\d+ is in use"):
            vm._pick_port()


def test_stale_state_reports_crashed_and_down_clears_it():
    # A pid that exists but is not our QEMU (this test process) must not count as the VM.
    vm._write_state(vm.VmState(pid=subprocess.os.getpid(), port=1, accel="tcg", key="k",
                               overlay="/nonexistent", started=0))
    assert vm.status()["state"] == "crashed"
    assert "already exited" in vm.down()
    assert vm.read_state() is None and vm.status()["state"] == "stopped"


def test_corrupt_state_file_names_the_file():
    (vm.vm_dir() / "state.json").write_text("{not json")
    with pytest.raises(LabError, match="state.json"):
        vm.read_state()


def test_down_when_nothing_runs_is_harmless():
    assert vm.down() == "VM was not running"


def test_bad_engine_choice(monkeypatch):
    monkeypatch.setenv("PPTP_LAB_ENGINE", "podman")
    with pytest.raises(LabError, match="PPTP_LAB_ENGINE=podman"):
        engine.wanted()
    with pytest.raises(LabError, match="engine 'podman'"):
        engine.select("podman")


def test_bad_accel_override(monkeypatch, tmp_path):
    monkeypatch.setenv("PPTP_LAB_VM_ACCEL", "hvf")
    with pytest.raises(LabError, match="kvm or tcg"):
        vm.choose_accel(tmp_path / "vmlinuz")


def test_cli_error_is_one_line_with_exit_2(tmp_path):
    env = {**subprocess.os.environ, "PPTP_LAB_STATE": str(tmp_path), "PPTP_LAB_CACHE": str(tmp_path)}
    (tmp_path / "vm").mkdir()
    (tmp_path / "vm" / "state.json").write_text("garbage")
    res = subprocess.run([sys.executable, "-c", "from lab.cli import main; main()", "vm", "status"],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "state.json" in lines[0], res.stderr


def test_down_clears_a_corrupt_state_file():
    (vm.vm_dir() / "state.json").write_text("{not json")
    assert "unreadable" in vm.down()
    assert vm.read_state() is None


def test_one_decision_for_up_and_doctor():
    from lab.engines import Probe, decide

    fits = Probe(engine="local", reachable=True, ppp=True, helper=True)
    lacks = Probe(engine="local", reachable=True, detail=["no /dev/ppp"])
    assert decide("auto", fits)[0] == "local" and decide("local", fits)[0] == "local"
    assert decide("auto", lacks) == ("vm", "local engine unsuitable (no /dev/ppp); using the VM")
    name, why = decide("local", lacks)
    assert name is None and "cannot run the lab: no /dev/ppp" in why and "--engine vm" in why
    assert decide("vm", None) == ("vm", "VM chosen explicitly")
    with pytest.raises(LabError, match="--engine kvm: use one of"):
        decide("kvm", None)


def test_snapshot_key_follows_every_input_it_depends_on():
    from lab.engines import snapshot

    args = ("vm-1", "img-1", "tcg", 2048, 2, "qemu-system-x86_64")
    base = snapshot.key(*args)
    assert snapshot.key(*args) == base
    for i, other in enumerate(("vm-2", "img-2", "kvm", 4096, 4)):
        changed = list(args)
        changed[i] = other
        assert snapshot.key(*changed) != base, f"input {i} left the key unchanged"


def test_a_restored_guest_gets_the_hosts_time_and_fresh_randomness():
    import subprocess
    import time
    from types import SimpleNamespace

    from lab.engines import snapshot

    # The offset is read from Docker's SystemTime (ns digits, Z or an offset) ...
    behind = time.time() - 2.5
    for stamp in (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(behind)) + ".%09dZ" % ((behind % 1) * 1e9),
                  time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(behind)) + "+00:00"):
        client = SimpleNamespace(info=lambda stamp=stamp: {"SystemTime": stamp})
        assert 1.4 < snapshot.clock_offset(client) < 3.6, stamp
    with pytest.raises(LabError, match="unreadable SystemTime"):
        snapshot.clock_offset(SimpleNamespace(info=lambda: {"SystemTime": "yesterday"}))
    # ... and applied as a shift (the container's start-up time does not count), with a
    # different seed each time.
    a, b = snapshot.freshen_argv(2.5), snapshot.freshen_argv(2.5)
    assert a[4] == "2.500000" and a[5] != b[5] and len(bytes.fromhex(a[5])) == 64
    shifted = a[2].replace('date -s "@', 'echo "').replace(" >/dev/null", "").replace("> /dev/urandom", "> /dev/null")
    out = subprocess.run(["sh", "-c", shifted, "sh", a[4], a[5]], capture_output=True, text=True).stdout
    assert abs(float(out) - (time.time() + 2.5)) < 1, out


def test_the_vm_has_a_generation_id_and_a_monitor(tmp_path, monkeypatch):
    from lab.engines import vm

    cmd = vm._qemu_cmd(tmp_path, tmp_path / "d.qcow2", "tcg", 1234)
    assert "vmgenid" in cmd and any(a.startswith("unix:") and a.endswith("qmp.sock,server=on,wait=off")
                                    for a in cmd)
    assert "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:1234-:2375" in cmd  # still no way out


def test_a_refused_container_removal_is_tried_again(monkeypatch):
    import docker.errors

    from lab.engines import docker as dk

    class Box:
        def __init__(self, refusals, gone=False):
            self.refusals, self.gone, self.calls = refusals, gone, 0

        def remove(self, force):
            self.calls += 1
            if self.gone:
                raise docker.errors.NotFound("gone")
            if self.calls <= self.refusals:
                raise docker.errors.APIError("409 removal of container is already in progress")

    monkeypatch.setattr(dk.time, "sleep", lambda s: None)
    twice = Box(2)
    assert dk.remove_container(twice) and twice.calls == 3
    assert not dk.remove_container(Box(0, gone=True))
    always = Box(99)
    with pytest.raises(docker.errors.APIError):
        dk.remove_container(always)
    assert always.calls == dk.REMOVE_TRIES


@pytest.mark.parametrize("console_text, launches, raised", [
    ("[    3.20] Kernel panic - not syncing: Fatal exception in interrupt\n", 2, False),  # tried again
    ("[    3.20] Kernel panic - not syncing: Fatal exception in interrupt\n" * 1, vm.COLD_BOOT_TRIES, True),
    ("qemu-system-x86_64: -drive: Could not open disk\n", 1, True),  # no panic: no second boot
])
def test_a_cold_boot_that_panics_before_init_boots_again(monkeypatch, tmp_path, console_text, launches, raised):
    d = tmp_path / "vm"
    d.mkdir()
    monkeypatch.setattr(vm, "vm_dir", lambda: d)
    monkeypatch.setattr(vm, "_pick_port", lambda: 40000)
    monkeypatch.setattr(vm, "_qemu_cmd", lambda *a: ["qemu"])
    monkeypatch.setattr(vm, "_write_state", lambda st: None)
    monkeypatch.setattr(vm, "sync_clock", lambda st: 0.0)
    monkeypatch.setattr(vm, "_hold_tracepoints", lambda: None)
    monkeypatch.setattr(vm, "_watch", lambda st: None)
    started = []

    class Proc:
        def __init__(self, *a, **k):
            started.append(self)
            self.pid = 1000 + len(started)

    monkeypatch.setattr(vm.subprocess, "Popen", Proc)
    always = launches == vm.COLD_BOOT_TRIES

    def wait_ready(st, proc):
        if always or len(started) == 1:  # the first boot (or every one) fails
            (d / "console.log").write_text(console_text)
            raise LabError(f"QEMU exited while booting: {console_text.strip()}")
        return st

    monkeypatch.setattr(vm, "_wait_ready", wait_ready)
    art = tmp_path / "vm-abc"
    if raised:
        with pytest.raises(LabError, match="QEMU exited while booting"):
            vm._start(art, tmp_path / "disk.qcow2", "tcg")
    else:
        st = vm._start(art, tmp_path / "disk.qcow2", "tcg")
        assert st.pid == 1002
    assert len(started) == launches
    kept = sorted(p.name for p in d.glob("boot-panic-*.log"))
    failed = launches if raised else launches - 1
    assert kept == ([f"boot-panic-{i}.log" for i in range(1, failed + 1)] if "panic" in console_text else [])
    assert all((d / k).stat().st_mode & 0o077 == 0 for k in kept)


def test_closing_the_monitor_of_a_qemu_that_quit_first_is_no_error():
    """After `quit` QEMU may close the QMP socket before the client does; the library then
    raises EOFError from close(), which once cost a finished snapshot its place in the cache."""
    from lab.engines import snapshot

    class Gone:
        def close(self):
            raise EOFError

    snapshot.close(Gone())

"""A VM per kernel (issue #11): state directories, names and ports per kernel, the engine
choice with a kernel asked for, and the CLI's --kernel. Nothing here boots or builds."""
import os
import subprocess
import sys

import pytest

from lab import engines, suites
from lab.engines import vm
from lab.engines.vm import VmEngine
from lab.errors import LabError
from lab.paths import state_dir


@pytest.fixture(autouse=True)
def back_to_the_default_vm():
    yield
    vm.use(1)


def test_bookworms_state_dirs_are_the_old_ones_and_each_kernel_has_its_own():
    assert VmEngine.state_dir_of(1) == VmEngine.state_dir_of(1, "bookworm") == state_dir() / "vm"
    assert VmEngine.state_dir_of(3) == state_dir() / "vm3"
    assert VmEngine.state_dir_of(1, "bullseye") == state_dir() / "vm-bullseye"
    assert VmEngine.state_dir_of(2, "bookworm-backports") == state_dir() / "vm-bookworm-backports-2"
    every = {VmEngine.state_dir_of(n, k) for n in (1, 2, 16) for k in suites.KERNELS}
    assert len(every) == 3 * len(suites.KERNELS)
    for path in every:
        number, kernel = vm.parse_state_dir(path.name)
        assert VmEngine.state_dir_of(number, kernel) == path
    for other in ("vm0", "vm-", "vm-sid", "vm-bookworm", "vm-trixie-0", "vmsnap", "vm-trixie2"):
        assert vm.parse_state_dir(other) is None, other


def test_an_engine_drives_its_own_kernels_vm():
    eng = VmEngine(2, "test", "trixie")
    assert (eng.name, eng.kernel, eng.userland) == ("vm:2 (trixie)", "trixie", "trixie")
    assert vm.current() == (2, "trixie") and vm.vm_dir() == state_dir() / "vm-trixie-2"
    assert VmEngine(1, "test", "bookworm-backports").userland == "bookworm"
    default = VmEngine()
    assert (default.name, default.userland, vm.vm_dir()) == ("vm", "bookworm", state_dir() / "vm")
    with pytest.raises(LabError, match="^VM kernel sid: use"):
        vm.use(1, "sid")


def test_qemu_is_named_after_its_state_dir(tmp_path):
    def name(number, kernel="bookworm"):
        vm.use(number, kernel)
        cmd = vm._qemu_cmd(tmp_path, tmp_path / "d", "tcg", 1)
        return cmd[cmd.index("-name") + 1], cmd

    assert name(1)[0] == "pptp-lab-vm" and name(2)[0] == "pptp-lab-vm2"  # as before kernels
    got, cmd = name(1, "trixie")
    assert got == "pptp-lab-vm-trixie"
    assert any(a.endswith("vm-trixie/ctl.sock,server=on,wait=off") for a in cmd)


def test_the_fixed_port_is_only_the_first_bookworm_vms(monkeypatch):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        monkeypatch.setenv("PPTP_LAB_VM_PORT", str(s.getsockname()[1]))
        vm.use(1)
        with pytest.raises(LabError, match="is in use"):
            vm._pick_port()
        vm.use(1, "bullseye")
        assert vm._pick_port() != s.getsockname()[1]


def test_state_is_kept_per_kernel_and_every_vm_is_found():
    me = os.getpid()  # alive, but no QEMU of ours: reads as crashed
    for number, kernel in ((1, "trixie"), (2, "bullseye")):
        vm.use(number, kernel)
        vm._write_state(vm.VmState(pid=me, port=1, accel="tcg", key="k", overlay="/x", started=0))
    (VmEngine.state_dir_of(3) / "state.json").parent.mkdir(parents=True)
    assert vm.known() == [(2, "bullseye"), (1, "trixie")]
    vm.use(1)
    assert vm.read_state() is None and vm.status() == {"state": "stopped", "state_dir": str(state_dir() / "vm")}
    vm.use(1, "trixie")
    st = vm.status()
    assert st["state"] == "crashed" and st["kernel"] == "trixie"
    assert "already exited" in vm.down()
    assert vm.known() == [(2, "bullseye")]  # the other kernel's VM is untouched


def test_wiping_one_kernels_vm_keeps_the_others_snapshots():
    from lab import artifacts

    mine = artifacts.cached_dir("vmsnap-trixie", "aaa111", lambda t: None)
    default = artifacts.cached_dir("vmsnap", "bbb222", lambda t: None)
    vm.use(1, "trixie")
    assert "wiped" in vm.down(wipe=True)
    assert not mine.exists() and default.is_dir()
    vm.use(1)
    vm.down(wipe=True)
    assert not default.exists()


def test_the_snapshot_is_of_the_kernels_userland(monkeypatch):
    from lab import images

    seen = {}
    monkeypatch.setattr(vm.snapshot, "key", lambda art, image_key, *rest: seen.setdefault("image", image_key))
    monkeypatch.setattr(vm.artifacts, "cached_dir", lambda name, key, make: seen.setdefault("name", name))
    vm.use(1, "bookworm-backports")
    from pathlib import Path

    vm._snapshot(Path("vm-bookworm-backports-abc"), "tcg")
    assert seen == {"image": images.node_key("bookworm"), "name": "vmsnap-bookworm-backports"}


# ---------------------------------------------------------------- choosing the engine

def test_a_kernel_asked_for_means_the_vm(monkeypatch):
    started = []
    monkeypatch.setattr(VmEngine, "start", lambda self: started.append((self.number, self.kernel)) or self)
    monkeypatch.setattr(engines.choose, "probe_local", lambda: pytest.fail("the local engine was probed"))
    ask = suites.KernelChoice("trixie", "--kernel ")
    eng = engines.select("auto", ask)
    assert isinstance(eng, VmEngine) and started == [(1, "trixie")] and "trixie" in eng.why
    engines.select("vm:3", ask)
    assert started[-1] == (3, "trixie")
    for spec in ("local", "tcp://127.0.0.1:2375"):
        with pytest.raises(LabError) as err:
            engines.select(spec, ask)
        assert str(err.value).startswith("--kernel trixie: ") and "VM" in str(err.value)


def test_a_kernel_from_a_topology_is_named_in_the_error():
    ask = suites.KernelChoice("bullseye", "t.yaml: engine.kernel ")
    with pytest.raises(LabError, match=r"^t.yaml: engine.kernel bullseye: the local engine"):
        engines.select("local", ask)


def test_nothing_asked_keeps_the_old_choice(monkeypatch):
    monkeypatch.setattr(engines.choose, "probe_local",
                        lambda: engines.Probe(engine="local", reachable=True, ppp=True, helper=True))
    assert engines.select("auto").name == "local"


def test_running_with_a_kernel_looks_only_at_that_vm(monkeypatch):
    looked = []
    monkeypatch.setattr(VmEngine, "attach", lambda self: looked.append((self.number, self.kernel)))
    monkeypatch.setattr(engines.choose, "local", lambda: pytest.fail("the local engine was asked"))
    assert engines.running("auto", suites.KernelChoice("trixie", "--kernel ")) is None
    assert engines.running("vm:2", suites.KernelChoice("bullseye", "--kernel ")) is None
    assert looked == [(1, "trixie"), (2, "bullseye")]
    with pytest.raises(LabError, match="^--kernel trixie: "):
        engines.running("local", suites.KernelChoice("trixie", "--kernel "))

"""A first `vm up` builds the node image's rootfs beside the VM disk (issue #30: the two
debootstraps one after the other were 150 s + 84 s of a fresh machine's first lab)."""
import threading
import time

from lab.core import host
from lab.engines import images, vm


def test_a_build_off_the_main_thread_logs_without_a_spinner(tmp_path, monkeypatch):
    opened = []
    monkeypatch.setattr(host.console, "status", lambda *a, **k: opened.append(a) or no_spinner())
    errors = []

    def run():
        try:
            host.run_logged("beside", ["sh", "-c", "echo one; echo two"], tmp_path / "log")
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert not errors and not opened and "two" in (tmp_path / "log").read_text()


def no_spinner():
    raise AssertionError("a spinner was opened off the main thread")


def test_the_rootfs_is_built_beside_a_disk_that_is_not_cached(tmp_path, monkeypatch):
    monkeypatch.setattr(vm, "cache_dir", lambda: tmp_path)
    monkeypatch.setattr(vm, "vm_key", lambda kernel: "vmkey")
    monkeypatch.setattr(images, "base_key", lambda suite: "nodekey")
    built = []
    monkeypatch.setattr(images, "base_tarball", lambda suite: (time.sleep(0.2), built.append(suite)))
    t = vm.build_beside()
    assert t is not None and t.is_alive()  # while the disk builds
    t.join()
    assert built == ["bookworm"]
    (tmp_path / "node-nodekey").mkdir()  # the rootfs is cached: nothing beside
    assert vm.build_beside() is None
    (tmp_path / "node-nodekey").rmdir()
    (tmp_path / "vm-vmkey").mkdir()  # the disk is cached: the node image is built when needed
    assert vm.build_beside() is None


def test_a_failure_beside_is_said_and_not_raised(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(vm, "cache_dir", lambda: tmp_path)

    def fails(suite):
        raise host.LabError("node image: debootstrap failed (exit 1) after 3s: see LOG")
    monkeypatch.setattr(images, "base_tarball", fails)
    t = vm.build_beside()
    t.join()
    assert "node image rootfs, built beside the VM disk: node image: debootstrap failed" in capsys.readouterr().err

"""Debian suites (issue #11): keys, names and mirrors per suite, with bookworm's exactly as
they were before suites existed (so every cache built earlier stays valid). Nothing here
builds, boots or reaches a network."""
import os
import subprocess
from pathlib import Path

import pytest

from lab.core import artifacts, host, suites
from lab.engines import images
from lab.engines import vm
from lab.core.errors import LabError
from lab.core.paths import resource

# The default keys before suites existed, with the unit tests' mirror (conftest). A change
# here means every user's cached VM disk, snapshot and node image is rebuilt: only change
# these on purpose (an edit of images/rootfs.sh, images/vm/ or images/node/ does that).
BEFORE = {"vm": "b3aa013ea8d6",  # images/vm/: lab-runtime and lab-setkey (#30); before: crun, no ASLR, static keys (#26)
           "base": "32a78bc1a1bd", "node": "04b0cd58e927"}  # iperf3, socat (S29-S31)


def test_the_default_keys_and_tags_are_the_ones_from_before_suites():
    assert vm.vm_key() == vm.vm_key("bookworm") == BEFORE["vm"]
    assert images.base_key() == images.base_key("bookworm") == BEFORE["base"]
    assert images.node_key() == images.node_key("bookworm") == BEFORE["node"]
    assert images.node_image_tag() == f"pptp-lab/node:{BEFORE['node']}"
    assert images.base_tag() == f"pptp-lab/base:{BEFORE['base']}"


def test_the_default_keys_follow_the_old_formula():
    """The same inputs as before suites (whatever the files now hold): rootfs.sh and the
    kind's files, the mirror, "bookworm" (and the disk size for the VM)."""
    imgs = resource("images")
    mirror = host.debian_mirror()
    assert vm.vm_key() == artifacts.input_key(artifacts.tree_files(imgs / "rootfs.sh", imgs / "vm"),
                                              mirror, "bookworm", vm.DISK_SIZE)
    base = artifacts.input_key(artifacts.tree_files(imgs / "rootfs.sh", imgs / "node" / "packages.txt"),
                               mirror, "bookworm")
    assert images.base_key() == base
    assert images.node_key() == artifacts.input_key(artifacts.tree_files(imgs / "node"), base)


def test_every_suite_has_keys_and_tags_of_its_own():
    vm_keys = {k: vm.vm_key(k) for k in suites.KERNELS}
    assert len(set(vm_keys.values())) == len(suites.KERNELS)
    node_keys = {s: images.node_key(s) for s in suites.USERLANDS}
    assert len(set(node_keys.values())) == len(suites.USERLANDS)
    assert images.node_image_tag("trixie") == f"pptp-lab/node:trixie-{node_keys['trixie']}"
    assert images.base_tag("bullseye").startswith("pptp-lab/base:bullseye-")


def test_a_suites_key_follows_suite_sh_but_bookworms_does_not(tmp_path, monkeypatch):
    import shutil

    from lab.core import paths

    copy = tmp_path / "images"
    shutil.copytree(resource("images"), copy)
    monkeypatch.setattr(images, "resource", lambda name: copy)
    monkeypatch.setattr(vm, "resource", lambda name: copy)
    before = {s: images.base_key(s) for s in suites.USERLANDS} | {"vm-trixie": vm.vm_key("trixie")}
    (copy / "suite.sh").write_text((copy / "suite.sh").read_text() + "# changed\n")
    assert images.base_key("bookworm") == before["bookworm"] and vm.vm_key() == BEFORE["vm"]
    assert images.base_key("trixie") != before["trixie"] and vm.vm_key("trixie") != before["vm-trixie"]
    assert paths.resource("images") != copy  # the patch stayed in these two modules


def test_bad_suites_are_one_line_errors_naming_the_key():
    with pytest.raises(LabError, match=r"^--kernel buster: use bullseye, bookworm, bookworm-backports or trixie$"):
        suites.check_kernel("buster", "--kernel ")
    with pytest.raises(LabError, match=r"^node image bookworm-backports: use bullseye, bookworm or trixie$"):
        images.base_tarball("bookworm-backports")
    with pytest.raises(LabError, match="node image sid"):
        images.ensure_node_image(None, "sid")


def test_where_a_kernel_is_asked_for(monkeypatch):
    from types import SimpleNamespace

    monkeypatch.delenv(suites.KERNEL_ENV, raising=False)
    topo = SimpleNamespace(name="t", engine=SimpleNamespace(kernel="bullseye"))
    plain = SimpleNamespace(name="p", engine=None)
    assert suites.wanted_kernel() is None and suites.kernel_of(None) == "bookworm"
    assert suites.wanted_kernel(None, plain) is None
    assert suites.wanted_kernel(None, topo, "t.yaml").said == "t.yaml: engine.kernel bullseye"
    assert suites.wanted_kernel(None, topo).said == "topology t: engine.kernel bullseye"
    monkeypatch.setenv(suites.KERNEL_ENV, "trixie")
    assert suites.wanted_kernel(None, plain).said == "PPTP_LAB_KERNEL=trixie"
    assert suites.wanted_kernel(None, topo).kernel == "bullseye"  # the file's own beats the env
    assert suites.wanted_kernel("bookworm-backports", topo).said == "--kernel bookworm-backports"
    monkeypatch.setenv(suites.KERNEL_ENV, "jessie")
    with pytest.raises(LabError, match=r"^PPTP_LAB_KERNEL=jessie: use"):
        suites.wanted_kernel(None, plain)


def test_userland_of_a_kernel():
    assert [suites.userland(k) for k in suites.KERNELS] == ["bullseye", "bookworm", "bookworm", "trixie"]
    assert set(map(suites.userland, suites.KERNELS)) == set(suites.USERLANDS)


# ---------------------------------------------------------------- cache entries

def test_a_new_build_replaces_only_its_own_suites_artefact():
    old = artifacts.cached_dir("vm", "aaa111", lambda t: None)
    other = artifacts.cached_dir("vm-trixie", "bbb222", lambda t: None)
    backports = artifacts.cached_dir("vm-bookworm-backports", "ccc333", lambda t: None)
    (old.parent / "vm-trixie-bbb222.log").write_text("log")
    new = artifacts.cached_dir("vm", "ddd444", lambda t: None)
    assert new.is_dir() and not old.exists()
    assert other.is_dir() and backports.is_dir() and (old.parent / "vm-trixie-bbb222.log").exists()
    newer = artifacts.cached_dir("vm-trixie", "eee555", lambda t: None)
    assert newer.is_dir() and not other.exists() and not (old.parent / "vm-trixie-bbb222.log").exists()
    assert new.is_dir() and backports.is_dir()
    assert sorted(p.name for p in artifacts.entries("vm")) == ["vm-ddd444"]


# ---------------------------------------------------------------- mirrors

def test_the_mirror_for_a_suite(tmp_path, monkeypatch):
    monkeypatch.delenv("PPTP_LAB_MIRROR")
    sources = tmp_path / "debian.sources"
    sources.write_text("Types: deb\nURIs: http://m.example/debian\nSuites: bookworm bookworm-updates\n\n"
                       "Types: deb\nURIs: http://old.example/debian\nSuites: bullseye\n")
    monkeypatch.setattr(host, "SOURCES", [sources])
    assert host.debian_mirror() == host.debian_mirror("bookworm") == "http://m.example/debian"
    assert host.debian_mirror("bullseye") == "http://old.example/debian"
    # Not listed: the bookworm mirror, which Debian mirrors carry beside every other suite.
    assert host.debian_mirror("trixie") == "http://m.example/debian"
    listing = tmp_path / "sources.list"
    listing.write_text("deb http://n.example/debian bookworm-backports main\n")
    monkeypatch.setattr(host, "SOURCES", [listing])
    assert host.debian_mirror("bookworm-backports") == "http://n.example/debian"
    with pytest.raises(LabError, match=r"^no Debian bookworm mirror in .*PPTP_LAB_MIRROR=URL$"):
        host.debian_mirror()
    with pytest.raises(LabError, match=r"^no Debian mirror for trixie \(nor bookworm\) in .*PPTP_LAB_MIRROR"):
        host.debian_mirror("trixie")


def test_a_mirror_without_the_suite_is_named_before_a_build(tmp_path):
    mirror = tmp_path / "debian"
    (mirror / "dists" / "bookworm").mkdir(parents=True)
    (mirror / "dists" / "bookworm" / "Release").write_text("Suite: stable\n")
    host.check_suite(f"file://{mirror}", "bookworm")
    with pytest.raises(LabError) as err:
        host.check_suite(f"file://{mirror}/", "trixie")
    msg = str(err.value)
    assert msg.startswith(f"the Debian mirror file://{mirror}/ does not serve trixie (file://{mirror}/dists/trixie/Release")
    assert msg.endswith("set PPTP_LAB_MIRROR to a mirror that does") and "\n" not in msg


def test_building_another_suite_checks_its_mirror_first(tmp_path, monkeypatch):
    monkeypatch.setenv("PPTP_LAB_MIRROR", f"file://{tmp_path}/empty")
    monkeypatch.setattr(images, "require_root", lambda what: None)
    monkeypatch.setattr(images, "require_binary", lambda name, pkg: name)
    monkeypatch.setattr(images, "run_logged", lambda *a, **k: pytest.fail("debootstrap ran"))
    with pytest.raises(LabError, match="does not serve trixie"):
        images.base_tarball("trixie")


# ---------------------------------------------------------------- suite.sh

def _fakes(tmp_path: Path) -> tuple[dict, Path]:
    """PATH with recording stand-ins for what suite.sh must not really run here."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    for name in ("debootstrap", "chroot", "mount", "umount"):
        (bin_dir / name).write_text(f'#!/bin/sh\necho "{name} $*" >> "{log}"\n')
        (bin_dir / name).chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}, log


def _run_suite_sh(env, *args):
    return subprocess.run(["sh", str(resource("images") / "suite.sh"), *args], env=env,
                          capture_output=True, text=True)


def test_suite_sh_runs_rootfs_sh_for_another_suite(tmp_path):
    env, log = _fakes(tmp_path)
    dest = tmp_path / "rootfs"
    res = _run_suite_sh(env, "trixie", "node", str(dest), "http://m.example/debian")
    assert res.returncode == 0, res.stderr
    pkgs = ",".join(line for line in (resource("images") / "node" / "packages.txt").read_text().splitlines()
                    if line and not line.startswith("#"))
    assert log.read_text().splitlines() == [
        f"debootstrap --variant=minbase --include={pkgs} trixie {dest} http://m.example/debian"]
    assert (dest / "run").is_dir() and (dest / "tmp").stat().st_mode & 0o1777 == 0o1777  # rootfs.sh's steps


def test_suite_sh_takes_the_backports_kernel(tmp_path):
    env, log = _fakes(tmp_path)
    dest = tmp_path / "rootfs"
    for d in ("etc/apt/sources.list.d", "sbin", "usr/local/sbin", "etc", "proc"):  # as debootstrap leaves them
        (dest / d).mkdir(parents=True, exist_ok=True)
    res = _run_suite_sh(env, "bookworm-backports", "vm", str(dest), "http://m.example/debian")
    assert res.returncode == 0, res.stderr
    calls = log.read_text().splitlines()
    boot = calls[0].split()
    assert boot[0] == "debootstrap" and boot[3:] == ["bookworm", str(dest), "http://m.example/debian"]
    included = boot[2].removeprefix("--include=").split(",")
    assert "linux-image-amd64" not in included and "docker.io" in included and "initramfs-tools" in included
    assert calls[1:5] == [f"mount -t proc proc {dest}/proc", f"chroot {dest} apt-get update",
                          f"chroot {dest} env DEBIAN_FRONTEND=noninteractive apt-get install -y "
                          "--no-install-recommends -t bookworm-backports linux-image-amd64",
                          f"umount {dest}/proc"]
    assert (dest / "etc/apt/sources.list.d/bookworm-backports.list").read_text() == \
        "deb http://m.example/debian bookworm-backports main\n"
    assert (dest / "sbin" / "lab-init").is_file()  # then the vm kind's post.sh ran as usual
    assert (dest / "usr" / "local" / "sbin" / "lab-runtime").is_file()


def test_suite_sh_refuses_an_unknown_suite(tmp_path):
    env, log = _fakes(tmp_path)
    res = _run_suite_sh(env, "bookworm", "node", str(tmp_path / "r"), "http://m.example/debian")
    assert res.returncode == 2 and "unknown suite bookworm" in res.stderr and not log.exists()


def test_the_default_suite_still_calls_rootfs_sh(tmp_path):
    imgs = resource("images")
    assert suites.rootfs_argv(imgs, "vm", tmp_path, "M", "bookworm") == [
        "sh", str(imgs / "rootfs.sh"), "vm", str(tmp_path), "M"]
    assert suites.rootfs_argv(imgs, "node", tmp_path, "M", "bullseye") == [
        "sh", str(imgs / "suite.sh"), "bullseye", "node", str(tmp_path), "M"]

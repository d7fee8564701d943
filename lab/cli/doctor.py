"""What this machine (a laptop, a CI runner) lacks to run a lab, each with what to install.

Only facts that are cheap to read: programs on PATH, /dev/kvm, the user id, the cache and
installed Python modules. Nothing is built or started here."""
from __future__ import annotations

import os
import shutil

from ..engines import images
from ..core import suites
from ..engines import vm
from ..core.errors import LabError
from ..core.paths import cache_dir
from ..up import configure

KVM = "/dev/kvm"


def _is_root() -> bool:
    return os.geteuid() == 0


def _which(name: str) -> bool:
    return bool(shutil.which(name) or any(os.access(f"{d}/{name}", os.X_OK) for d in ("/usr/sbin", "/sbin")))


def _cached(kernel: str = suites.DEFAULT) -> tuple[bool, bool]:
    """(VM disk built, node base rootfs built) for the current inputs of this kernel's VM."""
    userland = suites.userland(kernel)
    return ((cache_dir() / f"{suites.artefact('vm', kernel)}-{vm.vm_key(kernel)}").is_dir(),
            (cache_dir() / f"{suites.artefact('node', userland)}-{images.base_key(userland)}" / "rootfs.tar").is_file())


def lacks(needs_vm: bool = True, kernel: str = suites.DEFAULT) -> list[str]:
    """One line per missing piece, saying what follows and what to install."""
    out = [line] if (line := configure.lacking()) else []  # the check `up` makes first
    if needs_vm:
        if not os.access(KVM, os.R_OK | os.W_OK):
            out.append(f"no usable {KVM}: the VM runs under TCG (software emulation: slow, minutes to boot "
                       "on a busy runner); load kvm_intel/kvm_amd and join group kvm, or use a runner with "
                       "nested virtualisation")
        for binary, package in ((vm.QEMU, "qemu-system-x86"), ("qemu-img", "qemu-utils")):
            if not _which(binary):
                out.append(f"{binary} missing: the VM engine needs it: apt-get install {package}")
    try:
        vm_built, node_built = _cached(kernel)
    except LabError as exc:  # no Debian mirror known: nothing can be built
        return out + [f"cannot build the VM disk or node image: {exc}"]
    todo = [what for what, built in (("the VM disk", vm_built or not needs_vm), ("the node image", node_built))
            if not built]
    if todo:
        what = " and ".join(todo)
        if not _which("debootstrap"):
            out.append(f"debootstrap missing: building {what} needs it: apt-get install debootstrap")
        if not vm_built and needs_vm and not _which("mkfs.ext4"):
            out.append("mkfs.ext4 missing: building the VM disk needs it: apt-get install e2fsprogs")
        if not _is_root():
            out.append(f"not root: building {what} (once, then cached in {cache_dir()}) needs root: "
                       "run that first build with sudo, or restore the cache")
    return out


def local_lacks(reachable: bool) -> list[str]:
    if reachable:
        return []
    return ["no local Docker engine: only needed for --engine local on a kernel with PPP "
            "(apt-get install docker.io); the VM engine brings its own"]

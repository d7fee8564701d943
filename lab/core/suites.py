"""Debian suites the lab builds from: the kernel a VM boots (with that suite's userland in
the guest) and the userland of a node image.

bookworm is the default and stays exactly what it was before suites existed: its VM disk,
node image, cache directories, state directory and tags keep their keys and names, so
caches built earlier stay valid. Every other suite gets names of its own beside them.

A VM's kernel is asked for by `--kernel`, then a topology's `engine: {kernel: ...}`, then
$PPTP_LAB_KERNEL; when none asks, nothing is asked (the engine choice stays as before)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from .errors import LabError

KERNELS = ("bullseye", "bookworm", "bookworm-backports", "trixie")
USERLANDS = ("bullseye", "bookworm", "trixie")
DEFAULT = "bookworm"
KERNEL_ENV = "PPTP_LAB_KERNEL"


class KernelChoice(NamedTuple):
    """A kernel that was asked for, and where: `source` is how errors name it before the
    value ("--kernel ", "PPTP_LAB_KERNEL=", "FILE: engine.kernel ")."""
    kernel: str
    source: str

    @property
    def said(self) -> str:
        return f"{self.source}{self.kernel}"


def _one_of(values: tuple[str, ...]) -> str:
    return ", ".join(values[:-1]) + " or " + values[-1]


def check_kernel(value: str, where: str) -> str:
    """`where` names the value in an error, e.g. "--kernel " or "PPTP_LAB_KERNEL="."""
    if value not in KERNELS:
        raise LabError(f"{where}{value}: use {_one_of(KERNELS)}")
    return value


def check_userland(value: str, where: str) -> str:
    if value not in USERLANDS:
        raise LabError(f"{where}{value}: use {_one_of(USERLANDS)}")
    return value


def wanted_kernel(option: str | None = None, topo=None, path: Path | str | None = None) -> KernelChoice | None:
    """The kernel asked for, first of: the --kernel option, the topology's engine.kernel,
    $PPTP_LAB_KERNEL; None when none asks."""
    if option:
        return KernelChoice(check_kernel(option, "--kernel "), "--kernel ")
    engine = getattr(topo, "engine", None)
    if engine is not None and engine.kernel:
        # The topology model has validated it.
        return KernelChoice(engine.kernel, f"{path or 'topology ' + topo.name}: engine.kernel ")
    env = os.environ.get(KERNEL_ENV)
    if env:
        return KernelChoice(check_kernel(env, f"{KERNEL_ENV}="), f"{KERNEL_ENV}=")
    return None


def kernel_of(choice: KernelChoice | None) -> str:
    return choice.kernel if choice else DEFAULT


def userland(kernel: str) -> str:
    """The userland suite of a VM booting `kernel` (backports brings only a newer kernel)."""
    return kernel.removesuffix("-backports")


def artefact(name: str, suite: str) -> str:
    """A cache entry's name: the default suite's is the old one (`vm`, `node`, `vmsnap`)."""
    return name if suite == DEFAULT else f"{name}-{suite}"


def rootfs_argv(images: Path, kind: str, dest: Path, mirror: str, suite: str) -> list[str]:
    """The command that fills `dest` with the root filesystem of `kind` (node | vm).
    bookworm keeps calling rootfs.sh as before (its bytes are part of bookworm's keys);
    other suites go through suite.sh, which runs rootfs.sh's recipe for them."""
    if suite == DEFAULT:
        return ["sh", str(images / "rootfs.sh"), kind, str(dest), mirror]
    return ["sh", str(images / "suite.sh"), suite, kind, str(dest), mirror]


def rootfs_inputs(images: Path, suite: str) -> list[Path]:
    """Files beyond rootfs.sh and the kind's own that a suite's build depends on."""
    return [] if suite == DEFAULT else [images / "suite.sh"]

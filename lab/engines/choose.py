"""Choose the engine a lab runs on: the one place this is decided (`up`, `test`, the
pytest plugin and `doctor` all ask here).

Engine names: `auto` (the default), `local` (DOCKER_HOST or the default socket, used when
a throwaway container on it can open /dev/ppp and attach the pptp conntrack helper), `vm`
(the built-in VM; `vm:N` is its Nth instance, for labs side by side), or a Docker endpoint
URL (`unix://`, `tcp://`, `ssh://user@host`) whose host kernel has PPP. `--engine` or
PPTP_LAB_ENGINE chooses; auto takes local when it fits, else the VM.

A kernel asked for (lab.core.suites.wanted_kernel: --kernel, a topology's engine.kernel,
PPTP_LAB_KERNEL) picks which VM: auto then means the VM of that kernel, and local or a URL
is an error (their kernel is their host's)."""
from __future__ import annotations

import os
import re

from ..core.errors import LabError
from ..core.suites import KernelChoice, kernel_of, wanted_kernel
from .base import Engine, Probe
from .docker import DockerEngine
from .vm import VmEngine

CHOICES = ("auto", "local", "vm")
URL_SCHEMES = ("unix://", "tcp://", "ssh://")
VM_INSTANCE = re.compile(r"vm:([1-9][0-9]?)")
DEFAULT_SOCKET = "unix:///var/run/docker.sock"
HELP = "auto | local | vm | vm:N | unix://PATH | tcp://HOST:PORT | ssh://USER@HOST"


def check_spec(spec: str) -> str:
    """The engine name itself, or LabError saying what names exist."""
    if spec in CHOICES or VM_INSTANCE.fullmatch(spec) or (spec.startswith(URL_SCHEMES) and len(spec) > 7):
        return spec
    raise LabError(f"engine {spec!r}: use {HELP}")


def wanted() -> str:
    spec = os.environ.get("PPTP_LAB_ENGINE", "auto")
    try:
        return check_spec(spec)
    except LabError:
        raise LabError(f"PPTP_LAB_ENGINE={spec}: use {HELP}") from None


def local() -> DockerEngine:
    return DockerEngine("local", os.environ.get("DOCKER_HOST", DEFAULT_SOCKET), "local engine")


def probe_local() -> Probe:
    eng = local()
    if not eng.reachable():
        return Probe(engine="local", detail=[f"no Docker engine answers at DOCKER_HOST or {DEFAULT_SOCKET}"])
    return eng.health()


def decide(choice: str, probe: Probe | None) -> tuple[str | None, str]:
    """(engine name or None, why) for `auto`, `local` and `vm`. `probe` is the local
    engine's health (None when the VM was asked for: not probed)."""
    if choice not in CHOICES:
        raise LabError(f"--engine {choice}: use one of {', '.join(CHOICES)}")
    if choice == "vm":
        return "vm", "VM chosen explicitly"
    if probe is not None and probe.fits:
        return "local", "local engine has PPP and the pptp helper"
    detail = "; ".join(probe.detail) if probe else "not probed"
    if choice == "local":
        return None, (f"local engine cannot run the lab: {detail}. Load ppp_generic, ppp_mppe and "
                      "nf_conntrack_pptp on its host (modprobe ...) or use --engine vm")
    return "vm", f"local engine unsuitable ({detail}); using the VM"


def _endpoint(url: str) -> DockerEngine:
    eng = DockerEngine(url, url, "Docker endpoint given")
    probe = eng.health()
    if not probe.fits:
        raise LabError(f"engine {url} cannot run the lab: {'; '.join(probe.detail)}. Its host needs "
                       "ppp_generic, ppp_mppe and nf_conntrack_pptp loaded")
    eng.why = f"Docker endpoint given; {probe.detail[0]}"
    return eng


def _vm_only(choice: str, kernel: KernelChoice | None) -> None:
    """A kernel asked for with an engine that cannot boot one is an error, not ignored."""
    if kernel is not None and (choice == "local" or choice.startswith(URL_SCHEMES)):
        raise LabError(f"{kernel.said}: the {choice} engine runs its host's own kernel; only the VM "
                       "engine boots a chosen one (--engine vm, vm:N or auto)")


def select(choice: str | None = None, kernel: KernelChoice | None = None) -> Engine:
    """An engine whose kernel can run the lab, starting the VM if it is the one; with a
    kernel asked for (here, or by PPTP_LAB_KERNEL), the VM of that kernel."""
    choice = check_spec(choice or wanted())
    kernel = kernel or wanted_kernel()
    _vm_only(choice, kernel)
    if choice.startswith(URL_SCHEMES):
        return _endpoint(choice)
    m = VM_INSTANCE.fullmatch(choice)
    if m:
        return VmEngine(int(m.group(1)), "VM instance chosen explicitly", kernel_of(kernel)).start()
    if kernel is not None:
        return VmEngine(1, f"kernel {kernel.said} asked for: its VM", kernel.kernel).start()
    name, why = decide(choice, None if choice == "vm" else probe_local())
    if name is None:
        raise LabError(why)
    if name == "local":
        eng = local()
        eng.why = why
        return eng
    return VmEngine(1, why).start()


def running(choice: str | None = None, kernel: KernelChoice | None = None) -> Engine | None:
    """The engine labs would be on, without starting anything (for status and down); with
    a kernel asked for (here, or by PPTP_LAB_KERNEL), only that kernel's VM."""
    choice = check_spec(choice or wanted())
    kernel = kernel or wanted_kernel()
    _vm_only(choice, kernel)
    if choice.startswith(URL_SCHEMES):
        eng = DockerEngine(choice, choice, "Docker endpoint given")
        return eng if eng.reachable() else None
    m = VM_INSTANCE.fullmatch(choice)
    if m or choice != "local":
        vm_eng = VmEngine(int(m.group(1)) if m else 1, "the VM is running", kernel_of(kernel)).attach()
        if vm_eng is not None or m or kernel is not None:
            return vm_eng
    if choice != "vm":
        eng = local()
        if eng.reachable():
            return eng
    return None


def not_running(choice: str | None = None, kernel: KernelChoice | None = None) -> str:
    """Why `running` found no engine, as one line naming what to run."""
    choice = check_spec(choice or wanted())
    if choice.startswith(URL_SCHEMES):
        return f"no Docker engine answers at {choice}"
    if choice == "local":
        return f"no local Docker engine answers (DOCKER_HOST or {DEFAULT_SOCKET})"
    m = VM_INSTANCE.fullmatch(choice)
    why = VmEngine(int(m.group(1)) if m else 1, kernel=kernel_of(kernel)).not_running()
    return why + (" (and no local engine answers)" if choice == "auto" else "")

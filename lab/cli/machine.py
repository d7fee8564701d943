"""The verbs about the machine the labs run on: `doctor`, the `vm` and `image` sub-apps."""
from __future__ import annotations

import sys
from typing import Optional

import typer

from .. import engines as engine_mod
from ..engines import images
from ..core import suites
from ..engines import vm
from ..core.errors import LabError
from ..core.host import console
from .common import EngineOpt, VmKernelOpt, _print, app


vm_app = typer.Typer(no_args_is_help=True, help="The built-in VM engine (Debian kernel with PPP, dockerd inside).")
image_app = typer.Typer(no_args_is_help=True, help="The lab's node image.")
app.add_typer(vm_app, name="vm")
app.add_typer(image_app, name="image")


@app.command("doctor")  # not `def doctor`: that name is the module lab.cli.doctor
def doctor_command(engine: Optional[str] = EngineOpt, as_json: bool = typer.Option(False, "--json")) -> None:
    """Show what was probed, the engine the lab would use and why, and what this machine lacks."""
    from . import doctor as doctor_mod

    choice = engine or engine_mod.wanted()
    asked = suites.wanted_kernel()  # $PPTP_LAB_KERNEL: `up` then takes that kernel's VM
    if asked:
        vm.use(vm.instance(), asked.kernel)
    try:
        local = engine_mod.probe_local()
    except LabError as exc:  # the probe needs the node image, which may not be buildable here
        local = engine_mod.Probe(engine="local", reachable=True, detail=[f"probe not run: {exc}"])
    report = {
        "requested": choice,
        "local engine": "reachable" if local.reachable else "not reachable",
        "local PPP": local.ppp, "local pptp helper": local.helper,
        "local detail": "; ".join(local.detail),
        "vm": vm.status()["state"],
    }
    lost = vm.last_incident()
    if lost:  # a guest of this VM hung or died lately: what its console showed
        report.update(vm.incident_info(lost))
    chosen, report["why"] = engine_mod.decide(choice, local)  # the same decision `up` makes
    if asked:
        report["kernel"] = asked.said
        chosen, report["why"] = (("vm", f"{asked.said} asked for: that kernel's VM") if choice != "local" else
                                 (None, f"{asked.said}: the local engine runs its host's own kernel"))
    report["chosen"] = chosen or "none"
    report["lacks"] = (doctor_mod.lacks(needs_vm=report["chosen"] == "vm", kernel=suites.kernel_of(asked))
                       + doctor_mod.local_lacks(local.reachable))
    _print(report, as_json)


@vm_app.callback()
def vm_options(instance: int = typer.Option(1, "--instance", "-n", min=1, max=16,
                                            help="which VM: N is engine vm:N (labs side by side)")) -> None:
    """The built-in VM engine (Debian kernel with PPP, dockerd inside). Each kernel
    (--kernel) is a VM of its own, beside the others."""
    vm.use(instance)


def _use_kernel(kernel: Optional[str]) -> None:
    """Drive the VM of this kernel (the callback chose its instance)."""
    vm.use(vm.instance(), suites.kernel_of(suites.wanted_kernel(kernel)))


@vm_app.command("build")
def vm_build(kernel: Optional[str] = VmKernelOpt) -> None:
    """Build (or find cached) the guest disk, kernel and initrd."""
    _use_kernel(kernel)
    art = vm.build()
    console.print(f"VM artefacts: {art}")


@vm_app.command("up")
def vm_up(kernel: Optional[str] = VmKernelOpt) -> None:
    """Boot the VM (idempotent) and load the node image into its Docker."""
    _use_kernel(kernel)
    st = vm.up()
    images.ensure_node_image(vm.client_for(st), suites.userland(vm.kernel()))
    console.print(f"DOCKER_HOST={st.url}")


@vm_app.command("down")
def vm_down(wipe: bool = typer.Option(False, help="also delete the overlay disk (loaded images)"),
            kernel: Optional[str] = VmKernelOpt) -> None:
    """Power the VM off; nothing is left running. VMs of other kernels stay as they are."""
    _use_kernel(kernel)
    console.print(vm.down(wipe=wipe))


@vm_app.command("status")
def vm_status(as_json: bool = typer.Option(False, "--json"), kernel: Optional[str] = VmKernelOpt) -> None:
    """Truthful VM state: running, booting, crashed or stopped; and the other VMs' in short."""
    _use_kernel(kernel)
    info = vm.status()
    others = _other_vms()
    if others:
        info["other VMs"] = others
    _print(info, as_json)


def _other_vms() -> list[str]:
    """"NAME: STATE [at URL]" of every other VM that has a state file (any kernel, any instance)."""
    was, out = vm.current(), []
    try:
        for number, kernel in vm.known():
            if (number, kernel) == was:
                continue
            eng = vm.VmEngine(number, kernel=kernel)
            st = vm.status()
            out.append(f"{eng.name}: {st['state']}" + (f" at {st['docker_url']}" if "docker_url" in st else ""))
    finally:
        vm.use(*was)
    return out


@vm_app.command("exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True,
                                          "allow_interspersed_args": False})
def vm_exec(ctx: typer.Context, kernel: Optional[str] = VmKernelOpt) -> None:
    """Run a command in the guest (e.g. `pptp-lab vm exec lsmod`; `vm exec --kernel trixie
    lsmod`: options before the command, whose own words are left alone)."""
    _use_kernel(kernel)
    if not ctx.args:
        raise LabError("vm exec: give a command, e.g. `pptp-lab vm exec lsmod`")
    rc, out = vm.exec_in_guest(ctx.args)
    sys.stdout.write(out)
    raise typer.Exit(rc)


@image_app.command("build")
def image_build(suite: str = typer.Option(suites.DEFAULT, "--suite", metavar="SUITE",
                                          help=f"the userland: {' | '.join(suites.USERLANDS)}")) -> None:
    """Build (or find cached) the node base rootfs tarball."""
    console.print(f"node base: {images.base_tarball(suite)}")


@image_app.command("load")
def image_load(engine: Optional[str] = EngineOpt) -> None:
    """Load the node image into the selected engine."""
    eng = engine_mod.select(engine)
    console.print(f"{eng.ensure_image()} on {eng.name} ({eng.why})")

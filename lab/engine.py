"""Choose the Docker engine the lab runs on.

The local engine (DOCKER_HOST or the default socket) is used when a throwaway container
on it can open /dev/ppp and attach the pptp conntrack helper; otherwise the built-in VM
(lab.vm). `--engine` or PPTP_LAB_ENGINE=local|vm|auto overrides the choice."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import docker
import docker.errors

from . import images, names, vm
from .errors import LabError

CHOICES = ("auto", "local", "vm")

# Opening /dev/ppp fails with ENODEV when the kernel lacks ppp_generic; the CT rule fails
# when the kernel lacks the pptp helper. Both are what pppd and the NAT editor need.
PROBE_SCRIPT = ("exec 3<>/dev/ppp || { echo 'no-ppp: cannot open /dev/ppp'; exit 1; }; "
                "iptables -t raw -A PREROUTING -p tcp --dport 1723 -j CT --helper pptp "
                "|| { echo 'no-helper: the pptp conntrack helper is missing'; exit 1; }; echo ok")


@dataclass
class Probe:
    engine: str
    reachable: bool = False
    ppp: bool = False
    helper: bool = False
    detail: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return self.reachable and self.ppp and self.helper


@dataclass
class Engine:
    name: str
    client: docker.DockerClient
    why: str
    url: str  # what Ansible's docker_api connection is given


def wanted() -> str:
    choice = os.environ.get("PPTP_LAB_ENGINE", "auto")
    if choice not in CHOICES:
        raise LabError(f"PPTP_LAB_ENGINE={choice}: use one of {', '.join(CHOICES)}")
    return choice


def local_client() -> docker.DockerClient | None:
    try:
        client = docker.from_env(timeout=600)
        client.ping()
        return client
    except Exception:  # no socket, refused, bad DOCKER_HOST: all mean "no local engine"
        return None


def probe_client(client: docker.DockerClient, name: str) -> Probe:
    """Run the throwaway PPP/helper probe container on an engine."""
    probe = Probe(engine=name, reachable=True)
    info = client.info()
    probe.detail.append(f"kernel {info.get('KernelVersion')}, {info.get('OperatingSystem')}")
    tag = images.ensure_node_image(client)
    try:
        box = client.containers.run(tag, entrypoint=["sh", "-c", PROBE_SCRIPT], detach=True,
                                    cap_add=["NET_ADMIN"], devices=["/dev/ppp:/dev/ppp:rwm"],
                                    labels={names.ROLE: "probe"})
    except docker.errors.APIError as exc:
        out = f"no-ppp: the engine's host has no /dev/ppp ({exc.explanation})"
    else:
        try:
            box.wait(timeout=120)
            out = box.logs().decode(errors="replace")
        finally:
            box.remove(force=True)
    probe.ppp = "no-ppp" not in out
    probe.helper = probe.ppp and "no-helper" not in out and "ok" in out
    probe.detail.append(out.strip().splitlines()[-1] if out.strip() else "probe printed nothing")
    return probe


def probe_local() -> Probe:
    client = local_client()
    if client is None:
        return Probe(engine="local", detail=["no Docker engine answers at DOCKER_HOST or "
                                             "/var/run/docker.sock"])
    return probe_client(client, "local")


def decide(choice: str, local: Probe | None) -> tuple[str | None, str]:
    """(engine name or None, why): the one place the engine is chosen, for `select` and
    `doctor`. `local` is the local probe (None when the VM was asked for: not probed)."""
    if choice not in CHOICES:
        raise LabError(f"--engine {choice}: use one of {', '.join(CHOICES)}")
    if choice == "vm":
        return "vm", "VM chosen explicitly"
    if local is not None and local.fits:
        return "local", "local engine has PPP and the pptp helper"
    detail = "; ".join(local.detail) if local else "not probed"
    if choice == "local":
        return None, (f"local engine cannot run the lab: {detail}. Load ppp_generic, ppp_mppe and "
                      "nf_conntrack_pptp on its host (modprobe ...) or use --engine vm")
    return "vm", f"local engine unsuitable ({detail}); using the VM"


def select(choice: str | None = None) -> Engine:
    """Return a client for an engine whose kernel can run the lab, starting the VM if needed."""
    choice = choice or wanted()
    name, why = decide(choice, None if choice == "vm" else probe_local())
    if name is None:
        raise LabError(why)
    if name == "local":
        return Engine("local", local_client(), why, os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"))
    st = vm.up()
    return Engine("vm", vm.client_for(st), why, st.url)


def running(choice: str | None = None) -> Engine | None:
    """The engine labs would be on, without starting anything (for status and down)."""
    choice = choice or wanted()
    st = vm.read_state()
    if choice != "local" and st and vm.alive(st.pid) and vm.docker_ready(st):
        return Engine("vm", vm.client_for(st), "the VM is running", st.url)
    if choice != "vm":
        client = local_client()
        if client is not None:
            return Engine("local", client, "local engine", os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"))
    return None

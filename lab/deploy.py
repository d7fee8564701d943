"""Docker objects of a lab: internal networks and node containers, all labelled.

Every object carries the label pptp-lab.lab=<lab> and a name prefixed with the lab's name,
so two labs share an engine and `remove_lab` removes exactly one lab's objects."""
from __future__ import annotations

import io
import shlex
import tarfile
import time
from dataclasses import dataclass

import docker
import docker.errors
from docker.types import IPAMConfig, IPAMPool

from . import names
from .errors import LabError

LABEL = names.LAB  # kept: callers name it deploy.LABEL
# A node gets what PPTP needs, never --privileged: interfaces, routes, filters (NET_ADMIN),
# raw sockets for ping/tcpdump (NET_RAW) and the PPP device.
CAPS = ["NET_ADMIN", "NET_RAW"]
DEVICES = ["/dev/ppp:/dev/ppp:rwm"]
SYSCTLS = {"net.ipv4.ip_forward": "1", "net.ipv4.conf.all.rp_filter": "0",
           "net.ipv4.conf.default.rp_filter": "0"}


@dataclass
class ExecResult:
    rc: int
    out: str

    @property
    def ok(self) -> bool:
        return self.rc == 0


def obj_name(lab: str, name: str) -> str:
    return f"{lab}-{name}"


def create_network(client: docker.DockerClient, lab: str, name: str, subnet: str,
                   gateway: str | None = None, labels: dict | None = None):
    """An internal bridge network (no route out of the engine) for one lab segment. The
    gateway is the engine's own address on it, which lab nodes never route through."""
    full = obj_name(lab, name)
    try:
        client.networks.get(full)
        raise LabError(f"Docker network {full} already exists: `pptp-lab down {lab}` or pick "
                       "another lab name")
    except docker.errors.NotFound:
        pass
    try:
        return client.networks.create(
            full, driver="bridge", internal=True,
            labels={LABEL: lab, names.NETWORK: name, **(labels or {})},
            ipam=IPAMConfig(pool_configs=[IPAMPool(subnet=subnet, gateway=gateway)]))
    except docker.errors.APIError as exc:
        raise LabError(f"creating network {full} ({subnet}) failed: {exc.explanation}") from exc


def create_node(client: docker.DockerClient, lab: str, name: str, image: str,
                addresses: dict[str, str], role: str = "host", labels: dict | None = None):
    """A started node container with a fixed address on each named lab network."""
    full = obj_name(lab, name)
    nets = list(addresses)
    first = client.api.create_networking_config({
        obj_name(lab, nets[0]): client.api.create_endpoint_config(ipv4_address=addresses[nets[0]])})
    try:
        cid = client.api.create_container(
            image, name=full, hostname=name,
            labels={LABEL: lab, names.NODE: name, names.ROLE: role, **(labels or {})},
            networking_config=first,
            host_config=client.api.create_host_config(
                cap_add=CAPS, devices=DEVICES, sysctls=SYSCTLS,
                network_mode=obj_name(lab, nets[0]), init=False),
        )["Id"]
    except docker.errors.APIError as exc:
        raise LabError(f"creating node {full} failed: {exc.explanation}") from exc
    for net in nets[1:]:
        client.networks.get(obj_name(lab, net)).connect(cid, ipv4_address=addresses[net])
    client.api.start(cid)
    return client.containers.get(cid)


def run(container, cmd: str | list[str], check: bool = True) -> ExecResult:
    """Run a shell command in a node; with check, a failure raises LabError with its output."""
    argv = ["sh", "-c", cmd] if isinstance(cmd, str) else cmd
    rc, out = container.exec_run(argv, demux=False)
    res = ExecResult(rc, (out or b"").decode(errors="replace"))
    if check and not res.ok:
        shown = cmd if isinstance(cmd, str) else shlex.join(cmd)
        raise LabError(f"{container.name}: `{shown}` failed (exit {rc}): {res.out.strip()[-300:]}")
    return res


def tar_of(files: dict[str, tuple[str, int]]) -> bytes:
    """path -> (text, mode) as a tar to unpack at / (what put_archive and lab_unpack take)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, (text, mode) in files.items():
            data = text.encode()
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode, info.mtime = len(data), mode, int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def lab_containers(client: docker.DockerClient, lab: str, role: str | None = None) -> list:
    filters = [f"{LABEL}={lab}"] + ([f"{names.ROLE}={role}"] if role else [])
    return client.containers.list(all=True, filters={"label": filters})


def lab_networks(client: docker.DockerClient, lab: str) -> list:
    return client.networks.list(filters={"label": f"{LABEL}={lab}"})


def labs(client: docker.DockerClient) -> set[str]:
    """Names of the labs that have anything on this engine."""
    found = {c.labels.get(LABEL) for c in client.containers.list(all=True, filters={"label": LABEL})}
    found |= {n.attrs["Labels"].get(LABEL) for n in client.networks.list(filters={"label": LABEL})}
    return {x for x in found if x}


def remove_lab(client: docker.DockerClient, lab: str) -> int:
    """Remove every container and network labelled with this lab; return how many."""
    gone = 0
    for c in lab_containers(client, lab):
        c.remove(force=True)
        gone += 1
    for n in lab_networks(client, lab):
        n.remove()
        gone += 1
    return gone


def put_files(container, files: dict[str, tuple[str, int]]) -> None:
    """Write text files into a node: one tar through the Docker API."""
    if not container.put_archive("/", tar_of(files)):
        raise LabError(f"{container.name}: writing {', '.join(files)} failed")

"""The Docker engine: a lab's networks and node containers on one Docker endpoint (the
local socket, `tcp://`, `ssh://`), all labelled.

Every object carries the label pptp-lab.lab=<lab> and a name prefixed with the lab's name,
so two labs share an engine and `remove_lab` removes exactly one lab's objects. A node
handle is the SDK's Container (name, status, labels, reload)."""
from __future__ import annotations

import shlex
import time
from contextlib import contextmanager
from typing import Iterator

import docker
import docker.errors
from docker.types import IPAMConfig, IPAMPool

from ..core import names, suites
from ..core.pool import parallel
from ..core.errors import LabError
from .base import Engine, ExecResult, Probe, obj_name, tar_of

__all__ = ["DockerEngine", "ExecResult", "obj_name", "tar_of", "run", "LABEL"]

LABEL = names.LAB
# A node gets what PPTP needs, never --privileged: interfaces, routes, filters (NET_ADMIN),
# raw sockets for ping/tcpdump (NET_RAW) and the PPP device.
CAPS = ["NET_ADMIN", "NET_RAW"]
DEVICES = ["/dev/ppp:/dev/ppp:rwm"]
RESTART_GRACE = 2  # seconds: the entrypoint exits at once on SIGTERM (images/node/entrypoint.sh)
SYSCTLS = {"net.ipv4.ip_forward": "1", "net.ipv4.conf.all.rp_filter": "0",
           "net.ipv4.conf.default.rp_filter": "0"}

# Opening /dev/ppp fails with ENODEV when the kernel lacks ppp_generic; the CT rule fails
# when the kernel lacks the pptp helper. Both are what pppd and the NAT editor need.
PROBE_SCRIPT = ("exec 3<>/dev/ppp || { echo 'no-ppp: cannot open /dev/ppp'; exit 1; }; "
                "iptables -t raw -A PREROUTING -p tcp --dport 1723 -j CT --helper pptp "
                "|| { echo 'no-helper: the pptp conntrack helper is missing'; exit 1; }; echo ok")


def run(container, cmd: str | list[str], check: bool = True) -> ExecResult:
    """Run a shell command (str) or an argv (list) in a container; with check, a failure
    raises LabError with its output."""
    argv = ["sh", "-c", cmd] if isinstance(cmd, str) else cmd
    rc, out = container.exec_run(argv, demux=False)
    res = ExecResult(rc, (out or b"").decode(errors="replace"))
    if check and not res.ok:
        shown = cmd if isinstance(cmd, str) else shlex.join(cmd)
        raise LabError(f"{container.name}: `{shown}` failed (exit {rc}): {res.out.strip()[-300:]}")
    return res


REMOVE_TRIES = 4
REMOVE_AT_ONCE = 4  # containers removed at a time by remove_lab


def remove_container(c) -> bool:
    """`docker rm -f`; False when it was gone already. A refused removal (the daemon may still
    be cleaning up the container's task) is tried again for a few seconds: a `down` that
    stops half-way leaves its lab's subnets taken (seen once under load, cause not caught)."""
    for attempt in range(REMOVE_TRIES):
        try:
            c.remove(force=True)
            return True
        except docker.errors.NotFound:
            return False  # removed meanwhile (another `down`)
        except docker.errors.APIError:
            if attempt == REMOVE_TRIES - 1:
                raise
            time.sleep(1 + attempt)
    return False


def connect(url: str, timeout: int = 600) -> docker.DockerClient:
    """A client for a Docker endpoint: unix://, tcp:// or ssh:// (through the ssh binary,
    so the user's ssh config and agent apply)."""
    return docker.DockerClient(base_url=url, timeout=timeout, use_ssh_client=url.startswith("ssh://"))


class DockerEngine(Engine):
    userland = suites.DEFAULT  # the node image's suite for nodes that name none

    def __init__(self, name: str, url: str, why: str = "", client: docker.DockerClient | None = None):
        self.name, self.url, self.why = name, url, why
        self._client = client

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} at {self.url}>"

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = connect(self.url)
        return self._client

    def reachable(self) -> bool:
        try:
            return bool(connect(self.url, timeout=5).ping())
        except Exception:  # refused, no socket, bad URL: all mean "not reachable"
            return False

    # -- networks and nodes
    def create_network(self, lab, name, subnet, gateway=None, labels=None, mtu=None):
        """An internal bridge network (no route out of the engine) for one lab segment. The
        gateway is the engine's own address on it, which lab nodes never route through.
        mtu: the bridge's and every node interface's MTU on it (an int, never topology text)."""
        full = obj_name(lab, name)
        try:
            self.client.networks.get(full)
            raise LabError(f"Docker network {full} already exists: `pptp-lab down {lab}` or pick "
                           "another lab name")
        except docker.errors.NotFound:
            pass
        try:
            return self.client.networks.create(
                full, driver="bridge", internal=True,
                options={"com.docker.network.driver.mtu": str(int(mtu))} if mtu else None,
                labels={LABEL: lab, names.NETWORK: name, **(labels or {})},
                ipam=IPAMConfig(pool_configs=[IPAMPool(subnet=subnet, gateway=gateway)]))
        except docker.errors.APIError as exc:
            raise LabError(f"creating network {full} ({subnet}) failed: {exc.explanation}") from exc

    def create_node(self, lab, name, image, addresses, role="host", labels=None, sysctls=None):
        """A started node container with a fixed address on each named lab network."""
        api, full, nets = self.client.api, obj_name(lab, name), list(addresses)
        first = api.create_networking_config({
            obj_name(lab, nets[0]): api.create_endpoint_config(ipv4_address=addresses[nets[0]])})
        try:
            cid = api.create_container(
                image, name=full, hostname=name,
                labels={LABEL: lab, names.NODE: name, names.ROLE: role, **(labels or {})},
                networking_config=first,
                host_config=api.create_host_config(
                    cap_add=CAPS, devices=DEVICES, sysctls={**SYSCTLS, **(sysctls or {})},
                    network_mode=obj_name(lab, nets[0]), init=False),
            )["Id"]
        except docker.errors.APIError as exc:
            raise LabError(f"creating node {full} failed: {exc.explanation}") from exc
        for net in nets[1:]:
            self.client.networks.get(obj_name(lab, net)).connect(cid, ipv4_address=addresses[net])
        api.start(cid)
        return self.client.containers.get(cid)

    def forget_node(self, lab: str, name: str) -> None:
        """Remove a node that may be half-made (a create whose connection dropped)."""
        for c in self.client.containers.list(all=True, filters={"name": f"^{obj_name(lab, name)}$"}):
            c.remove(force=True)

    def node(self, lab, name):
        try:
            return self.client.containers.get(obj_name(lab, name))
        except docker.errors.NotFound:
            raise LabError(f"lab {lab} has no node {name}") from None

    def containers(self, lab, role=None):
        # Listed, then inspected one by one, skipping any removed in between: labs side by
        # side come and go on one engine (the SDK's list() fails on such a container).
        filters = [f"{LABEL}={lab}"] + ([f"{names.ROLE}={role}"] if role else [])
        out = []
        for row in self.client.api.containers(all=True, filters={"label": filters}):
            try:
                out.append(self.client.containers.get(row["Id"]))
            except docker.errors.NotFound:
                pass
        return out

    def networks(self, lab=None):
        """A lab's networks; with no lab, every network on the engine (for overlap checks)."""
        if lab is None:
            return self.client.networks.list()
        return self.client.networks.list(filters={"label": f"{LABEL}={lab}"})

    def labs(self):
        """Names of the labs that have anything on this engine."""
        api = self.client.api  # plain lists: nothing inspected, so nothing can vanish in between
        found = {(x.get("Labels") or {}).get(LABEL) for x in api.containers(all=True, filters={"label": LABEL})}
        found |= {(n.get("Labels") or {}).get(LABEL) for n in api.networks(filters={"label": LABEL})}
        return {x for x in found if x}

    def remove_lab(self, lab):
        """Remove every container and network labelled with this lab; return how many."""
        def removed(remove, **kw) -> int:
            try:
                remove(**kw)
            except docker.errors.NotFound:
                return 0  # removed meanwhile (another `down`)
            return 1

        # A few at once: a removal is mostly the engine's waiting on the container's task.
        gone = sum(parallel(remove_container, self.containers(lab), workers=REMOVE_AT_ONCE))
        return gone + sum(removed(n.remove) for n in self.networks(lab))

    # -- exec and files
    def exec(self, node, cmd, check=True):
        return run(node, cmd, check)

    @contextmanager
    def exec_stream(self, node, argv: list[str]) -> Iterator[tuple[Iterator[bytes], callable]]:
        """(stdout chunks, exit code getter) of a long-running command in a node."""
        api = self.client.api
        exec_id = api.exec_create(node.id, argv, stdout=True, stderr=False)["Id"]
        yield api.exec_start(exec_id, stream=True), lambda: api.exec_inspect(exec_id).get("ExitCode")

    def restart_node(self, node):
        """`docker restart`: the container keeps its endpoints (static addresses on the lab's
        networks) but gets a fresh network namespace and /dev, and nothing it ran survives."""
        try:
            node.restart(timeout=RESTART_GRACE)
            node.reload()
        except docker.errors.APIError as exc:
            raise LabError(f"restarting {node.name} failed: {exc.explanation}") from None
        if node.status != "running":
            raise LabError(f"{node.name} is {node.status} after its restart")

    def put_files(self, node, files):
        """Write text files into a node: one tar through the Docker API."""
        if not node.put_archive("/", tar_of(files)):
            raise LabError(f"{node.name}: writing {', '.join(files)} failed")

    def get_archive(self, node, path: str) -> bytes:
        """A directory of a node (running or stopped) as tar bytes."""
        stream, _ = node.get_archive(path)
        return b"".join(stream)

    def scratch_run(self, image, files, argv):
        box = self.client.containers.create(image, entrypoint=argv, network_mode="none", cap_add=["NET_ADMIN"],
                                            labels={names.ROLE: "check"})
        try:
            if files and not box.put_archive("/", tar_of(files)):
                raise LabError(f"writing {', '.join(files)} into a check container failed")
            box.start()
            rc = box.wait(timeout=120).get("StatusCode", 1)
            return ExecResult(rc, box.logs().decode(errors="replace"))
        finally:
            box.remove(force=True)

    # -- capture point
    def run_helper(self, lab, role, image, script, labels=None):
        """A lab-labelled helper container in the engine's own network namespace (where the
        segments' bridges are): NET_ADMIN and NET_RAW for tcpdump, nothing more."""
        return self.client.containers.run(
            image, entrypoint=["sh", "-c", script], name=obj_name(lab, role),
            network_mode="host", cap_add=["NET_ADMIN", "NET_RAW"], detach=True,
            labels={LABEL: lab, names.ROLE: role, **(labels or {})})

    @staticmethod
    def bridge(network) -> str:
        """The host interface of a lab network (what tcpdump listens on)."""
        return network.attrs.get("Options", {}).get("com.docker.network.bridge.name") or f"br-{network.id[:12]}"

    # -- image and health
    def ensure_image(self, suite: str | None = None) -> str:
        from . import images

        return images.ensure_node_image(self.client, suite or self.userland)

    def health(self) -> Probe:
        """Run a throwaway container that opens /dev/ppp and attaches the pptp helper."""
        probe = Probe(engine=self.name)
        try:
            info = self.client.info()
        except Exception as exc:  # unreachable in any way
            probe.detail.append(f"no Docker engine answers at {self.url} ({type(exc).__name__})")
            return probe
        probe.reachable = True
        probe.detail.append(f"kernel {info.get('KernelVersion')}, {info.get('OperatingSystem')}")
        tag = self.ensure_image()
        try:
            box = self.client.containers.run(tag, entrypoint=["sh", "-c", PROBE_SCRIPT], detach=True,
                                             cap_add=["NET_ADMIN"], devices=DEVICES,
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

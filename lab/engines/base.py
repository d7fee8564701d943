"""What every engine offers the layers above it: networks, nodes, exec, files, a capture
point, the node image and its health. lab.up.lifecycle, lab.up.capture, lab.up.live, lab.testing.testrun
and the CLI talk to an Engine, never to an SDK client of their own."""
from __future__ import annotations

import abc
import io
import tarfile
import time
from dataclasses import dataclass, field


@dataclass
class ExecResult:
    rc: int
    out: str

    @property
    def ok(self) -> bool:
        return self.rc == 0


@dataclass
class Probe:
    """An engine's health for the lab: reachable, /dev/ppp opens, the pptp helper attaches."""
    engine: str
    reachable: bool = False
    ppp: bool = False
    helper: bool = False
    detail: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return self.reachable and self.ppp and self.helper


def obj_name(lab: str, name: str) -> str:
    """An engine object's name: prefixed with its lab's, so labs side by side never clash."""
    return f"{lab}-{name}"


def tar_of(files: dict[str, tuple[str, int]]) -> bytes:
    """path -> (text, mode) as a tar to unpack at / (what put_files and lab_unpack take)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, (text, mode) in files.items():
            data = text.encode()
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode, info.mtime = len(data), mode, int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class Engine(abc.ABC):
    """One place labs run. `name` is how the user chose it (local, vm, vm:2, a URL); `url`
    is the Docker API address Ansible's docker_api connection is given for its nodes."""

    name: str
    url: str
    why: str

    @property
    def key(self) -> str:
        """The engine across its restarts: what notes kept on this host about its labs go by."""
        return self.url

    # -- networks and nodes (every object labelled with its lab)
    @abc.abstractmethod
    def create_network(self, lab: str, name: str, subnet: str, gateway: str | None = None,
                       labels: dict | None = None, mtu: int | None = None): ...

    @abc.abstractmethod
    def create_node(self, lab: str, name: str, image: str, addresses: dict[str, str],
                    role: str = "host", labels: dict | None = None, sysctls: dict[str, str] | None = None): ...

    @abc.abstractmethod
    def node(self, lab: str, name: str):
        """A lab's node by its topology name; LabError when there is none."""

    @abc.abstractmethod
    def containers(self, lab: str, role: str | None = None) -> list: ...

    @abc.abstractmethod
    def networks(self, lab: str) -> list: ...

    @abc.abstractmethod
    def labs(self) -> set[str]: ...

    @abc.abstractmethod
    def remove_lab(self, lab: str) -> int: ...

    # -- exec and files in a node
    @abc.abstractmethod
    def exec(self, node, cmd: str | list[str], check: bool = True) -> ExecResult: ...

    @abc.abstractmethod
    def put_files(self, node, files: dict[str, tuple[str, int]]) -> None: ...

    def restart_node(self, node) -> None:
        """Restart a node's container keeping its networks and addresses (lab.up.fault's
        `restart`). What ran in it is gone: the caller starts it again."""
        from ..core.errors import LabError

        raise LabError(f"the {self.name} engine cannot restart a node")

    # -- a capture point: a helper in the engine's own network namespace, where the
    #    segments' bridges are
    @abc.abstractmethod
    def run_helper(self, lab: str, role: str, image: str, script: str, labels: dict | None = None): ...

    @abc.abstractmethod
    def scratch_run(self, image: str, files: dict[str, tuple[str, int]], argv: list[str]) -> ExecResult:
        """Run argv in a throwaway node container (no network, NET_ADMIN in its own
        namespace) holding `files`, and remove it: checks before a lab exists."""

    # -- the node image and health
    @abc.abstractmethod
    def ensure_image(self, suite: str | None = None) -> str:
        """The node image of a userland suite (default: the engine's own) is loaded; its tag."""

    @abc.abstractmethod
    def health(self) -> Probe: ...

"""Node configuration through Ansible: lab.model.render writes each node's files, the inventory
carries them as unsafe values (never templated), and playbooks/lab.yml, run by
ansible-runner, copies them into the node containers and runs their configure script."""
from __future__ import annotations

import base64
import importlib.util
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

from ..model import render
from ..engines import obj_name, tar_of
from ..core.errors import LabError
from ..core.host import console
from ..core.paths import resource, state_dir
from ..model.topology import Topology

GROUP = "lab_nodes"


class Unsafe(str):
    """A string Ansible must never template (`!unsafe`): every value that came from a topology."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(Unsafe, lambda d, v: d.represent_scalar("!unsafe", str(v)))


def host_vars(topo: Topology, name: str, docker_url: str) -> dict:
    files = render.node_files(topo, name)
    return {
        "lab_node": Unsafe(name), "lab_kind": Unsafe(topo.nodes[name].kind),
        "lab_files": [Unsafe(p) for p in files],  # for people reading the inventory
        "lab_bundle": Unsafe(base64.b64encode(tar_of(files)).decode()),  # one exec per node
        # Per host, not for `all`: the play's copy task runs on the controller (localhost).
        "ansible_connection": "community.docker.docker_api",
        "ansible_docker_docker_host": Unsafe(docker_url),
        "ansible_python_interpreter": "/usr/bin/python3",
    }


def inventory(topo: Topology, docker_url: str, nodes: list[str] | None = None) -> dict:
    names = nodes or list(topo.nodes)
    return {"all": {"hosts": {"localhost": {"ansible_connection": "local",
                                            "ansible_python_interpreter": sys.executable}},
                    "children": {GROUP: {"hosts": {obj_name(topo.name, n): host_vars(topo, n, docker_url)
                                                   for n in names}}}}}


def inventory_yaml(topo: Topology, docker_url: str, nodes: list[str] | None = None) -> str:
    return yaml.dump(inventory(topo, docker_url, nodes), Dumper=_Dumper, sort_keys=False, width=1 << 20)


def _scratch() -> Path:
    """A private directory for one Ansible run (it holds secrets). Ones left by a run that
    died (its process is gone) are removed first."""
    base = sweep()
    return Path(tempfile.mkdtemp(prefix=f"run-{os.getpid()}-", dir=base))


def sweep() -> Path:
    """Remove the scratch directories of Ansible runs whose process is gone (killed: they
    hold the lab's secrets); returns their parent."""
    base = state_dir() / "ansible"
    base.mkdir(mode=0o700, exist_ok=True)
    for old in base.glob("run-*"):
        try:
            pid = int(old.name.split("-")[1])
            os.kill(pid, 0)
        except (ValueError, IndexError, ProcessLookupError):
            shutil.rmtree(old, ignore_errors=True)
        except PermissionError:
            pass  # alive, another user's
    return base


def _search_path() -> str:
    """Where apply's ansible-runner looks for ansible-playbook: next to this Python (a venv's
    bin/, never on PATH unless activated), then PATH."""
    return f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


def lacking() -> str | None:
    """One line saying what configuring nodes needs and this Python lacks, and how to install
    it; None when ansible-runner imports and ansible-playbook is found where apply looks."""
    gone = []
    if importlib.util.find_spec("ansible_runner") is None:
        gone.append(f"ansible-runner (not importable by {sys.executable})")
    if shutil.which("ansible-playbook", path=_search_path()) is None:
        gone.append(f"ansible-playbook (neither in {Path(sys.executable).parent} nor on PATH)")
    if not gone:
        return None
    return (f"{' and '.join(gone)} missing: `up` and `test` configure nodes with Ansible: "
            f"{sys.executable} -m pip install ansible-runner ansible")


def require() -> None:
    """LabError when configuring would fail for want of Ansible: said before any lab exists."""
    line = lacking()
    if line:
        raise LabError(line)


def apply(topo: Topology, docker_url: str, playbook: str = "lab.yml", nodes: list[str] | None = None) -> float:
    """Run the playbook against the lab's nodes (or only `nodes`); raise LabError naming the
    failed task and node."""
    import ansible_runner  # heavy import: only when configuring

    start = time.monotonic()
    tmp = _scratch()
    failures: list[str] = []

    def on_event(ev: dict) -> bool:
        data = ev.get("event_data", {})
        if ev.get("event") in ("runner_on_failed", "runner_on_unreachable") and not data.get("ignore_errors"):
            res = data.get("res", {})
            msg = res.get("msg") or res.get("stderr") or res.get("stdout") or "failed"
            failures.append(f"task {data.get('task')!r} on {data.get('host')}: {str(msg).strip()[:300]}")
        elif ev.get("event") == "playbook_on_task_start":
            status.update(f"configuring {topo.name} with Ansible: {data.get('task')} "
                          f"({time.monotonic() - start:.0f}s)")
        return True

    try:
        shutil.copytree(resource("playbooks"), tmp / "project",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        inv = tmp / "inventory"
        inv.mkdir(mode=0o700)
        (inv / "hosts.yml").write_text(inventory_yaml(topo, docker_url, nodes))
        (inv / "hosts.yml").chmod(0o600)
        with console.status(f"configuring {topo.name} with Ansible") as status:
            r = ansible_runner.run(
                private_data_dir=str(tmp), playbook=playbook, inventory=str(inv / "hosts.yml"),
                quiet=True, forks=16, event_handler=on_event,
                envvars={"PATH": _search_path(),
                         "ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_NOCOLOR": "1",
                         "ANSIBLE_DOCKER_TIMEOUT": "120", "ANSIBLE_RETRY_FILES_ENABLED": "False"})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if r.rc != 0 or failures:
        raise LabError(f"configuring {topo.name} failed: " + ("; ".join(failures) or f"ansible-runner rc {r.rc}"))
    took = time.monotonic() - start
    console.print(f"[green]✓[/] configured {len(nodes or topo.nodes)} nodes with Ansible ({took:.0f}s)")
    return took

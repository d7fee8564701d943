"""Engines: where a lab's networks and nodes run.

- base.py: the Engine interface (networks, nodes, exec, files, a capture point, the node
  image, health) and the shared small types.
- docker.py: a Docker endpoint (local socket, tcp://, ssh://).
- vm.py: the built-in VM (Debian's kernel with PPP under QEMU), a Docker engine on the
  guest's forwarded API; several instances side by side.
- choose.py: the one place an engine is chosen, from a name (auto, local, vm, vm:N, URL).
- images.py: the node image (a debootstrap rootfs) built on the host and imported into an engine.

May import lab.core, lab.pptp and lab.model."""
from .base import Engine, ExecResult, Probe, obj_name, tar_of
from .choose import HELP, check_spec, decide, not_running, probe_local, running, select, wanted

__all__ = ["Engine", "ExecResult", "Probe", "obj_name", "tar_of", "HELP", "check_spec", "decide",
           "not_running", "probe_local", "running", "select", "wanted"]

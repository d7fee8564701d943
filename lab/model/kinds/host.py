"""host: an end system (a target to ping through a tunnel); nothing of its own to run."""
from __future__ import annotations

from . import Kind


class HostKind(Kind):
    name = "host"


KIND = HostKind()

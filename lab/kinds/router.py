"""router: forwards between its networks along its routes; nothing of its own to run."""
from __future__ import annotations

from . import Kind


class RouterKind(Kind):
    name = "router"


KIND = RouterKind()

"""Pydantic pieces shared by the topology model (lab.model.topology) and the node kinds
(lab.model.kinds): the strict base, pppd-safe names and secrets, networks and routes. Both import
this module and neither imports the other's at module level, so there is no import cycle."""
from __future__ import annotations

import ipaddress
import unicodedata
from typing import Annotated, Literal, Optional

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

NAME = r"^[a-z][a-z0-9-]{0,23}$"


def _ipv4(v: str) -> str:
    return str(ipaddress.IPv4Address(v))


# An IPv4 address, written the canonical way (the one validator every kind's block uses).
IPv4 = Annotated[str, AfterValidator(_ipv4)]
ROLES = ("internet", "perimeter", "intranet", "home", "other")

MAX_WORD = 255  # octets: pppd keeps names and secrets in 256-byte buffers


def _word(v: str, what: str) -> str:
    """A value that lands in a pppd options file or chap-secrets. Those files quote words
    with "..." and backslash escapes, so any printable text is carried literally; what no
    quoting can carry (line breaks, NUL, other control characters) is refused here."""
    bad = next((c for c in v if unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp")), None)
    if bad is not None:
        raise ValueError(f"{what} holds the control character {bad!r}: pppd's files cannot carry it")
    if not v:
        raise ValueError(f"{what} is empty")
    if len(v.encode()) > MAX_WORD:
        raise ValueError(f"{what} is {len(v.encode())} octets long: pppd takes at most {MAX_WORD}")
    return v


def _name(v: str) -> str:
    _word(v, "a name")
    if v == "*":
        raise ValueError("'*' is chap-secrets' wildcard (any name), not a name")
    return v


def _secret(v: str) -> str:
    _word(v, "a secret")
    if v.startswith("@/"):
        raise ValueError("a secret starting with '@/' is read by pppd as a file name: not allowed")
    return v


# Names (users, servers) and secrets: any printable text, quoted per file when written.
PppName = Annotated[str, AfterValidator(_name)]
PppSecret = Annotated[str, AfterValidator(_secret)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Netem(Strict):
    """tc-netem on every node interface of a network (both ways), typed: numbers only."""
    loss: Optional[float] = Field(None, ge=0, le=100, description="percent of packets lost, each way")
    delay_ms: Optional[int] = Field(None, ge=0, le=60000, description="milliseconds added, each way")

    def words(self) -> list[str]:
        """tc-netem's argv words, in its order."""
        out = ["delay", f"{self.delay_ms}ms"] if self.delay_ms is not None else []
        return out + (["loss", f"{self.loss:g}%"] if self.loss is not None else [])


class Network(Strict):
    subnet: str
    role: Literal[ROLES] = "other"  # type: ignore[valid-type]
    mtu: Optional[int] = Field(None, ge=576, le=9000, description="the MTU of every interface on this "
                               "network (e.g. 1492, as on PPPoE): default the engine's (1500)")
    netem: Optional[Netem] = Field(None, description="loss or delay on this network, each way (SPEC S30)")

    @field_validator("subnet")
    @classmethod
    def _subnet(cls, v: str) -> str:
        net = ipaddress.IPv4Network(v, strict=True)
        if net.prefixlen > 29:
            raise ValueError(f"{v} is too small for a lab segment (use /29 or larger)")
        return str(net)

    @property
    def net(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet)

    @property
    def bridge_address(self) -> str:
        """The engine's own address on the segment (Docker's gateway): the last usable one,
        kept free of nodes; lab traffic is routed through lab nodes, never through it."""
        return str(self.net.broadcast_address - 1)


class Route(Strict):
    to: str
    via: IPv4

    @field_validator("to")
    @classmethod
    def _to(cls, v: str) -> str:
        return v if v == "default" else str(ipaddress.IPv4Network(v, strict=True))

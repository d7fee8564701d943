"""pptp-client: pptp-linux dialling one server with `pppd call lab`; the networks in its
`routes` go through the tunnel once it is up. Its block also serves a pptp-server that
dials out (a calling router, SPEC S17)."""
from __future__ import annotations

import ipaddress
import re
from typing import Literal, Optional

from pydantic import Field, field_validator

from .. import render, tunnels
from ...core import names
from ..types import IPv4, PppName, PppSecret, Strict
from . import Kind, get


class PptpOptions(Strict):
    """pptp-linux's own options (its man page), typed: each becomes fixed argv words."""
    idle_wait: Optional[int] = Field(None, ge=1, le=86400, description="--idle-wait: seconds "
                                     "idle before a PPTP Echo-Request (default 60)")
    max_echo_wait: Optional[int] = Field(None, ge=1, le=86400, description="--max-echo-wait: seconds "
                                         "to wait for an Echo-Reply (default 60)")
    timeout: Optional[float] = Field(None, gt=0, le=60, description="--timeout: seconds to wait "
                                     "for reordered GRE packets (default 0.3)")
    localbind: Optional[IPv4] = Field(None, description="--localbind: source address of the PPTP connection")
    loglevel: Optional[int] = Field(None, ge=0, le=2, description="--loglevel: 0 (errors) to 2 (debug)")
    sync: bool = Field(False, description="--sync: synchronous HDLC framing (pppd needs `sync` too)")
    nobuffer: bool = Field(False, description="--nobuffer: no GRE reordering buffer")
    nohostroute: bool = Field(False, description="--nohostroute: no host route to the server")
    quirks: Optional[Literal["BEZEQ_ISRAEL"]] = Field(None, description="--quirks (the one pptp-linux knows)")

    def argv(self) -> list[str]:
        out: list[str] = []
        for key in ("idle_wait", "max_echo_wait", "timeout", "localbind", "loglevel", "quirks"):
            value = getattr(self, key)
            if value is not None:
                out += ["--" + key.replace("_", "-"), str(value)]
        return out + ["--" + key for key in ("sync", "nobuffer", "nohostroute") if getattr(self, key)]


class PppEcho(Strict):
    """pppd's keepalive (pppd(8)), typed: each becomes an option line with a number. Short
    values make a fault's outcome show in seconds (SPEC S23-S26)."""
    lcp_echo_interval: Optional[int] = Field(None, ge=1, le=3600, description="lcp-echo-interval: "
                                             "seconds between LCP Echo-Requests (Debian's default 30)")
    lcp_echo_failure: Optional[int] = Field(None, ge=1, le=100, description="lcp-echo-failure: "
                                            "unanswered LCP Echo-Requests before pppd hangs up (Debian's default 4)")
    mtu: Optional[int] = Field(None, ge=576, le=1500, description="mtu: the largest packet this side "
                               f"sends into the tunnel (SPEC S29; the lab's default {names.PPP_MTU})")
    mru: Optional[int] = Field(None, ge=576, le=1500, description="mru: the largest packet this side asks "
                               f"its peer to send (the lab's default {names.PPP_MTU})")

    def lines(self) -> list[str]:
        """Option lines in field order: `name number`, or `name` for a flag that is on.
        mtu and mru are not among them: the templates write those (sizes)."""
        out = []
        for key, value in self:
            if key in ("mtu", "mru"):
                continue
            if isinstance(value, bool):
                out += [key] if value else []
            elif value is not None:
                out.append(f"{key.replace('_', '-')} {value}")
        return out


    def sizes(self) -> tuple[int, int]:
        """(mtu, mru) for pppd."""
        return self.mtu or names.PPP_MTU, self.mru or names.PPP_MTU


class PppTimers(PppEcho):
    """A dialling pppd's keepalive and redial options."""
    persist: bool = Field(False, description="persist: dial again after the call ends")
    holdoff: Optional[int] = Field(None, ge=0, le=3600, description="holdoff: seconds before dialling again")
    maxfail: Optional[int] = Field(None, ge=0, le=1000, description="maxfail: failed attempts before "
                                   "pppd gives up (0: never)")


class PptpClient(Strict):
    server: IPv4 = Field(description="the server address this client dials")
    user: PppName
    secret: PppSecret
    server_name: PppName = "pptpd"
    mppe: bool = True
    routes: list[str] = Field(default_factory=list, description="networks reached through the tunnel")
    options: PptpOptions = Field(default_factory=PptpOptions, description="pptp-linux options")
    ppp: PppTimers = Field(default_factory=PppTimers, description="pppd keepalive and redial options")
    pin_random: Optional[int] = Field(None, ge=0, le=255, description="pptp-linux reads its call ID "
                                      "from /dev/random: the node's /dev/random becomes this byte repeated, "
                                      "so clients with the same value choose the same call ID (SPEC S20)")

    @field_validator("routes")
    @classmethod
    def _routes(cls, v: list[str]) -> list[str]:
        return [str(ipaddress.IPv4Network(x, strict=True)) for x in v]


BLOCK = (Optional[PptpClient], None)  # also declared by pptp-server (a calling router)


def tunnel_link(run, ifname: str) -> tuple[str, str, str, int | None]:
    """("up"|"down", local address, peer address, MTU) of a tunnel interface, in one exec."""
    out = run(f"ip -o link show dev {ifname} 2>/dev/null; ip -4 -o addr show dev {ifname} 2>/dev/null").out
    m = re.search(r"inet (\S+) peer (\S+?)/", out)
    mtu = re.search(r" mtu (\d+) ", out)
    return ("up", m.group(1), m.group(2), int(mtu[1]) if mtu else None) if m else ("down", "", "", None)


def tunnel_state(run, ifname: str) -> tuple[str, str, str]:
    """("up"|"down", local address, peer address) of a tunnel interface."""
    return tunnel_link(run, ifname)[:3]


class PptpClientKind(Kind):
    name = "pptp-client"
    blocks = {"pptp_client": BLOCK}
    required = ("pptp_client",)
    secrets = ("pptp_client.secret",)
    packages = ("ppp", "pptp-linux")
    script = "client.sh.j2"

    def files(self, topo, name, node, ctx):
        c = node.pptp_client
        unit = int(get(node.kind).tunnel_if(node)[3:])  # ppp100 on a calling router
        ctx["users"].append({"name": c.user, "secret": c.secret, "server": c.server_name})
        ctx["pin_random"] = c.pin_random
        return render.client_files(c.server, c.user, c.server_name, c.mppe, c.options.argv(), unit, c.routes,
                                   c.ppp.lines(), c.ppp.sizes())

    def status(self, run, st, seen):
        st.tunnel, st.ppp_address, st.peer_address, st.tunnel_mtu = tunnel_link(run, self.tunnel_if(st))
        tunnels.fill(st, tunnels.nearest(seen, st.addresses))


KIND = PptpClientKind()

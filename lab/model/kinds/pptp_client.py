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


COUNT = (Optional[int], Field(None, ge=2, le=250, description="this many clients in the one node, each its "
                              "own call from its own address: the interface's address and the next ones "
                              "(members NODE#1..NODE#N; behind a NAT they look like separate hosts)"))


def tunnel_links(run) -> dict[str, tuple[str, str, str, int | None]]:
    """ifname -> tunnel_link()'s reading, for every ppp interface of the node, in one exec."""
    out = run("ip -o link show; ip -4 -o addr show").out
    links = {}
    for ifname, mtu in re.findall(r"^\d+: (ppp\d+)[:@].* mtu (\d+) ", out, re.M):
        links[ifname] = ("down", "", "", int(mtu))
    for ifname, local, peer in re.findall(r"^\d+: (ppp\d+)\s+inet (\S+) peer (\S+?)/", out, re.M):
        links[ifname] = ("up", local, peer, links.get(ifname, ("", "", "", None))[3])
    return links


class PptpClientKind(Kind):
    name = "pptp-client"
    blocks = {"pptp_client": BLOCK, "count": COUNT}
    required = ("pptp_client",)
    secrets = ("pptp_client.secret",)
    packages = ("ppp", "pptp-linux")
    script = "client.sh.j2"

    def labels(self, topo, name, node):
        out = super().labels(topo, name, node)
        if getattr(node, "count", None):
            from .. import members

            ms = members.of_node(topo, name)
            out.insert(0, (f"{node.count} clients {ms[0].address}-{ms[-1].address}", "role"))
        return out

    def validate(self, node):
        if not getattr(node, "count", None):
            return
        if len(node.interfaces) != 1:
            raise ValueError("count: a node with a count has one interface (its members' addresses are on it)")
        if int(ipaddress.IPv4Address(next(iter(node.interfaces.values())))) + node.count > 2 ** 32:
            raise ValueError("count: its addresses would run past 255.255.255.255")
        if node.pptp_client.routes:
            raise ValueError("count: pptp_client.routes are not yet for a node with a count (each member's "
                             "tunnel would claim the same routes)")
        if node.pptp_client.options.localbind is not None:
            raise ValueError("count: pptp_client.options.localbind is set by the lab on a node with a count "
                             "(each member binds its own address)")

    def check(self, topo, name, node):
        if not getattr(node, "count", None):
            return []
        from .. import members

        net, first = next(iter(node.interfaces.items()))
        if net not in topo.networks:
            return []  # said at its interface
        network = topo.networks[net]
        counted = [n for n, o in topo.nodes.items() if getattr(o, "count", None)]
        total = sum(topo.nodes[n].count for n in counted)
        if total > members.MAX_MEMBERS and name == counted[0]:
            return [f"nodes.{name}.count: the counted nodes make {total} clients in all, more than "
                    f"the {members.MAX_MEMBERS} a topology may ask for"]
        ms = members.of_node(topo, name)
        last = ms[-1].address
        where = f"nodes.{name}.count: {node.count} addresses from {first} run to {last}"
        ip = ipaddress.IPv4Address(last)
        if ip not in network.net or ip == network.net.broadcast_address:
            return [f"{where}, past the end of {net} ({network.subnet})"]
        # What else holds an address: the bridge, a static NAT's public address, another count.
        taken = {network.bridge_address: f"the engine's bridge on {net}"}
        taken |= {o.nat.public: f"nodes.{other}.nat.public" for other, o in topo.nodes.items()
                  if getattr(o, "nat", None) is not None and o.nat.public}
        taken |= {a: f"also {w}" for a, w in members.used_addresses(topo).items() if w != f"nodes.{name}.count"}
        clash = next((m.address for m in ms[1:] if m.address in taken), None)
        return [f"{where}; {clash} is {taken[clash]}"] if clash else []

    def files(self, topo, name, node, ctx):
        c = node.pptp_client
        ctx["users"].append({"name": c.user, "secret": c.secret, "server": c.server_name})
        ctx["pin_random"] = c.pin_random
        if getattr(node, "count", None):
            from .. import members

            ms = members.of_node(topo, name)
            ctx["member_addresses"] = [f"{m.address}/{m.prefixlen}" for m in ms[1:]]
            ctx["member_primary"] = ms[0].address
            return render.member_files(c.server, c.user, c.server_name, c.mppe, c.options.argv(),
                                       [(m.index, m.address, m.peer) for m in ms],
                                       c.ppp.lines(), c.ppp.sizes())
        unit = int(get(node.kind).tunnel_if(node)[3:])  # ppp100 on a calling router
        return render.client_files(c.server, c.user, c.server_name, c.mppe, c.options.argv(), unit, c.routes,
                                   c.ppp.lines(), c.ppp.sizes())

    def status(self, run, st, seen):
        if not st.members:
            st.tunnel, st.ppp_address, st.peer_address, st.tunnel_mtu = tunnel_link(run, self.tunnel_if(st))
            tunnels.fill(st, tunnels.nearest(seen, st.addresses))
            return None
        # A counted node: its row sums up; a row per member follows it (one exec for all).
        from ..members import numbered

        net, first = next(iter(st.addresses.items()))
        links = tunnel_links(run)
        rows = []
        for _, name, addr, ifname in numbered(st.name, first, st.members):
            m = type(st)(name, st.kind, st.state, {net: addr})
            m.tunnel, m.ppp_address, m.peer_address, m.tunnel_mtu = links.get(ifname, ("down", "", "", None))
            tunnels.fill(m, tunnels.nearest(seen, m.addresses))
            rows.append(m)
        up = sum(1 for m in rows if m.tunnel == "up")
        st.tunnel = "up" if up == len(rows) else "down" if not up else f"{up}/{len(rows)} up"
        return rows


KIND = PptpClientKind()

"""pptp-server: pptpd answering PPTP calls, its users in chap-secrets (or authenticated by
another node: see Contribution.authenticates). It may also dial out as a calling router
(SPEC S17): then it has a pptp_client block too and its own tunnel is ppp100."""
from __future__ import annotations

import ipaddress
import re
from typing import Optional

from pydantic import Field, field_validator

from .. import render
from ...core.errors import LabError
from ..types import IPv4, PppName, PppSecret, Strict
from . import OPTION, Kind, authenticated_elsewhere, dial_labels
from .pptp_client import BLOCK as CLIENT_BLOCK, PppEcho

POOL = re.compile(r"(\d+\.\d+\.\d+\.)(\d+)-(\d+)")  # A.B.C.X-Y, pptpd's remoteip form
OPTIONS_DIR = "/etc/ppp/pptp-lab.d"  # option files other nodes contribute (Contribution.pppd_options)


class User(Strict):
    name: PppName
    secret: PppSecret


class PptpServer(Strict):
    local_ip: IPv4
    remote_ip: str = Field(description="pool, e.g. 172.16.0.10-50")
    users: list[User] = Field(default_factory=list, description="at least one, unless another node "
                              "authenticates this server's users")
    name: PppName = "pptpd"
    mppe: bool = True
    ppp: PppEcho = Field(default_factory=PppEcho, description="pppd keepalive and packet sizes of the calls it answers")

    @field_validator("remote_ip")
    @classmethod
    def _pool(cls, v: str) -> str:
        m = POOL.fullmatch(v)
        if not m or not int(m.group(2)) <= int(m.group(3)) <= 254:
            raise ValueError(f"{v!r}: give a pool as A.B.C.X-Y with X <= Y <= 254")
        ipaddress.IPv4Address(m.group(1) + m.group(2))
        return v

    @property
    def pool(self) -> list[str]:
        prefix, lo, hi = POOL.fullmatch(self.remote_ip).groups()
        return [f"{prefix}{i}" for i in range(int(lo), int(hi) + 1)]


class PptpServerKind(Kind):
    name = "pptp-server"
    blocks = {"pptp_server": (Optional[PptpServer], None), "pptp_client": CLIENT_BLOCK}
    required = ("pptp_server",)
    secrets = ("pptp_server.users[].secret", "pptp_client.secret")
    packages = ("ppp", "pptpd")

    def labels(self, topo, name, node):
        srv = node.pptp_server
        return [(f"PPTP server {srv.local_ip}", "role"),
                (f"pool {srv.remote_ip}" + ("" if srv.mppe else ", no MPPE"), "role"), *dial_labels(topo, node)]

    def check(self, topo, name, node):
        if not node.pptp_server.users and not authenticated_elsewhere(topo, name):
            return [f"nodes.{name}.pptp_server.users: empty, and no node authenticates {name}'s "
                    "users: give at least one user"]
        return []

    def files(self, topo, name, node, ctx):
        s = node.pptp_server
        files = {}
        option_files = []
        for kind, lines in ctx.pop("pppd_options", {}).items():  # contributed by other nodes
            bad = next((line[0] for line in lines if not OPTION.fullmatch(line[0])), None)
            if bad is not None:
                raise LabError(f"kind {kind}: {bad!r} is no pppd option name")
            path = f"{OPTIONS_DIR}/{kind}.options"
            files[path] = (render.render("pppd-extra.options.j2", kind=kind, lines=lines), 0o644)
            option_files.append(path)
        ctx["users"] += [{"name": u.name, "secret": u.secret, "server": s.name} for u in s.users]
        return render.server_files(s.local_ip, s.remote_ip, s.name, s.mppe, option_files, s.ppp.lines(),
                                  s.ppp.sizes(), max(64, len(s.pool))) | files

    def tunnel_if(self, node):
        """ppp100: its own outgoing call (S17) never clashes with the calls it answers."""
        return "ppp100"

    def start(self, run):
        run("pgrep -x pptpd >/dev/null || pptpd")

    def status(self, run, st, seen):
        # The calls it answers; its own outgoing call (a calling router, S17) is not one.
        own = self.tunnel_if(st)
        out = run("ip -o link show").out
        n = len([x for x in re.findall(r"^\d+: (ppp\d+)[:@]", out, re.M) if x != own])
        st.tunnel = f"{n} call(s)"


KIND = PptpServerKind()

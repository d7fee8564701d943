"""The files a node is configured with, rendered in Python from playbooks/templates.

A topology is untrusted input: its values are data handed to the templates, never template
text, and each is quoted by the rules of the file it lands in (`pppd`: pppd's option and
secrets files; `sh`: the node's configure script). A rendered value that still holds a
line break or another control character is refused here, whatever validation missed.
lab.up.configure hands the files to playbooks/lab.yml, which copies them into the nodes."""
from __future__ import annotations

import functools
import shlex
import unicodedata
from typing import TYPE_CHECKING

import jinja2

from . import kinds
from ..core import names
from ..core.errors import LabError
from ..core.paths import resource

if TYPE_CHECKING:
    from .topology import Topology

PEER = names.PEER
DIAL = "/usr/local/sbin/pptp-lab-dial"  # dials and judges the call early (dial.sh.j2)
MTU = names.PPP_MTU
SCRIPT = "/etc/pptp-lab/configure.sh"


def pppd_word(value) -> str:
    """One word of a pppd options or chap-secrets file: pppd's getword() reads "..." with
    backslash escapes, so quoting makes spaces, '#', quotes and '*' plain characters."""
    text = str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _finalize(value):
    text = "" if value is None else str(value)
    if any(unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") for c in text):
        raise LabError(f"refusing to write a value with a control character into a node's files: {text[:40]!r}")
    return value


@functools.cache
def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(resource("playbooks") / "templates"),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True,
                             autoescape=False, finalize=_finalize)
    env.filters["pppd"] = pppd_word
    env.filters["sh"] = lambda v: shlex.quote(str(v))
    for kind in kinds.KINDS.values():  # a kind's own quoting filters (Kind.filters)
        env.filters.update(kind.filters)
    env.globals.update(filter_table=names.FILTER_TABLE, nat_table=names.NAT_TABLE)
    return env


kinds.on_change(_env.cache_clear)  # a kind registered later brings its filters


def render(template: str, **values) -> str:
    return _env().get_template(template).render(**values)


def tunnel_if(node) -> str:
    """A node's own tunnel interface, by its kind (anything with a `kind`): ppp0; a VPN
    server that also dials out (a calling router, S17) uses ppp100 so it never clashes with
    the interfaces of the calls it answers."""
    return kinds.get(node.kind).tunnel_if(node)


def server_files(local_ip: str, remote_range: str, server_name: str = "pptpd",
                 mppe: bool = True, option_files: list[str] = (),
                 ppp_lines: list[str] = (), sizes: tuple[int, int] = (MTU, MTU),
                 connections: int = 64) -> dict[str, tuple[str, int]]:
    """path -> (text, mode) of a pptpd node; pptpd-options includes the `option_files`.
    ppp_lines: typed pppd options (PppTimers.lines: a name and a number each); sizes: (mtu, mru);
    connections: calls pptpd takes at once (it refuses the next)."""
    v = dict(local_ip=local_ip, remote_range=remote_range, server_name=server_name, mppe=mppe,
             mtu=int(sizes[0]), mru=int(sizes[1]), connections=int(connections), option_files=list(option_files),
             ppp_lines=list(ppp_lines))
    return {"/etc/pptpd.conf": (render("pptpd.conf.j2", **v), 0o644),
            "/etc/ppp/pptpd-options": (render("pptpd-options.j2", **v), 0o644)}


def chap_secrets(users: list[dict]) -> dict[str, tuple[str, int]]:
    return {"/etc/ppp/chap-secrets": (render("chap-secrets.j2", users=users), 0o600)}


def client_files(server: str, user: str, server_name: str = "pptpd", mppe: bool = True,
                 pptp_argv: list[str] = (), unit: int = 0, routes: list[str] = (),
                 ppp_lines: list[str] = (), sizes: tuple[int, int] = (MTU, MTU)) -> dict[str, tuple[str, int]]:
    """path -> (text, mode) of a pptp-linux client dialling `pppd call lab`. pppd runs the
    pty command through a shell: it is built from an address and typed options only."""
    pty = shlex.join(["pptp", server, "--nolaunchpppd", *pptp_argv])
    v = dict(pty=pty, user=user, remote_name=server_name, mppe=mppe, peer=PEER, unit=unit,
             mtu=int(sizes[0]), mru=int(sizes[1]),
             tunnel_routes=list(routes), ppp_lines=list(ppp_lines))
    return {f"/etc/ppp/peers/{PEER}": (render("peer.j2", **v), 0o644),
            "/etc/ppp/ip-up.d/pptp-lab": (render("ip-up.j2", **v), 0o755),
            DIAL: (render("dial.sh.j2", peer=PEER, log=names.PPP_LOG), 0o755)}


def member_files(server: str, user: str, server_name: str, mppe: bool, pptp_argv: list[str],
                 members: list[tuple[int, str, str]], ppp_lines: list[str] = (),
                 sizes: tuple[int, int] = (MTU, MTU)) -> dict[str, tuple[str, int]]:
    """path -> (text, mode) of a node with a count: a pppd peer per member (index, address,
    peer): `unit index-1`, its own pid file (linkname), and pptp bound to the member's own
    address, so each call has its own control connection and GRE socket (its log is the
    dial's: lab.model.members.log)."""
    files = {}
    for index, address, peer in members:
        pty = shlex.join(["pptp", server, "--nolaunchpppd", "--localbind", address, *pptp_argv])
        v = dict(pty=pty, user=user, remote_name=server_name, mppe=mppe, peer=peer, unit=int(index) - 1,
                 linkname=peer, mtu=int(sizes[0]), mru=int(sizes[1]), ppp_lines=list(ppp_lines))
        files[f"/etc/ppp/peers/{peer}"] = (render("peer.j2", **v), 0o644)
    files["/etc/ppp/ip-up.d/pptp-lab"] = (render("ip-up.j2", peer=PEER, tunnel_routes=[]), 0o755)
    files[DIAL] = (render("dial.sh.j2", peer=PEER, log=names.PPP_LOG), 0o755)
    return files


def node_files(topo: Topology, name: str) -> dict[str, tuple[str, int]]:
    """Every file node `name` is configured with, its configure script included: each of
    its kinds (lab.model.kinds.of) renders its own files and part of the script, and every node
    that gives it something (Kind.contribute) adds its contribution."""
    node = topo.nodes[name]
    given = kinds.contributions(topo, name)
    pppd_options: dict[str, list[tuple[str, ...]]] = {}
    for kind, _, c in given:
        if c.pppd_options:
            pppd_options.setdefault(kind.name, []).extend(tuple(line) for line in c.pppd_options)
    # The script's context; each kind fills its part. users: chap-secrets lines (the
    # server's users and the client's own credentials).
    # renames: each interface is named after its network (names.interface), found by its
    # address; ruleset: the flavour of the node's own ruleset (lab.model.rulesets.files).
    ctx: dict = {"routes": [{"to": r.to, "via": r.via} for r in node.routes], "users": [], "scripts": [],
                 "netem": [{"address": addr, "words": topo.networks[net].netem.words()}
                           for net, addr in node.interfaces.items()
                           if net in topo.networks and topo.networks[net].netem and topo.networks[net].netem.words()],
                 "pppd_options": pppd_options, "ruleset": None,
                 "renames": [{"address": addr, "name": names.interface(net)} for net, addr in node.interfaces.items()
                             if net in topo.networks and names.interface(net)]}
    files: dict[str, tuple[str, int]] = {}
    for kind in kinds.of(node):
        files |= kind.files(topo, name, node, ctx)
        if kind.script:
            ctx["scripts"].append(kind.script)
    if ctx.pop("pppd_options", None):  # a kind that takes them (pptp-server) pops them
        raise LabError(f"nodes.{name}: given pppd options by {', '.join(pppd_options)}, but it runs no pptpd")
    if ctx["users"]:
        files |= chap_secrets(ctx["users"])
    for kind, giver, c in given:
        for path, (text, mode) in c.files.items():
            if path in files or path == SCRIPT:
                raise LabError(f"nodes.{giver} (kind {kind.name}) gives {name} the file {path}, "
                               f"which {name} has already")
            files[path] = (text, mode)
    files[SCRIPT] = (render("configure.sh.j2", **ctx), 0o700)
    return files

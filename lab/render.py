"""The files a node is configured with, rendered in Python from playbooks/templates.

A topology is untrusted input: its values are data handed to the templates, never template
text, and each is quoted by the rules of the file it lands in (`pppd`: pppd's option and
secrets files; `sh`: the node's configure script). A rendered value that still holds a
line break or another control character is refused here, whatever validation missed.
lab.configure hands the files to playbooks/lab.yml, which copies them into the nodes."""
from __future__ import annotations

import functools
import shlex
import unicodedata

import jinja2

from . import names
from .errors import LabError
from .paths import resource
from .topology import Topology

PEER = names.PEER
MTU = 1400
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
    env.globals.update(filter_table=names.FILTER_TABLE, nat_table=names.NAT_TABLE)
    return env


def render(template: str, **values) -> str:
    return _env().get_template(template).render(**values)


def tunnel_if(node) -> str:
    """A client's tunnel interface: ppp0; a VPN server that also dials out (a calling router,
    S17) uses ppp100 so it never clashes with the interfaces of the calls it answers."""
    return "ppp100" if node.kind == "pptp-server" else "ppp0"


def server_files(local_ip: str, remote_range: str, server_name: str = "pptpd",
                 mppe: bool = True) -> dict[str, tuple[str, int]]:
    """path -> (text, mode) of a pptpd node."""
    v = dict(local_ip=local_ip, remote_range=remote_range, server_name=server_name, mppe=mppe,
             mtu=MTU, connections=64)
    return {"/etc/pptpd.conf": (render("pptpd.conf.j2", **v), 0o644),
            "/etc/ppp/pptpd-options": (render("pptpd-options.j2", **v), 0o644)}


def chap_secrets(users: list[dict]) -> dict[str, tuple[str, int]]:
    return {"/etc/ppp/chap-secrets": (render("chap-secrets.j2", users=users), 0o600)}


def client_files(server: str, user: str, server_name: str = "pptpd", mppe: bool = True,
                 pptp_argv: list[str] = (), unit: int = 0, routes: list[str] = ()) -> dict[str, tuple[str, int]]:
    """path -> (text, mode) of a pptp-linux client dialling `pppd call lab`. pppd runs the
    pty command through a shell: it is built from an address and typed options only."""
    pty = shlex.join(["pptp", server, "--nolaunchpppd", *pptp_argv])
    v = dict(pty=pty, user=user, remote_name=server_name, mppe=mppe, peer=PEER, unit=unit, mtu=MTU,
             tunnel_routes=list(routes))
    return {f"/etc/ppp/peers/{PEER}": (render("peer.j2", **v), 0o644),
            "/etc/ppp/ip-up.d/pptp-lab": (render("ip-up.j2", **v), 0o755)}


def node_files(topo: Topology, name: str) -> dict[str, tuple[str, int]]:
    """Every file node `name` is configured with, its configure script included."""
    from . import policy

    node = topo.nodes[name]
    files: dict[str, tuple[str, int]] = {}
    users: list[dict] = []  # chap-secrets: the server's users and the client's own credentials
    ctx: dict = {"kind": node.kind, "routes": [{"to": r.to, "via": r.via} for r in node.routes],
                 "client": None, "nat": None, "fw": None}
    if node.pptp_server:
        s = node.pptp_server
        files |= server_files(s.local_ip, s.remote_ip, s.name, s.mppe)
        users += [{"name": u.name, "secret": u.secret, "server": s.name} for u in s.users]
    if node.pptp_client:
        c = node.pptp_client
        files |= client_files(c.server, c.user, c.server_name, c.mppe, c.options.argv(),
                              int(tunnel_if(node)[3:]), c.routes)
        users.append({"name": c.user, "secret": c.secret, "server": c.server_name})
        ctx["client"], ctx["pin_random"] = True, c.pin_random
    if users:
        files |= chap_secrets(users)
    if node.nat:
        n = node.nat
        ctx["nat"] = {"mode": n.mode, "pptp_editor": n.pptp_editor, "public": n.public, "private": n.private,
                      "outside_address": node.interfaces[n.outside],
                      "outside_prefix": topo.networks[n.outside].net.prefixlen}
        files["/etc/pptp-lab/nat.nft"] = (render("nat.nft.j2", nat=ctx["nat"]), 0o644)
    if node.kind == "firewall":
        custom = [policy.Filter(**f.model_dump()) for f in node.filters]
        rules = policy.filters(node.policy, custom, node.policy_without)
        inet, perim = topo.firewall_interface(node, "internet"), topo.firewall_interface(node, "perimeter")
        ruleset = policy.nft_ruleset(rules, topo.vpn_address(node) or "") if node.policy != "open" else ""
        ctx["fw"] = {"internet_address": node.interfaces.get(inet, ""),
                     "perimeter_address": node.interfaces.get(perim, ""), "ruleset": bool(ruleset)}
        if ruleset:
            files["/etc/pptp-lab/filter.nft"] = ('include "/etc/pptp-lab/filter-ifaces.nft"\n'
                                                 f"table {names.FILTER_TABLE}\n"
                                                 f"delete table {names.FILTER_TABLE}\n" + ruleset + "\n", 0o644)
    files[SCRIPT] = (render("configure.sh.j2", **ctx), 0o700)
    return files

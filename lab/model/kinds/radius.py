"""radius: a FreeRADIUS 3.2 server that pptp-server nodes authenticate their users against,
through pppd's radius plugin (radius.so of ppp 2.4.9) with MS-CHAPv2 and MPPE-128 keys.

    aaa:
      kind: radius
      interfaces: {lan: 10.74.0.30}
      radius:
        secret: shared-secret      # RADIUS shared secret (pppd: one word, at most 48)
        serves: [vpn]              # pptp-server nodes that ask this server
        users: [{name: alice, secret: alice-secret}]

The users live here only: a served pptp-server lists none of its own. Each served server
gets the plugin's files (radiusclient.conf, servers, dictionary, port map) and two pppd
options through Kind.contribute; this node gets radiusd.conf, clients.conf and users in
one self-contained directory. Facts and sources: docs/radius-notes.md.

Quoting (topology values are untrusted). FreeRADIUS expands double-quoted strings at run
time (`%{exec:...}`), so every value is written single-quoted, which 3.2 never expands
(freeradius-server release_3_2_1):
* users file values (src/lib/token.c, then value.c's unescaping): backslash -> \\\\,
  quote -> \\' (`radius`).
* clients.conf (src/main/conffile.c, correct_escapes always on): only \\' -> ', other
  backslashes stay raw, so one before a quote or at the end is refused (`radius_conf`).
* users file entry names (src/main/files.c): no backslash at all, and not `DEFAULT`, the
  every-user entry (`radius_name`).
* pppd's servers file (pppd/plugins/radius/config.c): blank-separated words, the secret
  cut at 48 characters: 1..48 printable ASCII without space (`servers_secret`).
Each rule is also a validator of the block, so a value no file can carry is refused when
the topology loads, with its key path."""
from __future__ import annotations

import unicodedata
from typing import Annotated, Optional

from pydantic import AfterValidator, Field


from .. import render
from ..types import PppName, PppSecret, Strict
from . import Contribution, Kind

CONFDIR = "/etc/freeradius/pptp-lab"  # FreeRADIUS reads it as user freerad: not under /etc/pptp-lab (0700)
CLIENTDIR = "/etc/pptp-lab/radiusclient"  # pppd's radius plugin files on a served server
START = "/etc/pptp-lab/radius-start.sh"
LOG = "/var/log/pptp-lab-radius.log"
AUTH_PORT, ACCT_PORT = 1812, 1813

MAX_VALUE = 255        # octets: pppd keeps MS-CHAP secrets in 256-byte buffers
MAX_NAME = 253         # octets: a RADIUS User-Name attribute
MAX_SERVER_SECRET = 48  # ppp 2.4.9 radiusclient.h MAX_SECRET_LENGTH; longer is silently cut


class RadiusQuoteError(ValueError):
    pass


def _text(value, what: str, limit: int) -> str:
    if value is None:
        raise RadiusQuoteError(f"{what}: no value")
    text = str(value)
    if not text:
        raise RadiusQuoteError(f"{what}: empty")
    if any(unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") for c in text):
        raise RadiusQuoteError(f"{what}: control characters and line breaks are not allowed")
    if len(text.encode("utf-8")) > limit:
        raise RadiusQuoteError(f"{what}: longer than {limit} octets")
    return text


def radius(value) -> str:
    """A FreeRADIUS 3.2 single-quoted literal for an attribute value in the users file or a
    value in clients.conf: never expanded, reads back as exactly `value`."""
    text = _text(value, "a FreeRADIUS value", MAX_VALUE)
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _raw_backslashes(text: str, what: str) -> str:
    if text.endswith("\\") or "\\'" in text:
        raise RadiusQuoteError(f"{what}: a backslash before a quote or at the end cannot be written "
                               "in a FreeRADIUS 3.2 configuration file")
    return "'" + text.replace("'", "\\'") + "'"


def radius_conf(value) -> str:
    """A FreeRADIUS 3.2 single-quoted literal for a value in clients.conf (or another file read
    by the configuration parser): never expanded; backslashes are written raw."""
    return _raw_backslashes(_text(value, "a FreeRADIUS configuration value", MAX_VALUE),
                            "a FreeRADIUS configuration value")


def radius_name(value) -> str:
    """The name that starts an entry of the FreeRADIUS users file, single-quoted."""
    text = _text(value, "a RADIUS user name", MAX_NAME)
    if "\\" in text:
        raise RadiusQuoteError("a RADIUS user name may not hold a backslash (users-file names "
                               "keep backslashes raw; MS-CHAP reads DOMAIN\\user)")
    if text == "DEFAULT":
        raise RadiusQuoteError("'DEFAULT' is the FreeRADIUS users file's every-user entry, not a name")
    return _raw_backslashes(text, "a RADIUS user name")


def servers_secret(value) -> str:
    """The RADIUS shared secret as one word of pppd's radiusclient `servers` file."""
    text = _text(value, "a RADIUS shared secret", MAX_SERVER_SECRET)
    if not all("!" <= c <= "~" for c in text):
        raise RadiusQuoteError("a RADIUS shared secret may hold printable ASCII without spaces only "
                               "(pppd's servers file splits words on blanks)")
    if len(text) > MAX_SERVER_SECRET:
        raise RadiusQuoteError(f"a RADIUS shared secret is at most {MAX_SERVER_SECRET} characters for pppd")
    return text


def _valid(fn):
    def check(v: str) -> str:
        try:
            fn(v)
        except RadiusQuoteError as exc:
            raise ValueError(str(exc)) from None
        return v
    return AfterValidator(check)


# A name and a secret must suit both pppd (the client side) and FreeRADIUS's files.
RadiusName = Annotated[PppName, _valid(radius_name)]
RadiusPassword = Annotated[PppSecret, _valid(radius)]
SharedSecret = Annotated[str, _valid(servers_secret), _valid(radius_conf)]


class RadiusUser(Strict):
    name: RadiusName
    secret: RadiusPassword


class Radius(Strict):
    secret: SharedSecret = Field(description="the RADIUS shared secret (printable ASCII, no space, at most 48)")
    serves: list[str] = Field(min_length=1, description="pptp-server nodes that authenticate their users here")
    users: list[RadiusUser] = Field(min_length=1, description="the PPTP users (MS-CHAPv2)")


def _shared(topo, a: str, b: str) -> str | None:
    """A network both nodes are on (the first of a's), or None."""
    return next((n for n in topo.nodes[a].interfaces if n in topo.nodes[b].interfaces), None)


class RadiusKind(Kind):
    name = "radius"
    blocks = {"radius": (Optional[Radius], None)}
    required = ("radius",)
    secrets = ("radius.secret", "radius.users[].secret")
    packages = ("freeradius", "ppp", "iproute2")  # ppp: radius.so on the servers; ss for status
    filters = {"radius": radius, "radius_conf": radius_conf, "radius_name": radius_name,
               "radius_servers_secret": servers_secret}

    def check(self, topo, name, node):
        errors, where = [], f"nodes.{name}.radius.serves"
        for i, srv in enumerate(node.radius.serves):
            other = topo.nodes.get(srv)
            if other is None or other.kind != "pptp-server":
                errors.append(f"{where}[{i}]: no pptp-server node {srv!r}")
                continue
            if not _shared(topo, name, srv):
                errors.append(f"{where}[{i}]: {srv} shares no network with {name}")
            if other.pptp_server.users:
                errors.append(f"{where}[{i}]: {srv}'s users live on {name}: leave nodes.{srv}.pptp_server.users out")
            twice = [n for n, x in topo.nodes.items() if n != name and x.radius and srv in x.radius.serves]
            if twice:
                errors.append(f"{where}[{i}]: {srv} is served by {twice[0]} too (one RADIUS server per pptp-server)")
        if len(set(node.radius.serves)) != len(node.radius.serves):
            errors.append(f"{where}: a node is listed twice")
        return errors

    def files(self, topo, name, node, ctx):
        r = node.radius
        clients = [{"address": topo.nodes[s].interfaces[_shared(topo, name, s)], "secret": r.secret}
                   for s in r.serves]
        listen = "*" if len(node.interfaces) > 1 else next(iter(node.interfaces.values()))
        v = dict(confdir=CONFDIR, listen_address=listen, auth_port=AUTH_PORT, acct_port=ACCT_PORT)
        return {
            f"{CONFDIR}/radiusd.conf": (render.render("radius-radiusd.conf.j2", **v), 0o600),
            f"{CONFDIR}/clients.conf": (render.render("radius-clients.conf.j2", clients=clients), 0o600),
            f"{CONFDIR}/users": (render.render("radius-users.j2", users=[u.model_dump() for u in r.users]), 0o600),
            START: (render.render("radius-start.sh.j2", confdir=CONFDIR, log=LOG, port=AUTH_PORT), 0o700),
        }

    def contribute(self, topo, name, node):
        r, out = node.radius, {}
        for srv in r.serves:
            if srv not in topo.nodes or not _shared(topo, name, srv):
                continue  # check() says why
            address = node.interfaces[_shared(topo, name, srv)]
            v = dict(dir=CLIENTDIR, server_address=address, auth_port=AUTH_PORT, acct_port=ACCT_PORT,
                     secret=r.secret)
            out[srv] = Contribution(
                files={f"{CLIENTDIR}/radiusclient.conf": (render.render("radius-radiusclient.conf.j2", **v), 0o644),
                       f"{CLIENTDIR}/servers": (render.render("radius-servers.j2", **v), 0o600),
                       f"{CLIENTDIR}/dictionary": (render.render("radius-dictionary.j2"), 0o644),
                       f"{CLIENTDIR}/port-id-map": (render.render("radius-port-id-map.j2"), 0o644)},
                pppd_options=(("plugin", "radius.so"), ("radius-config-file", f"{CLIENTDIR}/radiusclient.conf")),
                authenticates=True)
        return out

    def tunnel_if(self, node):
        return ""  # it dials nothing

    def start(self, run):
        run(f"sh {START}")

    def status(self, run, st, seen):
        listening = run(f"ss -Hlun 'sport = :{AUTH_PORT}'").out.strip()
        st.tunnel = "RADIUS listening" if listening else "RADIUS down"


KIND = RadiusKind()

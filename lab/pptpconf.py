"""Render the PPTP configuration files from the templates Ansible also uses (playbooks/templates)."""
from __future__ import annotations

import jinja2

from .paths import REPO

_env = jinja2.Environment(loader=jinja2.FileSystemLoader(REPO / "playbooks" / "templates"),
                          undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def render(template: str, **values) -> str:
    return _env.get_template(template).render(**values)


def server_files(local_ip: str, remote_range: str, users: list[dict], server_name: str = "pptpd",
                 mppe: bool = True) -> dict[str, tuple[str, int]]:
    """path -> (text, mode) for a pptpd node."""
    v = dict(local_ip=local_ip, remote_range=remote_range, server_name=server_name, mppe=mppe,
             users=[{**u, "server": server_name} for u in users])
    return {"/etc/pptpd.conf": (render("pptpd.conf.j2", **v), 0o644),
            "/etc/ppp/pptpd-options": (render("pptpd-options.j2", **v), 0o644),
            "/etc/ppp/chap-secrets": (render("chap-secrets.j2", **v), 0o600)}


def client_files(peer: str, server: str, user: str, secret: str, server_name: str = "pptpd",
                 mppe: bool = True, pptp_options: str = "") -> dict[str, tuple[str, int]]:
    """path -> (text, mode) for a pptp-linux client node dialling `pppd call <peer>`."""
    v = dict(peer=peer, server=server, user=user, remote_name=server_name, mppe=mppe,
             pptp_options=pptp_options, users=[{"name": user, "secret": secret, "server": server_name}])
    return {f"/etc/ppp/peers/{peer}": (render("peer.j2", **v), 0o644),
            "/etc/ppp/chap-secrets": (render("chap-secrets.j2", **v), 0o600)}

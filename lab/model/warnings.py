"""What a topology allows but cannot work: warnings, not errors (`validate --strict` makes
them errors; `up` and `test` print them). Each starts with the keys it is about."""
from __future__ import annotations

import ipaddress

from .topology import Topology


def of(topo: Topology) -> list[str]:
    return _pools(topo) + _dialled(topo) + _calls(topo)


def _calls(topo: Topology) -> list[str]:
    """More calls dial a server than its pool has addresses: pptpd answers the rest, but
    pppd has no address to give them (and pptpd.conf's `connections` follows the pool)."""
    from .members import of_node

    out = []
    for name, node in topo.servers.items():
        dialling = [c for c, n in topo.clients.items() if topo.reached_at(n.pptp_client.server) == name]
        calls = sum(len(of_node(topo, c)) for c in dialling)
        pool = len(node.pptp_server.pool)
        if calls > pool:
            out.append(f"nodes.{name}.pptp_server.remote_ip {node.pptp_server.remote_ip}: {pool} addresses for "
                       f"{calls} calls (from {', '.join(dialling)}): the calls past the pool cannot get a tunnel")
    return out


def _pools(topo: Topology) -> list[str]:
    """A pptp-server's PPP pool hands out addresses of a lab network, or its own local_ip:
    two interfaces of a node (or both ends of a call) would hold one address."""
    out = []
    for name, node in topo.servers.items():
        srv, key = node.pptp_server, f"nodes.{name}.pptp_server"
        pool = [ipaddress.IPv4Address(a) for a in srv.pool]
        for net_name, net in topo.networks.items():
            if any(a in net.net for a in pool):
                out.append(f"{key}.remote_ip {srv.remote_ip} overlaps networks.{net_name} ({net.subnet}): "
                           "a client's tunnel address would also be a lab address")
        if srv.local_ip in srv.pool:
            out.append(f"{key}.remote_ip {srv.remote_ip} holds {key}.local_ip {srv.local_ip}: a client "
                       "would get the server's own end of the tunnel")
    return out


def _dialled(topo: Topology) -> list[str]:
    """A client dials an address no node holds and no static NAT answers for (a NAT's port
    forward answers on the NAT's own address, which it holds). Not for a client expected to
    fail: a lab may dial nowhere on purpose (the `icmp` cause's host unreachable)."""
    out = []
    expected = topo.expect.clients if topo.expect else {}
    for name, node in topo.clients.items():
        addr = node.pptp_client.server
        if topo.reached_at(addr) is None and not (name in expected and expected[name].tunnel == "fails"):
            out.append(f"nodes.{name}.pptp_client.server {addr}: no node has that address (no interface, "
                       "no static NAT's public address): the call cannot be answered")
    return out

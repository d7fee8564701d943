"""A 22-node topology for the picture tests: two NATs (one static), a firewall with a
documented policy, clients on three segments, a branch behind a router with its own server."""
from lab.model.topology import Topology


def client(addr: str, gateway: str, server: str = "192.0.2.10", user: str = "alice") -> dict:
    return {"kind": "pptp-client", "interfaces": {}, "routes": [{"to": "default", "via": gateway}],
            "pptp_client": {"server": server, "user": user, "secret": f"{user}-secret"}, "_addr": addr}


def big_topology() -> Topology:
    nodes = {
        "fw": {"kind": "firewall", "interfaces": {"internet": "198.51.100.1", "perimeter": "192.0.2.1"},
               "policy": "pptp-documented", "policy_without": ["S12b"]},
        "vpn": {"kind": "pptp-server", "interfaces": {"perimeter": "192.0.2.10", "intranet": "10.10.0.1"},
                "routes": [{"to": "default", "via": "192.0.2.1"}],
                "pptp_server": {"local_ip": "172.16.0.1", "remote_ip": "172.16.0.10-50",
                                "users": [{"name": "alice", "secret": "alice-secret"}]}},
        "nat1": {"kind": "nat", "interfaces": {"home1": "192.168.1.1", "internet": "198.51.100.2"},
                 "nat": {"mode": "masquerade", "outside": "internet"}},
        "nat2": {"kind": "nat", "interfaces": {"home2": "192.168.2.1", "internet": "198.51.100.3"},
                 "nat": {"mode": "static", "outside": "internet", "public": "198.51.100.100",
                         "private": "192.168.2.10", "pptp_editor": False}},
        "r1": {"kind": "router", "interfaces": {"internet": "198.51.100.4", "branch": "10.30.0.1"}},
        "remote": {"kind": "pptp-server", "interfaces": {"branch": "10.30.0.10"},
                   "pptp_server": {"name": "remote", "local_ip": "172.20.0.1", "remote_ip": "172.20.0.10-20",
                                   "users": [{"name": "bob", "secret": "bob-secret"}]}},
        "a-very-long-node-name-xy": {"kind": "host", "interfaces": {"intranet": "10.10.0.253"}},
    }
    for i in range(3):
        nodes[f"intranet-host-{i + 1}"] = {"kind": "host", "interfaces": {"intranet": f"10.10.0.{20 + i}"}}
    clients = {f"home1-client-{i + 1}": client(f"192.168.1.{11 + i}", "192.168.1.1") for i in range(4)}
    clients |= {f"home2-client-{i + 1}": client(f"192.168.2.{10 + i}", "192.168.2.1") for i in range(3)}
    clients |= {f"internet-client-{i + 1}": client(f"198.51.100.{10 + i}", "198.51.100.1") for i in range(3)}
    clients["branch-client"] = client("10.30.0.20", "10.30.0.1", server="10.30.0.10", user="bob")
    for name, c in clients.items():
        addr = c.pop("_addr")
        net = {"192.168.1": "home1", "192.168.2": "home2", "198.51.100": "internet", "10.30.0": "branch"}[
            addr.rsplit(".", 1)[0]]
        c["interfaces"] = {net: addr}
        nodes[name] = c
    return Topology.model_validate({
        "name": "big",
        "networks": {"internet": {"subnet": "198.51.100.0/24", "role": "internet"},
                     "perimeter": {"subnet": "192.0.2.0/24", "role": "perimeter"},
                     "intranet": {"subnet": "10.10.0.0/24", "role": "intranet"},
                     "home1": {"subnet": "192.168.1.0/24", "role": "home"},
                     "home2": {"subnet": "192.168.2.0/24", "role": "home"},
                     "branch": {"subnet": "10.30.0.0/24"}},
        "nodes": nodes})

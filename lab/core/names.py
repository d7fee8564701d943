"""Names shared by several layers: Docker labels, the nftables tables the lab writes, the
pppd peer. One place, so a label or table is never spelled two ways."""

# Docker labels on every object a lab creates (and on the engine's own helpers).
LAB = "pptp-lab.lab"            # the lab's name: `down` removes exactly what carries it
NODE = "pptp-lab.node"          # a node's name in its topology
ROLE = "pptp-lab.role"          # a node's kind, or capture / probe / vm-exec
NETWORK = "pptp-lab.network"    # a network's name in its topology
SEGMENTS = "pptp-lab.segments"  # on the capture container: segment -> bridge (JSON)
TOPOLOGY = "pptp-lab.topology"  # hash of the topology, secrets left out
MODEL = "pptp-lab.model"        # on a lab's networks: the topology (JSON), secrets left out
IMAGE = "pptp-lab.image"        # on images pptp-lab built
MEMBERS = "pptp-lab.members"    # on a pptp-client node with a count: how many calls it makes

# nftables tables written into nodes (playbooks/templates, lab.model.policy).
FILTER_TABLE = "inet pptp_lab_filter"
NAT_TABLE = "ip pptp_lab_nat"
TRACE_TABLE = "inet pptp_lab_trace"  # only while a failing tunnel is traced (lab.diagnosis.why)

PEER = "lab"  # the pppd peer every client dials: `pppd call lab`
PPP_MTU = 1400  # pppd mtu and mru on both sides unless a topology says otherwise (SPEC S29)
PPP_LOG = "/var/log/ppp.log"  # where a dial has pppd log (render.DIAL)


# A node's interfaces are named after their networks (configure.sh.j2), unless the name
# is longer than IFNAMSIZ allows or is one the kernel or pppd may already use in a node.
IFNAMSIZ = 15
RESERVED_IFNAMES = frozenset({"lo", "all", "default", "gre0", "gretap0", "erspan0", "tunl0", "sit0",
                              "ip6tnl0", "ip6gre0"})


def interface(network: str) -> str | None:
    """The interface name a node's interface on `network` gets, or None when it keeps the
    engine's (ethN)."""
    import re

    if len(network.encode()) > IFNAMSIZ or network in RESERVED_IFNAMES or re.fullmatch(r"ppp\d+", network):
        return None
    return network

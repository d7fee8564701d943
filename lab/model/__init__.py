"""What a lab is, before anything runs: the topology format (topology, types), the node
kinds (kinds/), rulesets and policies, the closed list of failure causes (causes), the
files a node is configured with (render) and the tunnel states a capture shows (tunnels).

May import lab.core and lab.pptp."""

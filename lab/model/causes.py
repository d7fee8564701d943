"""The closed list of causes a failing tunnel is explained by (SPEC S32): the vocabulary
of `expect: {tunnel: fails, cause: C}` in the topology format. lab.diagnosis.cause decides
which one applies."""

# The closed list: cause -> what it means. README "Why it failed" has what the lab looks at.
CAUSES = {
    "rule": "a rule in a node's ruleset dropped or rejected the packets",
    "policy": "a chain's policy dropped them (no rule accepted them)",
    "conntrack-invalid": "a rule dropped them because conntrack found them INVALID (a state it never saw start)",
    "no-nat-mapping": "they reached a NAT that had no mapping for them (no PPTP editor, no forward)",
    "mtu": "they did not fit a link on the path, and the ICMP fragmentation-needed that says so never "
           "reached their sender (or ended the call when it did)",
    "icmp": "a node answered them with an ICMP error that names no other cause (host unreachable, ...)",
    "no-route": "a node had no route for them",
    "loop": "a routing loop: they went back and forth until their TTL ran out",
    "rp-filter": "a node's reverse-path filter dropped them",
    "auth": "the server refused the user's credentials",
    "refused": "the server refused the connection or the call, or nothing listens on its port 1723",
    "not-enough-evidence": "no evidence names a cause: the sentence says what was looked at and what was missing",
}
NAMES = tuple(CAUSES)

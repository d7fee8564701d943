"""Why data did not get through a tunnel that is up (SPEC S31): the packets were too big
for a link on the path. Decided from evidence: the ICMP fragmentation-needed errors in the
captures (who sent them, the next-hop MTU they name, on which segments they were seen), the
nft traces of the filtering nodes during the transfer (the rule that dropped them), and the
outer GRE packets' sizes. Nothing is guessed: without such an ICMP or a traced drop of one,
the cause is `not-enough-evidence`."""
from __future__ import annotations

import re
from pathlib import Path

from ..pptp import icmp as icmp_mod
from . import why
from .cause import Cause

FRAG_NEEDED = re.compile(r"(?:^|\s)icmp code (?:frag-needed|4)(?:\s|$)")


def frag_needed_drops(traces: dict[str, str], to: set[str] | None = None) -> list[why.Drop]:
    """Traced drops of ICMP fragmentation-needed errors, by node; with `to`, only those sent
    to one of these addresses (the client's own, as each segment of its path shows it)."""
    return [d for d in why.drops_by_node(traces)
            if d.packet is not None and d.packet.proto == "icmp" and FRAG_NEEDED.search(d.packet.text)
            and (to is None or d.packet.daddr in to)]


def _addresses(topo, client: str) -> set[str]:
    """The client's address on every segment of its path (a NAT on the way hides it)."""
    found = set(topo.nodes[client].interfaces.values())
    route = why.path(topo, client)
    if route is not None:
        found |= {f.client for f in why.flows(topo, client, route) if f.client}
    return found


def _frag_needed(report, client_addr: str) -> list[tuple[str, object]]:
    """(segment, ICMP event) of every fragmentation needed quoting the client's own packets."""
    out = []
    for s in report.sessions:
        for ev in s.icmp:
            info = ev.info or {}
            quoted = info.get("quoted") or {}
            if info.get("type") == icmp_mod.UNREACH and info.get("code") == icmp_mod.FRAG_NEEDED \
                    and client_addr in (quoted.get("src"), quoted.get("dst")):
                out.append((Path(s.source).stem, ev))
    return out


def _largest(report, client_addr: str, segment: str) -> int:
    """The largest outer GRE packet the client sent, as captured on its own segment."""
    out = 0
    for s in report.sessions:
        if Path(s.source).stem != segment:
            continue
        for c in s.calls:
            flow = c.to_server if s.client == client_addr else c.to_client if s.server == client_addr else None
            out = max(out, flow.largest if flow is not None else 0)
    return out


def explain(topo, client: str, report, traces: dict[str, str], tunnel_up: bool) -> Cause:
    """The cause of a transfer from `client` that did not complete."""
    net, addr = next(iter(topo.nodes[client].interfaces.items()))
    errors = _frag_needed(report, addr)
    drops = frag_needed_drops(traces, _addresses(topo, client))
    used = ["ICMP errors on every segment's capture", "nft traces of " + (", ".join(sorted(traces)) or "no node")]
    if not errors and not drops:
        return Cause("not-enough-evidence", f"the transfer from {client} did not complete and no capture holds "
                     "an ICMP fragmentation-needed about its packets, nor did a traced rule drop one",
                     used=used, missing=["a kernel drop reason for the lost data packets"])
    first = errors[0][1] if errors else None
    sender = topo.reached_at(first.by) if first is not None else None
    mtu = (first.info or {}).get("mtu") if first is not None else None
    largest = _largest(report, addr, net)
    sizes = f"outer GRE packets of up to {largest} bytes" if largest else "its packets"
    hop = f"{sender or (first.by if first else 'a router')}'s next hop" + (f" (MTU {mtu})" if mtu else "")
    seen = sorted({seg for seg, _ in errors})
    if drops:
        d = drops[0]
        return Cause("mtu", f"{sizes} from {client} do not fit {hop}; the ICMP fragmentation needed "
                     f"{'from ' + sender + ' ' if sender else ''}was dropped at {d.node} by {d.where()}, so "
                     f"{client} never learns the path MTU (small packets pass)", node=d.node,
                     used=used + [f"ICMP seen on {', '.join(seen) or 'no capture'}"])
    if net not in seen:
        return Cause("mtu", f"{sizes} from {client} do not fit {hop}; its ICMP fragmentation needed was "
                     f"seen on {', '.join(seen)} but never on {net}, {client}'s own segment (no traced rule "
                     "dropped it)", node=sender or "", used=used)
    ended = "" if tunnel_up else (f"; it reached {client} and the call ended: pptp-linux's GRE socket "
                                   "reports the error (EMSGSIZE) and pptp-linux hangs up")
    return Cause("mtu", f"{sizes} from {client} do not fit {hop}; the ICMP fragmentation needed reached "
                 f"{client}{ended}", node=sender or "", used=used)


def outer(topo, client: str, report) -> list[dict]:
    """What the client's outer GRE packets looked like on each segment of its path (SPEC S29):
    per direction, the largest (IP total length), how many had DF set and how many were
    fragmented, and the fragmentation-needed errors about them (sender, next-hop MTU)."""
    route = why.path(topo, client)
    if route is None:
        return []
    rows = []
    for f in why.flows(topo, client, route):
        for s in report.sessions:
            if Path(s.source).stem != f.segment or (f.client, f.server) not in ((s.client, s.server), (None, None)):
                continue
            for way in ("to_server", "to_client"):
                flows = [getattr(c, way) for c in s.calls if getattr(c, way) is not None]
                if not flows:
                    continue
                icmp = [e for e in s.icmp if (e.info or {}).get("code") == icmp_mod.FRAG_NEEDED
                        and (e.info or {}).get("type") == icmp_mod.UNREACH
                        and ((e.info or {}).get("quoted") or {}).get("src") == (s.client if way == "to_server" else s.server)]
                rows.append({"segment": f.segment, "way": way, "packets": sum(x.packets for x in flows),
                             "largest": max(x.largest for x in flows), "df": sum(x.df for x in flows),
                             "fragmented": sum(x.fragmented for x in flows),
                             "frag_needed": sorted({(topo.reached_at(e.by) or e.by, (e.info or {}).get("mtu"))
                                                    for e in icmp}, key=str)})
    return rows


def outer_lines(rows: list[dict]) -> list[str]:
    """`mid, to server: 412 packets, largest 1437, DF on all, none fragmented; r: fragmentation needed (MTU 1400)`."""
    out = []
    for r in rows:
        df = "all" if r["df"] == r["packets"] else "none" if not r["df"] else f"{r['df']}"
        line = (f"{r['segment']}, {r['way'].replace('_', ' ')}: {r['packets']} packets, largest {r['largest']}, "
                f"DF on {df}, {r['fragmented'] or 'none'} fragmented")
        if r["frag_needed"]:
            line += "; " + ", ".join(f"{who}: fragmentation needed" + (f" (MTU {m})" if m else "")
                                     for who, m in r["frag_needed"])
        out.append(line)
    return out

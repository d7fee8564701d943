"""Facts of one matrix cell's analysed sessions that another kernel or userland may change
while the tunnel still works (`pptp-lab test --matrix`): call ID allocation, teardown
order, echo timing, NAT helper behaviour. Pure: an analysed report (and the topology, for
its servers and NATs) in, {fact: value} out. Values are words and rounded figures, so
what changes from run to run anyway (a random client call ID, a few ms of jitter) is
never a difference between cells."""
from __future__ import annotations

from pathlib import Path

from ..model.kinds.nat import outside_calls

ECHO_ROUND_S = 1  # echo intervals are compared to the second: pppd and pptpd count in seconds


def _seq(ids: list[int]) -> str:
    """Call IDs in call order, and their step when it is constant."""
    if not ids:
        return "none"
    shown = ", ".join(map(str, ids[:8])) + (", ..." if len(ids) > 8 else "")
    steps = {b - a for a, b in zip(ids, ids[1:])}
    return shown + (f" (step {steps.pop()})" if len(steps) == 1 else "")


def client_ids(ids: list[int]) -> str:
    """How a client picks its call IDs, not which it got: pptp-linux 1.10 picks at random,
    older ones sent 0."""
    if not ids:
        return "none"
    if all(i == 0 for i in ids):
        return "always 0"
    if len(ids) == 1:
        return "non-zero"
    if all(b - a == 1 for a, b in zip(ids, ids[1:])):
        return "consecutive"
    return "not in sequence (random-looking)" if len(set(ids)) == len(ids) else "repeated"


def teardown(s) -> str:
    if not s.teardown:
        return "none seen"
    steps = " → ".join(f"{e.sender} {e.what}" for e in s.teardown)
    return f"by the {s.initiator or '?'}: {steps}"


def _echo_side(side: dict) -> str:
    if not side["requests"]:
        return "none"
    # The distinct gaps, not their mean: a missed echo shows as a gap of its own.
    gaps = dict.fromkeys(round(g / ECHO_ROUND_S) * ECHO_ROUND_S for g in side["intervals_s"])
    timing = f", every {', '.join(map(str, gaps))} s" if gaps else ""
    answered = "all answered" if side["answered"] == side["requests"] else f"{side['answered']} answered"
    return f"{side['requests']}{timing}, {answered}"


def pptp_echo(s) -> str:
    summary = s.echo_summary()
    return "; ".join(f"{side} {_echo_side(summary[side])}" for side in ("client", "server"))


def lcp_echo(s) -> str:
    """The analyser keeps the last LCP echo of a call only (pptp.session.Call.lcp_echo)."""
    last = [c.lcp_echo for c in s.calls if c.lcp_echo]
    return ", ".join(f"last {e['what']} from the {e['sender']}" for e in last) or "none seen"


def _points(report, topo) -> list:
    """The sessions to read: with a topology, those on its servers' own segments (one capture
    point per call, nearest the server); else every capture point's."""
    sessions = [s for s in report.sessions if not s.gre_only]
    if topo is None:
        return sessions
    near = {(net, addr) for node in topo.servers.values() for net, addr in node.interfaces.items()}
    return [s for s in sessions if (Path(s.source).stem, s.server) in near]


def _where(s, topo) -> str:
    return f"{s.client} → {s.server}" + ("" if topo is not None else f" on {Path(s.source).stem}")


def _share(hits: int, n: int) -> str:
    return "no calls" if not n else "yes, all" if hits == n else "none" if not hits else f"{hits} of {n}"


def nat_facts(report, topo) -> dict[str, str]:
    """Per NAT node, from the calls its outside segment carried: does the outside call ID
    equal the masqueraded TCP source port (Linux's nf_nat_pptp takes that port), are the
    outside IDs unique, and did the NAT rewrite the client's call ID."""
    out = {}
    for name, node in topo.nodes.items():
        nat = getattr(node, "nat", None)
        if nat is None:
            continue
        outside = node.interfaces[nat.outside]
        calls = [(c.client_call_id, s.client_port) for s, c in outside_calls(node, report.sessions)]
        ids = [cid for cid, _ in calls]
        out[f"NAT {name}: outside call ID = masqueraded TCP port"] = _share(
            sum(cid == port for cid, port in calls), len(calls))
        out[f"NAT {name}: outside call IDs"] = ("no calls" if not ids else f"{len(ids)} unique"
                                               if len(set(ids)) == len(ids) else "repeated")
        links = [link for link in report.nat_links
                 if any(p["client"] == outside and Path(p["source"]).stem == nat.outside for p in link["points"])]
        out[f"NAT {name}: client call ID rewritten"] = _share(
            sum(link["client_call_id_rewritten"] for link in links), len(links))
    return out


def facts(report, topo=None) -> dict[str, str]:
    """{fact: value} of one cell. Several sessions between the same two addresses (a
    redial) are read in order and their values joined with " | "."""
    groups: dict[str, list] = {}
    for s in sorted(_points(report, topo), key=lambda s: s.start):
        groups.setdefault(_where(s, topo), []).append(s)
    out = {}
    for where, ss in groups.items():
        calls = [c for s in ss for c in s.calls]
        out[f"{where}: server call IDs"] = _seq([c.server_call_id for c in calls if c.server_call_id is not None])
        out[f"{where}: client call IDs"] = client_ids([c.client_call_id for c in calls
                                                       if c.client_call_id is not None])
        for what, fn in (("teardown", teardown), ("PPTP echo", pptp_echo)):
            out[f"{where}: {what}"] = " | ".join(fn(s) for s in ss)
        # Which side echoed last depends on when the capture was read, and several clients
        # behind one NAT share `where`: the set of values compares, their order does not.
        out[f"{where}: LCP echo"] = " | ".join(sorted(set(lcp_echo(s) for s in ss)))
    if topo is not None:
        out.update(nat_facts(report, topo))
    return out


MISSING = "not seen"


def differences(cells: dict[str, dict[str, str]]) -> list[tuple[str, dict[str, str]]]:
    """(fact, {cell: value}) for every fact whose value is not the same in all cells; a fact
    one cell lacks is MISSING there. Facts in first-seen order."""
    names = list(dict.fromkeys(k for f in cells.values() for k in f))
    out = []
    for name in names:
        values = {cell: f.get(name, MISSING) for cell, f in cells.items()}
        if len(set(values.values())) > 1:
            out.append((name, values))
    return out

"""Facts of one matrix cell's analysed sessions that another kernel or userland may change
while the tunnel still works (`pptp-lab test --matrix`), and which of them the report may
call a difference between cells. Pure: an analysed report (and the topology, for its
servers and NATs) in, {fact: value} out; a fact's name ends in ": <what>" (TIMING).

Stable facts (compared between cells): what a program or the kernel decides by itself,
the same however fast the guest runs:
- the phase each session stopped in (lab.pptp's verdict: a tunnel that came up is `data`);
- per server, its call IDs in the order it answered the calls (pptpd numbers them from a
  counter: 0, 128, 256, whichever client asked first);
- per client address, how its call IDs are picked (always 0, consecutive, random-looking),
  never which: pptp-linux draws them at random;
- who started a teardown and with which step (a client's hang-up, pptpd closing);
- per NAT, whether its outside call ID is the masqueraded TCP port, unique, rewritten.

Timing facts (kept in each cell's facts, never listed as a difference): which pppd's LCP
echo timer fired last, PPTP echo counts and their intervals (how long the run lasted, and
a missed echo), the interleaving of both sides' teardown steps (a late CDN meets a closed
socket: an extra RST). Frame numbers, ports, durations and the call IDs a client drew are
not facts at all.

Sessions that share a name (a redial, or several clients behind one NAT seen at the server)
are compared as a set of values, sorted: which of them dialled first is timing too.

Stable is what the code can know; a cell run twice (`--repeat 2`) shows the rest: a fact
whose value differs between two runs of one cell is dropped from the differences (e.g. the
initiator when both pppds time out on lost LCP echoes, S23: the first timer wins)."""
from __future__ import annotations

from pathlib import Path

from ..model.kinds.nat import outside_calls
from ..up.lifecycle import PPTP_PACKAGES

ECHO_ROUND_S = 1  # echo intervals are shown to the second: pppd and pptpd count in seconds
TIMING = ("teardown steps", "PPTP echo", "LCP echo")
MISSING = "not seen"


def timing(fact: str) -> bool:
    """Whether a fact's value depends on timing (the module's docstring says which and why)."""
    return fact.rpartition(": ")[2] in TIMING


def _seq(ids: list[int]) -> str:
    """Call IDs in call order, and their step when it is constant."""
    if not ids:
        return "none"
    shown = ", ".join(map(str, ids[:8])) + (", ..." if len(ids) > 8 else "")
    steps = {b - a for a, b in zip(ids, ids[1:])}
    return shown + (f" (step {steps.pop()})" if len(steps) == 1 else "")


def client_ids(ids: list[int]) -> str:
    """How a client picks its call IDs, not which it got: pptp-linux 1.10 picks at random,
    older ones sent 0. In any order: clients behind one NAT dial at once."""
    if not ids:
        return "none"
    if all(i == 0 for i in ids):
        return "always 0"
    if len(ids) == 1:
        return "non-zero"
    ids = sorted(ids)
    if all(b - a == 1 for a, b in zip(ids, ids[1:])):
        return "consecutive"
    return "not in sequence (random-looking)" if len(set(ids)) == len(ids) else "repeated"


def teardown(s) -> str:
    """Who started it and with which step (lab.pptp.teardown.initiation)."""
    init = s.initiated
    if not s.teardown and not init:
        return "none seen"
    if init and init["side"]:
        return f"by the {init['side']} ({init['step']})"
    if init and init["after"]:
        return f"by the path ({init['after'][0]['what']})"
    return "by ?"


def teardown_steps(s) -> str:
    return " → ".join(f"{e.sender} {e.what}" for e in s.teardown) or "none seen"


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


def _on(s, topo) -> str:
    return "" if topo is not None else f" on {Path(s.source).stem}"


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


def _server_ids(sessions, topo) -> dict[str, str]:
    """Per server, the call IDs it gave, in the order it answered (OCRP time)."""
    by: dict[str, list] = {}
    for s in sessions:
        by.setdefault(f"server {s.server}{_on(s, topo)}", []).extend(
            c for c in s.calls if c.server_call_id is not None)
    return {f"{where}: call IDs": _seq([c.server_call_id for c in sorted(
        calls, key=lambda c: c.reply_ts if c.reply_ts is not None else float("inf"))])
        for where, calls in by.items()}


def facts(report, topo=None) -> dict[str, str]:
    """{fact: value} of one cell, timing facts included (timing() tells them)."""
    points = sorted(_points(report, topo), key=lambda s: s.start)
    out = _server_ids(points, topo)
    groups: dict[str, list] = {}
    for s in points:
        groups.setdefault(f"{s.client} → {s.server}{_on(s, topo)}", []).append(s)
    for where, ss in groups.items():
        out[f"{where}: client call IDs"] = client_ids([c.client_call_id for s in ss for c in s.calls
                                                       if c.client_call_id is not None])
        for what, fn in (("phase", lambda s: s.phase), ("teardown", teardown)):
            out[f"{where}: {what}"] = " | ".join(sorted(fn(s) for s in ss))
        # Timing facts, in the order the sessions started (they are shown, not compared).
        for what, fn in (("teardown steps", teardown_steps), ("PPTP echo", pptp_echo)):
            out[f"{where}: {what}"] = " | ".join(fn(s) for s in ss)
        out[f"{where}: LCP echo"] = " | ".join(sorted(set(lcp_echo(s) for s in ss)))
    if topo is not None:
        out.update(nat_facts(report, topo))
    return out


def unsteady(runs: list[dict[str, str]]) -> list[str]:
    """The facts whose value is not the same in every run of one cell (MISSING where a run
    lacks one)."""
    names = dict.fromkeys(k for f in runs for k in f)
    return [n for n in names if len({f.get(n, MISSING) for f in runs}) > 1]


def differences(cells: dict[str, list[dict[str, str]]]) -> list[tuple[str, dict[str, str]]]:
    """(fact, {cell: value}) for every stable fact whose value is not the same in all cells.
    `cells`: each cell's facts, one dict per run; a cell's value is its first run's, MISSING
    when it lacks the fact. Left out: timing facts, and any fact that differed between two
    runs of one cell. Facts in first-seen order."""
    noisy = {n for runs in cells.values() for n in unsteady(runs)}
    first = {cell: runs[0] if runs else {} for cell, runs in cells.items()}
    out = []
    for name in dict.fromkeys(k for f in first.values() for k in f):
        if timing(name) or name in noisy:
            continue
        values = {cell: f.get(name, MISSING) for cell, f in first.items()}
        if len(set(values.values())) > 1:
            out.append((name, values))
    return out


def versions(by_node: dict[str, dict[str, str]]) -> list[str]:
    """What a cell ran, as lines: its kernel release, then ppp, pptpd and pptp-linux; a value
    its nodes do not share is given per node ("2.4.9 (client), 2.5.2 (vpn)")."""
    out = []
    for key in ("kernel", *PPTP_PACKAGES):
        seen: dict[str, list[str]] = {}
        for node, found in sorted(by_node.items()):
            if key in found:
                seen.setdefault(found[key], []).append(node)
        if len(seen) > 1:
            shown = ", ".join(f"{v} ({', '.join(nodes)})" for v, nodes in seen.items())
        else:
            shown = next(iter(seen), "")
        if shown:
            out.append(shown if key == "kernel" else f"{key} {shown}")
    return out

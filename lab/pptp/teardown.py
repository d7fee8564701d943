"""Who tore a session down (SPEC S33): its teardown steps in time order, the endpoint that
took the first one, and what the path did before it (an ICMP error, a middlebox's RST).

A step is a control message, an LCP Terminate, a TCP FIN or RST, or an ICMP error shortly
before them. ICMP errors and RSTs a middlebox sent on an endpoint's behalf are the path's
steps: they come before the initiator, never are it."""
from __future__ import annotations

from pathlib import Path

from . import icmp

# The steps that can start a teardown; the replies only follow one.
FIRST_STEPS = ("CCRQ", "CDN", "StopCCRQ", "LCP Terminate-Request", "TCP FIN", "TCP RST")
ENDS = FIRST_STEPS + ("StopCCRP", "LCP Terminate-Ack")
TCP_ENDS = ("TCP FIN", "TCP RST")
# An endpoint reacts to an ICMP error within milliseconds (seen: 10 ms); one from this long
# before the first step may have caused it. Earlier ones are events and causes, not steps.
ICMP_LEAD = 1.0
MAX_AFTER = 4  # path steps kept before the initiator's


def is_icmp(e) -> bool:
    return e.what.startswith("ICMP ")


def steps(s, cap: int | None = None) -> list:
    """s.teardown with the ICMP errors that belong to it, in capture order (the first `cap`)."""
    own = [e for e in s.teardown if not is_icmp(e)]
    if not own:
        return list(s.teardown)
    start = min(e.ts for e in own) - ICMP_LEAD
    merged = {id(e): e for e in [*s.teardown, *(e for e in s.icmp if e.ts >= start)]}
    return sorted(merged.values(), key=lambda e: e.frame)[:cap]


def _path_step(s, e) -> dict:
    text = icmp.text(s, e) if is_icmp(e) else f"a {e.what} on the {e.sender}'s behalf ({e.detail})"
    return {"what": e.what, "by": e.by, "frame": e.frame, "ts": e.ts, "source": s.source, "text": text}


def initiation(s) -> dict | None:
    """The first endpoint step {side, step, frame, ts, source} and the path's steps before it
    (`after`); side None when only the path acted. None without a teardown."""
    path = []
    for e in steps(s):
        if is_icmp(e) or e.by:
            if len(path) < MAX_AFTER:
                path.append(_path_step(s, e))
        elif e.what in FIRST_STEPS:
            return {"side": e.sender, "step": e.what, "frame": e.frame, "ts": e.ts, "source": s.source,
                    "after": path}
    return {"side": None, "step": None, "frame": None, "ts": None, "source": s.source, "after": path} if path else None


def phrase(s) -> str:
    """" by the server (TCP FIN), after the NAT ... answered GRE with ...", for a verdict."""
    init = s.initiated or initiation(s)
    if not init:
        return ""
    out = f" by the {init['side']} ({init['step']})" if init["side"] else ""
    if init["after"]:
        out += f", after {init['after'][0]['text']}"
    if init["source"] != s.source:
        out += f" (seen on {Path(init['source']).name})"
    return out


def settle(s, cap: int) -> None:
    """After the last packet: the middlebox RSTs the TTL shows, the steps and the initiator."""
    for e in s.teardown:
        _ttl_mark(s, e)
    s.teardown = steps(s, cap)
    s.initiated = initiation(s)
    s.initiator = s.initiated and s.initiated["side"]


def share_gre_errors(sessions) -> None:
    """An ICMP error about GRE between two addresses reaches every GRE socket of that pair
    (a raw socket is matched by addresses, not call ID): one protocol unreachable from a
    NAT ends every call of the server to that NAT's address at once (measured: three calls,
    one ICMP, three FINs within 5 ms). It quotes one call's ID and so is found in one
    session; the others of the same capture and pair, open at that moment, get it too."""
    by_pair: dict[tuple, list] = {}
    for s in sessions:
        if not s.gre_only:
            by_pair.setdefault((s.source, *sorted((s.client, s.server))), []).append(s)
    for group in by_pair.values():
        errors = {id(e): e for s in group for e in s.icmp if e.info and e.info.get("about") == "GRE"}
        for s in group:
            have = {id(e) for e in s.icmp}
            for e in errors.values():
                if id(e) not in have and s.start <= e.ts <= s.end:
                    s.icmp.append(e)
            s.icmp.sort(key=lambda e: e.ts)


def _usual_ttl(s, side: str) -> tuple[int | None, int]:
    seen = s._ttl[side]
    return seen.most_common(1)[0] if seen else (None, 0)


def _ttl_mark(s, e) -> None:
    """A FIN or RST whose TTL is not its sender's usual one: likely another hop sent it."""
    ttl = (e.info or {}).get("ttl")
    if e.what not in TCP_ENDS or not ttl or e.by:
        return
    usual, n = _usual_ttl(s, e.sender)
    if usual is not None and usual != ttl and n >= 2:
        e.by = "middlebox"
        e.detail = f"TTL {ttl}, the {e.sender}'s segments {usual}: likely sent by a middlebox"


def across(sessions, links) -> list:
    """With captures from several points of a path (link_across_nat's links): a FIN/RST that
    the capture nearer its sender never saw was sent by a middlebox; every capture of a call
    is given the earliest initiator any of them saw. Returns the sessions it changed."""
    by_id = {s.id: s for s in sessions}
    group: dict[int, set[int]] = {}
    for link in links:
        a, b = (by_id[p["session"]] for p in link["points"])
        _unseen(a, b)
        _unseen(b, a)
        group.setdefault(a.id, {a.id}).add(b.id)
        group.setdefault(b.id, {b.id}).add(a.id)
    own = {i: initiation(by_id[i]) for i in group}
    for i, ids in group.items():
        s = by_id[i]
        seen = [own[j] for j in sorted(ids) if own[j] and own[j]["side"]]
        s.initiated = min(seen, key=lambda init: init["ts"]) if seen else own[i]
        s.initiator = s.initiated and s.initiated["side"]
    return [by_id[i] for i in group]


def _unseen(x, y) -> None:
    """Mark x's FIN/RST steps that y, the capture nearer their sender (higher TTL from it),
    did not hold while it was capturing; clear a TTL guess that y disproves."""
    for e in x.teardown:
        if e.what not in TCP_ENDS or not e.info or not (y.start <= e.ts <= y.end):
            continue
        side = e.sender
        near, far = _usual_ttl(y, side)[0], _usual_ttl(x, side)[0]
        if not (near and far and near > far):
            continue
        name = Path(y.source).name
        if any(f.what == e.what and f.sender == side and (f.info or {}).get("seq") == e.info["seq"]
               for f in y.teardown):
            if e.by == "middlebox":
                e.by, e.detail = "", f"also on {name}: the {side} sent it"
            continue
        addr = x.client if side == "client" else x.server
        nat = addr != (y.client if side == "client" else y.server)
        e.by = "middlebox"
        e.detail = f"not on {name}, nearer the {side}: sent by " + (f"the NAT {addr}" if nat else "a middlebox")

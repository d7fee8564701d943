"""What the reference documents next to what the lab observes (SPEC: report both, assert
what real software does). Used by the scenario tests and the reports."""
from __future__ import annotations

# SPEC S10, in the reference's order: (sender, step).
DOCUMENTED_CLIENT_TEARDOWN = [
    ("client", "SLI"), ("client", "LCP Terminate-Request"), ("server", "SLI"),
    ("server", "LCP Terminate-Ack"), ("client", "CCRQ"), ("server", "CDN"),
    ("client", "StopCCRQ"), ("server", "StopCCRP"), ("client", "TCP FIN"),
]


def swap(steps: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The same exchange with the roles swapped (SPEC S11)."""
    other = {"client": "server", "server": "client"}
    return [(other[who], what) for who, what in steps]


DOCUMENTED_SERVER_TEARDOWN = swap(DOCUMENTED_CLIENT_TEARDOWN)


def observed(session) -> list[tuple[str, str]]:
    return [(e.sender, e.what) for e in session.teardown]


def compare(documented: list[tuple[str, str]], seen: list[tuple[str, str]]) -> dict:
    """Steps in both, only documented (skipped by the real software), only observed."""
    return {"documented": [f"{w} ({s})" for s, w in documented],
            "observed": [f"{w} ({s})" for s, w in seen],
            "skipped": [f"{w} ({s})" for s, w in documented if (s, w) not in seen],
            "extra": [f"{w} ({s})" for s, w in seen if (s, w) not in documented]}


def rows(sessions) -> list[tuple[str, str, str, str]]:
    """(SPEC ID, documented, observed, verdict) from analysed sessions with a control
    connection. The verdict is "as documented", "differs" (recorded, not a failure: the
    lab reports what real software does) or "not seen"."""
    ctl = [s for s in sessions if not s.gre_only]
    if not ctl:
        return [("S1-S11", "control connection and calls", "no control connection in the capture", "not seen")]
    out = []

    def add(spec, doc, obs, same):
        out.append((spec, doc, obs, "as documented" if same else "differs"))

    s = ctl[0]
    add("S1", "one TCP connection, ephemeral port -> 1723",
        f"{len(ctl)} connection(s), client port {s.client_port} -> {s.server_port}",
        s.server_port == 1723 and (s.client_port or 0) >= 1024)
    add("S2", "SCCRQ, then SCCRP result 1",
        f"SCCRP result {s.sccrp.get('control_result')} ({s.sccrp.get('vendor_name', '?')})",
        s.sccrp.get("control_result") == 1)
    calls = [c for s in ctl for c in s.calls if c.reply]
    add("S3", "OCRP echoes the client's call ID as peer call ID",
        ", ".join(f"{c.client_call_id}->{c.reply.get('peer_call_id')}" for c in calls) or "no OCRP",
        bool(calls) and all(c.reply.get("peer_call_id") == c.client_call_id for c in calls))
    sli = [x["sender"] for c in calls for x in c.sli]
    add("S4", "the client sends Set-Link-Info after the call is up",
        f"{len(sli)} SLI" + (f" from {', '.join(sorted(set(sli)))}" if sli else ""), "client" in sli)
    flows = [(c, d) for c in calls for d in (c.to_server, c.to_client) if d]
    add("S5", "GRE carries the receiver's call ID",
        ", ".join(f"{d.src}->{d.dst} id {d.call_id}" for _, d in flows[:4]) or "no GRE",
        bool(flows) and all(d.call_id == (c.server_call_id if d is c.to_server else c.client_call_id) for c, d in flows))
    errors = sum(len(d.errors) for _, d in flows)
    add("S7", "enhanced GRE header fields as RFC 2637", f"{errors} header deviation(s)", errors == 0 and bool(flows))
    lost, dup, reord = (sum(getattr(d, k) for _, d in flows) for k in ("lost", "duplicates", "reordered"))
    add("S8", "sequence grows by one per payload packet",
        f"lost {lost}, duplicated {dup}, reordered {reord}" if flows else "no GRE",
        bool(flows) and lost == dup == reord == 0)
    echo = [s.echo_summary()["client"] for s in ctl]
    intervals = [e["interval_s"] for e in echo if e["interval_s"]]
    asked, answered = sum(e["requests"] for e in echo), sum(e["answered"] for e in echo)
    add("S9", "Echo-Request every 60 s, paired replies",
        (f"interval {intervals[0]} s" if intervals else "fewer than two Echo-Requests")
        + f", {answered} of {asked} answered",
        bool(intervals) and abs(intervals[0] - 60) < 2 and answered == asked)
    for s in ctl:
        if s.initiator:
            documented = DOCUMENTED_CLIENT_TEARDOWN if s.initiator == "client" else DOCUMENTED_SERVER_TEARDOWN
            seen = observed(s)
            add("S10" if s.initiator == "client" else "S11", steps(documented), steps(seen), seen == documented)
    return out


def steps(exchange: list[tuple[str, str]]) -> str:
    """Teardown steps in order, each with the way it went: "CCRQ (client → server), ..."."""
    other = {"client": "server", "server": "client"}
    return ", ".join(f"{what} ({who} → {other.get(who, '?')})" for who, what in exchange)

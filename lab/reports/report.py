"""Presenting analysed sessions: on the terminal (rich: blocks of short lines, or tables) and
as ladder diagrams (SVG, HTML)."""
from __future__ import annotations

import html
import math
import re
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..core import timing
from ..up import faultlog
from .drawing import text_width, wrap
from ..pptp import Report, Session
from ..pptp.session import limits

ROW = 22     # px per ladder row
LINE = 15    # px per line of a label wrapped over several
LABEL_MAX = 700  # px of label per line: a ladder then fits a 1280 px wide page
MARGIN = 10  # px around a ladder
GAP = 20     # px between a ladder's columns
LADDER_EVENTS = 400  # rows drawn per session
FAULT = "#c50"  # a fault's row on a ladder


def print_report(report: Report, console: Console, wide: bool = False) -> None:
    """The analysis on a terminal. By default each session is a block of short lines that
    fits 80 columns (a long value wraps, never cut short); `wide`: a table of the sessions
    and one of each session's GRE. Every value from the capture is shown as text, never as
    rich markup."""
    for cut in report.truncated:
        _line(console, Text.assemble(("warning", "yellow"), f" {cut['file']}: cut off mid-record at byte "
                                     f"{cut['offset']}: analysed up to there"))
    if not report.sessions:
        _line(console, Text("no PPTP sessions in " + ", ".join(report.files)))
    if wide:
        _sessions_table(report, console)
    else:
        _line(console, Text(f"PPTP sessions ({len(report.sessions)})", style="bold"))
    for s in report.sessions:
        if wide:
            _gre_table(s, console)
        else:
            _session_block(s, console)
        for fact in _facts(s, wide):
            _line(console, fact, 2)
    for f, st in report.stats.items():
        if st.get("packets_not_detailed"):
            n = st["sessions_not_detailed"]
            at_least = "at least " if n >= limits()["undetailed_sessions_counted"] else ""
            _line(console, Text.assemble(("not detailed", "yellow"), f" {Path(f).name}: {at_least}{n:,} more sessions "
                                         f"({st['packets_not_detailed']:,} packets) past the limit of "
                                         f"{limits()['sessions']:,} sessions per capture"))
    for link in report.nat_links:
        a, b = link["points"]
        _line(console, Text(f"NAT link: server {link['server']} call {link['server_call_id']}: "
                            f"{Path(a['source']).name} client call ID {a['client_call_id']} <-> "
                            f"{Path(b['source']).name} client call ID {b['client_call_id']}"
                            + (" (rewritten)" if link["client_call_id_rewritten"] else "")))


def _line(console: Console, text: Text, indent: int = 0) -> None:
    """One line of the report; a long one wraps at the console's width, its next lines 2
    further in (a word longer than a line, such as a file name, is folded, never cut to "…")."""
    for i, part in enumerate(text.wrap(console, max(console.width - indent - 2, 20), overflow="fold")):
        part.rstrip()
        console.print(Text(" " * (indent + 2 * bool(i))) + part, soft_wrap=True)


def _phase(s: Session) -> Text:
    return Text(s.phase, style="green" if s.phase in ("data", "teardown") else "red")


def _client(s: Session) -> str:
    return f"{s.client}:{s.client_port}" if s.client_port else s.client


def _sessions_table(report: Report, console: Console) -> None:
    table = Table(title="PPTP sessions")
    for col in ("#", "capture", "client", "server", "call IDs (client/server)", "phase", "verdict"):
        table.add_column(col, overflow="fold")
    for s in report.sessions:
        ids = ", ".join(f"{c.client_call_id}/{c.server_call_id}" for c in s.calls) or "-"
        table.add_row(str(s.id), Text(Path(s.source).name), Text(_client(s)), Text(s.server), ids, _phase(s),
                      Text(s.verdict))
    console.print(table)


def _gre(c) -> list[tuple[str, object]]:
    return [(name, d) for name, d in (("client → server", c.to_server), ("server → client", c.to_client)) if d]


def _ppp_counts(d) -> str:
    return ", ".join(f"{k} {v}" for k, v in d.ppp.items())


def _gre_table(s: Session, console: Console) -> None:
    flows = Table(title=f"session {s.id}: GRE", title_justify="left")
    for col in ("direction", "call ID", "packets", "payload", "ack-only", "lost", "dup",
                "reordered", "highest ack", "PPP"):
        flows.add_column(col, overflow="fold")
    for c in s.calls:
        for name, d in _gre(c):
            flows.add_row(name, str(d.call_id), str(d.packets), str(d.payload_packets),
                          str(d.ack_only), str(d.lost), str(d.duplicates), str(d.reordered),
                          str(d.highest_ack), _ppp_counts(d))
    if flows.row_count:
        console.print(flows)


def _session_block(s: Session, console: Console) -> None:
    """The default layout: a session's endpoints, phase and verdict, and each call with its
    GRE directions, a few short lines each."""
    console.print()
    _line(console, Text.assemble((f"session {s.id}", "bold"), (f" ({Path(s.source).name})", "dim")))
    _line(console, Text(f"client {_client(s)} → server {s.server}"), 2)
    _line(console, Text.assemble("phase ", _phase(s), f": {s.verdict}"), 2)
    for c in s.calls:
        ids = "/".join("?" if i is None else str(i) for i in (c.client_call_id, c.server_call_id))
        _line(console, Text(f"call {ids} (client/server call IDs)"), 2)
        if _call_ppp(c):
            _line(console, Text(_call_ppp(c)), 4)
        for name, d in _gre(c):
            _line(console, Text(f"GRE {name} (call ID {d.call_id}): {d.packets} packet{'s' * (d.packets != 1)} "
                                f"({d.payload_packets} payload, {d.ack_only} ack-only)"), 4)
            _line(console, Text(f"lost {d.lost}, duplicates {d.duplicates}, reordered {d.reordered}; "
                                + ("no ack" if d.highest_ack is None else f"highest ack {d.highest_ack}"),
                                style="yellow" if d.lost or d.duplicates or d.reordered else ""), 6)
            if d.ppp:
                _line(console, Text(f"PPP: {_ppp_counts(d)}"), 6)


def _call_ppp(c) -> str:
    """"auth PAP success; IPCP client 17.1.1.122 server 17.1.1.118": a call's PPP, if any."""
    p = c.ppp
    bits = [f"auth {p['auth']} {p['auth_result'] or ''}".strip() if p["auth"] else "",
            "MPPE " + ("128" if p["mppe"] and p["mppe"]["128"] else "?") +
            (" stateless" if p["mppe"] and p["mppe"]["stateless"] else "") if p["mppe"] else "",
            f"IPCP client {p['client_address']} server {p['server_address']}" if p["client_address"] else "",
            f"SLI x{len(c.sli)} from {', '.join(sorted({x['sender'] for x in c.sli}))}" if c.sli else ""]
    return "; ".join(b for b in bits if b)


def _facts(s: Session, wide: bool) -> list[Text]:
    """What both layouts say under a session (the calls' PPP: the wide one only), echoes, the
    teardown, warnings."""
    out = [Text(f"call {c.client_call_id}/{c.server_call_id}: {_call_ppp(c)}") for c in s.calls
           if wide and _call_ppp(c)]
    for side, e in s.echo_summary().items():
        if e["requests"]:
            out.append(Text(f"echo from {side}: {e['requests']} requests, {e['answered']} answered, "
                            f"interval {e['interval_s']} s"))
    if s.teardown:
        out.append(Text(f"teardown ({initiated(s)}): " + " → ".join(f"{step(e)} ({e.sender})" for e in s.teardown)))
    for err in s.errors[:5]:
        out.append(Text.assemble(("warning", "yellow"), f" {err}"))
    if s.dropped:
        out.append(Text.assemble(("not detailed", "yellow"), " (over the analyser's limits, counted only): "
                                 + ", ".join(f"{n:,} {what}" for what, n in sorted(s.dropped.items()))))
    return out


def initiated(s: Session) -> str:
    """"server initiated, after ICMP protocol unreachable from 198.18.52.2"."""
    init = s.initiated or {}
    after = init.get("after") or []
    first = f"{after[0]['what']} from {_sender(after[0]['by'])}" if after else ""
    return f"{s.initiator or '?'} initiated" + (f", after {first}" if first else "") + (
        f", seen on {Path(init['source']).name}" if init.get("source", s.source) != s.source else "")


def step(e) -> str:
    """A teardown step and who really sent it when not its side's endpoint."""
    return e.what + (f" from {_sender(e.by)}" if e.by else "")


def _sender(by: str) -> str:
    return "a middlebox" if by == "middlebox" else by


def direction(sender: str) -> str:
    return "client → server" if sender == "client" else "server → client"


def anchor(source: str, frame: int) -> str:
    """The id of a frame's row on its session's ladder (one page may hold several captures)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", Path(source).stem) + f"-frame-{frame}"


def _label(e, teardown: set[int]) -> str:
    label = e.what + (f" ({e.detail})" if e.detail else "")
    # A teardown step says which way it went: the order of the two sides is what S10/S11 compare.
    return label + (f" — teardown, {direction(e.sender)}" if id(e) in teardown else "")


def fault_label(f: dict) -> str:
    words = " ".join(str(w) for w in [f.get("verb"), f.get("node"), *(f.get("args") or [])])
    return f"fault: {words}" + (f" — {f['done']}" if f.get("done") else "")


def session_faults(s: Session, events: list, faults) -> list[tuple[float, str]]:
    """(time on the capture's clock, label) of the faults (lab.up.fault records) to draw on a
    session's ladder: from its start to its last drawn event, and after that too when it
    never saw a teardown (the fault may be what ended it)."""
    if not faults or not events:
        return []
    end = events[-1].ts if s.phase == "teardown" or len(events) < len(s.events) else math.inf
    marks = [(faultlog.engine_time(f), fault_label(f)) for f in faults]
    return sorted((t, label) for t, label in marks if s.start <= t <= end)


def ladder_svg(s: Session, max_events: int = LADDER_EVENTS, faults=()) -> str:
    """A sequence diagram of one session: client and server lanes, one arrow per message,
    and each fault injected meanwhile (`faults`: lab.up.fault records) as a dashed line across
    both lanes at its time. Its size comes from its text: a long label is wrapped over
    more lines, never cut short or left running out of the picture. The first row of each
    frame carries an id (anchor()) that a report links to."""
    events = s.events[:max_events]
    teardown = {id(e) for e in s.teardown}
    t0 = s.start
    marks = session_faults(s, events, faults)
    rows = []
    for e in events:
        while marks and marks[0][0] <= e.ts:  # a fault drawn before what it coincides with
            t, label = marks.pop(0)
            rows.append((None, f"{t - t0:8.3f}s", wrap(label, LABEL_MAX)))
        rows.append((e, f"{e.ts - t0:8.3f}s", wrap(_label(e, teardown), LABEL_MAX)))
    rows += [(None, f"{t - t0:8.3f}s", wrap(label, LABEL_MAX)) for t, label in marks]
    heads = {side: f"{side} {s.client if side == 'client' else s.server}" for side in ("client", "server")}
    more = len(s.events) - len(events) + s.dropped["events"]
    tail = f"… {more} more events" if more else ""
    time_w = max((text_width(t) for _, t, _ in rows), default=0)
    label_w = max((text_width(line) for _, _, lines in rows for line in lines), default=0)
    head_w = {side: text_width(h) for side, h in heads.items()}
    x_client = MARGIN + max(time_w + 2 * GAP, head_w["client"] / 2)
    x_server = x_client + max(label_w + 2 * GAP, (head_w["client"] + head_w["server"]) / 2 + GAP, 300)
    inner = max(x_server + max(head_w["server"] / 2, GAP), MARGIN + text_width(tail)) - MARGIN
    title = wrap(f"session {s.id}: {s.verdict}", max(inner, LABEL_MAX))
    width = math.ceil(MARGIN + max([inner] + [text_width(t) for t in title]) + MARGIN)
    top = LINE * (len(title) - 1)  # a title over several lines pushes everything down
    ys, y = [], 75 + top - ROW
    for _, _, lines in rows:
        y += ROW + LINE * (len(lines) - 1)
        ys.append(y)
    height = (ys[-1] if ys else 75 + top - ROW) + 15 + 3 * ROW
    mid = (x_client + x_server) / 2
    x = {"client": x_client, "server": x_server}
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="ladder" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="monospace" font-size="12">',
           '<defs><marker id="a" markerWidth="8" markerHeight="8" refX="8" refY="4" orient="auto">'
           '<path d="M0,0 L8,4 L0,8 z"/></marker></defs>']
    out += [f'<text x="{MARGIN}" y="{18 + LINE * i}" font-weight="bold">{html.escape(t)}</text>'
            for i, t in enumerate(title)]
    for side, hx in x.items():
        out.append(f'<text x="{hx:.1f}" y="{45 + top}" text-anchor="middle" font-weight="bold">'
                   f'{html.escape(heads[side])}</text>')
        out.append(f'<line x1="{hx:.1f}" y1="{52 + top}" x2="{hx:.1f}" y2="{height - 10}" stroke="#888"/>')
    seen: set[int] = set()
    for (e, stamp, lines), y in zip(rows, ys):
        if e is None:
            out.append(_fault_row(stamp, lines, y, x_client, x_server, mid))
            continue
        x1, x2 = (x["client"], x["server"]) if e.sender == "client" else (x["server"], x["client"])
        bad = e.malformed or e.what.startswith("ICMP") or any(w in e.what for w in ("RST", "Failure", "Nak"))
        colour = ("#b00" if bad
                  else "#06c" if e.what.startswith(("LCP", "CHAP", "PAP", "CCP", "IPCP", "IPV6CP")) else "#000")
        ident = f' id="{anchor(s.source, e.frame)}"' if e.frame not in seen else ""
        seen.add(e.frame)
        full = html.escape(" ".join(lines))
        texts = "".join(f'<text x="{mid:.1f}" y="{y - 4 - LINE * (len(lines) - 1 - k)}" text-anchor="middle" '
                        f'fill="{colour}">{html.escape(line)}<title>frame {e.frame}: {full}</title></text>'
                        for k, line in enumerate(lines))
        out.append(f'<g{ident}><text x="{MARGIN}" y="{y + 4}" fill="#666">{stamp}</text>'
                   f'<line x1="{x1:.1f}" y1="{y}" x2="{x2:.1f}" y2="{y}" stroke="{colour}" marker-end="url(#a)"/>'
                   f'{texts}</g>')
    if tail:
        out.append(f'<text x="{MARGIN}" y="{height - 20}">{html.escape(tail)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _fault_row(stamp: str, lines: list[str], y: float, x_client: float, x_server: float, mid: float) -> str:
    full = html.escape(" ".join(lines))
    texts = "".join(f'<text x="{mid:.1f}" y="{y - 4 - LINE * (len(lines) - 1 - k)}" text-anchor="middle" '
                    f'fill="{FAULT}" font-weight="bold">{html.escape(line)}<title>{full}</title></text>'
                    for k, line in enumerate(lines))
    return (f'<g class="fault"><text x="{MARGIN}" y="{y + 4}" fill="{FAULT}">{stamp}</text>'
            f'<line x1="{x_client - GAP / 2:.1f}" y1="{y}" x2="{x_server + GAP / 2:.1f}" y2="{y}" '
            f'stroke="{FAULT}" stroke-width="2" stroke-dasharray="6 3"/>{texts}</g>')


def ladder_html(report: Report, faults=()) -> str:
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>PPTP sessions</title>",
             "<style>body{font-family:sans-serif;margin:2em} section{margin-bottom:3em}"
             " td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:left}</style></head><body>",
             f"<h1>PPTP sessions in {html.escape(', '.join(Path(f).name for f in report.files))}</h1>"]
    for s in report.sessions:
        parts.append(f"<section><h2>Session {s.id}: {html.escape(s.client)} → {html.escape(s.server)}"
                     f" — phase <em>{s.phase}</em></h2><p>{html.escape(s.verdict)}</p>")
        parts.append(ladder_svg(s, faults=faults))
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_ladder(report: Report, path: Path, faults=()) -> None:
    if path.suffix == ".svg":
        if len(report.sessions) != 1:
            # One SVG per session next to the requested name.
            for s in report.sessions:
                path.with_name(f"{path.stem}-{s.id}.svg").write_text(ladder_svg(s, faults=faults))
            return
        path.write_text(ladder_svg(report.sessions[0], faults=faults))
    else:
        path.write_text(ladder_html(report, faults))


def junit_xml(suite: str, cases: list[tuple[str, bool, str, float]]) -> str:
    """JUnit XML for (name, passed, detail, seconds) cases."""
    import xml.etree.ElementTree as ET

    root = ET.Element("testsuite", name=suite, tests=str(len(cases)),
                      failures=str(sum(1 for c in cases if not c[1])))
    for name, passed, detail, seconds in cases:
        case = ET.SubElement(root, "testcase", classname=suite, name=name, time=f"{seconds:.2f}")
        if not passed:
            ET.SubElement(case, "failure", message=detail[:500]).text = detail
        else:
            ET.SubElement(case, "system-out").text = detail
    return ET.tostring(root, encoding="unicode")


def _evidence_link(sessions: list[Session], where: dict) -> str:
    """A link from a check to the ladder row of the packet that shows why (its frame in its
    capture), or to the session's ladder when that row is not drawn."""
    if not where:
        return ""
    e = html.escape
    text = f"{where['capture']} frame {where['frame']}" + (f" ({where['event']})" if where.get("event") else "")
    for s in sessions:
        if s.gre_only or Path(s.source).name != where["capture"]:
            continue
        frames = [ev.frame for ev in s.events]
        if where["frame"] in frames[:LADDER_EVENTS]:
            return f"<br><a href='#{anchor(s.source, where['frame'])}'>ladder: {e(text)}</a>"
        if where["frame"] in frames:
            return f"<br><a href='#session-{s.id}'>ladder of session {s.id}</a>: {e(text)}"
    return f"<br>{e(text)}"


def _teardown_table(s: Session) -> str:
    """The teardown steps in order, each with its direction and a link to its ladder row."""
    e = html.escape
    drawn = {ev.frame for ev in s.events[:LADDER_EVENTS]}
    rows = [f"<tr><td>{i}</td><td>{e(step(ev))}</td><td>{direction(ev.sender)}</td><td>"
            + (f"<a href='#{anchor(s.source, ev.frame)}'>{ev.frame}</a>" if ev.frame in drawn else str(ev.frame))
            + "</td></tr>" for i, ev in enumerate(s.teardown, 1)]
    return (f"<p>teardown ({e(initiated(s))}):</p><table class='teardown'><tr><th>#</th>"
            "<th>step</th><th>direction</th><th>frame</th></tr>" + "".join(rows) + "</table>") if rows else ""


def packet_paths(checks) -> list[dict]:
    """The packet paths to draw on the topology (lab.diagnosis.why.path_data), one per client: a
    failing check's first; a passing one's (an expected drop, dropped_by) when no failing
    check has the client's."""
    ordered = [c for c in checks if not c.passed] + [c for c in checks if c.passed]
    out: dict[str, dict] = {}
    for c in ordered:
        p = getattr(c, "path", None)
        if isinstance(p, dict) and p:
            out.setdefault(str(p.get("client")), p)
    return list(out.values())


def _df(d) -> str:
    v = d.get("largest") if isinstance(d, dict) else None
    return "none" if v is None else f"{v} bytes"


def data_flow_html(flows: dict) -> str:
    """Per tunnel (SPEC S29-S31): the MRU each side asked for, the tunnel's MTU, the largest
    packet with DF set each way, the transfer's figures and the outer GRE packets per segment.
    Every value is escaped: a rebuilt report reads them from the run directory."""
    if not flows:
        return ""

    def e(v) -> str:
        return html.escape(str(v))

    rows = ["<h2>Data flow (MTU and transfer)</h2><table><tr><th>client</th><th>MRU asked (client / server)</th>"
            "<th>tunnel MTU</th><th>largest DF packet (to server / to client)</th><th>transfer</th>"
            "<th>outer GRE packets</th></tr>"]
    for name, f in flows.items():
        f = f if isinstance(f, dict) else {}
        mru, t, df = f.get("mru") or {}, f.get("transfer") or {}, f.get("df") or {}
        moved = (f"{t.get('received')} of {t.get('bytes')} bytes, {t.get('seconds')} s, {t.get('mbit_s')} Mbit/s, "
                 f"{t.get('retransmits')} retransmitted" + ("" if t.get("complete") else " — did not complete"))
        rows.append(f"<tr><td>{e(name)}</td><td>{e(mru.get('client'))} / {e(mru.get('server'))}</td>"
                    f"<td>{e(f.get('tunnel_mtu') or 'down')}</td>"
                    f"<td>{e(_df(df.get('to_server')))} / {e(_df(df.get('to_client')))}</td>"
                    f"<td class='text'>{e(moved)}" + (f"<br>{e(f['cause'])}" if f.get("cause") else "") + "</td>"
                    f"<td class='text'>{'<br>'.join(e(x) for x in f.get('outer') or [])}</td></tr>")
    return "".join(rows) + "</table>"


def _ran(versions: dict) -> str:
    """The kernel and PPTP packages the run's pptp nodes ran (a run of an older pptp-lab: none)."""
    from .cellfacts import versions as lines

    found = lines(versions)
    return f"<p>ran on kernel {html.escape('; '.join(found))}</p>" if found else ""


def test_html(res) -> str:
    """The `pptp-lab test` report: checks, conformance, topology, ladders, captures."""
    from . import conformance, graph

    e = html.escape
    sessions = res.report.sessions if res.report else []
    parts = ["<!doctype html><html><head><meta charset='utf-8'>",
             f"<title>pptp-lab test: {e(res.topo.name)}</title><style>body{{font-family:sans-serif;margin:2em}}"
             " table{border-collapse:collapse} td,th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:left}"
             " td.text{overflow-wrap:anywhere} .scroll{overflow-x:auto}"
             " .pass{color:#070} .fail{color:#b00} .differs{color:#a60}</style></head><body>",
             f"<h1>pptp-lab test: {e(res.topo.name)} — "
             f"<span class='{'pass' if res.passed else 'fail'}'>{'PASS' if res.passed else 'FAIL'}</span></h1>",
             _ran(res.versions),
             "<h2>Checks</h2><table><tr><th>check</th><th>result</th><th>detail</th></tr>"]
    for c in res.checks:
        parts.append(f"<tr><td>{e(c.name)}</td><td class='{'pass' if c.passed else 'fail'}'>"
                     f"{'pass' if c.passed else 'FAIL'}</td><td class='text'>{e(c.detail)}"
                     f"{_evidence_link(sessions, getattr(c, 'where', None) or {})}</td></tr>")
    parts.append("</table>")
    timings = getattr(res, "timings", None) or {}
    if timings:  # where the run's time went (lab.core.timing)
        parts.append(f"<p class='text'>time: {e(timing.line(timings))}</p>")
    parts.append(data_flow_html(getattr(res, "data_flow", None) or {}))
    parts.append("<h2>Conformance (documented vs observed)</h2><table><tr><th>SPEC</th><th>documented</th>"
                 "<th>observed</th><th>verdict</th></tr>")
    for spec, doc, obs, verdict in conformance.rows(sessions):
        cls = "pass" if verdict == "as documented" else "differs"
        parts.append(f"<tr><td>{spec}</td><td class='text'>{e(doc)}</td><td class='text'>{e(obs)}</td>"
                     f"<td class='{cls}'>{verdict}</td></tr>")
    parts.append("</table><h2>Topology</h2><div class='scroll'>"
                 + graph.topology_svg(res.topo, paths=packet_paths(res.checks)) + "</div>")
    if res.run_dir:
        annotated = getattr(res, "annotated", None) or {}
        losses = getattr(res, "capture_losses", None) or {}
        parts.append("<h2>Captures</h2><ul>" + "".join(
            f"<li><a href='{e(p.name)}'>{e(p.name)}</a> ({p.stat().st_size} bytes)"
            + (f"; <span class='fail'>tcpdump lost {losses[p.stem]} packet(s) here</span>: a gap on this "
               "segment may be the capture's, not the network's" if losses.get(p.stem) else "")
            + (f"; <a href='{e(annotated[p.name])}'>{e(annotated[p.name])}</a>: the analyser's findings as packet "
               "comments (Wireshark: <code>frame.comment</code>)" if p.name in annotated else "") + "</li>"
            for p in sorted(res.run_dir.glob("*.pcap"))) + "</ul>")
    parts.append("<h2>Sessions</h2>")
    for s in sessions:
        if s.gre_only:
            continue
        parts.append(f"<section id='session-{s.id}'><h3>{e(Path(s.source).name)}: {e(s.client)} → {e(s.server)}"
                     f" — phase {s.phase}</h3><p>{e(s.verdict)}</p>" + _teardown_table(s)
                     + "<div class='scroll'>" + ladder_svg(s, LADDER_EVENTS, getattr(res, "faults", None) or ())
                     + "</div></section>")
    parts.append("</body></html>")
    return "\n".join(parts)

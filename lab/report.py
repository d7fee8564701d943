"""Presenting analysed sessions: terminal tables (rich) and ladder diagrams (SVG, HTML)."""
from __future__ import annotations

import html
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .pptp import Report, Session
from .pptp.session import limits

LANE_X = {"client": 150, "server": 650}
ROW = 22


def print_report(report: Report, console: Console) -> None:
    for cut in report.truncated:
        console.print(f"[yellow]warning[/] {cut['file']}: cut off mid-record at byte {cut['offset']}: "
                      "analysed up to there")
    if not report.sessions:
        console.print("no PPTP sessions in " + ", ".join(report.files))
    table = Table(title="PPTP sessions")
    for col in ("#", "capture", "client", "server", "call IDs (client/server)", "phase", "verdict"):
        table.add_column(col, overflow="fold")
    for s in report.sessions:
        ids = ", ".join(f"{c.client_call_id}/{c.server_call_id}" for c in s.calls) or "-"
        client = f"{s.client}:{s.client_port}" if s.client_port else s.client
        colour = "green" if s.phase in ("data", "teardown") else "red"
        table.add_row(str(s.id), Path(s.source).name, client, s.server, ids,
                      f"[{colour}]{s.phase}[/]", s.verdict)
    console.print(table)
    for s in report.sessions:
        _print_session(s, console)
    for f, st in report.stats.items():
        if st.get("packets_not_detailed"):
            n = st["sessions_not_detailed"]
            at_least = "at least " if n >= limits()["undetailed_sessions_counted"] else ""
            console.print(f"[yellow]not detailed[/] {Path(f).name}: {at_least}{n:,} more sessions "
                          f"({st['packets_not_detailed']:,} packets) past the limit of "
                          f"{limits()['sessions']:,} sessions per capture")
    for link in report.nat_links:
        a, b = link["points"]
        console.print(f"NAT link: server {link['server']} call {link['server_call_id']}: "
                      f"{Path(a['source']).name} client call ID {a['client_call_id']} <-> "
                      f"{Path(b['source']).name} client call ID {b['client_call_id']}"
                      + (" (rewritten)" if link["client_call_id_rewritten"] else ""))


def _print_session(s: Session, console: Console) -> None:
    flows = Table(title=f"session {s.id}: GRE", title_justify="left")
    for col in ("direction", "call ID", "packets", "payload", "ack-only", "lost", "dup",
                "reordered", "highest ack", "PPP"):
        flows.add_column(col)
    for c in s.calls:
        for name, d in (("client → server", c.to_server), ("server → client", c.to_client)):
            if d:
                flows.add_row(name, str(d.call_id), str(d.packets), str(d.payload_packets),
                              str(d.ack_only), str(d.lost), str(d.duplicates), str(d.reordered),
                              str(d.highest_ack), ", ".join(f"{k} {v}" for k, v in d.ppp.items()))
    if flows.row_count:
        console.print(flows)
    for c in s.calls:
        p = c.ppp
        bits = [f"auth {p['auth']} {p['auth_result'] or ''}".strip() if p["auth"] else "",
                "MPPE " + ("128" if p["mppe"] and p["mppe"]["128"] else "?") +
                (" stateless" if p["mppe"] and p["mppe"]["stateless"] else "") if p["mppe"] else "",
                f"IPCP client {p['client_address']} server {p['server_address']}" if p["client_address"] else "",
                f"SLI x{len(c.sli)} from {', '.join(sorted({x['sender'] for x in c.sli}))}" if c.sli else ""]
        if any(bits):
            console.print(f"  call {c.client_call_id}/{c.server_call_id}: " + "; ".join(b for b in bits if b))
    echo = s.echo_summary()
    for side, e in echo.items():
        if e["requests"]:
            console.print(f"  echo from {side}: {e['requests']} requests, {e['answered']} answered, "
                          f"interval {e['interval_s']} s")
    if s.teardown:
        console.print(f"  teardown ({s.initiator or '?'} initiated): "
                      + " → ".join(f"{e.what} ({e.sender})" for e in s.teardown))
    for err in s.errors[:5]:
        console.print(f"  [yellow]warning[/] {err}")
    if s.dropped:
        console.print("  [yellow]not detailed[/] (over the analyser's limits, counted only): "
                      + ", ".join(f"{n:,} {what}" for what, n in sorted(s.dropped.items())))


def ladder_svg(s: Session, max_events: int = 400) -> str:
    """A sequence diagram of one session: client and server lanes, one arrow per message."""
    events = s.events[:max_events]
    height = 90 + ROW * (len(events) + 2)
    t0 = s.start
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="800" height="{height}" '
           'font-family="monospace" font-size="12">',
           '<defs><marker id="a" markerWidth="8" markerHeight="8" refX="8" refY="4" orient="auto">'
           '<path d="M0,0 L8,4 L0,8 z"/></marker></defs>',
           f'<text x="10" y="18" font-weight="bold">session {s.id}: {html.escape(s.verdict)}</text>']
    for side, x in LANE_X.items():
        addr = s.client if side == "client" else s.server
        out.append(f'<text x="{x}" y="45" text-anchor="middle" font-weight="bold">{side} {html.escape(addr)}</text>')
        out.append(f'<line x1="{x}" y1="52" x2="{x}" y2="{height - 10}" stroke="#888"/>')
    for i, e in enumerate(events):
        y = 75 + ROW * i
        x1, x2 = (LANE_X["client"], LANE_X["server"]) if e.sender == "client" else (LANE_X["server"], LANE_X["client"])
        colour = ("#b00" if e.malformed or "RST" in e.what or "Failure" in e.what or "Nak" in e.what
                  else "#06c" if e.what.startswith(("LCP", "CHAP", "PAP", "CCP", "IPCP", "IPV6CP")) else "#000")
        out.append(f'<text x="10" y="{y + 4}" fill="#666">{e.ts - t0:8.3f}s</text>')
        out.append(f'<line x1="{x1}" y1="{y}" x2="{x2}" y2="{y}" stroke="{colour}" marker-end="url(#a)"/>')
        label = e.what + (f" ({e.detail})" if e.detail else "")
        out.append(f'<text x="400" y="{y - 4}" text-anchor="middle" fill="{colour}">'
                   f'{html.escape(label[:90])}<title>frame {e.frame}: {html.escape(label)}</title></text>')
    more = len(s.events) - len(events) + s.dropped["events"]
    if more:
        out.append(f'<text x="10" y="{height - 20}">… {more} more events</text>')
    out.append("</svg>")
    return "\n".join(out)


def ladder_html(report: Report) -> str:
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>PPTP sessions</title>",
             "<style>body{font-family:sans-serif;margin:2em} section{margin-bottom:3em}"
             " td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:left}</style></head><body>",
             f"<h1>PPTP sessions in {html.escape(', '.join(Path(f).name for f in report.files))}</h1>"]
    for s in report.sessions:
        parts.append(f"<section><h2>Session {s.id}: {html.escape(s.client)} → {html.escape(s.server)}"
                     f" — phase <em>{s.phase}</em></h2><p>{html.escape(s.verdict)}</p>")
        parts.append(ladder_svg(s))
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_ladder(report: Report, path: Path) -> None:
    if path.suffix == ".svg":
        if len(report.sessions) != 1:
            # One SVG per session next to the requested name.
            for s in report.sessions:
                path.with_name(f"{path.stem}-{s.id}.svg").write_text(ladder_svg(s))
            return
        path.write_text(ladder_svg(report.sessions[0]))
    else:
        path.write_text(ladder_html(report))


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


def test_html(res) -> str:
    """The `pptp-lab test` report: checks, conformance, topology, ladders, captures."""
    from . import conformance, graph

    e = html.escape
    parts = ["<!doctype html><html><head><meta charset='utf-8'>",
             f"<title>pptp-lab test: {e(res.topo.name)}</title><style>body{{font-family:sans-serif;margin:2em}}"
             " table{border-collapse:collapse} td,th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:left}"
             " .scroll{overflow-x:auto} .pass{color:#070} .fail{color:#b00} .differs{color:#a60}</style></head><body>",
             f"<h1>pptp-lab test: {e(res.topo.name)} — "
             f"<span class='{'pass' if res.passed else 'fail'}'>{'PASS' if res.passed else 'FAIL'}</span></h1>",
             "<h2>Checks</h2><table><tr><th>check</th><th>result</th><th>detail</th></tr>"]
    for c in res.checks:
        parts.append(f"<tr><td>{e(c.name)}</td><td class='{'pass' if c.passed else 'fail'}'>"
                     f"{'pass' if c.passed else 'FAIL'}</td><td>{e(c.detail)}</td></tr>")
    parts.append("</table>")
    sessions = res.report.sessions if res.report else []
    parts.append("<h2>Conformance (documented vs observed)</h2><table><tr><th>SPEC</th><th>documented</th>"
                 "<th>observed</th><th>verdict</th></tr>")
    for spec, doc, obs, verdict in conformance.rows(sessions):
        cls = "pass" if verdict == "as documented" else "differs"
        parts.append(f"<tr><td>{spec}</td><td>{e(doc)}</td><td>{e(obs)}</td><td class='{cls}'>{verdict}</td></tr>")
    parts.append("</table><h2>Topology</h2><div class='scroll'>" + graph.topology_svg(res.topo) + "</div>")
    if res.run_dir:
        parts.append("<h2>Captures</h2><ul>" + "".join(
            f"<li><a href='{e(p.name)}'>{e(p.name)}</a> ({p.stat().st_size} bytes)</li>"
            for p in sorted(res.run_dir.glob("*.pcap"))) + "</ul>")
    parts.append("<h2>Sessions</h2>")
    for s in sessions:
        if s.gre_only:
            continue
        parts.append(f"<h3>{e(Path(s.source).name)}: {e(s.client)} → {e(s.server)} — phase {s.phase}</h3>"
                     f"<p>{e(s.verdict)}</p>" + ladder_svg(s))
    parts.append("</body></html>")
    return "\n".join(parts)

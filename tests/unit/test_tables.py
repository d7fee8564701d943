"""`pptp-lab status`/`up` and `pptp-lab test` tables: readable at 80 columns with every value
in full (nothing cut to "…"), and everything in its own column with --wide. No Docker."""
import io
import re

import pytest
from rich.console import Console

from lab.cli import checks_table, status_table
from lab.up.lifecycle import NodeStatus
from lab.testing.testrun import Check

# A call as the capture shows it (lab.tunnels.Tunnel's fields).
TRAFFIC = dict(seen_on="internet", age_s=302.4, last_echo_s=12.0, last_echo="LCP Echo-Reply from server",
               gre_out=1234, gre_in=1180, lost_out=0, lost_in=2, last_gre_in_s=0.4)
ROWS = [  # the default lab and a bit more: 8 nodes, 1-3 interfaces each
    NodeStatus("client", "pptp-client", "running", {"internet": "198.51.100.10"},
               "up", "172.16.0.10", "172.16.0.1", "12345/128", **TRAFFIC),
    NodeStatus("fw", "firewall", "running", {"internet": "198.51.100.1", "perimeter": "192.0.2.1"}),
    NodeStatus("home-client", "pptp-client", "running", {"home": "192.168.1.10"},
               "stalled", "172.16.0.11", "172.16.0.1", "54321/65535",
               **TRAFFIC | dict(seen_on="home", last_gre_in_s=40.2, unanswered_s=23.5)),
    NodeStatus("intranet-host", "host", "running", {"intranet": "10.10.0.20"}),
    NodeStatus("nat", "nat", "running", {"home": "192.168.1.1", "internet": "198.51.100.2"}),
    NodeStatus("router", "router", "running",
               {"internet": "198.51.100.254", "perimeter": "192.0.2.254", "intranet": "10.0.1.1"}),
    NodeStatus("vpn", "pptp-server", "running", {"perimeter": "192.0.2.10", "intranet": "10.10.0.1"},
               "2 call(s)"),
    NodeStatus("road-warrior", "pptp-client", "running", {"internet": "198.51.100.12"}, "down"),
]

CHECKS = [
    Check("lab up", "", True, "default on the vm engine"),
    Check("client: tunnel up", "S16", True, "ppp0 up"),
    Check("home-client: tunnel up", "S16", False,
          "no tunnel; analyser: phase call: GRE flows, LCP did not open: PPP frames lost or rejected"),
    Check("client: reaches 10.10.0.20", "", True,
          "3 packets transmitted, 3 received, 0% packet loss, time 603ms"),
    Check("home-client: does not reach 10.10.0.20", "", False, "answered"),
    Check("nat: unique outside call IDs", "S20", True, "outside call IDs [12345, 12346]"),
]


def render(table, width: int = 80) -> list[str]:
    console = Console(width=width, record=True, color_system=None, file=io.StringIO())
    console.print(table)
    return console.export_text().splitlines()


def flat(lines: list[str]) -> str:
    """The text with rules and runs of white space made single spaces (wrapped cells rejoin)."""
    return " ".join(re.sub(r"[│┃]", " ", "\n".join(lines)).split())


def test_status_fits_80_columns_with_every_value_whole():
    lines = render(status_table(ROWS, "lab default on the vm engine"))
    assert max(map(len, lines)) <= 80, "\n".join(lines)
    text = "\n".join(lines)
    assert "…" not in text
    for r in ROWS:
        line = next(x for x in lines if re.match(rf"{re.escape(r.name)}\s", x))  # one row starts per node
        assert "running" in line or r.state in line
        for net, addr in r.addresses.items():
            assert re.search(rf"\b{net} {re.escape(addr)}(\s|$)", text), (net, addr, text)  # one a line
        for value in (r.kind, r.ppp_address, r.call_ids):
            assert value in text, value
        if r.peer_address:
            assert f"→ {r.peer_address}" in text
    assert "tunnel up" in text and "tunnel down" in text and "2 calls" in text
    for r in ROWS[0], ROWS[2]:  # the call's figures, one a line under its IDs
        i = next(n for n, x in enumerate(lines) if x.startswith(r.name + " "))
        col = next(x for x in lines if x.startswith("node ")).index("call")
        call = [x[col:].strip() for x in lines[i:i + 5]]
        assert call == [r.call_ids, "age 5m02s", "echo 12s", "↑1234 ↓1180", "lost ↑0 ↓2"], call
    i = next(n for n, x in enumerate(lines) if x.startswith("home-client "))
    assert [x.split()[1] for x in lines[i:i + 2]] == ["running", "tunnel"]
    assert lines[i + 2].split()[:2] == ["stalled", "23s"]  # how long its GRE went unanswered


def test_status_wide_has_a_column_per_field():
    lines = render(status_table(ROWS, "lab default", wide=True), width=260)
    header = next(x for x in lines if "node" in x)
    for col in ("node", "kind", "state", "addresses", "tunnel", "PPP address", "peer", "call IDs (client/server)",
                "age", "last echo", "GRE ↑out ↓in", "lost ↑ ↓", "last GRE in", "unanswered for"):
        assert col in header
    row = next(x for x in lines if "│ client " in x)
    for value in ("pptp-client", "running", "internet 198.51.100.10", "up", "172.16.0.10", "172.16.0.1", "12345/128",
                  "5m02s", "12s LCP Echo-Reply from server", "↑1234 ↓1180", "↑0 ↓2", " 0s "):
        assert value in row
    # Too wide for 80 columns, but nothing is cut to "…": values are folded.
    assert "…" not in "\n".join(render(status_table(ROWS, "lab default", wide=True)))


def test_status_of_a_stopped_node_and_a_lone_call():
    rows = [NodeStatus("c", "pptp-client", "exited", {"internet": "198.51.100.10"}),
            NodeStatus("vpn", "pptp-server", "running", {"perimeter": "192.0.2.10"}, "1 call(s)")]
    text = "\n".join(render(status_table(rows, "lab x")))
    assert "exited" in text and re.search(r"\b1 call\s*$", text, re.M) and "tunnel" not in text


@pytest.mark.parametrize("wide", [False, True])
def test_check_table_fits_80_columns_with_every_detail_whole(wide):
    lines = render(checks_table(CHECKS, "pptp-lab test default: FAIL", wide=wide))
    assert max(map(len, lines)) <= 80, "\n".join(lines)
    text = flat(lines)
    assert "…" not in text
    for c in CHECKS:
        assert c.name in text or wide, c.name  # wide may wrap a long check name in its column
        assert c.detail in text, c.detail
    assert text.count("FAIL") == 3 and text.count("pass") == 4  # title + 2 failed; 4 passed


def test_check_table_puts_the_detail_under_the_check():
    lines = render(checks_table(CHECKS, "t"))
    i = next(n for n, x in enumerate(lines) if "home-client: tunnel up" in x)
    assert lines[i].startswith("FAIL")
    assert lines[i + 1].lstrip().startswith("no tunnel; analyser: phase call:")
    assert len(lines[i + 1]) > 60  # the detail has the width, not a narrow third column


def test_markup_in_a_detail_is_shown_as_is():
    text = flat(render(checks_table([Check("x", "", False, "[red]not markup[/] [bold]")], "t")))
    assert "[red]not markup[/] [bold]" in text


@pytest.mark.parametrize("wide", [False, True])
def test_status_shows_what_nodes_say_as_text_never_as_markup(wide):
    """Versions come from dpkg in a node image, addresses and the call from the node and the
    capture: "[...]" in them is shown as written, and a stray "[/]" is no markup error."""
    odd = NodeStatus("c", "pptp-client", "[red]exited", {"internet[b]": "198.51.100.10[/]"},
                     "up", "[i]172.16.0.10", "[u]172.16.0.1", "[s]1/2", **TRAFFIC | dict(last_echo="LCP [blink]x"),
                     versions={"kernel": "[bold]6.1[/bold]", "ppp": "2.4.9[/]"})
    server = NodeStatus("vpn", "pptp-server", "running", {}, "[dim]2 call(s)")
    text = flat(render(status_table([odd, server], "lab x", wide=wide), width=300))
    for shown in ("[red]exited", "internet[b] 198.51.100.10[/]", "[i]172.16.0.10", "[u]172.16.0.1", "[s]1/2",
                  "[dim]2 call" if not wide else "[dim]2 call(s)"):
        assert shown in text, (shown, text)
    if wide:
        assert "LCP [blink]x" in text and "kernel [bold]6.1[/bold] ppp 2.4.9[/]" in text


# ------------------------------------------------------------------ pptp-lab analyze
def analysed(tmp_path) -> list:
    """One report per capture: every shipped third-party capture, and captures made with
    scapy (a whole session; echoes, losses, an ICMP error and a teardown; the run of
    synthrun: a refused login, a client stuck in LCP, both files at once; markup and a word
    longer than a line in a CHAP message)."""
    from lab import pptp

    from . import pptpgen as g, synthrun
    from .test_annotate import lossy
    from .test_captures import CAPTURES

    files = sorted(p for p in CAPTURES.glob("*") if p.suffix in (".cap", ".pcap", ".pcapng"))
    files += [g.full_session().write(tmp_path / "whole.pcap"), lossy(tmp_path / "lossy.pcap")[0]]
    c = g.full_session(data_frames=0, teardown=None)
    c.gre("server", g.ppp(g.chap(4, message=b"[red]refused[/] [bold] " + b"x" * 120)))
    files.append(c.write(tmp_path / ("hostile-" + "y" * 90 + ".pcap")))
    run = tmp_path / "run"
    run.mkdir()
    pair = synthrun.captures(run)
    return [pptp.analyze([f]) for f in files + pair] + [pptp.analyze(pair)]


def report_lines(report, width: int = 80, wide: bool = False) -> list[str]:
    from lab.reports.report import print_report

    console = Console(width=width, record=True, color_system=None, file=io.StringIO())
    print_report(report, console, wide)
    return console.export_text().splitlines()


def test_analyze_fits_80_columns_with_every_value_whole(tmp_path):
    from .test_captures import CAPTURES

    reports = analysed(tmp_path)
    # 9 sessions in the scapy-made captures; the third-party ones add theirs where present
    # (../shared/captures: a clone elsewhere has none).
    assert sum(len(r.sessions) for r in reports) >= (12 if CAPTURES.is_dir() else 9)
    for r in reports:
        lines = report_lines(r)
        text = "\n".join(lines)
        assert max(map(len, lines)) <= 80 and "…" not in text, text
        solid = "".join(text.split())  # a value wrapped or folded over lines, rejoined
        for s in r.sessions:
            assert re.search(rf"^session {s.id}\b", text, re.M), text
            assert f"phase {s.phase}: " in text and "".join(s.verdict.split()) in solid, (s.verdict, text)
            for c in s.calls:
                ids = "/".join("?" if i is None else str(i) for i in (c.client_call_id, c.server_call_id))
                assert f"call {ids} (client/server call IDs)" in text
                for d in (c.to_server, c.to_client):
                    if d:
                        assert f"(call ID {d.call_id}): {d.packets} packet" in text
                        assert f"lost {d.lost}, duplicates {d.duplicates}, reordered {d.reordered}" in text
            for e in s.teardown:
                assert "".join(e.what.split()) in solid


def test_analyze_shows_capture_text_as_text_never_as_markup(tmp_path):
    (r,) = [r for r in analysed(tmp_path) if "hostile" in r.files[0]]
    solid = "".join("\n".join(report_lines(r)).split())
    assert "[red]refused[/][bold]" + "x" * 120 in solid and "hostile-" + "y" * 90 + ".pcap" in solid


def test_analyze_wide_gives_the_tables(tmp_path):
    r = [r for r in analysed(tmp_path) if r.files[0].endswith("lossy.pcap")][0]
    (s,) = r.sessions
    lines = report_lines(r, width=250, wide=True)
    text = "\n".join(lines)
    header = next(x for x in lines if "capture" in x)
    for col in ("#", "capture", "client", "server", "call IDs (client/server)", "phase", "verdict"):
        assert col in header
    row = next(x for x in lines if x.startswith("│ 1 "))
    assert "lossy.pcap" in row and f"│ {s.phase} " in row and s.verdict[:60] in row  # a long verdict wraps
    gre = next(x for x in lines if "direction" in x)
    for col in ("call ID", "packets", "payload", "ack-only", "lost", "dup", "reordered", "highest ack", "PPP"):
        assert col in gre
    d = s.calls[0].to_server
    assert re.search(rf"│ client → server │ {d.call_id} +│ {d.packets} +│ {d.payload_packets} ", text)
    assert "…" not in "\n".join(report_lines(r, wide=True))  # folded at 80 columns, never cut

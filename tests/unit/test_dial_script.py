"""The dial script each client runs (playbooks/templates/dial.sh.j2) judges a failing call
early: run here under sh with stand-ins for the node's ip, pgrep, ss and pppd, which play
the situations it must tell apart."""
import os
import subprocess
import time

import pytest

from lab.model import render

STUBS = {
    # ip: the tunnel has an address once the file "up" exists
    "ip": '[ -f "$STATE/up" ] && echo "    inet 172.16.0.11 peer 172.16.0.1/32"; exit 0',
    # pgrep: pppd runs from its start until the file "gone" exists
    "pgrep": 'echo "$*" >> "$STATE/pgrep.args"; [ -f "$STATE/started" ] && [ ! -f "$STATE/gone" ]',
    # ss: prints what the scenario put in syn-sent / established
    "ss": 'echo "$*" >> "$STATE/ss.args"; case "$*" in *syn-sent*) cat "$STATE/syn" 2>/dev/null;; *established*) cat "$STATE/est" 2>/dev/null;; esac; exit 0',
    # pppd: the scenario's script plays what pppd logs (in the background, as pppd detaches)
    "pppd": 'echo "$*" > "$STATE/pppd.args"; touch "$STATE/started"; sh "$STATE/pppd.sh" </dev/null >/dev/null 2>&1 & exit 0',
}


@pytest.fixture
def dial(tmp_path):
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    for name, body in STUBS.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    log = tmp_path / "ppp.log"
    script = tmp_path / "dial"
    script.write_text(render.render("dial.sh.j2", peer="lab", log=str(log)))

    def run(pppd_script: str = "", seconds: int = 20, limits=(), **files):
        for name, text in files.items():
            (state / name).write_text(text)
        (state / "pppd.sh").write_text(f"log={log}\nSTATE={state}\n{pppd_script}")
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "STATE": str(state)}
        start = time.monotonic()
        r = subprocess.run(["sh", str(script), "ppp0", str(seconds), *limits], env=env, capture_output=True,
                           text=True, timeout=60)
        return r.returncode, r.stdout.strip(), time.monotonic() - start, log
    run.state = state
    return run


def test_a_tunnel_that_gets_its_address_is_up(dial):
    rc, out, _, log = dial('sleep 0.5; touch "$STATE/up"')
    assert rc == 0, out
    assert oct(log.stat().st_mode & 0o777) == "0o600"  # debug logs the handshake


def test_pppd_exiting_ends_the_wait_at_once(dial):
    rc, out, took, _ = dial('echo "CHAP authentication failed" >> "$log"; touch "$STATE/gone"')
    assert rc == 3 and "pppd gave up" in out and "CHAP authentication failed" in out
    assert took < 5


def test_three_unanswered_syns_end_the_wait(dial):
    rc, out, took, _ = dial(syn="0 1 198.51.100.10:4000 192.0.2.10:1723\n\t cubic rto:8000 backoff:3 retrans:1/3\n")
    assert rc == 4 and "3 SYNs" in out and took < 5


def test_with_many_calls_at_once_only_the_kernels_and_pppds_limits_count(dial):
    rc, _, _, _ = dial(seconds=2, syn="0 1 198.51.100.10:4000 192.0.2.10:1723\n\t cubic rto:8000 backoff:3\n",
                       limits=("10", "7"))
    assert rc == 124
    rc, _, _, _ = dial(LCP + "sleep 8", seconds=3, est="0 0 198.51.100.10:4000 192.0.2.10:1723\n", limits=("10", "7"))
    assert rc == 124


def test_two_syns_are_not_yet_a_verdict(dial):
    rc, _, _, _ = dial(seconds=1, syn="0 1 198.51.100.10:4000 192.0.2.10:1723\n\t cubic rto:4000 backoff:2\n")
    assert rc == 124


LCP = ('sleep 0.8; for i in 1 2 3; do echo "sent [LCP ConfReq id=0x$i <magic 0x1>]" >> "$log"; done; ')


def test_three_lcp_requests_unanswered_once_the_call_is_up(dial):
    rc, out, took, _ = dial(LCP + "sleep 8", est="0 0 198.51.100.10:4000 192.0.2.10:1723\n")
    assert rc == 5 and "3 LCP Configure-Requests unanswered" in out and took < 10


def test_lcp_requests_sent_before_the_control_connection_do_not_count(dial):
    # pppd talks LCP on the pty before pptp has a call: with no established TCP, no verdict.
    rc, _, _, _ = dial(LCP + "sleep 8", seconds=3)
    assert rc == 124


def test_answered_lcp_requests_are_no_verdict(dial):
    rc, _, _, _ = dial(LCP + 'echo "rcvd [LCP ConfAck id=0x3 <magic 0x1>]" >> "$log"; sleep 8', seconds=3,
                       est="0 0 198.51.100.10:4000 192.0.2.10:1723\n")
    assert rc == 124


def test_an_earlier_dials_lines_do_not_count(dial, tmp_path):
    (tmp_path / "ppp.log").write_text("sent [LCP ConfReq id=0x1]\n" * 5)
    rc, _, _, _ = dial("sleep 8", seconds=3, est="0 0 198.51.100.10:4000 192.0.2.10:1723\n")
    assert rc == 124


def test_the_client_files_carry_the_script():
    files = render.client_files("192.0.2.10", "alice")
    text, mode = files[render.DIAL]
    assert mode == 0o755 and 'pppd call "$peer" logfile "$log"' in text and "peer=${5:-lab}" in text
    assert subprocess.run(["sh", "-n", "-c", text]).returncode == 0


def test_a_member_dials_its_own_peer_from_its_own_address(dial, tmp_path):
    """A node with a count dials each member with PEER LOG SRC: its own pppd (the pgrep
    pattern stops at the peer's name: `lab` is not `lab-2`), its own log, and only the TCP
    1723 connection from its own address counts."""
    log2 = tmp_path / "ppp-2.log"
    rc, _, _, _ = dial("sleep 0.5; touch $STATE/up", limits=("3", "3", "lab-2", str(log2), "10.90.0.12"))
    assert rc == 0
    state = dial.state
    assert (state / "pppd.args").read_text().split() == ["call", "lab-2", "logfile", str(log2), "debug"]
    assert log2.exists() and oct(log2.stat().st_mode & 0o777) == "0o600"
    assert "^pppd call lab-2( |$)" in (state / "pgrep.args").read_text()
    asked = (state / "ss.args").read_text().splitlines()
    assert asked and all("src 10.90.0.12" in line for line in asked)


def test_a_nodes_one_call_keeps_the_defaults(dial):
    rc, _, _, log = dial("sleep 0.5; touch $STATE/up")
    assert rc == 0
    assert (dial.state / "pppd.args").read_text().split() == ["call", "lab", "logfile", str(log), "debug"]
    assert "^pppd call lab( |$)" in (dial.state / "pgrep.args").read_text()

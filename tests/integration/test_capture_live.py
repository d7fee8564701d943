"""Live captures (issue #14): `capture live` streams pcap that tshark reads while a tunnel
comes up, beside the lab's own capture; `capture watch` prints the PPTP events live; both
stop their tcpdump when they end."""
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.up import capture

TOPO = Path(__file__).parent / "topologies" / "pair.yaml"
CLI = [sys.executable, "-c", "from lab.cli import main; main()"]

pytestmark = pytest.mark.topology(str(TOPO), name="t-live")


def live_tcpdumps(lab) -> int:
    box = capture.container(lab.eng, lab.name)
    return int(lab.eng.exec(box, "pgrep -c -f '[t]cpdump -U -n -s 0 -w - ' || true", check=False).out.strip() or 0)


def wait_for(pred, timeout=30):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.5)
    return False


def test_capture_live_is_read_by_tshark_while_a_tunnel_comes_up(lab):
    lab.stop_client("client")
    live = subprocess.Popen([*CLI, "capture", "live", lab.name, "lan", "--filter", "tcp port 1723 or ip proto 47"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    shark = subprocess.Popen(["tshark", "-n", "-l", "-r", "-", "-T", "fields", "-E", "separator=|",
                              "-e", "pptp.control_message_type", "-e", "gre.key.call_id"],
                             stdin=live.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    live.stdout.close()  # tshark holds the pipe now
    try:
        assert wait_for(lambda: live_tcpdumps(lab) == 1), "the live tcpdump never started"
        lab.dial("client")
        lab.ping("client", "172.19.0.1")
    finally:
        live.send_signal(signal.SIGINT)
        live.wait(30)
    out, err = shark.communicate(timeout=60)
    rows = [line.split("|") for line in out.splitlines()]
    types = {r[0] for r in rows if r[0]}
    assert {"1", "2", "7", "8"} <= types, (types, err, live.stderr.read())  # SCCRQ SCCRP OCRQ OCRP
    assert any(r[1] for r in rows), "no GRE in the live stream"
    assert live.returncode == 0, live.stderr.read()
    assert wait_for(lambda: live_tcpdumps(lab) == 0), "the live tcpdump outlived its reader"
    # The lab's own capture kept running and saw the same tunnel.
    (s,) = [s for s in lab.sessions(client="10.76.0.20", segment="lan") if not s.gre_only][-1:]
    assert s.phase == "data", s.verdict


def test_a_bad_filter_is_a_one_line_error(lab):
    res = subprocess.run([*CLI, "capture", "live", lab.name, "lan", "--filter", "proto nonsense"],
                         capture_output=True, timeout=60)
    assert res.returncode == 2 and b"valid BPF expression" in res.stderr, res.stderr
    assert wait_for(lambda: live_tcpdumps(lab) == 0)


def test_capture_watch_prints_the_events_live(lab):
    lab.stop_client("client")
    watch = subprocess.Popen([*CLI, "capture", "watch", lab.name], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        assert wait_for(lambda: live_tcpdumps(lab) == 1)
        lab.dial("client")
        lab.ping("client", "172.19.0.1")
        time.sleep(2)
    finally:
        watch.send_signal(signal.SIGINT)
        out, err = watch.communicate(timeout=30)
    assert "client: SCCRQ" in out and "server: OCRP" in out, out[-2000:] + err[-2000:]
    assert "phase data: tunnel up" in out, out[-2000:]
    assert wait_for(lambda: live_tcpdumps(lab) == 0), "watch left a tcpdump behind"

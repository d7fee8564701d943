"""`pptp-lab test TOPOLOGY`: expectations written in the topology file are checked on real
tunnels, and JUnit XML plus an HTML report come out (SPEC S16 expectations as a user writes them)."""
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

from lab.paths import REPO


def pptp_lab_test(path: Path, lab_engine):
    res = subprocess.run([sys.executable, "-c", "from lab.cli import main; main()", "test", str(path)],
                         capture_output=True, text=True, cwd=REPO)
    out = res.stdout + res.stderr
    junit = Path(next(line.split("JUnit: ", 1)[1] for line in out.splitlines() if "JUnit: " in line).strip())
    return res.returncode, out, junit


def test_default_topology_meets_its_expectations(lab_engine, tmp_path):
    data = yaml.safe_load((REPO / "topologies" / "default.yaml").read_text())
    data["name"] = "t-expect"
    path = tmp_path / "t-expect.yaml"
    path.write_text(yaml.safe_dump(data))
    rc, out, junit = pptp_lab_test(path, lab_engine)
    assert rc == 0, out
    root = ET.parse(junit).getroot()
    assert root.get("failures") == "0" and int(root.get("tests")) >= 6
    names = {c.get("name") for c in root.iter("testcase")}
    assert {"client: tunnel up", "home-client: reaches 10.10.0.20", "nat: unique outside call IDs"} <= names
    page = (junit.parent / "report.html").read_text()
    assert "PASS" in page and "<td>S3</td>" in page and "internet.pcap" in page
    assert (junit.parent / "internet.pcap").stat().st_size > 0
    render_in_chromium(junit.parent / "report.html")


def render_in_chromium(page: Path) -> None:
    """The report renders in headless Chromium: its DOM has the ladder diagrams and a
    screenshot lands next to it (runs/<lab>/<run-id>/report.png)."""
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={page.parent / '.chromium'}"]
    dom = subprocess.run(["chromium", *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    assert dom.count("<svg") >= 2 and "SCCRQ" in dom, dom[:500]
    shot = page.with_suffix(".png")
    subprocess.run(["chromium", *flags, f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri()],
                   capture_output=True, timeout=120)
    assert shot.stat().st_size > 20_000  # a page with tables and diagrams, not a blank one


def test_a_firewall_without_the_gre_filter_is_expected_to_fail_at_the_call(lab_engine, tmp_path):
    data = yaml.safe_load((REPO / "topologies" / "default.yaml").read_text())
    data["name"] = "t-expect-fw"
    data["nodes"]["fw"].update(policy="pptp-documented", policy_without=["S12b"])
    data["expect"] = {"clients": {"client": {"tunnel": "fails", "phase": "call"},
                                  "home-client": {"tunnel": "fails", "phase": "call"}}}
    path = tmp_path / "t-expect-fw.yaml"
    path.write_text(yaml.safe_dump(data))
    rc, out, junit = pptp_lab_test(path, lab_engine)
    assert rc == 0, out
    text = junit.read_text()
    assert "client: tunnel fails at call" in text and "LCP did not open" in text

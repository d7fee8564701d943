"""`pptp-lab test TOPOLOGY`: expectations written in the topology file are checked on real
tunnels, and JUnit XML plus an HTML report come out (SPEC S16 expectations as a user writes them)."""
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import docker
import yaml

from tests import REPO


def pptp_lab_test(path: Path, lab_engine):
    res = subprocess.run([sys.executable, "-c", "from lab.cli import main; main()", "test", str(path)],
                         capture_output=True, text=True, cwd=REPO)
    out = res.stdout + res.stderr
    found = [line.split("JUnit: ", 1)[1].strip() for line in out.splitlines() if "JUnit: " in line]
    assert found, f"no JUnit file written (exit {res.returncode}):\n{out[-3000:]}"
    return res.returncode, out, Path(found[0])


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


def test_a_firewall_without_the_gre_filter_is_expected_to_fail_at_lcp(lab_engine, tmp_path):
    data = yaml.safe_load((REPO / "topologies" / "default.yaml").read_text())
    data["name"] = "t-expect-fw"
    data["nodes"]["fw"].update(policy="pptp-documented", policy_without=["S12b"])
    data["expect"] = {"clients": {"client": {"tunnel": "fails", "phase": "lcp"},
                                  "home-client": {"tunnel": "fails", "phase": "lcp"}}}
    path = tmp_path / "t-expect-fw.yaml"
    path.write_text(yaml.safe_dump(data))
    rc, out, junit = pptp_lab_test(path, lab_engine)
    assert rc == 0, out
    text = junit.read_text()
    assert "client: tunnel fails at lcp" in text and "LCP did not open" in text


def _run(lab_engine, *paths: Path, extra=()):
    return subprocess.run([sys.executable, "-c", "from lab.cli import main; main()", "test", *map(str, paths),
                           *extra], capture_output=True, text=True, cwd=REPO)


def test_a_failed_up_is_a_failed_check_and_the_next_topology_still_runs(lab_engine, tmp_path):
    """A Docker network of someone else holds the subnet the first topology needs: its `up`
    fails, which is a failed "lab up" check with its JUnit file; the second one passes. Its
    client is a node with a count (issue #30): three calls with the hostile credentials, each
    judged on its own."""
    eng, _ = lab_engine
    hostile = yaml.safe_load((Path(__file__).parent / "topologies" / "hostile.yaml").read_text())
    bad = dict(hostile, name="t-upfails")
    good = dict(hostile, name="t-upworks", networks={"lan": {"subnet": "10.78.0.0/24"}})
    for node, addr in (("vpn", "10.78.0.10"), ("client", "10.78.0.20")):
        good["nodes"] = {**good["nodes"], node: {**good["nodes"][node], "interfaces": {"lan": addr}}}
    good["nodes"]["client"] = {**good["nodes"]["client"], "count": 3,
                               "pptp_client": {**good["nodes"]["client"]["pptp_client"], "server": "10.78.0.10"}}
    paths = []
    for data in (bad, good):
        paths.append(tmp_path / f"{data['name']}.yaml")
        paths[-1].write_text(yaml.safe_dump(data))
    blocker = eng.client.networks.create("t-blocker", internal=True, ipam=docker.types.IPAMConfig(
        pool_configs=[docker.types.IPAMPool(subnet="10.77.0.0/24")]))
    try:
        res = _run(lab_engine, *paths)
    finally:
        blocker.remove()
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    junits = [Path(line.split("JUnit: ", 1)[1].strip()) for line in out.splitlines() if "JUnit: " in line]
    assert len(junits) == 2, out
    first, second = (ET.parse(j).getroot() for j in junits)
    (case,) = [c for c in first.iter("testcase") if c.get("name") == "lab up"]
    assert case.find("failure") is not None and "overlaps Docker network t-blocker" in ET.tostring(case, "unicode")
    assert second.get("failures") == "0" and int(second.get("tests")) >= 4, ET.tostring(second, "unicode")
    assert {f"client#{i}: tunnel up" for i in (1, 2, 3)} <= {c.get("name") for c in second.iter("testcase")}
    assert not [n for n in eng.client.networks.list() if n.name.startswith(("t-upfails", "t-upworks"))]


def test_test_refuses_a_lab_name_that_is_running(lab_engine, tmp_path):
    eng, _ = lab_engine
    data = yaml.safe_load((Path(__file__).parent / "topologies" / "hostile.yaml").read_text())
    data["name"] = "t-mine"
    path = tmp_path / "t-mine.yaml"
    path.write_text(yaml.safe_dump(data))
    mine = eng.create_network("t-mine", "lan", "10.79.0.0/24")  # "the user's own lab"
    try:
        res = _run(lab_engine, path)
        assert res.returncode == 2 and "lab t-mine is running" in res.stderr, res.stderr
        assert [n.name for n in eng.networks("t-mine")] == ["t-mine-lan"]
        assert not eng.containers("t-mine")
    finally:
        mine.remove()

"""`pptp-lab test A B --engines X,Y`: two labs at the same time on two engines, one merged
JUnit file and one index over both reports (issue #13). The two engines are the lab's own
engine by name and the same engine's Docker API given as a plain endpoint URL, so the
test needs no second VM; the two labs use distinct subnets, as labs sharing a dockerd must."""
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path

import yaml

from tests import REPO

PAIR = REPO / "tests" / "integration" / "topologies" / "pair.yaml"


def pair(tmp_path: Path, name: str, octet: int) -> Path:
    text = PAIR.read_text().replace("10.76.0.", f"10.{octet}.0.").replace("name: pair", f"name: {name}")
    data = yaml.safe_load(text)
    data["expect"] = {"clients": {"client": {"tunnel": "up", "reach": ["172.19.0.1"]}}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_two_labs_run_side_by_side_on_two_engines_with_merged_reports(lab_engine, tmp_path):
    eng, _ = lab_engine
    a, b = pair(tmp_path, "t-side-a", 77), pair(tmp_path, "t-side-b", 78)
    res = subprocess.run([sys.executable, "-c", "from lab.cli import main; main()", "test", str(a), str(b),
                          "--engines", f"{eng.name},{eng.url}"], capture_output=True, text=True, cwd=REPO,
                         timeout=900)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    junit = Path(next(line.split(": ", 1)[1].strip() for line in out.splitlines()
                      if line.startswith("JUnit (merged): ")))
    root = ET.parse(junit).getroot()
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert set(suites) == {"t-side-a", "t-side-b"} and root.get("failures") == "0", ET.tostring(root)[:2000]
    assert {s.get("hostname") for s in suites.values()} == {eng.name, eng.url}
    cases = {c.get("name") for c in root.iter("testcase")}
    assert {"client: tunnel up", "client: reaches 172.19.0.1"} <= cases
    # side by side: each lab's run began before the other's ended
    span = {n: (datetime.fromisoformat(s.get("timestamp")).timestamp(), float(s.get("time")))
            for n, s in suites.items()}
    (sa, ta), (sb, tb) = span["t-side-a"], span["t-side-b"]
    assert sa < sb + tb and sb < sa + ta, span
    index = (junit.parent / "index.html").read_text()
    assert "2 of 2 labs passed" in index and index.count("report.html") == 2
    for href in ("t-side-a", "t-side-b"):
        assert (junit.parent / f"{href}.log").stat().st_mode & 0o077 == 0  # logs are the owner's only
    assert not [n for n in eng.networks() if n.name.startswith("t-side-")]

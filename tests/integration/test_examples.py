"""The examples users start from (topologies/examples/, issue #10): a SOHO router's
iptables-save with a port forward of TCP 1723 and GRE, a stateful nftables edge firewall and
a three-legged firewall, each applied unchanged from its file and checked by its own
`expect:` block on real tunnels. They use distinct subnets, so they run side by side on one
engine (`--engines E,E,E`). And a broken ruleset is refused before anything is created,
with one line naming the key, the file and the line."""
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from tests import REPO

EXAMPLES = sorted((REPO / "topologies" / "examples").glob("*.yaml"))


def cli(*args, timeout=900):
    return subprocess.run([sys.executable, "-c", "from lab.cli import main; main()", *args],
                          capture_output=True, text=True, cwd=REPO, timeout=timeout)


def test_every_example_meets_its_expectations(lab_engine):
    eng, _ = lab_engine
    assert len(EXAMPLES) >= 3
    res = cli("test", *map(str, EXAMPLES), "--engines", ",".join([eng.name] * len(EXAMPLES)))
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    junit = Path(next(line.split(": ", 1)[1].strip() for line in out.splitlines()
                      if line.startswith("JUnit (merged): ")))
    root = ET.parse(junit).getroot()
    assert root.get("failures") == "0" and {s.get("name") for s in root} == {p.stem for p in EXAMPLES}
    cases = {c.get("name") for c in root.iter("testcase")}
    assert {"client: tunnel up", "client: reaches 172.30.0.1", "client: reaches 10.51.0.20"} <= cases


def test_a_broken_ruleset_is_one_line_naming_key_file_and_line_and_nothing_is_created(lab_engine, tmp_path):
    eng, _ = lab_engine
    for f in ("soho-router.yaml", "soho-router.rules", "edge-firewall.yaml", "edge-firewall.nft"):
        shutil.copy(REPO / "topologies" / "examples" / f, tmp_path / f)
    rules = tmp_path / "soho-router.rules"
    rules.write_text(rules.read_text().replace("-A FORWARD -i lan -o internet -j ACCEPT",
                                               "-A FORWARD -i lan -o internet -j NOSUCH"))
    nft = tmp_path / "edge-firewall.nft"
    nft.write_text(nft.read_text().replace("ct state invalid drop", "ct state invalid dorp"))
    for topo, key, where in (("soho-router.yaml", "nodes.router.ruleset.iptables", "soho-router.rules:25"),
                             ("edge-firewall.yaml", "nodes.edge.ruleset.nft", "edge-firewall.nft:9:")):
        path = tmp_path / topo
        path.write_text(path.read_text().replace("name: ", "name: t-bad-", 1))
        res = cli("up", str(path), timeout=300)
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert res.returncode == 2 and len(lines) == 1, res.stderr
        assert lines[0].startswith(f"error: {key}: {where}"), lines[0]
    assert not [n.name for n in eng.networks() if n.name.startswith("t-bad-")]
    assert not [c for c in eng.client.containers.list(all=True) if c.name.startswith("t-bad-")]

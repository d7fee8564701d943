"""The examples users start from (topologies/examples/, issue #10), SPEC S22 and labs side by
side (issue #13). A SOHO router's
iptables-save with a port forward of TCP 1723 and GRE, a stateful nftables edge firewall and
a three-legged firewall, each applied unchanged from its file and checked by its own
`expect:` block on real tunnels. They use distinct subnets, so they run side by side on one
engine (`--engines E,E,E`). And a broken ruleset is refused before anything is created,
with one line naming the key, the file and the line."""
import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path

import yaml

from tests import REPO

EXAMPLES = sorted((REPO / "topologies" / "examples").glob("*.yaml"))
NFT_DROP = 'iifname "dmz" oifname "internet" ip protocol gre drop'
IPT_DROP = "-A FORWARD -i lan -o internet -p gre -j DROP"


def s22_variants(tmp_path: Path) -> list[Path]:
    """SPEC S22: the edge firewall and the SOHO router with GRE dropped on its way back to the
    client, renumbered (so they run beside the examples) and expecting that drop."""
    renumber = {"198.18.20.": "198.18.21.", "10.40.0.": "10.41.0.", "172.40.0.": "172.41.0.",
                "198.18.10.": "198.18.11.", "10.30.0.": "10.31.0.", "172.30.0.": "172.31.0."}
    out = []
    for name, ruleset, node, rule, before, drop in (
            ("edge-firewall", "edge-firewall.nft", "edge", "ip protocol gre drop",
             "        ct state established,related accept\n", f"        {NFT_DROP}\n"),
            ("soho-router", "soho-router.rules", "router", "drop", "-A FORWARD -m conntrack", f"{IPT_DROP}\n")):
        texts = {f: (REPO / "topologies" / "examples" / f).read_text() for f in (f"{name}.yaml", ruleset)}
        for f, text in texts.items():
            for old, new in renumber.items():
                text = text.replace(old, new)
            texts[f] = text
        texts[ruleset] = texts[ruleset].replace(before, drop + before, 1)
        data = yaml.safe_load(texts[f"{name}.yaml"])
        data["name"] = f"t-s22-{name.split('-')[0]}"
        data["expect"] = {"clients": {"client": {"tunnel": "fails", "phase": "lcp", "dropped_by": node, "rule": rule,
                                                "cause": "rule"}}}
        (tmp_path / ruleset).write_text(texts[ruleset])
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(data))
        out.append(tmp_path / f"{name}.yaml")
    return out


def cli(*args, timeout=900):
    return subprocess.run([sys.executable, "-c", "from lab.cli import main; main()", *args],
                          capture_output=True, text=True, cwd=REPO, timeout=timeout)


def test_every_example_meets_its_expectations_side_by_side_and_S22_drops_are_traced(lab_engine, tmp_path):
    """One `pptp-lab test` of the examples and of two S22 variants (GRE dropped on its way back
    by an nft and by an iptables-restore ruleset), side by side on two slots: the engine by
    name and the same engine's API as a plain Docker endpoint URL (two engines, one merged
    report, issue #13)."""
    eng, _ = lab_engine
    assert len(EXAMPLES) >= 3
    variants = s22_variants(tmp_path)
    res = cli("test", *map(str, EXAMPLES + variants), "--engines", f"{eng.name},{eng.url}")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    junit = Path(next(line.split(": ", 1)[1].strip() for line in out.splitlines()
                      if line.startswith("JUnit (merged): ")))
    root = ET.parse(junit).getroot()
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert root.get("failures") == "0" and set(suites) == {p.stem for p in EXAMPLES} | {"t-s22-edge", "t-s22-soho"}
    cases = {c.get("name") for c in root.iter("testcase")}
    assert {"client: tunnel up", "client: reaches 172.30.0.1", "client: reaches 10.51.0.20",
            "client: dropped by edge (rule with `ip protocol gre drop`)", "client: dropped by router (rule with `drop`)",
            "client: fails for cause rule"} <= cases
    # two engines, labs at the same time (each began before another ended), logs owner-only
    assert {s.get("hostname") for s in suites.values()} == {eng.name, eng.url}
    span = sorted((datetime.fromisoformat(s.get("timestamp")).timestamp(), float(s.get("time"))) for s in suites.values())
    assert any(b[0] < a[0] + a[1] for a, b in zip(span, span[1:])), span
    index = (junit.parent / "index.html").read_text()
    assert f"{len(suites)} of {len(suites)} labs passed" in index and index.count("report.html") == len(suites)
    assert all(log.stat().st_mode & 0o077 == 0 for log in junit.parent.glob("*.log"))
    # S22: each failing tunnel's check names the node, table, chain and rule, and the captures agree
    details = []
    for log in junit.parent.glob("t-s22-*.log"):
        line = next(x for x in log.read_text().splitlines() if x.startswith("JUnit: "))
        details += [c["detail"] for c in json.loads((Path(line.split(": ", 1)[1].strip()).parent / "checks.json")
                                                    .read_text()) if "dropped by" in c["name"]]
    assert any("GRE to the client seen on dmz, never on internet: dropped by edge, table inet edge, chain forward, "
               f"rule `{NFT_DROP}" in d for d in details), details
    assert any("GRE to the client seen on lan, never on internet: dropped by router, table ip filter, chain FORWARD"
               in d for d in details), details


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
        # Under pytest -n another module's lab may hold these subnets: `up` says it waits
        # (PPTP_LAB_WAIT_SUBNETS, set by the plugin), then meets the ruleset.
        lines = [ln for ln in res.stderr.splitlines() if ln.strip() and " waits for lab " not in ln]
        assert res.returncode == 2 and len(lines) == 1, res.stderr
        assert lines[0].startswith(f"error: {key}: {where}"), lines[0]
    assert not [n.name for n in eng.networks() if n.name.startswith("t-bad-")]
    assert not [c for c in eng.client.containers.list(all=True) if c.name.startswith("t-bad-")]

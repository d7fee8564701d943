"""SPEC S22: a firewall or NAT from the user's own ruleset (nftables or iptables-save),
applied unchanged; a tunnel that fails is traced to the node, table, chain and rule that
dropped its packets (kernel tracing: nftrace), and the per-segment captures agree (seen up
to that node, not after it). Two rulesets drop GRE on its way back to the client: `pptp-lab
test` checks `expect: dropped_by` for both, and `pptp-lab why` says it for a running lab."""
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

from tests import REPO

EXAMPLES = REPO / "topologies" / "examples"
NFT_DROP = 'iifname "dmz" oifname "internet" ip protocol gre drop'
IPT_DROP = "-A FORWARD -i lan -o internet -p gre -j DROP"


def cli(*args, timeout=900):
    return subprocess.run([sys.executable, "-c", "from lab.cli import main; main()", *args],
                          capture_output=True, text=True, cwd=REPO, timeout=timeout)


def broken_examples(tmp_path: Path) -> tuple[Path, Path]:
    """The edge firewall and the SOHO router, each with GRE dropped on the way back."""
    for f in ("edge-firewall.yaml", "edge-firewall.nft", "soho-router.yaml", "soho-router.rules"):
        shutil.copy(EXAMPLES / f, tmp_path / f)
    nft = tmp_path / "edge-firewall.nft"
    nft.write_text(nft.read_text().replace("        ct state established,related accept\n",
                                           f"        {NFT_DROP}\n        ct state established,related accept\n"))
    rules = tmp_path / "soho-router.rules"
    rules.write_text(rules.read_text().replace("-A FORWARD -m conntrack", f"{IPT_DROP}\n-A FORWARD -m conntrack"))
    out = []
    for name, node, rule in (("edge-firewall", "edge", "ip protocol gre drop"), ("soho-router", "router", "drop")):
        path = tmp_path / f"{name}.yaml"
        data = yaml.safe_load(path.read_text())
        data["name"] = f"t-s22-{name.split('-')[0]}"
        data["expect"] = {"clients": {"client": {"tunnel": "fails", "phase": "lcp", "dropped_by": node, "rule": rule}}}
        path.write_text(yaml.safe_dump(data))
        out.append(path)
    return tuple(out)


def test_S22_test_traces_each_failing_tunnel_to_the_rule_that_dropped_it(lab_engine, tmp_path):
    eng, _ = lab_engine
    edge, soho = broken_examples(tmp_path)
    res = cli("test", str(edge), str(soho), "--engines", f"{eng.name},{eng.name}")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    junit = Path(next(line.split(": ", 1)[1].strip() for line in out.splitlines()
                      if line.startswith("JUnit (merged): ")))
    cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    nft_case = cases["client: dropped by edge (rule with `ip protocol gre drop`)"]
    ipt_case = cases["client: dropped by router (rule with `drop`)"]
    assert nft_case.find("failure") is None and ipt_case.find("failure") is None
    # The run directories keep the checks with their sentences.
    details = []
    for run in junit.parent.glob("*.log"):
        line = next(x for x in run.read_text().splitlines() if x.startswith("JUnit: "))
        details += [c["detail"] for c in __import__("json").loads(
            (Path(line.split(": ", 1)[1].strip()).parent / "checks.json").read_text()) if "dropped by" in c["name"]]
    assert any("GRE to the client seen on dmz, never on internet: dropped by edge, table inet edge, chain forward, "
               f"rule `{NFT_DROP}" in d for d in details), details
    assert any("GRE to the client seen on lan, never on internet: dropped by router, table ip filter, chain FORWARD"
               in d for d in details), details

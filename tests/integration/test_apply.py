"""`pptp-lab apply` / `lab.apply` and `pptp-lab why` (issue #10, SPEC S22) on one running lab:
its firewall rules replaced in place, without down/up. A ruleset that drops GRE turns a working tunnel into one that stops in LCP
on redial; applying the original file turns it back, through the CLI; the change is shown
as a diff of the node's rules."""
import subprocess
import sys
import time

import pytest

from tests import REPO

NFT_DROP = 'iifname "dmz" oifname "internet" ip protocol gre drop'
EXAMPLES = REPO / "topologies" / "examples"
EXAMPLE = REPO / "topologies" / "examples" / "edge-firewall.nft"
pytestmark = pytest.mark.topology(str(REPO / "topologies" / "examples" / "edge-firewall.yaml"), name="t-apply")


def test_apply_turns_a_working_setup_into_a_failing_one_and_back(lab, tmp_path):
    assert lab.tunnel("client")[0] == "up"
    drop = tmp_path / "no-gre.nft"
    drop.write_text(EXAMPLE.read_text().replace(
        'iifname "internet" oifname "dmz" ip daddr 10.40.0.10 ip protocol gre accept', "ip protocol gre drop"))
    since = time.time()
    change = lab.apply("edge", ruleset=drop, redial=True)
    assert "+\t\tip protocol gre drop" in change.diff() and "-\t\tiifname" in change.diff(), change.diff()
    assert change.redialled and change.redialled[0].startswith("not every tunnel came back")
    assert lab.tunnel("client")[0] == "down"
    latest = max((s for s in lab.sessions(client="198.18.20.20", segment="internet") if not s.gre_only),
                 key=lambda s: s.start)
    assert latest.start >= since - 1 and latest.phase == "lcp", (latest.phase, latest.verdict)

    res = subprocess.run([sys.executable, "-c", "from lab.cli import main; main()", "apply", "t-apply", "edge",
                          "--ruleset", str(EXAMPLE), "--redial"], capture_output=True, text=True, cwd=REPO,
                         timeout=300)
    out = res.stdout + res.stderr  # the diff on stdout, progress on stderr
    assert res.returncode == 0, out
    assert "applied to t-apply edge" in out and "+\t\tiifname \"internet\"" in res.stdout
    assert "redialled: client" in out
    assert lab.tunnel("client")[0] == "up"
    lab.ping("client", "172.40.0.1")


def test_apply_refuses_what_does_not_fit_and_changes_nothing(lab, tmp_path):
    from lab.core.errors import LabError

    before = lab.run("edge", "nft list ruleset").out
    with pytest.raises(LabError, match="apply changes firewall, nat and router nodes"):
        lab.apply("vpn", policy="open")
    with pytest.raises(LabError, match="policies are a firewall's|nat block"):
        lab.apply("edge", nat_editor=True)
    bad = tmp_path / "bad.nft"
    bad.write_text("table inet x {\n  chain y {\n    nonsense here\n  }\n}\n")
    with pytest.raises(LabError, match=r"nodes.edge.ruleset.nft: bad.nft:3:"):
        lab.apply("edge", ruleset=bad)
    assert lab.run("edge", "nft list ruleset").out == before


def cli(*args, timeout=900):
    return subprocess.run([sys.executable, "-c", "from lab.cli import main; main()", *args],
                          capture_output=True, text=True, cwd=REPO, timeout=timeout)


def test_S22_why_names_the_rule_on_a_running_lab(lab, tmp_path):
    assert lab.tunnel("client")[0] == "up"
    drop = tmp_path / "drop-back.nft"
    drop.write_text((EXAMPLES / "edge-firewall.nft").read_text().replace(
        "        ct state established,related accept\n", f"        {NFT_DROP}\n        ct state established,related accept\n"))
    lab.apply("edge", ruleset=drop)
    res = cli("why", "t-apply", "client", "--timeout", "20", timeout=300)
    assert res.returncode == 1, res.stdout + res.stderr
    assert res.stdout.startswith("client: cause rule: GRE to the client seen on dmz, never on internet: dropped by edge, "
                                 f"table inet edge, chain forward, rule `{NFT_DROP}"), res.stdout + res.stderr
    lab.apply("edge", ruleset=EXAMPLES / "edge-firewall.nft")
    res = cli("why", "t-apply", "client", timeout=300)
    assert res.returncode == 0 and "tunnel came up" in res.stdout + res.stderr, res.stdout + res.stderr
    assert "pptp_lab_trace" not in lab.run("edge", "nft list tables").out  # tracing is off again

"""SPEC S22 on a running lab: `pptp-lab why LAB CLIENT` redials with kernel tracing on and
names the rule that dropped the tunnel's packets; after the rule is fixed (`apply`), the same
verb sees the tunnel come up, and tracing is off again."""
import pytest

from .test_s22_where_it_died import EXAMPLES, NFT_DROP, cli

pytestmark = pytest.mark.topology(str(EXAMPLES / "edge-firewall.yaml"), name="t-s22-why")


def test_S22_why_names_the_rule_on_a_running_lab(lab, tmp_path):
    assert lab.tunnel("client")[0] == "up"
    drop = tmp_path / "drop-back.nft"
    drop.write_text((EXAMPLES / "edge-firewall.nft").read_text().replace(
        "        ct state established,related accept\n", f"        {NFT_DROP}\n        ct state established,related accept\n"))
    lab.apply("edge", ruleset=drop)
    res = cli("why", "t-s22-why", "client", "--timeout", "20", timeout=300)
    assert res.returncode == 1, res.stdout + res.stderr
    assert res.stdout.startswith("client: GRE to the client seen on dmz, never on internet: dropped by edge, "
                                 f"table inet edge, chain forward, rule `{NFT_DROP}"), res.stdout + res.stderr
    lab.apply("edge", ruleset=EXAMPLES / "edge-firewall.nft")
    res = cli("why", "t-s22-why", "client", timeout=300)
    assert res.returncode == 0 and "tunnel came up" in res.stdout + res.stderr, res.stdout + res.stderr
    assert "pptp_lab_trace" not in lab.run("edge", "nft list tables").out  # tracing is off again

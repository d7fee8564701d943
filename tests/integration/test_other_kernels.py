"""Issue #11 item 5: on every shipped kernel besides the default (which the rest of the
suite runs on), SPEC S19/S20 (the NAT editor with one and three clients, with and without
it) and the default topology's `expect:`. The S19/S20 tests are test_s19_s20_nat_editor's
own, collected here once more per kernel (not the one that turns the editor back on: the
lab's reconfigure, not the kernel, is what it proves); then, on the same VM, the default topology runs
through `pptp-lab test --matrix kernel=K` (one cell: the matrix report's path in CI). A
kernel whose helper or programs behave otherwise fails here by name ([kernel=...]).

Kernel by kernel, one VM of theirs at a time (the plugin powers the previous one off), in
the suite's "own-vm" scope (tests/integration/conftest.py): never more than two guests run
at once."""
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from lab.up import lifecycle
from lab.core import suites
from tests import REPO
from tests.integration.test_s19_s20_nat_editor import (  # noqa: F401 - collected here per kernel
    test_S19_editor_rewrites_the_call_id_in_control_and_gre,
    test_S20_same_call_id_with_editor_all_tunnels_carry_data_at_once,
    test_S20_without_the_editor_the_tunnels_fail_and_the_capture_says_how)

OTHER_KERNELS = [k for k in suites.KERNELS if k != suites.DEFAULT]

pytestmark = [pytest.mark.topology("nat-clients", name="t-nat"), pytest.mark.kernel(*OTHER_KERNELS)]


def pptp_lab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from lab.cli import main; main()", *args],
                          capture_output=True, text=True, cwd=REPO)


def test_default_topology_meets_its_expectations(lab, lab_kernel, tmp_path):
    lifecycle.down(lab.eng, lab.topo.name)  # the same reference subnets as the default topology
    data = yaml.safe_load((REPO / "topologies" / "default.yaml").read_text())
    data["name"] = "t-expect-kernel"
    path = tmp_path / "t-expect-kernel.yaml"
    path.write_text(yaml.safe_dump(data))
    res = pptp_lab("test", str(path), "--matrix", f"kernel={lab_kernel}")
    out = res.stdout + res.stderr
    found = [line.split("JUnit (matrix): ", 1)[1].strip() for line in out.splitlines() if "JUnit (matrix): " in line]
    assert found, f"no matrix report (exit {res.returncode}):\n{out[-3000:]}"
    report = Path(found[0]).parent
    (cell,) = json.loads((report / "matrix.json").read_text())["cells"]
    assert (cell["kernel"], cell["state"]) == (lab_kernel, "PASS"), out[-3000:]
    assert res.returncode == 0, out[-3000:]
    # the column is headed by what the cell ran: the VM's kernel release and its pptp nodes' packages
    ran = cell["versions"]
    assert {"client", "home-client", "vpn"} <= set(ran), ran
    assert all({"kernel", "ppp", "pptpd", "pptp-linux"} <= set(v) for v in ran.values()), ran
    page = (report / "index.html").read_text()
    assert f"<div class='ran'>{ran['vpn']['kernel']}</div>" in page, page[:3000]
    assert f"<div class='ran'>pptpd {ran['vpn']['pptpd']}</div>" in page, page[:3000]
    root = ET.parse(report / "junit.xml").getroot()
    assert [c.get("name") for c in root.iter("testcase")] == [f"kernel={lab_kernel}"]
    # the cell's own report: the same checks as on the default kernel, all passed
    cases = {t.get("name"): t for t in ET.parse(Path(cell["run_dir"]) / "junit.xml").getroot().iter("testcase")}
    assert {"client: tunnel up", "home-client: reaches 10.10.0.20", "nat: unique outside call IDs"} <= set(cases)
    assert not any(t.find("failure") is not None for t in cases.values())
    assert lab.eng.attach() is not None  # the matrix did not start this VM, so it left it running


@pytest.mark.kernel("bullseye")
def test_S32_on_bullseye_the_same_causes_from_the_fallback_evidence(lab, lab_kernel, tmp_path):
    """Bullseye's 5.10 gives drops without reasons: the causes of
    tests/integration/topologies/causes.yaml that newer kernels name by a drop reason or
    find through nft tracing must come from the fallback evidence (captures, ICMP, routes,
    counters, conntrack), each still the right one. (Refused, auth and icmp are read from the
    captures alone, on every kernel: their clients are left out.) On this module's running
    bullseye VM (its subnets are the lab's own), so no second boot."""
    from tests.integration.test_s32_s33_causes import CAUSES, junit_cases, only

    kernel_told = ["c-nat", "c-nr", "c-rpf", "c-inv", "c-pol", "c-loop"]
    res = pptp_lab("test", str(only(tmp_path, kernel_told)), "--kernel", lab_kernel)
    out = res.stdout + res.stderr
    cases = junit_cases(out)
    for client, cause in ((c, CAUSES[c]) for c in kernel_told):
        assert cases.get(f"{client}: fails for cause {cause}") is True, (client, out[-4000:])
    assert res.returncode == 0, out[-3000:]


# Not on bookworm-backports: its 6.12 kernel is trixie's, its pppd and pptpd bookworm's, and
# the default kernel's module runs this topology too; the suite's 30 minutes need its 2 minutes.
@pytest.mark.kernel("bullseye", "trixie")
def test_S29_S31_the_black_hole_and_the_tunnel_mtu_fix(lab, lab_kernel, tmp_path):
    """SPEC S29/S31 per kernel (test_s29_s31_mtu's small topology, on this module's running
    VM): the MRUs, the largest DF packet, r's fragmentation needed dropped at fw-bh, the
    stalled transfer named `mtu`, and the tunnel's own MTU as its fix."""
    from tests.integration.test_s29_s31_mtu import assert_black_hole_and_its_mtu_fix, run, small

    cases, flows, out = run(small(tmp_path), "--kernel", lab_kernel)
    assert_black_hole_and_its_mtu_fix(cases, flows, out)

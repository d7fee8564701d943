"""Issue #11: the default topology's `expect:` on every shipped kernel besides the default
(a `pptp-lab test --matrix kernel=...` run: one report, one cell per kernel), and labs on
two kernels' VMs at the same time, where taking one lab and its VM down leaves the other's
tunnel carrying data.

In the suite's "own-vm" scope, after test_other_kernels_nat_editor.py, whose VMs are still
running (the matrix stops only the VMs it started)."""
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

from lab import lifecycle, suites, topology
from lab.engines import vm
from lab.pytest_plugin import Lab
from tests import REPO
from tests.integration.test_other_kernels_nat_editor import OTHER_KERNELS


def pptp_lab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from lab.cli import main; main()", *args],
                          capture_output=True, text=True, cwd=REPO)


def test_default_topology_meets_its_expectations_on_every_other_kernel(lab_engine, tmp_path):
    data = yaml.safe_load((REPO / "topologies" / "default.yaml").read_text())
    data["name"] = "t-expect-kernels"
    path = tmp_path / "t-expect-kernels.yaml"
    path.write_text(yaml.safe_dump(data))
    res = pptp_lab("test", str(path), "--matrix", "kernel=" + ",".join(OTHER_KERNELS))
    out = res.stdout + res.stderr
    found = [line.split("JUnit (matrix): ", 1)[1].strip() for line in out.splitlines() if "JUnit (matrix): " in line]
    assert found, f"no matrix report (exit {res.returncode}):\n{out[-3000:]}"
    report = Path(found[0]).parent
    cells = json.loads((report / "matrix.json").read_text())["cells"]
    assert {c["kernel"]: c["state"] for c in cells} == dict.fromkeys(OTHER_KERNELS, "PASS"), out[-3000:]
    assert res.returncode == 0, out[-3000:]
    root = ET.parse(report / "junit.xml").getroot()
    assert {c.get("name") for c in root.iter("testcase")} == {f"kernel={k}" for k in OTHER_KERNELS}
    for c in cells:  # each cell's own report: the same checks as on the default kernel
        cases = {t.get("name"): t for t in ET.parse(Path(c["run_dir"]) / "junit.xml").getroot().iter("testcase")}
        assert {"client: tunnel up", "home-client: reaches 10.10.0.20", "nat: unique outside call IDs"} <= set(cases)
        assert not any(t.find("failure") is not None for t in cases.values()), c["kernel"]


SIDE = {
    "name": "t-kside",
    "networks": {"lan": {"subnet": "10.86.0.0/24"}},
    "nodes": {
        "vpn": {"kind": "pptp-server", "interfaces": {"lan": "10.86.0.10"},
                "pptp_server": {"local_ip": "172.21.0.1", "remote_ip": "172.21.0.10-20",
                                "users": [{"name": "alice", "secret": "alice-secret"}]}},
        "client": {"kind": "pptp-client", "interfaces": {"lan": "10.86.0.20"},
                   "pptp_client": {"server": "10.86.0.10", "user": "alice", "secret": "alice-secret"}},
    },
}
OTHER = "trixie"


def kernel_of(eng, lab: str) -> str:
    rows = lifecycle.status(eng, lab)
    (client,) = [r for r in rows if r.name == "client"]
    assert client.tunnel == "up", (eng.name, client)
    return client.versions["kernel"]


def test_labs_on_two_kernels_side_by_side_and_down_of_one_leaves_the_other(lab_engine, lab_kernel_engines, tmp_path):
    eng, _ = lab_engine
    other, _ = lab_kernel_engines(OTHER)
    path = tmp_path / "t-kside.yaml"
    path.write_text(yaml.safe_dump(SIDE))
    topo = topology.load(path)
    try:
        lifecycle.up(eng, topo, with_capture=False)
        lifecycle.up(other, topo, with_capture=False)  # same name and subnet, another VM
        kernels = {kernel_of(eng, "t-kside"), kernel_of(other, "t-kside")}
        assert len(kernels) == 2, kernels  # 6.1 and 6.12: two kernels, both with a tunnel
        # The other kernel's lab down, then its VM: this lab's tunnel still carries data.
        res = pptp_lab("down", "t-kside", "--kernel", OTHER)
        assert res.returncode == 0, res.stdout + res.stderr
        assert not other.containers("t-kside")
        res = pptp_lab("vm", "down", "--kernel", OTHER)
        assert res.returncode == 0 and "powered off" in res.stdout, res.stdout + res.stderr
        assert other.attach() is None  # its QEMU is gone
        assert kernel_of(eng, "t-kside")
        Lab(eng, topo).ping("client", "172.21.0.1")
    finally:
        lifecycle.down(eng, "t-kside")
        vm.use(1, suites.DEFAULT)

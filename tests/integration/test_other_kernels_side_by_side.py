"""Issue #11: labs on two kernels' VMs at the same time (same lab name, same subnet), each
with its own tunnel; taking one lab down and then its VM leaves the other's tunnel carrying
data. This powers the trixie VM off at the end (`pptp-lab vm down --kernel trixie`).

In the suite's "own-vm" scope (one extra guest at a time); the trixie VM is started here
unless test_other_kernels left it up."""
import yaml

from lab.up import lifecycle
from lab.core import suites
from lab.model import topology
from lab.engines import vm
from lab.pytest_plugin import Lab
from tests.integration.test_other_kernels import pptp_lab


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
        assert res.returncode == 0 and "powered off" in res.stdout + res.stderr, res.stdout + res.stderr
        assert other.attach() is None  # its QEMU is gone
        assert kernel_of(eng, "t-kside")
        Lab(eng, topo).ping("client", "172.21.0.1")
    finally:
        lifecycle.down(eng, "t-kside")
        vm.use(1, suites.DEFAULT)

"""Issue #15: `vm up` restores the booted guest from its snapshot. Two restores of the same
snapshot must not be the same machine twice: the guest's clock comes from the host and its
kernel RNG is reseeded (vmgenid + host randomness), so /dev/random, which pptp-linux reads
its call ID from and pppd its MS-CHAPv2 challenges, gives different bytes each time.

Runs on its own VM instance (vm:9), so the suite's VM is never restarted under other tests."""
import time

import pytest

from lab.engines import snapshot, vm
from lab.engines.vm import VmEngine

INSTANCE = 9
PROBE = ["sh", "-c", "date +%s.%N; head -c 32 /dev/random | od -An -tx1 | tr -d ' \\n'; echo; "
         "cat /proc/sys/kernel/random/boot_id"]


@pytest.fixture
def own_vm(lab_engine):  # after the suite's VM: its first boot saved the snapshot
    eng = VmEngine(INSTANCE)
    yield eng
    eng.stop()
    vm.use(1)


def test_two_restores_have_the_hosts_time_and_different_randomness(own_vm):
    seen = []
    for _ in range(2):
        start = time.monotonic()
        own_vm.start()
        took = time.monotonic() - start
        st = vm.read_state()
        assert st.restored, "vm up booted cold although a snapshot for these inputs exists"
        rc, out = vm.exec_in_guest(PROBE)
        assert rc == 0, out
        _, random_hex, boot_id = out.split()
        offset = snapshot.clock_offset(vm.client_for(st))
        assert abs(offset) < 0.25, f"the restored guest's clock is {offset:.2f}s off the host's"
        seen.append((random_hex, boot_id))
        print(f"vm up from snapshot: {took:.1f}s")
        own_vm.stop()
    (r1, b1), (r2, b2) = seen
    assert b1 == b2  # the same saved kernel both times: a restore, not a boot
    assert r1 != r2  # ... yet it does not replay its randomness

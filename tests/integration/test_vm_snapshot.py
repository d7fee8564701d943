"""Issue #15: `vm up` restores the booted guest from its snapshot. Two restores of the same
snapshot must not be the same machine twice: the guest's clock comes from the host and its
kernel RNG is reseeded (vmgenid + host randomness), so /dev/random, which pptp-linux reads
its call ID from and pppd its MS-CHAPv2 challenges, gives different bytes each time.

Runs on its own VM instance (vm:9), so the suite's VM is never restarted under other tests."""
import time

import pytest

from lab.diagnosis import kdrops
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
        assert HELD <= held(own_vm), "the snapshot's guest does not hold the drop tracepoints"
        print(f"vm up from snapshot: {took:.1f}s")
        own_vm.stop()
    (r1, b1), (r2, b2) = seen
    assert b1 == b2  # the same saved kernel both times: a restore, not a boot
    assert r1 != r2  # ... yet it does not replay its randomness


HELD = {"pptp-lab-hold-1 1 1", "pptp-lab-hold-2 1 1"}
HOLDS = ["sh", "-c", "cd /sys/kernel/tracing/instances && for i in pptp-lab-*; do "
         "echo $i $(cat $i/events/skb/kfree_skb/enable $i/events/net/netif_receive_skb/enable); done"]


def held(eng) -> set[str]:
    """Our tracefs instances in the guest, each with its two events' enable flags (labs on
    other workers may have theirs too)."""
    rc, out = eng.guest_exec(HOLDS)
    assert rc == 0, out
    return set(out.strip().splitlines())


def test_the_guest_holds_the_drop_tracepoints_around_a_recording(lab_engine):
    """kdrops: the guest holds the tracepoints from its boot (two idle instances), so a
    lab's recording only adds a third probe and takes it away (no text_poke, which under
    TCG twice hung a guest in the instance's rmdir); the holds outlive the recording."""
    eng, _ = lab_engine
    before = held(eng)
    assert HELD <= before
    with kdrops.recording(eng) as rec:
        during = held(eng)
    assert rec.available, rec.why_not
    assert HELD <= during and len(during - before) >= 1, during  # its own, beside the holds
    assert HELD <= held(eng)

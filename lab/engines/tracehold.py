"""The tracepoints lab.diagnosis.kdrops records drops with, held enabled for the guest's life.

Enabling or disabling a tracepoint rewrites kernel text (static calls and keys, patched by
text_poke_bp with IPIs to every CPU). Under TCG that sometimes never finishes: twice in CI a
guest hung for good in `rmdir` of a recording's tracefs instance, one vCPU waiting on the
IPI while the other sat, interrupts off, on the very instruction being patched. So the
guest enables them once, at boot (and so in its snapshot), with its second vCPU offline
as its init does for the static keys it holds (images/vm/init.sh), in two idle instances
with tracing off. With two probes already there, a recording's instance takes a tracepoint from
2 probes to 3 and back: no text is patched (the kernel re-points a static call only on the
way to 0, 1 or 2 probes), and the scheduler's cmdline-recording probes, ref counted, stay
registered too. The script is fixed text."""
from __future__ import annotations

HOLD = r"""set -e
T=/sys/kernel/tracing
mountpoint -q $T || mount -t tracefs nodev $T
if [ ! -d $T/instances/pptp-lab-hold-2 ]; then
  # With the second vCPU offline, as the guest's init flips its static keys (images/vm/init.sh):
  # no other vCPU can run a stale translation of the text being patched.
  cpu1=/sys/devices/system/cpu/cpu1/online off=
  trap '[ -z "$off" ] || echo 1 > $cpu1' EXIT
  if [ -w $cpu1 ] && [ "$(cat $cpu1)" = 1 ]; then echo 0 > $cpu1; off=1; fi
  for n in 1 2; do
    H=$T/instances/pptp-lab-hold-$n
    [ -d "$H" ] && continue
    mkdir "$H"
    echo 0 > "$H/tracing_on"
    echo 4 > "$H/buffer_size_kb"
    echo 1 > "$H/events/skb/kfree_skb/enable"
    echo 1 > "$H/events/net/netif_receive_skb/enable"
  done
  [ -z "$off" ] || echo 1 > $cpu1
  off=
fi
"""
CAPS = ["SYS_ADMIN"]  # tracefs; the throwaway container adds what entering pid 1 needs

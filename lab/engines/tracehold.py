"""The tracepoints lab.diagnosis.kdrops records drops with, held enabled for the guest's life.

Enabling or disabling a tracepoint rewrites kernel text (static calls and keys, patched by
text_poke_bp with IPIs to every CPU). Under TCG that sometimes never finishes: twice in CI a
guest hung for good in `rmdir` of a recording's tracefs instance, one vCPU waiting on the
IPI while the other sat, interrupts off, on the very instruction being patched. So the
guest enables them once, at boot (and so in its snapshot), in two idle instances with
tracing off. With two probes already there, a recording's instance takes a tracepoint from
2 probes to 3 and back: no text is patched (the kernel re-points a static call only on the
way to 0, 1 or 2 probes), and the scheduler's cmdline-recording probes, ref counted, stay
registered too. The script is fixed text."""
from __future__ import annotations

HOLD = r"""set -e
T=/sys/kernel/tracing
mountpoint -q $T || mount -t tracefs nodev $T
for n in 1 2; do
  H=$T/instances/pptp-lab-hold-$n
  [ -d "$H" ] && continue
  mkdir "$H"
  echo 0 > "$H/tracing_on"
  echo 4 > "$H/buffer_size_kb"
  echo 1 > "$H/events/skb/kfree_skb/enable"
  echo 1 > "$H/events/net/netif_receive_skb/enable"
done
"""
CAPS = ["SYS_ADMIN"]  # tracefs; the throwaway container adds what entering pid 1 needs

#!/usr/bin/env python3
"""What the VM guest's two settings for TCG buy (images/vm/init.sh), side by side in one run
(figures, no asserts; the host is shared). For each of: ASLR on (the kernel's default) and
off (the lab's), and for containers run by runc and by crun (the lab's), it prints the CPU
QEMU spent (all its threads, from /proc) and the wall time for:

  container create+start, ten `docker exec true`, remove      (-n rounds, medians)
  `pptp-lab test` of the default topology (ASLR on and off; crun)   (--no-lab skips it)

and QEMU's translation-cache flushes during each part ("info jit"). The bench boots its own
bookworm VM in a private state directory: a VM you have running is not touched."""
from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
out = Console()


def qemu_cpu(pid: int) -> float:
    """Seconds of CPU the QEMU process has used (user + system, all threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def flushes(qmp_sock: Path) -> int:
    """QEMU's translation-cache flush count so far (HMP "info jit", through the monitor
    connection `vm up` itself uses)."""
    from lab.engines import snapshot

    qmp = snapshot.monitor(qmp_sock, lambda: True)
    try:
        text = qmp.cmd("human-monitor-command", **{"command-line": "info jit"})
    finally:
        qmp.close()
    m = re.search(r"TB flush count\s+(\d+)", text)
    return int(m.group(1)) if m else -1


def measured(pid: int, sock: Path, fn) -> tuple[float, float, int]:
    """(QEMU CPU s, wall s, cache flushes) of fn()."""
    c0, t0, f0 = qemu_cpu(pid), time.monotonic(), flushes(sock)
    fn()
    return qemu_cpu(pid) - c0, time.monotonic() - t0, flushes(sock) - f0


def set_aslr(on: bool) -> None:
    from lab.engines import vm

    rc, text = vm.exec_in_guest(["sysctl", "-w", f"kernel.randomize_va_space={2 if on else 0}"])
    if rc:
        raise SystemExit(f"could not set ASLR in the guest: {text.strip()}")


def container_round(client, tag: str, runtime: str) -> dict[str, float]:
    from lab.engines import vm

    st = vm.read_state()
    sock = vm.vm_dir() / "qmp.sock"
    box = {}
    row = {}
    row["start"] = measured(st.pid, sock, lambda: box.setdefault("c", client.containers.run(
        tag, ["sleep", "600"], detach=True, runtime=runtime, network_mode="none",
        labels={"pptp-lab.lab": "bench"})))
    row["exec"] = measured(st.pid, sock, lambda: [box["c"].exec_run(["true"]) for _ in range(10)])
    row["remove"] = measured(st.pid, sock, lambda: box["c"].remove(force=True))
    return row


def lab_test(topo: Path) -> None:
    res = subprocess.run([sys.executable, "-c", "from lab.cli import main; main()", "test", str(topo)],
                         capture_output=True, text=True, cwd=REPO)
    if res.returncode:
        raise SystemExit(f"pptp-lab test failed:\n{(res.stdout + res.stderr)[-2000:]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=3, help="container rounds per setting (medians)")
    ap.add_argument("--no-lab", action="store_true", help="skip the `pptp-lab test` figures")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="pptp-lab-bench-"))
    os.environ["PPTP_LAB_STATE"] = str(work / "state")
    os.environ["PPTP_LAB_RUNS"] = str(work / "runs")
    from lab.engines import images
    from lab.engines import vm

    rows: list[tuple[str, ...]] = []
    try:
        st = vm.up()
        client = vm.client_for(st)
        tag = images.ensure_node_image(client)
        runtimes = client.info().get("Runtimes", {})
        for aslr in (True, False):
            set_aslr(aslr)
            for runtime in ("runc", "crun"):
                if runtime not in runtimes:
                    rows.append((f"ASLR {'on' if aslr else 'off'}, {runtime}", "not in this guest", "", "", ""))
                    continue
                container_round(client, tag, runtime)  # warm: the first round translates the code
                rounds = [container_round(client, tag, runtime) for _ in range(args.n)]
                for part, label in (("start", "create+start"), ("exec", "10 execs"), ("remove", "remove")):
                    cpu = statistics.median(r[part][0] for r in rounds)
                    wall = statistics.median(r[part][1] for r in rounds)
                    fl = sum(r[part][2] for r in rounds)
                    rows.append((f"ASLR {'on' if aslr else 'off'}, {runtime}", label,
                                 f"{cpu:.2f}", f"{wall:.2f}", str(fl)))
        if not args.no_lab:
            topo = work / "bench-guest.yaml"
            text = (REPO / "topologies" / "default.yaml").read_text()
            topo.write_text(text.replace("name: default", "name: bench-guest", 1))
            for aslr in (True, False):
                set_aslr(aslr)
                lab_test(topo)  # warm
                cpu, wall, fl = measured(st.pid, vm.vm_dir() / "qmp.sock", lambda: lab_test(topo))
                rows.append((f"ASLR {'on' if aslr else 'off'}, crun", "pptp-lab test default topology",
                             f"{cpu:.1f}", f"{wall:.1f}", str(fl)))
    finally:
        vm.down()
        shutil.rmtree(work, ignore_errors=True)

    table = Table(title="guest settings for TCG: QEMU CPU and wall time, one run")
    for col in ("setting", "operation", "QEMU CPU (s)", "wall (s)", "cache flushes"):
        table.add_column(col)
    for r in rows:
        table.add_row(*r)
    out.print(table)


if __name__ == "__main__":
    main()

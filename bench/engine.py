#!/usr/bin/env python3
"""Engine figures for this machine, printed side by side (no asserts: the host is shared).

  VM disk build, cold (empty cache) and cached      (--no-cold skips the cold build)
  VM cold boot to Docker-ready, from the cached disk (target <= 20 s)
  node image load into the VM                         (target <= 20 s)
  VM snapshot made (cold boot, image, save), and `vm up` restoring it: ratio to the cold
  boot in the same run (issue #15: target <= 5 s; a cold boot was 24-30 s before)
  container start and docker exec: VM vs local engine (ratio in one run)

With --kernel K (repeatable: bullseye, bookworm, bookworm-backports, trixie) it prints, in
place of the figures above, per kernel: the VM disk build (when one happens, else the
cached lookup), `vm up` to Docker-ready (a snapshot restore where the kernel has one,
else a cold boot), the node image load and container create+start, one VM at a time.

The bench uses its own state directory, so a VM you have running is not touched. When no
local engine runs, it starts a private dockerd on a socket under /tmp for the comparison."""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import docker  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

out = Console()


def timed(fn):
    start = time.monotonic()
    value = fn()
    return time.monotonic() - start, value


def container_figures(client, image: str, n: int) -> tuple[float, float]:
    """Median seconds for create+start of a node container, and for a `true` exec."""
    starts, execs = [], []
    for i in range(n):
        t, c = timed(lambda: client.containers.run(image, detach=True, labels={"pptp-lab.lab": "bench"}))
        starts.append(t)
        execs.append(timed(lambda: c.exec_run(["true"]))[0])
        c.remove(force=True)
    return statistics.median(starts), statistics.median(execs)


def kernel_figures(kernel: str, n: int) -> list[tuple[str, str, str]]:
    """Build (if one happens), up to Docker-ready, image load and container start of one
    kernel's VM; the VM is powered off again before the next kernel's."""
    from lab.core import artifacts, suites
    from lab.engines import images
    from lab.engines import snapshot, vm

    vm.use(1, kernel)
    cached = (artifacts.cache_dir() / f"{suites.artefact('vm', kernel)}-{vm.vm_key(kernel)}").is_dir()
    rows = []
    t, _ = timed(lambda: vm.build(kernel))
    rows.append((f"{kernel}: VM disk", f"{t:.1f} s", "cached lookup" if cached else "built (debootstrap + mkfs)"))
    try:
        t, st = timed(vm.up)
        snap = snapshot.enabled(kernel)
        rows.append((f"{kernel}: vm up to Docker-ready", f"{t:.1f} s", f"accel {st.accel}; " + (
            "first up: makes the snapshot when the cache lacks it" if snap else "cold boot (no snapshot)")))
        if snap:
            vm.down()
            t, st = timed(vm.up)
            rows.append((f"{kernel}: vm up restored from its snapshot", f"{t:.1f} s", "to Docker-ready"))
        client = vm.client_for(st)
        suite = suites.userland(kernel)
        t, tag = timed(lambda: images.ensure_node_image(client, suite))
        rows.append((f"{kernel}: node image ({suite}) load", f"{t:.1f} s", "only when missing in the VM"))
        start, _ = container_figures(client, tag, n)
        rows.append((f"{kernel}: container create+start", f"{start:.2f} s", f"median of {n}"))
    finally:
        vm.down()
    return rows


def private_dockerd(root: Path):
    root.mkdir(parents=True, exist_ok=True)
    sock = root / "docker.sock"
    proc = subprocess.Popen(
        ["dockerd", "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
         "--pidfile", str(root / "docker.pid"), "-H", f"unix://{sock}", "--bridge", "none",
         "--iptables=false", "--ip6tables=false"],
        stdout=open(root / "dockerd.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    for _ in range(60):
        try:
            client = docker.DockerClient(base_url=f"unix://{sock}", timeout=300)
            client.ping()
            return proc, client
        except Exception:  # socket not there yet
            time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"private dockerd did not start: see {root / 'dockerd.log'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-cold", action="store_true", help="skip the cold VM disk build")
    ap.add_argument("-n", type=int, default=5, help="containers per engine")
    ap.add_argument("--kernel", action="append", metavar="K", default=[],
                    help="per-kernel figures instead (repeatable): bullseye, bookworm, bookworm-backports, trixie")
    args = ap.parse_args()
    if args.kernel:
        return per_kernel(args.kernel, args.n)

    work = Path(tempfile.mkdtemp(prefix="pptp-lab-bench-"))
    os.environ["PPTP_LAB_STATE"] = str(work / "state")
    from lab import engines
    from lab.engines import images  # after the env is set
    from lab.engines import snapshot, vm

    rows: list[tuple[str, str, str]] = []
    dockerd = None
    if not args.no_cold:
        cold_cache = work / "cold-cache"
        os.environ["PPTP_LAB_CACHE"] = str(cold_cache)
        t, _ = timed(vm.build)
        rows.append(("VM disk build, cold", f"{t:.1f} s", "debootstrap + mkfs"))
        shutil.rmtree(cold_cache, ignore_errors=True)
        del os.environ["PPTP_LAB_CACHE"]
    vm.build()  # make sure the shared cache has it
    t, _ = timed(vm.build)
    rows.append(("VM disk build, cached", f"{t:.2f} s", "hash of inputs, lookup only"))

    try:
        os.environ[snapshot.DISABLE_ENV] = "0"
        cold, st = timed(vm.up)
        rows.append(("VM cold boot to Docker-ready (cached disk)", f"{cold:.1f} s",
                     f"accel {st.accel}; target <= 20 s"))
        client = vm.client_for(st)
        images.base_tarball()
        t, tag = timed(lambda: images.ensure_node_image(client))
        rows.append(("node image load into the VM", f"{t:.1f} s", "import + Dockerfile; target <= 20 s"))
        vm.down()
        del os.environ[snapshot.DISABLE_ENV]
        t, st = timed(vm.up)  # makes the snapshot when the shared cache lacks one
        rows.append(("VM up with the snapshot in place or made", f"{t:.1f} s",
                     "first time: cold boot + image + save + restore"))
        vm.down()
        warm, st = timed(vm.up)
        rows.append(("VM up restored from its snapshot", f"{warm:.1f} s",
                     f"{cold / warm:.1f}x faster than the cold boot; target <= 5 s, before 24-30 s"))
        client = vm.client_for(st)
        tag = images.ensure_node_image(client)
        vm_start, vm_exec = container_figures(client, tag, args.n)

        local = engines.choose.local().client if engines.choose.local().reachable() else None
        if local is None and shutil.which("dockerd"):
            dockerd, local = private_dockerd(work / "dockerd")
        if local is not None:
            t, ltag = timed(lambda: images.ensure_node_image(local))
            rows.append(("node image load into the local engine", f"{t:.1f} s", ""))
            l_start, l_exec = container_figures(local, ltag, args.n)
            rows.append(("container start: VM / local", f"{vm_start:.2f} s / {l_start:.2f} s",
                         f"ratio {vm_start / l_start:.1f}x (median of {args.n})"))
            rows.append(("docker exec: VM / local", f"{vm_exec:.2f} s / {l_exec:.2f} s",
                         f"ratio {vm_exec / l_exec:.1f}x (median of {args.n})"))
        else:
            rows.append(("container start / exec in the VM", f"{vm_start:.2f} s / {vm_exec:.2f} s",
                         "no local engine to compare"))
    finally:
        if dockerd:
            dockerd.terminate()
            dockerd.wait(30)
        vm.down()
        shutil.rmtree(work, ignore_errors=True)

    show(rows, "pptp-lab engine figures")


def show(rows: list[tuple[str, str, str]], title: str) -> None:
    table = Table(title=title)
    for col in ("figure", "value", "note"):
        table.add_column(col)
    for r in rows:
        table.add_row(*r)
    out.print(table)


def per_kernel(kernels: list[str], n: int) -> None:
    """--kernel K...: each kernel's VM in turn (its own state directory: yours are not touched)."""
    work = Path(tempfile.mkdtemp(prefix="pptp-lab-bench-"))
    os.environ["PPTP_LAB_STATE"] = str(work / "state")
    from lab.core import suites

    rows: list[tuple[str, str, str]] = []
    try:
        for kernel in dict.fromkeys(suites.check_kernel(k, "--kernel ") for k in kernels):
            rows += kernel_figures(kernel, n)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    show(rows, "pptp-lab engine figures per kernel")


if __name__ == "__main__":
    main()

"""Facts about the host and running its programs, with progress and clear errors."""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from rich.console import Console

from .errors import LabError

console = Console(stderr=True)

SOURCES = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise LabError(f"{what} needs root (debootstrap, mkfs and image import do): run it with sudo")


def require_binary(name: str, package: str) -> str:
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.access(p, os.X_OK)), None)
    if not path:
        raise LabError(f"{name} not found: install the Debian package {package} "
                       f"(apt-get install {package}), or run `make setup` as root")
    return path


def debian_mirror(suite: str = "bookworm") -> str:
    """The Debian mirror the host's apt uses (the lab builds only from it): the entry that
    lists `suite`, else the bookworm one (a Debian mirror carries every suite; a build
    checks with check_suite before it starts)."""
    if os.environ.get("PPTP_LAB_MIRROR"):
        return os.environ["PPTP_LAB_MIRROR"]
    for wanted in dict.fromkeys((suite, "bookworm")):
        found = _mirror_listing(wanted)
        if found:
            return found
    if suite == "bookworm":
        raise LabError("no Debian bookworm mirror in /etc/apt/sources.list*: set PPTP_LAB_MIRROR=URL")
    raise LabError(f"no Debian mirror for {suite} (nor bookworm) in /etc/apt/sources.list*: "
                   "set PPTP_LAB_MIRROR=URL")


def _mirror_listing(suite: str) -> str | None:
    """The first non-security source entry of the host's apt that lists `suite`."""
    for src in SOURCES:
        if not src.is_file() or src.suffix not in (".list", ".sources", ""):
            continue
        text = src.read_text(errors="replace")
        if src.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
                suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
                if uris and suites and suite in suites.group(1).split() and "security" not in uris.group(1):
                    return uris.group(1)
        else:
            for line in text.splitlines():
                m = re.match(rf"\s*deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+{re.escape(suite)}\s", line)
                if m and "security" not in m.group(1):
                    return m.group(1)
    return None


def check_suite(mirror: str, suite: str, timeout: float = 15) -> None:
    """LabError unless `mirror` serves `suite` (has dists/SUITE/Release): said before a
    build spends minutes in debootstrap finding out."""
    url = f"{mirror.rstrip('/')}/dists/{suite}/Release"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            return
    except urllib.error.HTTPError as exc:
        why = f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        why = str(getattr(exc, "reason", None) or exc)
    raise LabError(f"the Debian mirror {mirror} does not serve {suite} ({url}: {why}): "
                   "set PPTP_LAB_MIRROR to a mirror that does")


def run_logged(title: str, cmd: list[str], log: Path, env: dict | None = None) -> float:
    """Run cmd with its output appended to log, showing a spinner with the last line.

    Returns the seconds taken; raises LabError naming the log on failure."""
    start = time.monotonic()
    log.parent.mkdir(parents=True, exist_ok=True)
    # Off the main thread (a build beside another, lab.engines.vm.build_beside) no spinner:
    # the console has one live display at a time, and it is the main thread's.
    beside = threading.current_thread() is not threading.main_thread()
    with open(log, "ab") as out, (contextlib.nullcontext(_Quiet()) if beside else console.status(title)) as status:
        out.write(f"$ {' '.join(cmd)}\n".encode())
        out.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})})
        assert proc.stdout is not None
        for raw in proc.stdout:
            out.write(raw)
            last = raw.decode(errors="replace").strip()[:70]
            if last:
                status.update(f"{title} [dim]{time.monotonic() - start:4.0f}s  {last}[/]")
        rc = proc.wait()
    took = time.monotonic() - start
    if rc != 0:
        raise LabError(f"{title} failed (exit {rc}) after {took:.0f}s: see {log}")
    console.print(f"[green]✓[/] {title} ({took:.0f}s)" + (" (beside the other build)" if beside else ""))
    return took


class _Quiet:
    def update(self, *_args) -> None:
        pass

"""Build pptp-lab's wheel (and sdist) as a user's pip would, from a clean copy of the checkout:
setuptools' build/ and egg-info land in the copy, never in the checkout, and a stale build/
left in the checkout cannot leak into the wheel."""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

from tests import REPO

JUNK = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "runs", "__pycache__", "*.pyc",
                              ".pytest_cache", ".hypothesis")


def source_copy(dest: Path) -> Path:
    """The files git knows (tracked, or new and not ignored), or the tree less the usual junk."""
    try:
        names = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others",
                                "--exclude-standard"], capture_output=True, check=True).stdout.split(b"\0")
    except (OSError, subprocess.CalledProcessError):
        shutil.copytree(REPO, dest, ignore=JUNK, symlinks=True)
        return dest
    for name in filter(None, names):
        src = REPO / name.decode()
        if src.is_file():  # a file deleted but not yet committed is listed and absent
            (dest / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name.decode())
    return dest


def build(out: Path) -> tuple[Path, Path | None]:
    """(wheel, sdist). With the `build` package: the sdist, then the wheel built from it (what
    an index serves); without it: pip's wheel only."""
    src = source_copy(out / "src")
    dist = out / "dist"
    if importlib.util.find_spec("build"):
        cmd = [sys.executable, "-m", "build", "-o", str(dist), str(src)]
    else:
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(src)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (wheel,) = dist.glob("pptp_lab-*.whl")
    sdist = next(dist.glob("pptp_lab-*.tar.gz"), None)
    return wheel, sdist

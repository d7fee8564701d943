"""Built artefacts cached under a key that is the hash of their inputs.

A build writes into a temporary directory next to its final place and is renamed into place
only when complete, under a lock: an interrupted build leaves nothing that looks finished."""
from __future__ import annotations

import fcntl
import hashlib
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable

from .paths import cache_dir


def input_key(files: Iterable[Path], *values: str) -> str:
    """Twelve hex digits over the given files' names and bytes and extra values."""
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    for v in values:
        h.update(v.encode() + b"\0")
    return h.hexdigest()[:12]


def _stray(path: Path, root: Path) -> bool:
    """Bytecode Python leaves next to the sources (pip compiles an installed copy's .py
    files): not an input, and it must not make an installed copy's key differ from a checkout's."""
    return path.suffix == ".pyc" or "__pycache__" in path.relative_to(root).parts


def tree_files(*roots: Path) -> list[Path]:
    out: list[Path] = []
    for root in roots:
        out += [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file() and not _stray(p, root)]
    return out


@contextmanager
def locked(name: str):
    with open(cache_dir() / f".{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def cached_dir(name: str, key: str, build: Callable[[Path], None]) -> Path:
    """Return cache/<name>-<key>/, calling build(tmpdir) to make it when missing."""
    final = cache_dir() / f"{name}-{key}"
    if final.is_dir():
        return final
    with locked(name):
        if final.is_dir():
            return final
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-{key}.", dir=cache_dir()))
        try:
            build(tmp)
            tmp.rename(final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        # Older builds of the same artefact are dead weight (a VM disk is GBs).
        for old in entries(name):
            if old.name.startswith(final.name):
                continue  # this build and its log
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)
    return final


def entries(name: str) -> list[Path]:
    """cache/<name>-<key>/ and their build logs: one word (a key) after the name, so `vm`'s
    never include `vm-trixie-<key>` (another suite's artefact, with a name of its own)."""
    pattern = re.compile(rf"{re.escape(name)}-[0-9A-Za-z]+(\.log)?")
    return [p for p in cache_dir().glob(f"{name}-*") if pattern.fullmatch(p.name)]

"""Where the lab keeps built artefacts (cache) and running-VM state."""
import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
IMAGES = REPO / "images"


def cache_dir() -> Path:
    """Built VM disks and image tarballs, keyed by the hash of their inputs."""
    base = os.environ.get("PPTP_LAB_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "pptp-lab")
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


def private_dir(path: Path) -> Path:
    """A directory only its owner can enter (made if missing, tightened if not): it holds
    secrets, MS-CHAPv2 handshakes or a VM disk with both."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)
    return path


def state_dir() -> Path:
    """The VM's state file, overlay disk and console log; Ansible's scratch directories."""
    base = os.environ.get("PPTP_LAB_STATE") or os.path.join(
        os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state"), "pptp-lab")
    return private_dir(Path(base))

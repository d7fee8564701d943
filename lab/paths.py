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


def state_dir() -> Path:
    """The VM's state file, overlay disk and console log."""
    base = os.environ.get("PPTP_LAB_STATE") or os.path.join(
        os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state"), "pptp-lab")
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path

"""Where things are: what the package ships (playbooks, image recipes, topologies), the
user's runs/, built artefacts (cache) and running-VM state."""
import os
from importlib.resources import files
from pathlib import Path

from .errors import LabError

SHARED = ("playbooks", "images", "topologies")
RUNS_ENV = "PPTP_LAB_RUNS"


def resource(name: str) -> Path:
    """A directory the package ships: lab/share/<name> in an installed wheel, the checkout's
    top-level <name>/ otherwise (a checkout or an editable install keeps them there)."""
    if name not in SHARED:
        raise ValueError(f"no shipped directory {name!r} (one of {', '.join(SHARED)})")
    installed = Path(str(files("lab") / "share" / name))
    if installed.is_dir():
        return installed
    checkout = Path(__file__).resolve().parents[2] / name  # lab/core/paths.py -> the checkout
    if checkout.is_dir():
        return checkout
    raise LabError(f"pptp-lab's {name}/ is missing (looked in {installed} and {checkout}): reinstall pptp-lab")


def shipped_topology(name: str) -> Path:
    return resource("topologies") / f"{name}.yaml"


def shipped_topologies() -> list[str]:
    return sorted(p.stem for p in resource("topologies").glob("*.yaml"))


def topology_file(arg: str | Path) -> Path:
    """A topology argument: a file (relative to the current directory), or the name of a
    shipped topology (`default`) when no such file exists and it has no .yaml suffix."""
    path = Path(arg)
    if path.is_file() or path.suffix in (".yaml", ".yml") or len(path.parts) != 1:
        return path
    shipped = shipped_topology(str(arg))
    if shipped.is_file():
        return shipped
    raise LabError(f"{arg}: no such topology file, and no shipped topology of that name "
                   f"(shipped: {', '.join(shipped_topologies())})")


def private_dir(path: Path) -> Path:
    """A directory only its owner can enter (made if missing, tightened if not): it holds
    secrets, MS-CHAPv2 handshakes or a VM disk with both."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)
    return path


def runs_dir() -> Path:
    """Captures and reports: $PPTP_LAB_RUNS (`--runs-dir`; the pytest plugin sets it to
    <rootdir>/runs), else runs/ in the current directory; never inside the package.
    Owner-only: pcaps hold MS-CHAPv2 handshakes, which can be cracked offline."""
    base = os.environ.get(RUNS_ENV)
    return private_dir(Path(base).expanduser().resolve() if base else Path.cwd() / "runs")


def cache_dir() -> Path:
    """Built VM disks and image tarballs, keyed by the hash of their inputs."""
    base = os.environ.get("PPTP_LAB_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "pptp-lab")
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


def state_dir() -> Path:
    """The VM's state file, overlay disk and console log; Ansible's scratch directories."""
    base = os.environ.get("PPTP_LAB_STATE") or os.path.join(
        os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state"), "pptp-lab")
    return private_dir(Path(base))

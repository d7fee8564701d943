"""pptp-lab: a containerised PPTP VPN lab orchestrator and integration testbed."""
from __future__ import annotations


def version() -> str:
    """The installed distribution's version; in a checkout that was never installed, the one
    its pyproject.toml says."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("pptp-lab")
    except PackageNotFoundError:
        import tomllib
        from pathlib import Path

        try:
            with open(Path(__file__).resolve().parent.parent / "pyproject.toml", "rb") as fh:
                return tomllib.load(fh)["project"]["version"]
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "unknown"

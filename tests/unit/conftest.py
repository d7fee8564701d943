import pytest


@pytest.fixture(autouse=True)
def private_dirs(tmp_path, monkeypatch):
    """Unit tests never touch the user's cache, VM state or runs/."""
    monkeypatch.setenv("PPTP_LAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PPTP_LAB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("PPTP_LAB_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("PPTP_LAB_MIRROR", "http://mirror.invalid/debian")

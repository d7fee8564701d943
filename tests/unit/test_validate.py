"""`pptp-lab validate`: every check `up` makes before creating anything, and nothing created.
With no engine running (the unit tests' private state dir), the engine checks are skipped
and said to be."""
import yaml
from typer.testing import CliRunner

from lab.cli import app
from tests import REPO

runner = CliRunner()


def test_valid_topologies_pass_and_say_the_engine_checks_were_skipped(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    res = runner.invoke(app, ["validate", str(REPO / "topologies" / "default.yaml"), "nat-clients"])
    assert res.exit_code == 0, res.output
    assert "lab default: topology valid (no engine running: engine checks skipped)" in res.output
    assert "lab natclients: topology valid" in res.output


def test_every_bad_file_is_named_and_the_exit_status_is_1(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    data = yaml.safe_load((REPO / "topologies" / "default.yaml").read_text())
    data["nodes"]["client"]["pptp_client"]["secret"] = "a\nplugin evil.so"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    (tmp_path / "dir.yaml").mkdir()
    res = runner.invoke(app, ["validate", str(bad), str(tmp_path / "dir.yaml"), "default"])
    assert res.exit_code == 1
    err = res.output
    assert f"{bad}: nodes.client.pptp_client.secret: a secret holds the control character" in err
    assert f"{tmp_path / 'dir.yaml'}:" in err
    assert "lab default: topology valid" in err  # the good one is still checked
    assert not (tmp_path / "runs").exists()

"""Private by default (issue #9): directories holding secrets or handshakes are owner-only,
labels carry no hash of a secret, and a dead run's Ansible scratch directory is removed."""
import os
import stat

import yaml

from lab.up import configure, lifecycle
from lab.core import paths
from lab.model import topology
from tests import REPO


def mode(p):
    return stat.S_IMODE(p.stat().st_mode)


def test_state_and_private_dirs_are_owner_only(tmp_path):
    assert mode(paths.state_dir()) == 0o700
    loose = tmp_path / "runs"
    loose.mkdir(mode=0o755)
    os.chmod(loose, 0o755)
    assert mode(paths.private_dir(loose)) == 0o700  # an existing loose one is tightened
    assert mode(paths.private_dir(tmp_path / "a" / "b")) == 0o700


def test_the_topology_label_carries_no_hash_of_the_secrets(tmp_path):
    data = yaml.safe_load((REPO / "topologies" / "default.yaml").read_text())
    base = topology.load(REPO / "topologies" / "default.yaml")
    data["nodes"]["vpn"]["pptp_server"]["users"][0]["secret"] = "another-secret"
    data["nodes"]["client"]["pptp_client"]["secret"] = "another-secret"
    p = tmp_path / "d.yaml"
    p.write_text(yaml.safe_dump(data))
    assert lifecycle.topo_hash(topology.load(p)) == lifecycle.topo_hash(base)
    data["nodes"]["client"]["pptp_client"]["user"] = "bob"  # anything else still tells them apart
    p.write_text(yaml.safe_dump(data))
    assert lifecycle.topo_hash(topology.load(p)) != lifecycle.topo_hash(base)


def test_a_dead_runs_ansible_scratch_dir_is_removed_by_the_next_run():
    base = paths.state_dir() / "ansible"
    base.mkdir(mode=0o700, exist_ok=True)
    dead = base / "run-999999999-x"   # no such process
    alive = base / f"run-{os.getppid()}-y"
    for d in (dead, alive):
        d.mkdir()
        (d / "inventory").write_text("secret")
    mine = configure._scratch()
    assert not dead.exists() and alive.exists()
    assert mine.parent == base and mode(mine) == 0o700 and mode(base) == 0o700

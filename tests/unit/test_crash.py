"""Crash safety of the lab itself (issue #12), on an in-memory engine: Ctrl-C during `up`
removes what that `up` created and says so in one line; an `up` killed half-way leaves a
note, so the next `up` names `pptp-lab down` and `down` sweeps again for a create that
lands late; a dead QEMU is one line naming `pptp-lab vm up`. The real runs are
tests/integration/test_crash_safety.py."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import docker.errors
import pytest
from typer.testing import CliRunner

from lab.up import capture, configure, lifecycle
from lab import cli
from lab.core import names, pool
from lab.model import topology
from lab import engines as engine_mod
from lab.engines import vm
from lab.engines.docker import DockerEngine
from lab.core.errors import LabError

TOPO = Path(__file__).parent.parent / "integration" / "topologies" / "crash.yaml"


class Obj(SimpleNamespace):
    def reload(self):
        pass


class FakeEngine:
    """Networks and containers in dicts, labelled the way DockerEngine labels them."""
    name, url, key, why = "fake", "tcp://fake:1", "fake", ""

    def __init__(self):
        self.objects: dict[str, Obj] = {}
        self.removals = 0

    def create_network(self, lab, name, subnet, gateway=None, labels=None, mtu=None):
        self.objects[f"{lab}-{name}"] = Obj(
            name=f"{lab}-{name}", kind="network",
            attrs={"Labels": {names.LAB: lab, names.NETWORK: name, **(labels or {})},
                   "IPAM": {"Config": [{"Subnet": subnet}]}})

    def create_node(self, lab, name, image, addresses, role="host", labels=None, sysctls=None):
        self.objects[f"{lab}-{name}"] = Obj(name=f"{lab}-{name}", kind="container", status="running",
                                            labels={names.LAB: lab, names.NODE: name, names.ROLE: role,
                                                    **(labels or {})})

    def run_helper(self, lab, role):  # the capture container: no node label
        self.objects[f"{lab}-{role}"] = Obj(name=f"{lab}-{role}", kind="container", status="running",
                                            labels={names.LAB: lab, names.ROLE: role})

    def containers(self, lab, role=None):
        return [o for o in self.objects.values() if o.kind == "container" and o.labels[names.LAB] == lab
                and (role is None or o.labels.get(names.ROLE) == role)]

    def networks(self, lab=None):
        return [o for o in self.objects.values() if o.kind == "network"
                and (lab is None or o.attrs["Labels"][names.LAB] == lab)]

    def labs(self):
        return {o.labels[names.LAB] for o in self.containers_all()} | {
            n.attrs["Labels"][names.LAB] for n in self.networks()}

    def containers_all(self):
        return [o for o in self.objects.values() if o.kind == "container"]

    def remove_lab(self, lab):
        self.removals += 1
        mine = [k for k, o in self.objects.items()
                if (o.labels if o.kind == "container" else o.attrs["Labels"])[names.LAB] == lab]
        for k in mine:
            del self.objects[k]
        return len(mine)

    def ensure_image(self):
        return "image"


@pytest.fixture
def topo():
    return topology.load(TOPO, name="crashy")


@pytest.fixture
def eng(monkeypatch):
    """A fake engine; the stages that need a real one (checks, capture, Ansible, the dial)
    do nothing unless a test makes one fail."""
    e = FakeEngine()
    monkeypatch.setattr(lifecycle, "SETTLE", 0.05)
    monkeypatch.setattr(lifecycle, "check_rulesets", lambda *a: None)
    monkeypatch.setattr(capture, "start", lambda eng, lab, image: eng.run_helper(lab, capture.ROLE))
    monkeypatch.setattr(capture, "stop", lambda eng, lab: None)
    monkeypatch.setattr(configure, "apply", lambda *a, **k: 1.0)
    monkeypatch.setattr(lifecycle, "start_servers", lambda *a: None)
    monkeypatch.setattr(lifecycle, "dial_clients", lambda *a, **k: None)
    monkeypatch.setattr(lifecycle, "status", lambda *a: [])
    return e


def interrupt(*a, **k):
    raise KeyboardInterrupt


def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def note_of_a_killed_up(eng, lab):
    """What an `up` killed half-way leaves behind on this host."""
    lifecycle._mark(eng, lab)
    path = lifecycle._note(eng, lab)
    path.write_text(json.dumps({**json.loads(path.read_text()), "pid": dead_pid()}))


# ------------------------------------------------------------------ Ctrl-C during up
@pytest.mark.parametrize("stage", ["networks", "nodes", "capturing", "configuring", "dialling"])
def test_ctrl_c_at_any_stage_removes_what_the_up_created_and_says_so(eng, topo, monkeypatch, stage):
    target = {"networks": (eng, "create_network"), "nodes": (eng, "create_node"), "capturing": (capture, "start"),
              "configuring": (configure, "apply"), "dialling": (lifecycle, "dial_clients")}[stage]
    monkeypatch.setattr(*target, interrupt)
    with pytest.raises(lifecycle.Interrupted) as exc:
        lifecycle.up(eng, topo)
    assert str(exc.value).startswith("removed what lab crashy had created (")
    assert eng.objects == {} and lifecycle._building(eng, "crashy") is None


def test_after_ctrl_c_a_create_the_interrupt_cut_short_is_swept_up_too(eng, topo, monkeypatch):
    def cut_short(eng, lab, image):  # the engine carries the create out; its answer never comes
        raise KeyboardInterrupt
    monkeypatch.setattr(capture, "start", cut_short)
    late = iter([lambda: eng.run_helper("crashy", capture.ROLE)])
    sleep = time.sleep
    monkeypatch.setattr(lifecycle.time, "sleep", lambda s: (next(late, lambda: None)(), sleep(0.01)))
    monkeypatch.setattr(lifecycle, "SETTLE", 0.2)
    with pytest.raises(lifecycle.Interrupted, match=r"had created \(4 objects\)"):
        lifecycle.up(eng, topo)
    assert eng.objects == {}


def test_ctrl_c_before_anything_exists_or_on_a_lab_that_was_up_removes_nothing(eng, topo, monkeypatch):
    monkeypatch.setattr(lifecycle, "check_rulesets", interrupt)
    with pytest.raises(lifecycle.Interrupted, match="nothing of lab crashy was created"):
        lifecycle.up(eng, topo)
    monkeypatch.setattr(lifecycle, "check_rulesets", lambda *a: None)
    lifecycle.up(eng, topo)
    monkeypatch.setattr(lifecycle, "dial_clients", interrupt)
    with pytest.raises(lifecycle.Interrupted, match="lab crashy was up before and is left as it was"):
        lifecycle.up(eng, topo)
    assert len(eng.objects) == 4  # lan, vpn, client, capture


def test_when_removing_fails_the_line_names_down_and_the_next_up_refuses(eng, topo, monkeypatch):
    monkeypatch.setattr(configure, "apply", interrupt)
    real_remove = eng.remove_lab

    def broken(lab):
        raise docker.errors.APIError("engine gone")
    monkeypatch.setattr(eng, "remove_lab", broken)
    with pytest.raises(lifecycle.Interrupted) as exc:
        lifecycle.up(eng, topo)
    assert str(exc.value) == "removing lab crashy failed (APIError): run `pptp-lab down crashy`"
    # The process that ran it exits; the next `up` (another process) refuses in one line.
    path = lifecycle._note(eng, "crashy")
    path.write_text(json.dumps({**json.loads(path.read_text()), "pid": dead_pid()}))
    monkeypatch.setattr(eng, "remove_lab", real_remove)
    with pytest.raises(LabError, match=r"half-built: its `up` \(process \d+\) stopped before it was done; "
                                       r"`pptp-lab down crashy` first"):
        lifecycle.up(eng, topo)


def test_a_failure_while_building_removes_the_lab_a_failed_dial_keeps_it(eng, topo, monkeypatch):
    def fails(*a, **k):
        raise LabError("configuring crashy failed")
    monkeypatch.setattr(configure, "apply", fails)
    with pytest.raises(LabError, match="configuring crashy failed"):
        lifecycle.up(eng, topo)
    assert eng.objects == {} and lifecycle._building(eng, "crashy") is None
    monkeypatch.setattr(configure, "apply", lambda *a, **k: 1.0)
    monkeypatch.setattr(lifecycle, "dial_clients", lambda *a, **k: (_ for _ in ()).throw(LabError("no tunnel")))
    with pytest.raises(LabError, match="no tunnel"):
        lifecycle.up(eng, topo)
    assert len(eng.objects) == 4 and lifecycle._building(eng, "crashy") is None  # whole, kept to be looked at


def test_an_interrupted_create_starts_no_more_nodes():
    ran = []

    def make(i):
        ran.append(i)
        if i == 0:
            raise KeyboardInterrupt
        time.sleep(0.1)
    with pytest.raises(KeyboardInterrupt):
        pool.parallel(make, range(20), workers=2)
    assert len(ran) <= 3, ran


# ------------------------------------------------------------------ an `up` killed half-way
def test_a_killed_up_is_refused_by_the_next_up_and_down_sweeps_until_it_settles(eng, topo, monkeypatch):
    eng.create_network("crashy", "lan", "10.85.0.0/24", labels={})
    note_of_a_killed_up(eng, "crashy")
    with pytest.raises(LabError) as exc:
        lifecycle.up(eng, topo)
    assert "\n" not in str(exc.value) and "`pptp-lab down crashy` first" in str(exc.value)

    # The create the killed `up` had sent lands after down's first sweep.
    late = iter([lambda: eng.create_node("crashy", "vpn", "image", {}, "pptp-server")])
    monkeypatch.setattr(lifecycle, "SETTLE", 0.2)
    sleep = time.sleep
    monkeypatch.setattr(lifecycle.time, "sleep", lambda s: (next(late, lambda: None)(), sleep(0.02)))
    scratch = configure.sweep() / f"run-{dead_pid()}-x"  # the killed `up`'s Ansible run
    scratch.mkdir()
    gone, run = lifecycle.down(eng, "crashy")
    assert (gone, run) == (2, None) and eng.objects == {}
    assert lifecycle._building(eng, "crashy") is None and not scratch.exists()
    lifecycle.up(eng, topo)  # and up again works
    assert lifecycle.existing(eng, "crashy").keys() == {"vpn", "client"}


def test_down_after_a_kill_tries_again_what_the_engine_refused_once(eng, monkeypatch):
    eng.create_network("crashy", "lan", "10.85.0.0/24")
    note_of_a_killed_up(eng, "crashy")
    real, answers = eng.remove_lab, iter([docker.errors.APIError("network crashy-lan has active endpoints")])

    def remove_lab(lab):
        err = next(answers, None)
        if err:
            raise err
        return real(lab)
    monkeypatch.setattr(eng, "remove_lab", remove_lab)
    assert lifecycle.down(eng, "crashy") == (1, None) and eng.objects == {}
    monkeypatch.setattr(eng, "remove_lab", lambda lab: (_ for _ in ()).throw(docker.errors.APIError("engine gone")))
    with pytest.raises(docker.errors.APIError):  # without a note: one pass, its failure is down's
        lifecycle.down(eng, "crashy")


def test_down_of_a_lab_that_came_up_whole_does_not_wait(eng, topo, monkeypatch):
    lifecycle.up(eng, topo)
    monkeypatch.setattr(lifecycle.time, "sleep", lambda s: pytest.fail("down waited"))
    assert lifecycle.down(eng, "crashy") == (4, None) and eng.removals == 1


def test_an_up_still_running_elsewhere_is_named(eng, topo):
    lifecycle._mark(eng, "crashy")
    path = lifecycle._note(eng, "crashy")
    parent = os.getppid()
    path.write_text(json.dumps({"pid": parent, "started": lifecycle._started(parent)}))
    with pytest.raises(LabError, match=f"lab crashy is being brought up by process {parent}"):
        lifecycle.up(eng, topo)


def test_a_note_whose_lab_is_gone_does_not_stand_in_the_way(eng, topo):
    note_of_a_killed_up(eng, "crashy")  # e.g. the VM was restored from its snapshot since
    lifecycle.up(eng, topo)
    assert lifecycle._building(eng, "crashy") is None


def test_leftovers_without_a_note_name_down_too(eng, topo):
    """Left by an `up` on another host, or from before notes were kept."""
    eng.create_network("crashy", "lan", "10.85.0.0/24")
    with pytest.raises(LabError, match=r"lab crashy is half-built on the fake engine \(networks without nodes\): "
                                       r"`pptp-lab down crashy` first"):
        lifecycle.up(eng, topo)
    eng.create_node("crashy", "vpn", "image", {}, "pptp-server", {names.TOPOLOGY: lifecycle.topo_hash(topo)})
    with pytest.raises(LabError, match=r"lab crashy is half-built \(no node client\): `pptp-lab down crashy` first"):
        lifecycle.up(eng, topo)


def test_the_stages_are_lines_of_their_own(eng, topo, capsys):
    lifecycle.up(eng, topo)
    err = capsys.readouterr().err.splitlines()
    for line in ("✓ 1 network(s) created", "✓ capturing on 1 segment(s)", "configuring 2 node(s) with Ansible",
                 "dialling 1 client(s)"):
        assert line in err, err
    assert any(x.startswith("✓ 2 node(s) created (") for x in err), err


def test_notes_go_by_engine_and_lab_and_a_vm_by_its_name_not_its_port():
    assert vm.VmEngine(3).key == "vm:3" and DockerEngine("local", "unix:///x").key == "unix:///x"
    vm.use(1)
    a, b = FakeEngine(), FakeEngine()
    b.key = "other"
    assert lifecycle._note(a, "x") != lifecycle._note(b, "x") != lifecycle._note(a, "y")


# ------------------------------------------------------------------ engine objects
def test_a_capture_container_that_never_started_is_removed_without_a_run(monkeypatch):
    removed = []
    box = SimpleNamespace(status="created", labels={}, remove=lambda force: removed.append(force))

    def no_dir(node, path):
        raise docker.errors.NotFound("Could not find the file /captures in container")
    e = SimpleNamespace(containers=lambda lab, role=None: [box], get_archive=no_dir)
    assert capture.stop(e, "crashy") is None and removed == [True]


def test_remove_lab_skips_what_another_down_removed_meanwhile(monkeypatch):
    def gone(**k):
        raise docker.errors.NotFound("no such container")
    e = DockerEngine("fake", "tcp://fake:1")
    monkeypatch.setattr(e, "containers", lambda lab: [SimpleNamespace(remove=gone), SimpleNamespace(remove=lambda **k: None)])
    monkeypatch.setattr(e, "networks", lambda lab: [SimpleNamespace(remove=lambda: None)])
    assert e.remove_lab("crashy") == 2


# ------------------------------------------------------------------ the CLI
runner = CliRunner()


def test_ctrl_c_during_up_is_one_line_and_exit_130(monkeypatch):
    monkeypatch.setattr(engine_mod, "select", lambda choice=None, kernel=None: FakeEngine())

    def stopped(*a, **k):
        raise lifecycle.Interrupted("removed what lab crashy had created (3 objects)")
    monkeypatch.setattr(lifecycle, "up", stopped)
    res = runner.invoke(cli.app, ["up", str(TOPO), "--name", "crashy"])
    assert res.exit_code == 130
    assert res.output.strip() == "interrupted: removed what lab crashy had created (3 objects)"


def run_cli(tmp_path, *args):
    env = {**os.environ, "PPTP_LAB_STATE": str(tmp_path / "state"), "PPTP_LAB_CACHE": str(tmp_path / "cache"),
           "DOCKER_HOST": "unix:///nonexistent.sock"}
    return subprocess.run([sys.executable, "-c", "from lab.cli import main; main()", *args],
                          capture_output=True, text=True, env=env, timeout=60)


def test_status_and_down_under_a_dead_qemu_say_so_in_one_line(tmp_path):
    pid = dead_pid()
    state = tmp_path / "state" / "vm8"
    state.mkdir(parents=True)
    (state / "state.json").write_text(json.dumps({"pid": pid, "port": 1, "accel": "tcg", "key": "k",
                                                  "overlay": str(state / "run.qcow2"), "started": 0}))
    res = run_cli(tmp_path, "status", "crashy", "--engine", "vm:8")
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert res.returncode == 2 and lines == [
        f"error: the VM vm:8 is not running: its QEMU (pid {pid}) is gone; `pptp-lab vm -n 8 up` starts it again"], \
        res.stderr
    res = run_cli(tmp_path, "down", "crashy", "--engine", "vm:8")
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert res.returncode == 0 and len(lines) == 1 and "nothing running to remove" in lines[0] \
        and "`pptp-lab vm -n 8 up`" in lines[0], res.stderr
    res = run_cli(tmp_path, "status", "crashy", "--engine", "vm")
    assert res.returncode == 2 and "the VM is not running: `pptp-lab vm up` starts it" in res.stderr


# ------------------------------------------------------------------ the VM after QEMU died
def test_a_dead_qemus_kept_overlay_is_repaired_or_replaced(monkeypatch):
    vm.use(1)
    calls = []
    rc = {"value": 3}
    monkeypatch.setattr(vm.subprocess, "run",
                        lambda argv, **k: calls.append(argv) or SimpleNamespace(returncode=rc["value"]))
    overlay = vm.vm_dir() / "overlay-k.qcow2"
    overlay.write_bytes(b"qcow2")
    vm._check_disk(overlay)
    assert calls[-1][:4] == ["qemu-img", "check", "-q", "-r"] and overlay.exists()  # leaks only: kept
    rc["value"] = 2
    vm._check_disk(overlay)
    assert not overlay.exists()  # damaged: the next cold boot makes a fresh one
    run = vm.vm_dir() / "run.qcow2"
    run.write_bytes(b"qcow2")
    calls.clear()
    vm._check_disk(run)
    assert calls == []  # a restore makes it anew anyway


def test_dial_at_once_is_four_unless_the_environment_says(monkeypatch):
    monkeypatch.delenv(lifecycle.DIAL_AT_ONCE_ENV, raising=False)
    assert lifecycle.dial_at_once() == 4
    monkeypatch.setenv(lifecycle.DIAL_AT_ONCE_ENV, "16")
    assert lifecycle.dial_at_once() == 16
    for bad in ("0", "65", "x", "-1", "4; reboot"):
        monkeypatch.setenv(lifecycle.DIAL_AT_ONCE_ENV, bad)
        with pytest.raises(LabError, match=lifecycle.DIAL_AT_ONCE_ENV):
            lifecycle.dial_at_once()

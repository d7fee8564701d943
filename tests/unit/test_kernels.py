"""A VM per kernel (issue #11): state directories, names and ports per kernel, the engine
choice with a kernel asked for, and the CLI's --kernel. Nothing here boots or builds."""
import os
import subprocess
import sys

import pytest

from lab import engines
from lab.core import suites
from lab.engines import vm
from lab.engines.vm import VmEngine
from lab.core.errors import LabError
from lab.core.paths import state_dir


@pytest.fixture(autouse=True)
def back_to_the_default_vm(monkeypatch):
    monkeypatch.delenv(suites.KERNEL_ENV, raising=False)
    yield
    vm.use(1)


def test_bookworms_state_dirs_are_the_old_ones_and_each_kernel_has_its_own():
    assert VmEngine.state_dir_of(1) == VmEngine.state_dir_of(1, "bookworm") == state_dir() / "vm"
    assert VmEngine.state_dir_of(3) == state_dir() / "vm3"
    assert VmEngine.state_dir_of(1, "bullseye") == state_dir() / "vm-bullseye"
    assert VmEngine.state_dir_of(2, "bookworm-backports") == state_dir() / "vm-bookworm-backports-2"
    every = {VmEngine.state_dir_of(n, k) for n in (1, 2, 16) for k in suites.KERNELS}
    assert len(every) == 3 * len(suites.KERNELS)
    for path in every:
        number, kernel = vm.parse_state_dir(path.name)
        assert VmEngine.state_dir_of(number, kernel) == path
    for other in ("vm0", "vm-", "vm-sid", "vm-bookworm", "vm-trixie-0", "vmsnap", "vm-trixie2"):
        assert vm.parse_state_dir(other) is None, other


def test_an_engine_drives_its_own_kernels_vm():
    eng = VmEngine(2, "test", "trixie")
    assert (eng.name, eng.kernel, eng.userland) == ("vm:2 (trixie)", "trixie", "trixie")
    assert vm.current() == (2, "trixie") and vm.vm_dir() == state_dir() / "vm-trixie-2"
    assert VmEngine(1, "test", "bookworm-backports").userland == "bookworm"
    default = VmEngine()
    assert (default.name, default.userland, vm.vm_dir()) == ("vm", "bookworm", state_dir() / "vm")
    with pytest.raises(LabError, match="^VM kernel sid: use"):
        vm.use(1, "sid")


def test_qemu_is_named_after_its_state_dir(tmp_path):
    def name(number, kernel="bookworm"):
        vm.use(number, kernel)
        cmd = vm._qemu_cmd(tmp_path, tmp_path / "d", "tcg", 1)
        return cmd[cmd.index("-name") + 1], cmd

    assert name(1)[0] == "pptp-lab-vm" and name(2)[0] == "pptp-lab-vm2"  # as before kernels
    got, cmd = name(1, "trixie")
    assert got == "pptp-lab-vm-trixie"
    assert any(a.endswith("vm-trixie/ctl.sock,server=on,wait=off") for a in cmd)


def test_the_fixed_port_is_only_the_first_bookworm_vms(monkeypatch):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        monkeypatch.setenv("PPTP_LAB_VM_PORT", str(s.getsockname()[1]))
        vm.use(1)
        with pytest.raises(LabError, match="is in use"):
            vm._pick_port()
        vm.use(1, "bullseye")
        assert vm._pick_port() != s.getsockname()[1]


def test_state_is_kept_per_kernel_and_every_vm_is_found():
    me = os.getpid()  # alive, but no QEMU of ours: reads as crashed
    for number, kernel in ((1, "trixie"), (2, "bullseye")):
        vm.use(number, kernel)
        vm._write_state(vm.VmState(pid=me, port=1, accel="tcg", key="k", overlay="/x", started=0))
    (VmEngine.state_dir_of(3) / "state.json").parent.mkdir(parents=True)
    assert vm.known() == [(2, "bullseye"), (1, "trixie")]
    vm.use(1)
    assert vm.read_state() is None and vm.status() == {"state": "stopped", "state_dir": str(state_dir() / "vm")}
    vm.use(1, "trixie")
    st = vm.status()
    assert st["state"] == "crashed" and st["kernel"] == "trixie"
    assert "already exited" in vm.down()
    assert vm.known() == [(2, "bullseye")]  # the other kernel's VM is untouched


def test_wiping_one_kernels_vm_keeps_the_others_snapshots():
    from lab.core import artifacts

    mine = artifacts.cached_dir("vmsnap-trixie", "aaa111", lambda t: None)
    default = artifacts.cached_dir("vmsnap", "bbb222", lambda t: None)
    vm.use(1, "trixie")
    assert "wiped" in vm.down(wipe=True)
    assert not mine.exists() and default.is_dir()
    bullseye = artifacts.cached_dir("vmsnap-bullseye", "ccc333", lambda t: None)
    vm.use(1)
    vm.down(wipe=True)
    assert not default.exists() and bullseye.is_dir()


def test_the_snapshot_is_of_the_kernels_userland(monkeypatch):
    from lab.engines import images

    seen = {}
    monkeypatch.setattr(vm.snapshot, "key", lambda art, image_key, *rest: seen.setdefault("image", image_key))
    monkeypatch.setattr(vm.artifacts, "cached_dir", lambda name, key, make: seen.setdefault("name", name))
    vm.use(1, "bookworm-backports")
    from pathlib import Path

    vm._snapshot(Path("vm-bookworm-backports-abc"), "tcg")
    assert seen == {"image": images.node_key("bookworm"), "name": "vmsnap-bookworm-backports"}


def test_the_snapshot_key_and_dir_are_per_kernel_and_bookworms_as_before(monkeypatch):
    from pathlib import Path

    from lab.engines import images

    made = {}
    monkeypatch.setattr(vm.artifacts, "cached_dir", lambda name, key, make: made.setdefault(vm.kernel(), (name, key)))
    for kernel in suites.KERNELS:
        vm.use(1, kernel)
        vm._snapshot(Path(suites.artefact("vm", kernel) + "-" + vm.vm_key(kernel)), "tcg")
    # bookworm's: the name and formula from before kernels, so its cached snapshots stay valid.
    before = vm.snapshot.key(f"vm-{vm.vm_key()}", images.node_key(), "tcg", vm.MEMORY_MB, vm.CPUS, vm.QEMU)
    assert made["bookworm"] == ("vmsnap", before)
    assert made["bullseye"][0] == "vmsnap-bullseye" and made["trixie"][0] == "vmsnap-trixie"
    assert made["bookworm-backports"][0] == "vmsnap-bookworm-backports"
    assert len({key for _, key in made.values()}) == len(suites.KERNELS)


def test_bullseye_boots_cold_unless_snapshots_are_asked_for(monkeypatch):
    snapshot = vm.snapshot
    monkeypatch.delenv(snapshot.DISABLE_ENV, raising=False)
    assert not snapshot.enabled("bullseye")
    assert all(snapshot.enabled(k) for k in suites.KERNELS if k != "bullseye") and snapshot.enabled()
    monkeypatch.setenv(snapshot.DISABLE_ENV, "1")
    assert snapshot.enabled("bullseye")
    monkeypatch.setenv(snapshot.DISABLE_ENV, "0")
    assert not any(snapshot.enabled(k) for k in suites.KERNELS)


def test_bullseyes_vm_up_makes_no_snapshot(monkeypatch, tmp_path):
    monkeypatch.delenv(vm.snapshot.DISABLE_ENV, raising=False)
    started = []
    monkeypatch.setattr(vm, "require_binary", lambda *a: None)
    monkeypatch.setattr(vm, "_kill_strays", lambda: "")
    monkeypatch.setattr(vm, "build", lambda: tmp_path / "vm-bullseye-abc")
    monkeypatch.setattr(vm, "choose_accel", lambda kernel: ("tcg", "test"))
    monkeypatch.setattr(vm, "_snapshot", lambda *a: pytest.fail("bullseye took a snapshot"))
    monkeypatch.setattr(vm, "_overlay", lambda art, key: tmp_path / f"overlay-{key}.qcow2")
    monkeypatch.setattr(vm, "_start", lambda art, disk, accel: started.append(disk.name) or "st")
    vm.use(1, "bullseye")
    assert vm.up() == "st" and started == ["overlay-bullseye-abc.qcow2"]


# ---------------------------------------------------------------- choosing the engine

def test_a_kernel_asked_for_means_the_vm(monkeypatch):
    started = []
    monkeypatch.setattr(VmEngine, "start", lambda self: started.append((self.number, self.kernel)) or self)
    monkeypatch.setattr(engines.choose, "probe_local", lambda: pytest.fail("the local engine was probed"))
    ask = suites.KernelChoice("trixie", "--kernel ")
    eng = engines.select("auto", ask)
    assert isinstance(eng, VmEngine) and started == [(1, "trixie")] and "trixie" in eng.why
    engines.select("vm:3", ask)
    assert started[-1] == (3, "trixie")
    for spec in ("local", "tcp://127.0.0.1:2375"):
        with pytest.raises(LabError) as err:
            engines.select(spec, ask)
        assert str(err.value).startswith("--kernel trixie: ") and "VM" in str(err.value)


def test_a_kernel_from_a_topology_is_named_in_the_error():
    ask = suites.KernelChoice("bullseye", "t.yaml: engine.kernel ")
    with pytest.raises(LabError, match=r"^t.yaml: engine.kernel bullseye: the local engine"):
        engines.select("local", ask)


def test_nothing_asked_keeps_the_old_choice_and_the_env_asks(monkeypatch):
    monkeypatch.setattr(engines.choose, "probe_local",
                        lambda: engines.Probe(engine="local", reachable=True, ppp=True, helper=True))
    assert engines.select("auto").name == "local"
    monkeypatch.setenv(suites.KERNEL_ENV, "bullseye")
    monkeypatch.setattr(VmEngine, "start", lambda self: self)
    eng = engines.select("auto")
    assert (eng.name, eng.kernel) == ("vm (bullseye)", "bullseye")
    with pytest.raises(LabError, match="^PPTP_LAB_KERNEL=bullseye: the local engine"):
        engines.select("local")


def test_running_with_a_kernel_looks_only_at_that_vm(monkeypatch):
    looked = []
    monkeypatch.setattr(VmEngine, "attach", lambda self: looked.append((self.number, self.kernel)))
    monkeypatch.setattr(engines.choose, "local", lambda: pytest.fail("the local engine was asked"))
    assert engines.running("auto", suites.KernelChoice("trixie", "--kernel ")) is None
    assert engines.running("vm:2", suites.KernelChoice("bullseye", "--kernel ")) is None
    assert looked == [(1, "trixie"), (2, "bullseye")]
    with pytest.raises(LabError, match="^--kernel trixie: "):
        engines.running("local", suites.KernelChoice("trixie", "--kernel "))


# ---------------------------------------------------------------- topologies

def _topo(tmp_path, **extra):
    import yaml

    from tests.unit.test_topology import base

    data = base()
    for dotted, value in extra.items():
        *path, last = dotted.split(".")
        cur = data
        for key in path:
            cur = cur.setdefault(key, {})
        cur[last] = value
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_topology_may_ask_for_a_kernel_and_node_userlands(tmp_path):
    from lab.model import topology

    t = topology.load(_topo(tmp_path, **{"engine.kernel": "bookworm-backports", "nodes.cli.image": "bullseye"}))
    assert t.engine.kernel == "bookworm-backports"
    assert (t.nodes["cli"].image, t.nodes["srv"].image) == ("bullseye", None)
    asked = suites.wanted_kernel(None, t, "t.yaml")
    assert asked.said == "t.yaml: engine.kernel bookworm-backports"
    plain = topology.load(_topo(tmp_path))
    assert plain.engine is None and suites.wanted_kernel(None, plain) is None
    assert topology.load(_topo(tmp_path, engine={})).engine.kernel is None


@pytest.mark.parametrize("extra,expect", [
    ({"engine.kernel": "buster"}, "engine.kernel: Input should be 'bullseye', 'bookworm', 'bookworm-backports' or 'trixie'"),
    ({"engine.colour": "red"}, "engine.colour: unknown key"),
    ({"engine": "trixie"}, "engine: Input should be a valid dictionary"),
    ({"nodes.cli.image": "bookworm-backports"}, "nodes.cli.image: Input should be 'bullseye', 'bookworm' or 'trixie'"),
    ({"nodes.srv.image": "debian:12"}, "nodes.srv.image: Input should be"),
])
def test_bad_suites_in_a_topology_name_the_key(tmp_path, extra, expect):
    from lab.model import topology

    with pytest.raises(LabError) as err:
        topology.load(_topo(tmp_path, **extra))
    msg = str(err.value)
    assert msg.startswith(f"{tmp_path / 't.yaml'}: {expect}") and "\n" not in msg, msg


def test_unset_suites_leave_the_recorded_topology_and_its_hash_as_before(tmp_path):
    from lab.up import lifecycle
    from lab.model import topology
    from lab.core.paths import shipped_topology

    default = topology.load(shipped_topology("default"))
    data = topology.public_data(default)
    assert "engine" not in data and not any("image" in n for n in data["nodes"].values())
    assert lifecycle.topo_hash(default) == "bfbdc2fb128c"  # main's (no suites): labs already up match
    t = topology.load(_topo(tmp_path, **{"engine.kernel": "trixie", "nodes.cli.image": "bullseye"}))
    data = topology.public_data(t)
    assert data["engine"] == {"kernel": "trixie"} and data["nodes"]["cli"]["image"] == "bullseye"
    assert topology.Topology.model_validate(data).nodes["cli"].image == "bullseye"  # recorded, read back


def test_each_node_is_created_from_its_own_suites_image(tmp_path):
    from types import SimpleNamespace

    from lab.up import lifecycle
    from lab.model import topology

    t = topology.load(_topo(tmp_path, **{"nodes.cli.image": "bullseye"}))
    asked, created, checked = [], {}, []
    eng = SimpleNamespace(
        ensure_image=lambda suite=None: asked.append(suite) or f"pptp-lab/node:{suite or 'own'}",
        create_network=lambda *a: None, url="unix:///fake", networks=lambda lab=None: [],
        create_node=lambda lab, name, image, *a: created.setdefault(name, image),
        scratch_run=lambda image, files, argv: checked.append(image) or SimpleNamespace(ok=True))
    tags = lifecycle.node_images(eng, t, "pptp-lab/node:own")
    assert tags == {"srv": "pptp-lab/node:own", "cli": "pptp-lab/node:bullseye"} and asked == ["bullseye"]
    lifecycle.create(eng, t, tags)
    assert created == tags
    assert lifecycle.node_images(eng, topology.load(_topo(tmp_path))) == {"srv": "pptp-lab/node:own",
                                                                         "cli": "pptp-lab/node:own"}
    assert asked == ["bullseye", None]  # without a default given, the engine's own, loaded once


def test_a_vm_engines_nodes_default_to_its_kernels_userland(monkeypatch):
    from lab.engines import images

    loaded = []
    monkeypatch.setattr(images, "ensure_node_image", lambda client, suite: loaded.append(suite) or suite)
    eng = VmEngine(1, "test", "bookworm-backports")
    eng._client = object()
    assert eng.ensure_image() == "bookworm" and eng.ensure_image("trixie") == "trixie"
    eng = VmEngine(1, "test", "bullseye")
    eng._client = object()
    assert eng.ensure_image() == "bullseye"
    local = engines.choose.local()
    local._client = object()
    assert local.ensure_image() == "bookworm"  # any other engine: as before suites
    assert loaded == ["bookworm", "trixie", "bullseye", "bookworm"]
# ---------------------------------------------------------------- the CLI

def _cli(tmp_path, *args, env=None):
    full = {**os.environ, "PPTP_LAB_STATE": str(tmp_path / "state"), "PPTP_LAB_CACHE": str(tmp_path / "cache"),
            **(env or {})}
    return subprocess.run([sys.executable, "-c", "from lab.cli import main; main()", *args],
                          capture_output=True, text=True, env=full)


def test_cli_kernel_errors_are_one_line_naming_the_key(tmp_path):
    for args, env, start in ((("vm", "status", "--kernel", "buster"), {}, "error: --kernel buster: use "),
                             (("vm", "status"), {"PPTP_LAB_KERNEL": "sid"}, "error: PPTP_LAB_KERNEL=sid: use "),
                             (("up", "default", "--kernel", "woody"), {}, "error: --kernel woody: use "),
                             (("test", "default", "--kernel", "x"), {}, "error: --kernel x: use ")):
        res = _cli(tmp_path, *args, env=env)
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert res.returncode == 2 and len(lines) == 1 and lines[0].startswith(start), (args, res.stderr)


def test_cli_vm_status_per_kernel_and_the_others_listed(tmp_path):
    res = _cli(tmp_path, "vm", "status", "--json")
    assert res.returncode == 0, res.stderr
    import json

    assert json.loads(res.stdout) == {"state": "stopped", "state_dir": str(tmp_path / "state" / "vm")}
    trixie = tmp_path / "state" / "vm-trixie"
    trixie.mkdir(parents=True)
    (trixie / "state.json").write_text(json.dumps({"pid": os.getpid(), "port": 1, "accel": "tcg", "key": "k",
                                                   "overlay": "/x", "started": 0}))
    res = _cli(tmp_path, "vm", "status", "--json")
    out = json.loads(res.stdout)
    assert out["state"] == "stopped" and out["other VMs"] == ["vm (trixie): crashed"]
    res = _cli(tmp_path, "vm", "status", "--json", "--kernel", "trixie")
    out = json.loads(res.stdout)
    assert (out["state"], out["kernel"], out["state_dir"]) == ("crashed", "trixie", str(trixie))
    assert "other VMs" not in out
    res = _cli(tmp_path, "vm", "status", "--json", env={"PPTP_LAB_KERNEL": "trixie"})
    assert json.loads(res.stdout)["kernel"] == "trixie"
    res = _cli(tmp_path, "vm", "down", "--kernel", "trixie")
    assert res.returncode == 0 and "already exited" in res.stderr + res.stdout
    assert not (trixie / "state.json").exists()


def test_cli_takes_kernel_on_every_vm_command_and_on_up_and_test():
    from typer.main import get_command

    from lab.cli import app

    cli = get_command(app)
    for path in (("vm", "build"), ("vm", "up"), ("vm", "down"), ("vm", "status"), ("vm", "exec"),
                 ("up",), ("test",), ("down",), ("status",)):
        cmd = cli
        for part in path:
            cmd = cmd.commands[part]
        assert any("--kernel" in p.opts for p in cmd.params), path


def test_vm_exec_leaves_the_commands_own_words_alone(monkeypatch):
    from typer.testing import CliRunner

    from lab import cli

    ran = []
    monkeypatch.setattr(cli.vm, "exec_in_guest", lambda argv: ran.append((vm.current(), argv)) or (0, ""))
    res = CliRunner().invoke(cli.app, ["vm", "exec", "--kernel", "trixie", "ip", "-br", "link"])
    assert res.exit_code == 0, res.output
    assert ran == [((1, "trixie"), ["ip", "-br", "link"])]


def test_doctor_follows_the_kernel_in_the_environment(monkeypatch):
    import json

    from typer.testing import CliRunner

    from lab import cli
    from lab.cli import doctor

    monkeypatch.setattr(cli.engine_mod, "probe_local",
                        lambda: engines.Probe(engine="local", reachable=True, ppp=True, helper=True))
    monkeypatch.setattr(doctor, "lacks", lambda needs_vm, kernel: [f"needs_vm={needs_vm} kernel={kernel}"])
    res = CliRunner().invoke(cli.app, ["doctor", "--json"])
    out = json.loads(res.stdout)
    assert out["chosen"] == "local" and "kernel" not in out and out["lacks"][0] == "needs_vm=False kernel=bookworm"
    monkeypatch.setenv(suites.KERNEL_ENV, "trixie")
    out = json.loads(CliRunner().invoke(cli.app, ["doctor", "--json"]).stdout)
    assert (out["chosen"], out["kernel"]) == ("vm", "PPTP_LAB_KERNEL=trixie")
    assert out["lacks"][0] == "needs_vm=True kernel=trixie"


def test_the_plugin_stops_the_vms_its_workers_started_whatever_their_kernel(monkeypatch):
    from lab import pytest_plugin

    stopped = []
    monkeypatch.setattr(VmEngine, "stop", lambda self: stopped.append((self.number, self.kernel)))
    for number, kernel in ((1, "bookworm"), (2, "bookworm"), (1, "trixie"), (3, "bookworm-backports")):
        d = VmEngine.state_dir_of(number, kernel)
        d.mkdir(parents=True, exist_ok=True)
        (d / "started-by-s1").touch()
    (state_dir() / "vmsnap-x").mkdir()
    (state_dir() / "vmsnap-x" / "started-by-s1").touch()  # not a VM's state dir: nothing to stop
    pytest_plugin._stop_vms_started_by("s1")
    assert sorted(stopped) == [(1, "bookworm"), (1, "trixie"), (2, "bookworm"), (3, "bookworm-backports")]
    assert not list(state_dir().glob("vm-*/started-by-s1"))


def test_image_build_takes_a_userland_suite(tmp_path):
    res = _cli(tmp_path, "image", "build", "--suite", "bookworm-backports")
    assert res.returncode == 2 and res.stderr.strip() == \
        "error: node image bookworm-backports: use bullseye, bookworm or trixie"

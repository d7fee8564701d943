"""pytest plugin (entry point `pptp_lab`): real PPTP labs as fixtures.

    import pytest

    @pytest.mark.topology("topology.yaml")   # next to this file, or in the current directory
    def test_tunnel(lab):
        lab.ping("client", "10.10.0.20")
        lab.hangup("client")
        (s,) = lab.sessions(client="198.51.100.10", segment="internet")
        assert s.phase == "teardown"

Fixtures: `lab_engine` (session: the engine and node image), `lab` (a running topology for
the test module; captures kept in runs/ when a test of the module failed), `sessions`
(the analysed captures of `lab`), `lab_host` (testinfra host of a lab node).

`@pytest.mark.kernel("bullseye", "trixie")` on a test or module runs it once per kernel,
each on that kernel's VM (`lab_kernel` is the kernel; test IDs end in [kernel=trixie]).

runs/ is <rootdir>/runs unless PPTP_LAB_RUNS says otherwise.

Under pytest-xdist (`-n N`) the workers share one engine (on a 2-core machine one VM beats
two); a lab whose subnets another worker's lab holds waits for it. A VM a worker starts is
stopped by the controlling process once every worker is done."""
from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import docker.errors
import pytest
import yaml

from .up import capture, configure, lifecycle
from . import engines, pptp
from .core import suites
from .model import members, topology
from .engines import ExecResult, obj_name, vm
from .core.errors import LabError
from .core.paths import RUNS_ENV, shipped_topology, topology_file


SESSION_ENV = "PPTP_LAB_SESSION"  # the controlling pytest's session ID, seen by its workers


def pytest_configure(config):
    if not os.environ.get(SESSION_ENV):
        config._pptp_lab_session = os.urandom(8).hex()
        os.environ[SESSION_ENV] = config._pptp_lab_session
    if os.environ.get("PYTEST_XDIST_WORKER") and not os.environ.get(ENGINES_ENV):
        # Workers share the engine: wait for a lab holding our subnets rather than fail.
        os.environ.setdefault(lifecycle.WAIT_ENV, "1800")
    config.addinivalue_line("markers", "kernel(*suites): run the test once per kernel, each with a `lab` "
                            f"on that kernel's VM ({', '.join(suites.KERNELS)})")
    config.addinivalue_line("markers", "topology(path, name=None, overrides=None): the topology "
                            "file the `lab` fixture brings up (relative to the test file's folder or the "
                            "current directory, or a shipped name such as default); overrides maps "
                            "dotted keys to values")
    # Captures and reports go to the project's runs/, also for a `pptp-lab` a test runs.
    if not os.environ.get(RUNS_ENV):
        config._pptp_lab_runs = True
        os.environ[RUNS_ENV] = str(config.rootpath / "runs")


def pytest_unconfigure(config):
    if getattr(config, "_pptp_lab_runs", False):
        os.environ.pop(RUNS_ENV, None)
    session = getattr(config, "_pptp_lab_session", None)
    if session:
        os.environ.pop(SESSION_ENV, None)
        _stop_vms_started_by(session)


def _started_marker(eng) -> Path:
    return eng.state_dir_of(eng.number, eng.kernel) / f"started-by-{os.environ[SESSION_ENV]}"


def _stop_vms_started_by(session: str) -> None:
    """The VMs an xdist worker of this session started (it leaves a marker) are stopped here,
    after every worker is done: a worker stopping it would pull it from under the others."""
    from .engines.vm import VmEngine, parse_state_dir
    from .core.paths import state_dir

    for marker in state_dir().glob(f"vm*/started-by-{session}"):
        found = parse_state_dir(marker.parent.name)
        if found:
            VmEngine(found[0], kernel=found[1]).stop()
        marker.unlink(missing_ok=True)


ENGINES_ENV = "PPTP_LAB_ENGINES"  # under pytest-xdist: engines the workers take in turn


def worker_engine() -> str:
    """The engine this test process uses. Under pytest-xdist, worker N takes the Nth entry of
    $PPTP_LAB_ENGINES (comma-separated, taken in turn; `vm,vm:2` gives each its own VM);
    without it the workers share the one engine (their overlapping labs take turns)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    spec = engines.wanted()
    listed = [x.strip() for x in os.environ.get(ENGINES_ENV, "").split(",") if x.strip()]
    if not worker.startswith("gw") or not listed:
        return spec
    return engines.check_spec(listed[int(worker[2:]) % len(listed)])


def _engine(kernel: suites.KernelChoice | None = None):
    """(Engine, node image tag, whether this process started its VM, stop it at the end):
    the stop is ours when this process started the VM outside xdist; under xdist the
    controller stops it (a marker says so)."""
    from .engines.vm import VmEngine

    configure.require()  # before a VM boots for labs Ansible could not configure
    spec = worker_engine()
    was_running = isinstance(engines.running(spec, kernel), VmEngine)
    eng = engines.select(spec, kernel)
    image = eng.ensure_image()
    worker = bool(os.environ.get("PYTEST_XDIST_WORKER"))
    started = isinstance(eng, VmEngine) and not was_running
    if started and worker:
        _started_marker(eng).touch()  # the controller stops it after every worker is done
    return eng, image, started, started and not worker


@pytest.fixture(scope="session")
def lab_engine():
    """(Engine, node image tag). A VM started here is stopped at the end of the session; one
    that was already running (a user's lab) is left alone."""
    eng, image, _, stop = _engine()
    yield eng, image
    if stop:
        eng.stop()


KERNEL_MARK = "@pytest.mark.kernel "  # how errors name a kernel the marker asked for


def pytest_generate_tests(metafunc):
    """`@pytest.mark.kernel(...)`: the module's `lab` once per kernel (module-scoped, so the
    tests of one kernel share its lab), IDs kernel=<k>."""
    marker = metafunc.definition.get_closest_marker("kernel")
    if marker is None or "lab_kernel" not in metafunc.fixturenames:
        return
    if not marker.args:
        raise LabError(f"{KERNEL_MARK.strip()}(): name one kernel or more ({', '.join(suites.KERNELS)})")
    kernels = [suites.check_kernel(k, KERNEL_MARK) for k in marker.args]
    metafunc.parametrize("lab_kernel", kernels, ids=[f"kernel={k}" for k in kernels], indirect=True, scope="module")


@pytest.fixture(scope="module")
def lab_kernel(request):
    """The kernel `@pytest.mark.kernel` gave this test, or None (no marker: `lab_engine`)."""
    return getattr(request, "param", None)


@pytest.fixture(scope="session")
def lab_kernel_engines():
    """kernel -> (Engine, node image tag) of that kernel's VM, started on first use. One such
    VM at a time: asking for another kernel powers off the previous one if it was started
    here (as a matrix run does; an idle guest still takes CPU from the one at work, and
    `@pytest.mark.kernel` runs a module's tests kernel by kernel). The ones left are stopped
    at the end of the session."""
    found, started, stop = {}, set(), []

    def get(kernel: str):
        if kernel not in found:
            for old in [k for k in found if k in started]:
                eng = found.pop(old)[0]
                started.discard(old)
                eng.stop()
                if eng in stop:
                    stop.remove(eng)
            eng, image, here, ours = _engine(suites.KernelChoice(kernel, KERNEL_MARK))
            found[kernel] = eng, image
            started.update([kernel] if here else [])
            stop.extend([eng] if ours else [])
        return found[kernel]

    yield get
    for eng in stop:
        eng.stop()


def marker_topology(arg, test_file: Path) -> Path:
    """The `topology` marker's path: relative to the test file's folder, else to the current
    directory; a bare name with no such file is a shipped topology (`default`)."""
    path = Path(arg)
    if path.is_absolute():
        return path
    beside = test_file.parent / path
    return beside if beside.is_file() else topology_file(path)


def _apply_overrides(data: dict, overrides: dict) -> dict:
    data = copy.deepcopy(data)
    for dotted, value in (overrides or {}).items():
        *path, last = dotted.split(".")
        cur = data
        for key in path:
            cur = cur.setdefault(key, {})
        cur[last] = value
    return data


class Lab:
    """A running lab, with the verbs a test needs."""

    def __init__(self, eng, topo: topology.Topology):
        self.eng, self.topo, self.name = eng, topo, topo.name

    @property
    def members(self) -> list[str]:
        """Every call the lab makes: a node's name, or NODE#1.. for a node with a count."""
        return list(members.members(self.topo))

    def node(self, name: str):
        """A node's container; a member's (NODE#I) is its node's."""
        return self.eng.node(self.name, name.partition(members.SEP)[0])

    def run(self, name: str, cmd: str, check: bool = True) -> ExecResult:
        return self.eng.exec(self.node(name), cmd, check=check)

    def address(self, name: str, network: str | None = None) -> str:
        if members.SEP in name:
            return members.resolve(self.topo, name).address
        ifs = self.topo.nodes[name].interfaces
        return ifs[network] if network else next(iter(ifs.values()))

    def via(self, client: str) -> str:
        """`-I IFNAME` for a member of a node with a count (its tunnels all peer the same
        address: only the interface tells them apart), else ""."""
        m = members.resolve(self.topo, client) if members.SEP in client else None
        return f"-I {m.ifname} " if m else ""

    def ping(self, client: str, target: str, count: int = 3, interval: float = 0.3) -> ExecResult:
        res = self.run(client, f"ping -q -c {count} -i {interval} -W 3 {self.via(client)}{target}", check=False)
        assert res.ok, f"{client} cannot ping {target}: {res.out}"
        return res

    def tunnel(self, client: str) -> tuple[str, str, str]:
        return lifecycle.ppp_state(self.eng, self.node(client), members.resolve(self.topo, client).ifname)

    def dial(self, *clients: str, timeout: float = lifecycle.TUNNEL_TIMEOUT) -> None:
        """Dial the clients (all when none given); LabError when a tunnel does not come up."""
        lifecycle.start_servers(self.eng, self.topo)
        lifecycle.dial_clients(self.eng, self.topo, timeout=timeout, only=clients or None)

    def counters(self, firewall: str) -> dict[str, int]:
        """Packet counters of a firewall's rules, by filter ID (S12a...) or drop comment."""
        from .up import queries

        rows = queries.filter_counters(self.eng, self.node(firewall))
        return {r["comment"].split(" ")[0] if r["comment"][:1] == "S" else r["comment"]: r["packets"]
                for r in rows}

    def reconfigure(self, topo: topology.Topology, *nodes: str) -> None:
        """Apply a changed topology (same nodes and networks) to some nodes, e.g. another
        firewall policy or NAT setting."""
        from .up import configure

        self.topo = topo
        configure.apply(topo, self.eng.url, nodes=list(nodes) or None)

    def apply(self, node: str, *, ruleset: str | Path | None = None, policy: str | None = None,
              without: list[str] | None = None, nat_editor: bool | None = None, redial: bool = False):
        """`pptp-lab apply`: replace a firewall/nat/router node's rules in place (one of
        ruleset, policy or nat_editor); returns lab.up.apply.Change (rules before/after, time)."""
        from .up import apply as apply_mod

        new = apply_mod.changed(self.topo, node, ruleset=Path(ruleset) if ruleset else None, policy=policy,
                                without=without, nat_editor=nat_editor)
        change = apply_mod.apply(self.eng, self.topo, new, node, redial=redial)
        self.topo = new
        return change

    def fault(self, kind: str, *args):
        """`pptp-lab fault`: inject a fault now (kill, restart, link, netem, conntrack-flush,
        reload; words as on the command line, numbers too). Returns lab.up.fault.Active:
        `.fault` is its record; as a context manager it undoes the fault on exit
        (`with lab.fault("link", "client", "internet", "down"): ...`)."""
        from .up import fault as fault_mod

        return fault_mod.Active(self.eng, self.name, fault_mod.inject(self.eng, self.name, kind, *args))

    def variant(self, **overrides) -> topology.Topology:
        """This lab's topology with dotted-key overrides (nodes.fw.policy_without=[...])."""
        data = _apply_overrides(json.loads(self.topo.model_dump_json()), overrides)
        return topology.Topology.model_validate(data)

    def stop_client(self, client: str) -> None:
        """End a node's outgoing call (only its own: a calling router keeps its answered calls)."""
        lifecycle.hang_up(self.eng, self.name, [client])

    def hangup(self, client: str, timeout: float = 20) -> None:
        """Client-initiated teardown: pppd sends LCP Terminate, pptp clears the call (a
        member's: only its own pppd)."""
        if members.SEP in client:
            self.stop_client(client)
        else:
            self.run(client, "pkill -TERM pppd", check=False)
        self.wait_ended(client, timeout)

    def hangup_from_server(self, client: str, timeout: float = 20) -> None:
        """Server-initiated teardown of one client's call: end the server pppd serving it."""
        addr = self.tunnel(client)[1]
        server = next(iter(self.topo.servers))
        # pppd names its pid file after the interface; the interface is the one whose peer
        # is this client's tunnel address.
        self.run(server, f"dev=$(ip -o -4 addr show | awk -v a='peer {addr}/' 'index($0, a) {{print $2}}'); "
                         f"kill -TERM $(cat /var/run/$dev.pid)")
        self.wait_ended(client, timeout)

    def wait_ended(self, client: str, timeout: float = 20) -> None:
        """Until the client's pppd and pptp have exited, so the call's teardown is on the
        wire; AssertionError if they still run after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        check = "pgrep -x pppd >/dev/null || pgrep -x pptp >/dev/null"
        if members.SEP in client:  # a member: its pppd's pid file (gone when it exits) and its link
            m = members.resolve(self.topo, client)
            check = f"test -e /var/run/ppp-{m.peer}.pid || ip link show dev {m.ifname} >/dev/null 2>&1"
        while time.monotonic() < deadline:
            if self.run(client, check, check=False).rc != 0:
                return
            time.sleep(0.3)
        raise AssertionError(f"{client}: pppd/pptp still running {timeout:.0f}s after the hang-up")

    def sessions(self, client: str | None = None, segment: str | None = None) -> list:
        """Analysed sessions of the live capture, optionally of one client address / segment."""
        with tempfile.TemporaryDirectory() as tmp:
            files = capture.snapshot(self.eng, self.name, Path(tmp))
            if segment:
                files = [f for f in files if f.stem == segment]
            report = pptp.analyze(files)
        return [s for s in report.sessions if client is None or s.client == client]

    def host(self, name: str):
        import testinfra

        os.environ["DOCKER_HOST"] = self.eng.url
        return testinfra.get_host(f"docker://{obj_name(self.name, name)}")


@pytest.fixture(scope="module")
def lab(request, lab_kernel):
    """The topology of the module's `topology` marker (default: the shipped `default`), up
    with live tunnels and capture; down at the end of the module. With `@pytest.mark.kernel`
    once per kernel, on that kernel's VM."""
    if lab_kernel is None:
        eng, _ = request.getfixturevalue("lab_engine")
    else:
        eng, _ = request.getfixturevalue("lab_kernel_engines")(lab_kernel)
    marker = request.node.get_closest_marker("topology") if hasattr(request.node, "get_closest_marker") else None
    kwargs = marker.kwargs if marker else {}
    path = (marker_topology(marker.args[0], Path(request.fspath)) if marker and marker.args
            else shipped_topology("default"))
    if not path.is_file():
        raise LabError(f"topology marker {marker.args[0]!r}: no such file in {Path(request.fspath).parent} "
                       f"or in the current directory {Path.cwd()}")
    data = _apply_overrides(yaml.safe_load(path.read_text()), kwargs.get("overrides"))
    data["name"] = kwargs.get("name") or f"t-{Path(request.fspath).stem.replace('_', '-')[:20]}".rstrip("-")
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
        yaml.safe_dump(data, fh)
    topo = topology.load(fh.name, folder=path.parent)  # its rulesets are next to the original
    os.unlink(fh.name)
    asked = suites.wanted_kernel(None, topo, path)
    if lab_kernel is None and asked and getattr(eng, "kernel", None) != asked.kernel:
        # The session's engine is one VM (lab_engine); the marker picks a VM per kernel.
        raise LabError(f"{asked.said}: this test session runs on the {eng.name} engine; run this "
                       f"module with {suites.KERNEL_ENV}={asked.kernel} or @pytest.mark.kernel({asked.kernel!r})")
    lifecycle.down(eng, topo.name)
    try:
        lifecycle.up(eng, topo, with_status=False)
    except BaseException:
        lifecycle.down(eng, topo.name)  # `up` keeps a lab whose dial failed; its captures stay in runs/
        raise
    failed_before = request.session.testsfailed
    yield Lab(eng, topo)
    try:
        _, run = lifecycle.down(eng, topo.name)
    except (*vm.LOST_CONNECTION, docker.errors.DockerException) as exc:
        if vm.engine_lost(exc) is None:
            raise
        return  # its guest hung or died: the lab went with it, and its tests said so
    if run and request.session.testsfailed == failed_before:
        shutil.rmtree(run, ignore_errors=True)  # keep captures only when something failed


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A test whose lab's VM guest hung or died under it fails with the incident's one line
    (the guest's state and its console), not a connection traceback."""
    outcome = yield
    report = outcome.get_result()
    exc = call.excinfo.value if call.excinfo else None
    if report.failed and isinstance(exc, (*vm.LOST_CONNECTION, docker.errors.DockerException)):
        lost = vm.engine_lost(exc)
        if lost is not None:
            report.longrepr = f"{type(exc).__name__}: {lost}"


@pytest.fixture
def sessions(lab):
    """Analysed sessions of the lab's live capture (all segments)."""
    return lab.sessions()


@pytest.fixture
def lab_host(lab):
    """lab_host(name): a testinfra host for a lab node (pytest-testinfra's own `host` fixture
    keeps its meaning)."""
    return lab.host

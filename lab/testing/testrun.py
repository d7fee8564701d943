"""`pptp-lab test TOPOLOGY...`: bring a topology up, check its `expect:` block, read the
capture; lab.reports.runfiles writes the JUnit XML and the reports into runs/<lab>/<run-id>/."""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import docker.errors

from ..up import capture, dataflow, lifecycle
from ..diagnosis import checks, diagnose, kdrops, mtu, trace, why
from .. import pptp
from ..model import members, render
from ..model.kinds.pptp_client import tunnel_links
from ..diagnosis.checks import Check
from ..engines import Engine, vm
from ..core import timing
from ..core.pool import parallel
from ..core.errors import LabError
from ..core.host import console
from ..reports.runfiles import Result, manifest_capture_losses, manifest_faults
from ..model.kinds.nat import outside_calls
from ..model.topology import Topology

DIAL_TIMEOUT = 40


def _latest(sessions, address: str):
    found = [s for s in sessions if s.client == address and not s.gre_only]
    return max(found, key=lambda s: s.start) if found else None


def client_session(analysed: pptp.Report, topo: Topology, name: str):
    """The client's latest session as seen on its own segment (nearest the client); `name`
    is a node or a member of a node with a count (lab.model.members)."""
    return member_session(analysed, members.resolve(topo, name))


def member_session(analysed: pptp.Report, m: members.Member):
    return _latest([s for s in analysed.sessions if Path(s.source).stem == m.network], m.address)


def refuse_running(eng: Engine, topos: list[Topology]) -> None:
    """`test` brings each lab up and down again: it must not take over a lab the user runs."""
    running = eng.labs()
    for topo in topos:
        if topo.name in running:
            raise LabError(f"lab {topo.name} is running on the {eng.name} engine and `pptp-lab test` would "
                           f"replace it: `pptp-lab down {topo.name}` first, or test it under another name "
                           "with --name")


def run(eng: Engine, topo: Topology) -> Result:
    """Up, checks, down. A failing `up` is a failed check (the report is still written);
    whatever was created is removed in any case."""
    res = Result(topo)
    with timing.recording() as res.timings:
        _run(eng, topo, res)
    return res


def _run(eng: Engine, topo: Topology, res: Result) -> None:
    lost = None
    try:
        res.checks.append(up := _lab_up(eng, topo))
        if up.passed:
            try:
                _checks(eng, topo, res)
            except LabError as exc:  # after a good `up`: not an `up` failure, but no pass either
                res.checks.append(Check("checks ran", "", False, str(exc)))
    except (*vm.LOST_CONNECTION, docker.errors.DockerException) as exc:
        lost = vm.engine_lost(exc)
        if lost is None:
            raise
        res.checks.append(Check("engine", "", False, str(lost)))  # its guest hung or died under the lab
    finally:
        if lost is None:
            with timing.phase("down"):
                _, res.run_dir = lifecycle.down(eng, topo.name)
        else:
            res.run_dir = None  # the guest took the lab's nodes and captures with it
    files = sorted(res.run_dir.glob("*.pcap")) if res.run_dir else []
    with timing.phase("analysis"):
        res.report = pptp.analyze(files) if files else None
    res.faults = manifest_faults(res.run_dir) if res.run_dir else []
    res.capture_losses = manifest_capture_losses(res.run_dir) if res.run_dir else {}


def _lab_up(eng: Engine, topo: Topology) -> Check:
    """The "lab up" check: `up` succeeded and every node is running."""
    start = time.monotonic()
    try:
        lifecycle.up(eng, topo, dial=False, with_status=False)
    except LabError as exc:
        return Check("lab up", "", False, str(exc), time.monotonic() - start)
    states = {n: c.status for n, c in lifecycle.existing(eng, topo.name).items()}
    missing = sorted(n for n in topo.nodes if states.get(n) != "running")
    return Check("lab up", "", not missing, f"{topo.name} on the {eng.name} engine: {len(topo.nodes)} nodes running"
                 if not missing else f"nodes not running: {', '.join(missing)}", time.monotonic() - start)


def _checks(eng: Engine, topo: Topology, res: Result) -> None:
    # What ran (kernel, ppp, pptpd, pptp-linux): the matrix report heads each cell with it.
    with timing.phase("versions"):
        res.versions = lifecycle.versions(eng, lifecycle.existing(eng, topo.name))
    lifecycle.start_servers(eng, topo)
    since = time.time()
    # The dial is traced in the filtering nodes, so a tunnel that fails is traced to the rule
    # that dropped it without dialling twice (lab.diagnosis.trace, lab.diagnosis.why).
    # The kernel's drops are recorded too (lab.diagnosis.kdrops): the cause of a failure that no rule
    # explains (lab.diagnosis.cause).
    with timing.phase("dial (traced)"), trace.tracing(eng, topo, trace.filtering_nodes(topo)) as traces, \
            kdrops.recording(eng) as kernel:
        try:
            lifecycle.dial_clients(eng, topo, timeout=DIAL_TIMEOUT)
        except LabError as exc:
            console.print(f"[yellow]{exc}[/]")  # judged per client below, against `expect`
    with timing.phase("data flow"):
        flows, flow_traces = _data_flow(eng, topo)
    with timing.phase("checks"), tempfile.TemporaryDirectory() as tmp:
        analysed = pptp.analyze(capture.snapshot(eng, topo.name, Path(tmp)))
        for name, flow in flows.items():
            res.data_flow[name] = data_flow(topo, name, analysed, flow, flow_traces)
        res.checks += _client_checks(eng, topo, analysed, traces, since, kernel, flows)
        res.checks += _nat_checks(topo, analysed)


@dataclass
class FlowRun:
    """What `test` measured of one client's data flow (SPEC S29-S31)."""
    transfer: dataflow.Transfer
    df: dict[str, dataflow.DfSearch]   # "to_server", "to_client"
    tunnel_mtu: int | None             # its tunnel interface's MTU afterwards (None: gone)
    cause: object = None               # lab.diagnosis.cause.Cause of a transfer that did not complete


def _data_flow(eng: Engine, topo: Topology) -> tuple[dict[str, FlowRun], dict[str, str]]:
    """For each client whose `expect` asks for a transfer and whose tunnel is up: the transfer
    (S30), then the largest packet with DF set each way (S29), with the filtering nodes
    traced meanwhile (S31: the rule that drops an ICMP fragmentation-needed).
    Returns ({client: FlowRun}, the traces)."""
    wanted = {n: w.transfer for n, w in (topo.expect.clients.items() if topo.expect else []) if w.transfer}
    out: dict[str, FlowRun] = {}
    if not wanted:
        return out, {}
    with trace.tracing(eng, topo, trace.filtering_nodes(topo)) as traces:
        moved: dict[str, tuple[dataflow.Transfer, str, str]] = {}
        # The transfers one at a time: each one's throughput is its own, not a share.
        for name, move in wanted.items():
            state, local, peer = lifecycle.ppp_state(eng, eng.node(topo.name, name), render.tunnel_if(topo.nodes[name]))
            if state != "up":
                continue
            with console.status(f"{name}: {move.bytes} bytes to {move.to} through its tunnel"):
                moved[name] = (dataflow.transfer(eng, topo.name, name, topo.holder(move.to), move.to, move.bytes,
                                                 move.timeout), local, peer)

        # The DF searches of all tunnels at once (they are mostly waits for pings that do not
        # come back, about 3 s a failing size), but the two ways of one tunnel one after the
        # other: a probe too big for its way is lost, and pptpd queues the next GRE packet of
        # that call as out of order ("buffering packet #N (expecting #M, lost or reordered)")
        # until more arrive. Run at once, that next packet was the other way's echo reply, a
        # second late: on a black hole (S29) every reply to the server's smallest probe came
        # right after a lost probe of the client's, and the server's search said "none".
        # ("to_server" from the client, "to_client" from its server.)
        ways = {name: [("to_server", name, moved[name][2])] for name in moved}
        for name in moved:
            if (server := why.server_node(topo, name)) is not None:
                ways[name].append(("to_client", server, moved[name][1]))
        with console.status(f"the largest packet with DF set, each way, through {len(moved)} tunnel(s)"):
            found = df_searches(lambda node, addr: dataflow.df_search(eng, topo.name, node, addr), ways)
        for name, (transfer, _, _) in moved.items():
            df = found[name]
            out[name] = FlowRun(transfer, df, dataflow.link_mtu(eng, topo.name, name, render.tunnel_if(topo.nodes[name])))
    return out, traces


def df_searches(search, ways: dict[str, list[tuple[str, str, str]]]) -> dict[str, dict]:
    """{tunnel: {way: search(node, addr)}} for ways {tunnel: [(way, node, addr), ...]}: the
    tunnels at once, each tunnel's ways one after the other (see _data_flow)."""
    names = list(ways)
    return dict(zip(names, parallel(lambda n: {way: search(node, addr) for way, node, addr in ways[n]}, names)))


def data_flow(topo: Topology, name: str, analysed: pptp.Report, flow: FlowRun, traces: dict[str, str]) -> dict:
    """A client's data-flow figures for the report (SPEC S29-S31); a transfer that did not
    complete gets its cause (lab.diagnosis.mtu) for the checks."""
    if not flow.transfer.complete:
        flow.cause = mtu.explain(topo, name, analysed, traces, flow.tunnel_mtu is not None)
    s = client_session(analysed, topo, name)
    mru = s.calls[-1].ppp["mru"] if s is not None and s.calls else {}
    return {"mru": mru, "tunnel_mtu": flow.tunnel_mtu, "df": {k: v.to_dict() for k, v in flow.df.items()},
            "transfer": flow.transfer.to_dict(), "cause": flow.cause.line() if flow.cause is not None else "",
            "outer": mtu.outer_lines(mtu.outer(topo, name, analysed))}


def _client_checks(eng: Engine, topo: Topology, analysed: pptp.Report, traces: dict[str, str] | None = None,
                   since: float | None = None, kernel: kdrops.Recording | None = None,
                   flows: dict[str, FlowRun] | None = None) -> list[Check]:
    out = []
    expect = topo.expect.clients if topo.expect else {}
    for name in topo.clients:
        if topo.nodes[name].count:
            out += _member_checks(eng, topo, name, analysed)
            continue
        want = expect.get(name)
        c = eng.node(topo.name, name)
        ifname = render.tunnel_if(topo.nodes[name])
        facts = checks.ClientFacts(name, ifname, lifecycle.ppp_state(eng, c, ifname)[0],
                                   client_session(analysed, topo, name))
        if facts.state != "up" and traces:
            found = why.find(topo, name, analysed, traces, since)
            cause = diagnose.explain(eng, topo, name, found, facts.session, kernel)
            facts.why, facts.drop, facts.path, facts.cause = cause.line(), found.drop, found.path, cause
        if name in (flows or {}):
            flow = flows[name]
            facts.transfer, facts.df, facts.transfer_cause = flow.transfer, flow.df, flow.cause
        for addr in (want.reach if want else []):
            r = eng.exec(c, f"ping -q -c 3 -i 0.3 -W 2 {addr}", check=False)
            facts.pings[addr] = (r.ok, r.out.strip().splitlines()[-1] if r.out.strip() else "")
        for addr in (want.unreachable if want else []):
            r = eng.exec(c, f"ping -q -c 2 -W 1 {addr}", check=False)
            facts.pings[addr] = (r.ok, "")
        out += checks.client_checks(facts, want)
    return out


def _member_checks(eng: Engine, topo: Topology, name: str, analysed: pptp.Report) -> list[Check]:
    """`tunnel up` of each member of a node with a count, its links read in one exec (no
    `expect` for them yet, and no trace: the analyser's verdict says how far a failed call got)."""
    c = eng.node(topo.name, name)
    links = tunnel_links(lambda cmd: eng.exec(c, cmd, check=False))
    out = []
    for m in members.of_node(topo, name):
        facts = checks.ClientFacts(m.name, m.ifname, links.get(m.ifname, ("down",))[0], member_session(analysed, m))
        out += checks.client_checks(facts, None)
    return out


def _nat_checks(topo: Topology, analysed: pptp.Report) -> list[Check]:
    out = []
    for name, want in (topo.expect.nat.items() if topo.expect else []):
        node = topo.nodes[name]
        calls = [(c.client_call_id, s) for s, c in outside_calls(node, analysed.sessions)]
        found = checks.nat_checks(name, want, [cid for cid, _ in calls])
        again = _first_repeat(calls)
        for c in found:
            if not c.passed and again:
                # The evidence: the request of the call whose ID was already taken outside.
                cid, s = again
                ocrq = next((e for e in s.events
                             if e.what == "OCRQ" and (e.detail + ",").startswith(f"call_id={cid},")), None)
                c.where = checks.evidence(s, ocrq)
        out += found
    return out


def _first_repeat(calls: list[tuple[int, object]]) -> tuple[int, object] | None:
    """The first (call ID, session) whose call ID an earlier call already had."""
    seen = set()
    for cid, s in calls:
        if cid in seen:
            return cid, s
        seen.add(cid)
    return None

"""The `pptp-lab` command: thin front end over the lab's layers (doctor.py: `pptp-lab doctor`).

The top layer: may import every other package of lab."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Optional

import docker.errors
import typer
from rich import box
from rich.console import Group
from rich.markup import escape
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from .. import engines as engine_mod
from ..engines import images
from ..core import suites
from ..engines import vm
from ..core.errors import LabError
from ..core.host import console
from ..up.nodecommand import NodeCommand
from ..core.paths import RUNS_ENV, topology_file

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Containerised PPTP VPN lab orchestrator and integration testbed.")
vm_app = typer.Typer(no_args_is_help=True, help="The built-in VM engine (Debian kernel with PPP, dockerd inside).")
image_app = typer.Typer(no_args_is_help=True, help="The lab's node image.")
app.add_typer(vm_app, name="vm")
app.add_typer(image_app, name="image")

EngineOpt = typer.Option(None, "--engine", help=f"{engine_mod.HELP} (default: $PPTP_LAB_ENGINE or auto)")
KERNELS = " | ".join(suites.KERNELS)
KernelOpt = typer.Option(None, "--kernel", metavar="SUITE",
                         help=f"the VM's Debian kernel: {KERNELS} (default: the topology's engine.kernel, "
                         f"else ${suites.KERNEL_ENV}, else bookworm); implies the VM engine")
LabKernelOpt = typer.Option(None, "--kernel", metavar="SUITE",
                            help=f"the lab on this kernel's VM: {KERNELS} (default: a topology file's "
                            f"engine.kernel, else ${suites.KERNEL_ENV}); implies the VM engine")
VmKernelOpt = typer.Option(None, "--kernel", metavar="SUITE",
                           help=f"which kernel's VM: {KERNELS} (default: ${suites.KERNEL_ENV}, else bookworm)")


def _print(data, as_json: bool) -> None:
    if as_json:
        print(json.dumps(data, indent=1, default=str))
        return
    table = Table(show_header=False)
    for k, v in data.items():
        # Escaped: values hold console lines ("[pptpd:18600]") and paths that rich would take for markup.
        table.add_row(escape(str(k)), escape(("\n".join(map(str, v)) or "nothing") if isinstance(v, list) else str(v)))
    console.print(table)


def _version(value: bool) -> None:
    if value:
        from .. import version

        print(f"pptp-lab {version()}")
        raise typer.Exit()


@app.callback()
def options(show_version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                              help="print the version and exit"),
            runs_dir: Optional[Path] = typer.Option(None, "--runs-dir", metavar="DIR",
                                                    help="captures and reports (default: $PPTP_LAB_RUNS, "
                                                    "else ./runs)")) -> None:
    """Containerised PPTP VPN lab orchestrator and integration testbed."""
    if runs_dir is not None:
        # The environment, so that whatever runs below (and a test's own `pptp-lab`) agrees.
        os.environ[RUNS_ENV] = str(runs_dir.expanduser().resolve())


@app.command("doctor")  # not `def doctor`: that name is the module lab.cli.doctor
def doctor_command(engine: Optional[str] = EngineOpt, as_json: bool = typer.Option(False, "--json")) -> None:
    """Show what was probed, the engine the lab would use and why, and what this machine lacks."""
    from . import doctor as doctor_mod

    choice = engine or engine_mod.wanted()
    asked = suites.wanted_kernel()  # $PPTP_LAB_KERNEL: `up` then takes that kernel's VM
    if asked:
        vm.use(vm.instance(), asked.kernel)
    try:
        local = engine_mod.probe_local()
    except LabError as exc:  # the probe needs the node image, which may not be buildable here
        local = engine_mod.Probe(engine="local", reachable=True, detail=[f"probe not run: {exc}"])
    report = {
        "requested": choice,
        "local engine": "reachable" if local.reachable else "not reachable",
        "local PPP": local.ppp, "local pptp helper": local.helper,
        "local detail": "; ".join(local.detail),
        "vm": vm.status()["state"],
    }
    lost = vm.last_incident()
    if lost:  # a guest of this VM hung or died lately: what its console showed
        report.update(vm.incident_info(lost))
    chosen, report["why"] = engine_mod.decide(choice, local)  # the same decision `up` makes
    if asked:
        report["kernel"] = asked.said
        chosen, report["why"] = (("vm", f"{asked.said} asked for: that kernel's VM") if choice != "local" else
                                 (None, f"{asked.said}: the local engine runs its host's own kernel"))
    report["chosen"] = chosen or "none"
    report["lacks"] = (doctor_mod.lacks(needs_vm=report["chosen"] == "vm", kernel=suites.kernel_of(asked))
                       + doctor_mod.local_lacks(local.reachable))
    _print(report, as_json)


@app.command()
def analyze(files: list[Path] = typer.Argument(..., help="pcap or pcapng files (several: e.g. inside and outside a NAT)"),
            as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
            ladder: Optional[Path] = typer.Option(None, "--ladder", help="write ladder diagrams: out.html or out.svg"),
            allow_truncated: bool = typer.Option(False, "--allow-truncated",
                                                 help="analyse a capture cut off mid-record up to the cut")) -> None:
    """Sessions, call IDs, phases, losses and what went wrong, from PPTP captures."""
    from rich.console import Console

    from .. import pptp
    from ..reports import report, runfiles

    for f in files:
        if not f.is_file():
            raise LabError(f"{f}: no such capture file")
    if ladder:
        if ladder.suffix not in (".html", ".svg"):
            raise LabError(f"--ladder {ladder}: give a .html or .svg file name")
        if not ladder.parent.is_dir():
            raise LabError(f"--ladder {ladder}: no folder {ladder.parent}")
    try:
        result = pptp.analyze(files)
    except ValueError as exc:
        raise LabError(str(exc)) from exc
    for cut in result.truncated:
        # A cut capture hides how the sessions went on: say so on stderr, fail unless allowed.
        where = f"{cut['file']}: cut off mid-record at byte {cut['offset']}"
        if not allow_truncated:
            print(f"error: {where} (--allow-truncated analyses it up to there)", file=sys.stderr)
            raise typer.Exit(1)
        print(f"warning: {where}: analysed up to there", file=sys.stderr)
    if ladder:
        # Captures of one run (runs/<lab>/<run-id>/): the faults its manifest lists are drawn too.
        folders = {f.resolve().parent for f in files}
        faults = runfiles.manifest_faults(folders.pop()) if len(folders) == 1 else []
        try:
            report.write_ladder(result, ladder, faults)
        except OSError as exc:
            raise LabError(f"--ladder {ladder}: {exc.strerror or exc}") from exc
    if as_json:
        print(json.dumps(result.to_dict(), indent=1, default=str))
    else:
        report.print_report(result, Console())  # the analysis is the output: stdout, not the log console


capture_app = typer.Typer(no_args_is_help=True, help="Captures of a running lab.")
app.add_typer(capture_app, name="capture")


def _running_engine(engine: Optional[str], kernel: Optional[suites.KernelChoice] = None):
    eng = engine_mod.running(engine, kernel)
    if eng is None:
        raise LabError(engine_mod.not_running(engine, kernel))
    return eng


WideOpt = typer.Option(False, "--wide", help="one column per field (needs a wide terminal)")


def _compact(title: str) -> Table:
    """A table for 80 columns: no vertical rules, a blank line between entries."""
    return Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0),
                 show_lines=True)


TUNNEL_COLOURS = {"up": "green", "down": "red", "stalled": "yellow"}  # a client's tunnel (lab.model.tunnels.state)


def _traffic(r) -> list[str]:
    """A client's call as the capture shows it: IDs, age, last echo, GRE and losses each way
    (↑ client to server, ↓ back)."""
    from ..model.tunnels import ago

    if r.gre_out is None:
        return [r.call_ids] if r.call_ids else []
    return [x for x in (r.call_ids, f"age {ago(r.age_s)}", r.last_echo_s is not None and f"echo {ago(r.last_echo_s)}",
                        f"↑{r.gre_out} ↓{r.gre_in}", f"lost ↑{r.lost_out} ↓{r.lost_in}") if x]


def status_table(rows, title: str, wide: bool = False) -> Table:
    """lifecycle.NodeStatus rows as a table. The default layout fits 80 columns for the usual
    lab (name over kind, state over tunnel, one address a line, PPP local over peer, the
    call's figures one a line); `wide` gives one column per field. Nothing is ever cut
    short: a value too wide is folded. Every value is escaped whole, cell by cell: names,
    addresses, versions (dpkg's) and the call come from the engine, the nodes and the
    capture, and rich would take "[...]" in them for markup."""
    from ..model.tunnels import ago

    def tunnel(r) -> str:
        colour = TUNNEL_COLOURS.get(r.tunnel)
        return f"[{colour}]{r.tunnel}[/]" if colour else escape(r.tunnel)

    if wide:
        table = Table(title=title)
        for col in ("node", "kind", "state", "addresses", "tunnel", "PPP address", "peer", "call IDs (client/server)",
                    "age", "last echo", "GRE ↑out ↓in", "lost ↑ ↓", "last GRE in", "unanswered for", "versions"):
            table.add_column(col, overflow="fold")
        for r in rows:
            counted = r.gre_out is not None
            plain = [r.name, r.kind, r.state, ", ".join(f"{k} {v}" for k, v in r.addresses.items()),
                     r.ppp_address, r.peer_address, r.call_ids, ago(r.age_s),
                     " ".join(x for x in (ago(r.last_echo_s), r.last_echo) if x),
                     f"↑{r.gre_out} ↓{r.gre_in}" if counted else "",
                     f"↑{r.lost_out} ↓{r.lost_in}" if counted else "", ago(r.last_gre_in_s), ago(r.unanswered_s),
                     " ".join(f"{k} {v}" for k, v in r.versions.items())]
            cells = ["" if x is None else escape(str(x)) for x in plain]
            table.add_row(*cells[:4], tunnel(r), *cells[4:])
        return table
    table = _compact(title)
    for col in ("node", "state", "addresses", "PPP address\n→ peer", "call"):
        table.add_column(col, overflow="fold")
    for r in rows:
        if r.state != "running":
            state = f"[red]{escape(r.state)}[/]"
        elif r.tunnel == "stalled":  # one word a line, and for how long: the column stays narrow
            state = f"running\n[yellow]tunnel\nstalled {ago(r.unanswered_s)}[/]"
        elif r.tunnel in TUNNEL_COLOURS:
            state = f"running\n[{TUNNEL_COLOURS[r.tunnel]}]tunnel {r.tunnel}[/]"
        else:  # a server's "N call(s)"
            state = "running" + (f"\n{escape(r.tunnel.replace('(s)', '' if r.tunnel.startswith('1 ') else 's'))}"
                                 if r.tunnel else "")
        ppp = "\n".join(x for x in (r.ppp_address, r.peer_address and f"→ {r.peer_address}") if x)
        table.add_row(f"[bold]{escape(r.name)}[/]\n[dim]{escape(r.kind)}[/]", state,
                      escape("\n".join(f"{k} {v}" for k, v in r.addresses.items())), escape(ppp),
                      escape("\n".join(_traffic(r))))
    return table


def _status_table(rows, title: str, wide: bool = False) -> None:
    console.print(status_table(rows, title, wide))


@app.command()
def up(topology_arg: str = typer.Argument("default", metavar="TOPOLOGY",
                                           help="a topology file, or a shipped topology's name"),
       name: Optional[str] = typer.Option(None, "--name", help="lab name (default: the file's name:)"),
       engine: Optional[str] = EngineOpt, kernel: Optional[str] = KernelOpt,
       capture: bool = typer.Option(True, "--capture/--no-capture", help="tcpdump on every segment"),
       as_json: bool = typer.Option(False, "--json"), wide: bool = WideOpt) -> None:
    """Bring a topology up: networks, nodes, configuration, capture, live tunnels."""
    from ..up import lifecycle
    from ..model import topology

    suites.wanted_kernel(kernel)  # a bad --kernel is said before the file is read
    path = topology_file(topology_arg)
    topo = topology.load(path, name)  # validate before touching any engine
    eng = engine_mod.select(engine, suites.wanted_kernel(kernel, topo, path))
    try:
        rows = lifecycle.up(eng, topo, with_capture=capture)
    except lifecycle.Interrupted as exc:
        console.print(f"interrupted: {exc}", soft_wrap=True, markup=False, highlight=False)
        raise typer.Exit(130) from None
    if as_json:
        print(lifecycle.to_json(rows))
    else:
        _status_table(rows, f"lab {topo.name} on the {eng.name} engine", wide)


@app.command()
def down(lab: str = typer.Argument("default", help="lab name or topology file"),
         engine: Optional[str] = EngineOpt, kernel: Optional[str] = LabKernelOpt) -> None:
    """Remove exactly what the lab created (also after a crash half-way); collect captures."""
    from ..up import lifecycle

    lab, asked = _lab_and_kernel(lab, kernel)
    eng = engine_mod.running(engine, asked)
    if eng is None:
        console.print(f"lab {lab}: nothing running to remove ({engine_mod.not_running(engine, asked)})", soft_wrap=True,
                      markup=False, highlight=False)
        return
    gone, run = lifecycle.down(eng, lab)
    console.print(f"lab {lab}: removed {gone} objects" + (f"; captures in {run}" if run else ""), soft_wrap=True)


def _lab_name(arg: str) -> str:
    if arg.endswith((".yaml", ".yml")):
        from ..model import topology
        return topology.load(arg).name
    return arg


def _lab_and_kernel(arg: str, kernel: Optional[str]) -> tuple[str, Optional[suites.KernelChoice]]:
    """A lab name or topology file, and the kernel asked for (a file's engine.kernel counts)."""
    asked = suites.wanted_kernel(kernel)
    if kernel or not arg.endswith((".yaml", ".yml")):
        return _lab_name(arg), asked
    from ..model import topology

    topo = topology.load(arg)
    return topo.name, suites.wanted_kernel(None, topo, arg)


def _lab_on(arg: str, engine: Optional[str], kernel: Optional[str]):
    """(the running engine, the lab's name) of a lab name or topology file: with a kernel
    asked for, the lab on that kernel's VM."""
    lab, asked = _lab_and_kernel(arg, kernel)
    return _running_engine(engine, asked), lab


@app.command()
def status(lab: str = typer.Argument("default"), engine: Optional[str] = EngineOpt,
           kernel: Optional[str] = LabKernelOpt,
           as_json: bool = typer.Option(False, "--json"), wide: bool = WideOpt) -> None:
    """Nodes, addresses, tunnel state, PPP addresses and call IDs of a running lab."""
    from ..up import lifecycle

    eng, lab = _lab_on(lab, engine, kernel)
    rows = lifecycle.status(eng, lab)
    if as_json:
        print(lifecycle.to_json(rows))
    else:
        _status_table(rows, f"lab {lab}", wide)


@app.command("apply")
def apply_(lab: str = typer.Argument(..., help="a running lab"), node: str = typer.Argument(..., help="its firewall, nat or router node"),
           ruleset: Optional[Path] = typer.Option(None, "--ruleset", metavar="FILE",
                                                  help="the node's own ruleset: nftables (.nft) or iptables-save"),
           policy: Optional[str] = typer.Option(None, "--policy", metavar="NAME", help="a firewall policy (pptp-lab policy list)"),
           without: Optional[str] = typer.Option(None, "--without", metavar="S12b,...", help="filters left out of --policy"),
           nat_editor: Optional[str] = typer.Option(None, "--nat-editor", metavar="on|off", help="the PPTP NAT editor"),
           redial: bool = typer.Option(False, "--redial", help="hang up every tunnel and dial again afterwards"),
           engine: Optional[str] = EngineOpt, kernel: Optional[str] = LabKernelOpt) -> None:
    """Replace a running node's rules without redeploying, and show what changed."""
    from ..up import apply as apply_mod

    if nat_editor not in (None, "on", "off"):
        raise LabError(f"--nat-editor {nat_editor}: give on or off")
    if without and policy is None:
        raise LabError("--without goes with --policy")
    eng, lab = _lab_on(lab, engine, kernel)
    topo = apply_mod.current(eng, lab)
    new = apply_mod.changed(topo, node, ruleset=ruleset, policy=policy,
                            without=[x.strip() for x in without.split(",") if x.strip()] if without else None,
                            nat_editor=None if nat_editor is None else nat_editor == "on")
    change = apply_mod.apply(eng, topo, new, node, redial=redial)
    console.print(f"[green]✓[/] applied to {lab} {node} in {change.seconds:.1f}s (the rules were replaced: "
                  "their counters start at zero)")
    sys.stdout.write(change.diff() or "rules unchanged\n")
    if redial:
        console.print(f"redialled: {', '.join(change.redialled) or 'no clients'}")


@app.command("fault", context_settings={"ignore_unknown_options": True})
def fault_(lab: str = typer.Argument(..., metavar="LAB", help="a running lab"),
           verb: str = typer.Argument(..., metavar="VERB", help="kill, restart, link, netem, conntrack-flush or reload"),
           args: Optional[list[str]] = typer.Argument(None, metavar="ARGS...", help="the verb's words (above)"),
           engine: Optional[str] = EngineOpt, kernel: Optional[str] = LabKernelOpt,
           as_json: bool = typer.Option(False, "--json", help="print the fault's record")) -> None:
    """Break a running lab's path: kill, restart, link, netem, conntrack-flush, reload.

    Each fault is recorded with its time: the run's manifest.json gets it when the
    capture stops, and the test report draws it on the session ladder.

    \b
    kill NODE pptpd|pppd|pptp    SIGKILL every process of that name
    restart NODE                 restart the container (same addresses),
                                 configure it again, start pptpd; no redial
    link NODE NET down|up        the interface on NET; up puts routes back
    link NODE NET flap SECONDS   down for SECONDS (3, 2.5s, 500ms), then up
    netem NODE NET loss=10% delay=50ms reorder=25% duplicate=1%
                                 tc netem on that interface, any of the four
    netem NODE NET clear         remove it
    conntrack-flush NODE         empty the conntrack table (NAT bindings)
    reload NODE                  flush the ruleset, load the rule files again

    A fault that can be undone prints its undo (link down: link up; netem: netem
    clear). A bad value is a one-line error and exit status 2."""
    from ..up import fault as fault_mod

    name, asked = _lab_and_kernel(lab, kernel)
    eng = _running_engine(engine, asked)
    f = fault_mod.inject(eng, name, verb, *(args or []))
    if as_json:
        print(json.dumps(f.to_dict(), indent=1))
        return
    what = escape(f"{' '.join([f.verb, f.node, *f.args])}: {f.done} ({f.ended - f.started:.1f}s)")
    console.print(f"[green]✓[/] {what}", soft_wrap=True, highlight=False)
    if f.undo:
        # The same engine and kernel options, so that the undo acts on the same VM.
        where = (f"--engine {engine} " if engine else "") + (f"--kernel {asked.kernel} " if asked else "")
        console.print(f"undo: pptp-lab fault {where}{name} {' '.join(f.undo)}", soft_wrap=True,
                      markup=False, highlight=False)


@app.command("why")
def why_(lab: str = typer.Argument(..., help="a running lab"), client: str = typer.Argument(..., help="a client node"),
         timeout: float = typer.Option(30, "--timeout", help="seconds to wait for the redialled tunnel"),
         engine: Optional[str] = EngineOpt, kernel: Optional[str] = LabKernelOpt) -> None:
    """Why a client's tunnel fails: redial it with kernel tracing on in the lab's firewall,
    nat and router nodes and the kernel's drops recorded, and name the cause (README: Why it
    failed): the node, chain and rule that dropped its packets, or the node and the evidence
    that shows what else did (ICMP, routes, reverse-path filter, NAT state, credentials)."""
    import tempfile

    from ..up import apply as apply_mod, capture, lifecycle
    from ..diagnosis import diagnose, trace, why as why_mod
    from .. import pptp
    from ..model import render
    from ..testing import testrun

    eng, lab = _lab_on(lab, engine, kernel)
    topo = apply_mod.current(eng, lab)
    if client not in topo.clients:
        raise LabError(f"lab {lab} has no client {client} (clients: {', '.join(topo.clients) or 'none'})")
    since, traces, kernel, before = trace.redial(eng, topo, [client], timeout)
    state = lifecycle.ppp_state(eng, eng.node(lab, client), render.tunnel_if(topo.nodes[client]))[0]
    if state == "up":
        console.print(f"[green]{client}'s tunnel came up[/]: nothing dropped it this time")
        return
    with tempfile.TemporaryDirectory() as tmp:
        analysed = pptp.analyze(capture.snapshot(eng, lab, Path(tmp)))
    found = why_mod.find(topo, client, analysed, traces, since)
    cause = diagnose.explain(eng, topo, client, found, testrun.client_session(analysed, topo, client), kernel, before)
    print(f"{client}: {cause.line()}")
    raise typer.Exit(1)


@app.command("exec", cls=NodeCommand, context_settings={"allow_extra_args": True})
def exec_(ctx: typer.Context, lab: str = typer.Argument(...), node: str = typer.Argument(...),
          engine: Optional[str] = EngineOpt, kernel: Optional[str] = LabKernelOpt) -> None:
    """Run a command in a lab node, e.g. `pptp-lab exec default client ip addr`. Options go
    before the command (`exec --kernel trixie default client ip addr`): its own words, from
    the first one on, are all passed to it."""
    if not ctx.args:
        raise LabError("exec: give a command after the node name")
    eng, lab = _lab_on(lab, engine, kernel)
    res = eng.exec(eng.node(lab, node), ctx.args, check=False)
    sys.stdout.write(res.out)
    raise typer.Exit(res.rc)


@app.command()
def logs(lab: str, node: str, engine: Optional[str] = EngineOpt, kernel: Optional[str] = LabKernelOpt) -> None:
    """pppd's log of a node (and pptpd's calls on a server)."""
    from ..up import queries

    eng, lab = _lab_on(lab, engine, kernel)
    sys.stdout.write(queries.ppp_log(eng, eng.node(lab, node)))


@capture_app.command("live")
def capture_live(lab: str, segment: str, engine: Optional[str] = EngineOpt, kernel: Optional[str] = LabKernelOpt,
                 bpf: str = typer.Option("", "--filter", help="a BPF filter, e.g. 'ip proto 47'")) -> None:
    """A live pcap stream of one segment on stdout, while the lab's own capture keeps running:
    `pptp-lab capture live default internet | wireshark -k -i -` (or `| tshark -r -`)."""
    from ..up import live

    out = sys.stdout.buffer
    if out.isatty():
        raise LabError("capture live writes pcap bytes: pipe it into wireshark -k -i - or tshark -r -")
    eng, lab = _lab_on(lab, engine, kernel)
    try:
        with live.stream(eng, lab, segment, bpf) as chunks:
            for chunk in chunks:
                out.write(chunk)
                out.flush()
    except (BrokenPipeError, KeyboardInterrupt):
        pass  # the reader went away, or Ctrl-C: the stream's tcpdump is stopped on the way out


@capture_app.command("watch")
def capture_watch(lab: str = typer.Argument("default"), engine: Optional[str] = EngineOpt,
                  kernel: Optional[str] = LabKernelOpt) -> None:
    """The PPTP events of every segment as the analyser sees them, live, one line each
    (control messages, PPP steps, phase changes, GRE losses). Ctrl-C ends it."""
    from ..up import live

    def write(line: str) -> None:
        print(line, flush=True)

    eng, lab = _lab_on(lab, engine, kernel)
    try:
        live.watch(eng, lab, write)
    except (BrokenPipeError, KeyboardInterrupt):
        pass


@capture_app.command("stop")
def capture_stop(lab: str = typer.Argument("default"), engine: Optional[str] = EngineOpt,
                 kernel: Optional[str] = LabKernelOpt) -> None:
    """Stop capturing and collect the pcaps into runs/<lab>/<run-id>/."""
    from ..up import capture

    eng, lab = _lab_on(lab, engine, kernel)
    run = capture.stop(eng, lab)
    console.print(f"captures in {run}" if run else f"lab {lab} has no capture running", soft_wrap=True)


policy_app = typer.Typer(no_args_is_help=True, help="Firewall filter policies of a running lab.")
nat_app = typer.Typer(no_args_is_help=True, help="NAT nodes of a running lab.")
app.add_typer(policy_app, name="policy")
app.add_typer(nat_app, name="nat")


@policy_app.command("show")
def policy_show(lab: str, node: str, engine: Optional[str] = EngineOpt, kernel: Optional[str] = LabKernelOpt,
                as_json: bool = typer.Option(False, "--json")) -> None:
    """The firewall node's rules with their packet counters."""
    from ..core import names
    from ..up import queries

    eng, lab = _lab_on(lab, engine, kernel)
    rows = queries.filter_counters(eng, eng.node(lab, node))
    if as_json:
        print(json.dumps(rows, indent=1))
        return
    table = Table(title=f"{node}: table {names.FILTER_TABLE}")
    for col in ("chain", "rule", "packets", "bytes"):
        table.add_column(col)
    for r in rows:
        # Read from the node's nft: text, never markup.
        table.add_row(*(escape(str(r[k])) for k in ("chain", "comment", "packets", "bytes")))
    console.print(table)


@nat_app.command("show")
def nat_show(lab: str, node: str, engine: Optional[str] = EngineOpt, kernel: Optional[str] = LabKernelOpt,
             as_json: bool = typer.Option(False, "--json")) -> None:
    """Conntrack entries for TCP 1723 and GRE on a NAT node, with the call IDs seen."""
    from ..up import queries

    eng, lab = _lab_on(lab, engine, kernel)
    rows = queries.nat_entries(eng, eng.node(lab, node))
    if as_json:
        print(json.dumps(rows, indent=1))
        return
    table = Table(title=f"{node}: conntrack (TCP 1723 and GRE)")
    for col in ("proto", "state", "original", "reply", "call IDs (orig / reply)", "helper"):
        table.add_column(col)
    for r in rows:
        # Read from the node's conntrack: text, never markup.
        table.add_row(*(escape(str(x)) for x in (
            r["proto"], r["state"], r["orig"], r["reply"],
            f"{r.get('orig_call_ids', '')} / {r.get('reply_call_ids', '')}".strip(" /"), r["helper"])))
    console.print(table)


def checks_table(checks, title: str, wide: bool = False) -> Table:
    """testrun.Check results as a table: by default the result, then the check with its detail
    under it (the detail gets the width of the terminal); `wide`: check, result, detail."""
    def result(c) -> Text:
        return Text("pass", style="green") if c.passed else Text("FAIL", style="red")

    if wide:
        table = Table(title=title)
        for col in ("check", "result", "detail"):
            table.add_column(col, overflow="fold")
        for c in checks:
            table.add_row(Text(c.name, overflow="fold"), result(c), Text(c.detail, overflow="fold"))
        return table
    table = _compact(title)
    table.add_column("result")
    table.add_column("check", overflow="fold")
    for c in checks:
        cell = Text(c.name, style="bold", overflow="fold")
        if c.detail:
            cell = Group(cell, Padding(Text(c.detail, overflow="fold"), (0, 0, 0, 2), expand=False))
        table.add_row(result(c), cell)
    return table


@app.command("test")
def test_(topologies: list[str] = typer.Argument(..., metavar="TOPOLOGY...",
                                               help="topology files, or shipped topologies' names"),
          engine: Optional[str] = EngineOpt, kernel: Optional[str] = KernelOpt, wide: bool = WideOpt,
          name: Optional[str] = typer.Option(None, "--name", help="lab name for a single topology "
                                             "(default: the file's name:)"),
          engines: Optional[str] = typer.Option(None, "--engines", metavar="A,B,...",
                                                help="run labs side by side, one per engine at a time "
                                                "(e.g. vm,vm:2 or vm,tcp://127.0.0.1:2375)"),
          jobs: int = typer.Option(1, "-j", "--jobs", metavar="N",
                                   help="N engines of --engine's kind side by side (VMs: vm, vm:2, ...)"),
          matrix: Optional[list[str]] = typer.Option(
              None, "--matrix", metavar="AXIS=V1,V2,...",
              help=f"run every combination: kernel={','.join(suites.KERNELS)} and/or "
              f"image={','.join(suites.USERLANDS)} (every node's userland); repeatable; one report in "
              "runs/matrix/<stamp>/")) -> None:
    """Bring each topology up, check its `expect:` block on real tunnels and captures, and
    write JUnit XML and an HTML report (runs/<lab>/<run-id>/). With several engines
    (--engines, -j N) labs run side by side and runs/parallel/<stamp>/ gets the merged
    junit.xml and an index.html over every lab's report. With --matrix each (topology,
    kernel, image) cell runs in turn and runs/matrix/<stamp>/ gets a grid of the cells and
    the differences between the passing ones."""
    from ..testing import matrix as matrix_mod, testrun
    from ..model import topology

    if name and len(topologies) > 1:
        raise LabError("--name renames one topology's lab: give a single TOPOLOGY with it")
    suites.wanted_kernel(kernel)  # a bad --kernel is said before any file is read
    axes = matrix_mod.axes(matrix or [])
    if matrix:
        if kernel and "kernel" in axes:
            raise LabError("--kernel and --matrix kernel=: give the kernels in --matrix only")
        if engines or jobs != 1:
            raise LabError("--matrix runs its cells one after another: leave out --engines and -j")
        matrix_mod.check_engine(engine, axes)
    paths = [topology_file(p) for p in topologies]
    topos = [topology.load(p, name) for p in paths]  # all validated before anything runs
    if matrix:
        _test_matrix(matrix_mod.cells(list(zip(paths, topos)), axes), engine, kernel, wide)
    asks = [suites.wanted_kernel(kernel, t, p) for p, t in zip(paths, topos)]
    listed = [x.strip() for x in (engines or "").split(",") if x.strip()]
    if listed or jobs != 1:
        _test_side_by_side(list(zip(paths, topos)), engine or engine_mod.wanted(), jobs, listed, kernel,
                           vm_only=any(asks))
    # One engine per kernel the topologies ask for (a VM each), all known before any lab runs.
    chosen: dict = {}
    for ask in asks:
        key = ask.kernel if ask else None
        if key not in chosen:
            chosen[key] = engine_mod.select(engine, ask)
    for key, eng in chosen.items():
        testrun.refuse_running(eng, [t for t, a in zip(topos, asks) if (a.kernel if a else None) == key])
    failed = 0
    for topo, ask in zip(topos, asks):
        res, _, _ = _test_one(chosen[ask.kernel if ask else None], topo, wide)
        failed += not res.passed
    raise typer.Exit(1 if failed else 0)


def _test_one(eng, topo, wide: bool = False):
    """`pptp-lab test` of one topology on one engine (a matrix cell too): (Result, junit, page)."""
    from ..reports import runfiles
    from ..testing import testrun

    res = testrun.run(eng, topo)
    junit, page = runfiles.write(res)
    console.print(checks_table(res.checks, f"pptp-lab test {topo.name}: {'PASS' if res.passed else 'FAIL'}", wide))
    console.print(f"JUnit: {junit}\nreport: {page}", soft_wrap=True)  # paths whole, never wrapped
    return res, junit, page


def _test_matrix(cells, engine: Optional[str], kernel: Optional[str], wide: bool) -> None:
    from ..testing import matrix as matrix_mod
    from ..reports import matrixreport

    console.print(f"{len(cells)} matrix cell(s), one after another: "
                  + ", ".join(dict.fromkeys(c.label for c in cells)))
    start = time.monotonic()
    finished = matrix_mod.run(cells, engine, kernel, lambda eng, topo: _test_one(eng, topo, wide))
    junit, page = matrixreport.write(cells, time.monotonic() - start)
    console.print(matrix_table(cells))
    console.print(f"{sum(c.passed for c in cells)} of {len(cells)} cells passed\n"
                  f"JUnit (matrix): {junit}\nreport: {page}", soft_wrap=True)
    raise typer.Exit(130 if not finished else 0 if all(c.passed for c in cells) else 1)


def matrix_table(cells) -> Table:
    """The grid on the terminal: topology rows, kernel[/image] columns, a failing cell's verdict."""
    labels = list(dict.fromkeys(c.label for c in cells))
    table = Table(title="pptp-lab test: matrix", show_lines=True)
    table.add_column("topology")
    for label in labels:
        table.add_column(label, overflow="fold")
    by = {(c.topo.name, c.label): c for c in cells}
    for topo in dict.fromkeys(c.topo.name for c in cells):
        row = []
        for label in labels:
            c = by.get((topo, label))
            colour = {"PASS": "green", "FAIL": "red"}.get(c.state, "dim") if c else "dim"
            row.append(Text.assemble((c.state, colour), ("\n" + c.verdict if not c.passed and c.verdict else ""))
                       if c else Text(""))
        table.add_row(topo, *row)
    return table


def _test_side_by_side(items, base: str, jobs: int, listed: list[str], kernel: Optional[str] = None,
                       vm_only: bool = False) -> None:
    from ..testing import parallel

    pool = parallel.engine_pool(base, jobs, listed, vm_only)
    console.print(f"{len(items)} lab(s) on {len(pool)} engine slot(s): {', '.join(pool)}")
    start = time.monotonic()
    done, out_dir = parallel.run_all(items, pool, kernel)
    junit, page = parallel.write_merged(done, out_dir, time.monotonic() - start)
    failed = [j for j in done if not j.passed]
    for j in failed:
        console.print(f"[red]{j.topo.name}: {j.state}[/] on {j.engine} (log: {j.log})", soft_wrap=True)
    console.print(f"{len(done) - len(failed)} of {len(done)} labs passed in {time.monotonic() - start:.0f}s\n"
                  f"JUnit (merged): {junit}\nreport: {page}", soft_wrap=True)
    raise typer.Exit(1 if failed else 0)


@app.command("report")
def report_(run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="a `pptp-lab test` run: runs/<lab>/<run-id>"),
            as_json: bool = typer.Option(False, "--json", help="print report.json (checks and analysis)")) -> None:
    """Rebuild report.html and report.json of a `pptp-lab test` run from what it saved
    (pcaps, manifest.json, checks.json, topology.json): e.g. a CI artefact, read later."""
    from ..reports import runfiles

    res = runfiles.load(run_dir)
    try:
        page, data = runfiles.write_reports(res, run_dir)
    except OSError as exc:
        raise LabError(f"{run_dir}: cannot write the report ({exc.strerror or exc})") from exc
    if as_json:
        print(json.dumps(runfiles.data(res), indent=1, default=str))
    else:
        console.print(f"{res.topo.name}: {'PASS' if res.passed else 'FAIL'} "
                      f"({sum(not c.passed for c in res.checks)} of {len(res.checks)} checks failed)\n"
                      f"report: {page}\nJSON: {data}", soft_wrap=True, markup=False, highlight=False)


@app.command()
def graph(target: str = typer.Argument("default", metavar="TOPOLOGY|LAB",
                                       help="a topology file, a shipped topology's name, or a running lab's name"),
          output: Optional[Path] = typer.Option(None, "-o", "--output", metavar="FILE",
                                                help="out.svg or out.html; - for SVG on stdout "
                                                "(default: <lab>.svg here)"),
          engine: Optional[str] = EngineOpt,
          kernel: Optional[str] = typer.Option(None, "--kernel", metavar="SUITE",
                                               help=f"a running lab on this kernel's VM: {KERNELS} (default: "
                                               f"${suites.KERNEL_ENV}); a file is drawn as written")) -> None:
    """Draw the topology without deploying it: networks, nodes, every address, NAT and
    firewall roles, and the tunnel each client dials. A running lab's name adds its live
    tunnels (state, PPP addresses, call IDs)."""
    from ..reports import graph as graph_mod

    topo, state = _graph_source(target, engine, suites.wanted_kernel(kernel) if kernel else None)
    out = output if output is not None else Path(f"{topo.name}.svg")
    if str(out) == "-":
        sys.stdout.write(graph_mod.topology_svg(topo, state) + "\n")
        return
    if out.suffix not in (".svg", ".html"):
        raise LabError(f"-o {out}: give a .svg or .html file name (or - for SVG on stdout)")
    text = graph_mod.page(topo, state) if out.suffix == ".html" else graph_mod.topology_svg(topo, state)
    try:
        out.write_text(text + "\n")
    except OSError as exc:
        raise LabError(f"-o {out}: {exc.strerror or exc}") from exc
    console.print(f"lab {topo.name}" + (" (live)" if state else "") + f": wrote {out}",
                  soft_wrap=True, markup=False, highlight=False)


def _graph_source(target: str, engine: Optional[str], kernel: Optional[suites.KernelChoice] = None):
    """(topology, live state or None). A file is drawn as written, without asking any
    engine; a name is a running lab's when one of that name is up (on `kernel`'s VM when
    one is asked for), else a shipped topology."""
    from ..reports import graph as graph_mod
    from ..up import lifecycle
    from ..model import topology

    path = Path(target)
    if not (path.is_file() or path.suffix in (".yaml", ".yml") or len(path.parts) != 1):
        eng = engine_mod.running(engine, kernel)
        if eng is not None and target in eng.labs():
            return (lifecycle.recorded_topology(eng, target),
                    graph_mod.state_from(lifecycle.status(eng, target)))
    return topology.load(topology_file(target)), None


@app.command()
def validate(topologies: list[str] = typer.Argument(..., metavar="TOPOLOGY...",
                                                  help="topology files, or shipped topologies' names"),
             engine: Optional[str] = EngineOpt) -> None:
    """Run every check `up` makes before creating anything, and create nothing: each file
    and, when an engine is running, the names and subnets it would need there."""
    from ..up import lifecycle
    from ..model import topology

    topos, errors = [], []
    for path in topologies:
        try:
            topos.append(topology.load(topology_file(path)))
        except LabError as exc:
            errors.append(str(exc))
    eng = engine_mod.running(engine)
    for topo in topos:
        where = f"lab {topo.name}"
        if eng is None:
            console.print(f"[green]✓[/] {where}: topology valid (no engine running: engine checks skipped)")
            continue
        try:
            same = lifecycle.preflight(eng, topo)
            lifecycle.check_rulesets(eng, topo, lifecycle.node_images(eng, topo))
        except LabError as exc:
            errors.append(f"{where}: {exc}")
            continue
        console.print(f"[green]✓[/] {where}: topology valid; the {eng.name} engine has room for it"
                      + (" (already up with this topology)" if same else ""))
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    raise typer.Exit(1 if errors else 0)


@app.command()
def init(directory: Path = typer.Argument(Path("."), metavar="DIR")) -> None:
    """Write a starter into DIR: a small topology with expectations, a pytest file using the
    `lab` fixture, and CI examples. Refuses to overwrite any file."""
    from ..up import starter

    for path in starter.write(directory):
        console.print(f"wrote {path}", markup=False, highlight=False)
    console.print(f"next: cd {directory} && pptp-lab test topology.yaml   (or: pytest)\n"
                  "captures and reports go to runs/: keep it out of version control\n"
                  "(pcaps hold MS-CHAPv2 handshakes)", markup=False, highlight=False)


@app.command()
def schema() -> None:
    """Print the topology JSON schema (topologies/topology.schema.json)."""
    from ..model import topology

    sys.stdout.write(topology.json_schema())


@vm_app.callback()
def vm_options(instance: int = typer.Option(1, "--instance", "-n", min=1, max=16,
                                            help="which VM: N is engine vm:N (labs side by side)")) -> None:
    """The built-in VM engine (Debian kernel with PPP, dockerd inside). Each kernel
    (--kernel) is a VM of its own, beside the others."""
    vm.use(instance)


def _use_kernel(kernel: Optional[str]) -> None:
    """Drive the VM of this kernel (the callback chose its instance)."""
    vm.use(vm.instance(), suites.kernel_of(suites.wanted_kernel(kernel)))


@vm_app.command("build")
def vm_build(kernel: Optional[str] = VmKernelOpt) -> None:
    """Build (or find cached) the guest disk, kernel and initrd."""
    _use_kernel(kernel)
    art = vm.build()
    console.print(f"VM artefacts: {art}")


@vm_app.command("up")
def vm_up(kernel: Optional[str] = VmKernelOpt) -> None:
    """Boot the VM (idempotent) and load the node image into its Docker."""
    _use_kernel(kernel)
    st = vm.up()
    images.ensure_node_image(vm.client_for(st), suites.userland(vm.kernel()))
    console.print(f"DOCKER_HOST={st.url}")


@vm_app.command("down")
def vm_down(wipe: bool = typer.Option(False, help="also delete the overlay disk (loaded images)"),
            kernel: Optional[str] = VmKernelOpt) -> None:
    """Power the VM off; nothing is left running. VMs of other kernels stay as they are."""
    _use_kernel(kernel)
    console.print(vm.down(wipe=wipe))


@vm_app.command("status")
def vm_status(as_json: bool = typer.Option(False, "--json"), kernel: Optional[str] = VmKernelOpt) -> None:
    """Truthful VM state: running, booting, crashed or stopped; and the other VMs' in short."""
    _use_kernel(kernel)
    info = vm.status()
    others = _other_vms()
    if others:
        info["other VMs"] = others
    _print(info, as_json)


def _other_vms() -> list[str]:
    """"NAME: STATE [at URL]" of every other VM that has a state file (any kernel, any instance)."""
    was, out = vm.current(), []
    try:
        for number, kernel in vm.known():
            if (number, kernel) == was:
                continue
            eng = vm.VmEngine(number, kernel=kernel)
            st = vm.status()
            out.append(f"{eng.name}: {st['state']}" + (f" at {st['docker_url']}" if "docker_url" in st else ""))
    finally:
        vm.use(*was)
    return out


@vm_app.command("exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True,
                                          "allow_interspersed_args": False})
def vm_exec(ctx: typer.Context, kernel: Optional[str] = VmKernelOpt) -> None:
    """Run a command in the guest (e.g. `pptp-lab vm exec lsmod`; `vm exec --kernel trixie
    lsmod`: options before the command, whose own words are left alone)."""
    _use_kernel(kernel)
    if not ctx.args:
        raise LabError("vm exec: give a command, e.g. `pptp-lab vm exec lsmod`")
    rc, out = vm.exec_in_guest(ctx.args)
    sys.stdout.write(out)
    raise typer.Exit(rc)


@image_app.command("build")
def image_build(suite: str = typer.Option(suites.DEFAULT, "--suite", metavar="SUITE",
                                          help=f"the userland: {' | '.join(suites.USERLANDS)}")) -> None:
    """Build (or find cached) the node base rootfs tarball."""
    console.print(f"node base: {images.base_tarball(suite)}")


@image_app.command("load")
def image_load(engine: Optional[str] = EngineOpt) -> None:
    """Load the node image into the selected engine."""
    eng = engine_mod.select(engine)
    console.print(f"{eng.ensure_image()} on {eng.name} ({eng.why})")


def main() -> None:
    try:
        app()
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)  # one line, never wrapped
        sys.exit(2)
    except (*vm.LOST_CONNECTION, docker.errors.DockerException) as exc:  # e.g. its guest hung under it
        print(f"error: {vm.one_line(exc)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]")
        sys.exit(130)

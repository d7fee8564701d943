"""The verbs that look into captures and running labs, or break them: `analyze`, `fault`,
`why`, the `capture`, `policy` and `nat` sub-apps."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from ..core.errors import LabError
from ..core.host import console
from .common import EngineOpt, LabKernelOpt, _lab_and_kernel, _lab_on, _running_engine, app


@app.command()
def analyze(files: list[Path] = typer.Argument(..., help="pcap or pcapng files (several: e.g. inside and outside a NAT)"),
            as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
            ladder: Optional[Path] = typer.Option(None, "--ladder", help="write ladder diagrams: out.html or out.svg"),
            annotate: Optional[Path] = typer.Option(None, "--annotate", metavar="OUT.pcapng",
                                                    help="write the capture again with the analyser's findings "
                                                    "as packet comments (Wireshark: frame.comment)"),
            wide: bool = typer.Option(False, "--wide", help="tables: one column per field (needs a wide terminal)"),
            allow_truncated: bool = typer.Option(False, "--allow-truncated",
                                                 help="analyse a capture cut off mid-record up to the cut")) -> None:
    """Sessions, call IDs, phases, losses and what went wrong, from PPTP captures."""
    from rich.console import Console

    from .. import pptp
    from ..reports import annotate as annotate_mod, report, runfiles

    for f in files:
        if not f.is_file():
            raise LabError(f"{f}: no such capture file")
    for opt, out, suffixes in (("--ladder", ladder, (".html", ".svg")), ("--annotate", annotate, (".pcapng",))):
        if out is None:
            continue
        if out.suffix not in suffixes:
            raise LabError(f"{opt} {out}: give a {' or '.join(suffixes)} file name")
        if not out.parent.is_dir():
            raise LabError(f"{opt} {out}: no folder {out.parent}")
    if annotate and len(files) != 1:
        raise LabError(f"--annotate {annotate}: annotates one capture; give one CAPTURE ({len(files)} given)")
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
    if annotate:
        try:
            annotate_mod.write(files[0], annotate, result)
        except OSError as exc:
            raise LabError(f"--annotate {annotate}: {exc.strerror or exc}") from exc
    if as_json:
        print(json.dumps(result.to_dict(), indent=1, default=str))
    else:
        report.print_report(result, Console(), wide)  # the analysis is the output: stdout, not the log console


capture_app = typer.Typer(no_args_is_help=True, help="Captures of a running lab.")
app.add_typer(capture_app, name="capture")


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
    from ..model import members, render
    from ..testing import testrun

    eng, lab = _lab_on(lab, engine, kernel)
    topo = apply_mod.current(eng, lab)
    node = client.partition(members.SEP)[0]
    if node in topo.clients and topo.nodes[node].count:
        raise LabError(f"{client}: `why` does not yet trace the members of a node with a count ({node}); "
                       f"`pptp-lab status {lab} --wide` shows each member's tunnel, `pptp-lab analyze` the capture")
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

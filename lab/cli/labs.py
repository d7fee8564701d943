"""The verbs of a lab's life and its topology: `up`, `down`, `status`, `apply`, `exec`,
`logs`, `graph`, `validate`, `init`, `schema`."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from .. import engines as engine_mod
from ..core import suites
from ..core.errors import LabError
from ..core.host import console
from ..up.nodecommand import NodeCommand
from ..core.paths import topology_file
from .common import (KERNELS, EngineOpt, KernelOpt, LabKernelOpt, WideOpt, _compact, _lab_and_kernel, _lab_on,
                     app, warnings)


MEMBER_ROWS = 10  # a node with more members than this shows only those whose tunnel is not up
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
    from ..model import members
    from ..model.tunnels import ago

    def tunnel(r) -> str:
        colour = TUNNEL_COLOURS.get(r.tunnel)
        return f"[{colour}]{r.tunnel}[/]" if colour else escape(r.tunnel)

    if wide:
        table = Table(title=title)
        for col in ("node", "kind", "state", "addresses", "tunnel", "PPP address", "peer", "call IDs (client/server)",
                    "age", "last echo", "GRE ↑out ↓in", "lost ↑ ↓", "last GRE in", "unanswered for",
                    "sizes", "versions"):
            table.add_column(col, overflow="fold")
        for r in rows:
            counted = r.gre_out is not None
            plain = [r.name, r.kind, r.state, ", ".join(f"{k} {v}" for k, v in r.addresses.items()),
                     r.ppp_address, r.peer_address, r.call_ids, ago(r.age_s),
                     " ".join(x for x in (ago(r.last_echo_s), r.last_echo) if x),
                     f"↑{r.gre_out} ↓{r.gre_in}" if counted else "",
                     f"↑{r.lost_out} ↓{r.lost_in}" if counted else "", ago(r.last_gre_in_s), ago(r.unanswered_s),
                     _sizes(r),
                     " ".join(f"{k} {v}" for k, v in r.versions.items())]
            cells = ["" if x is None else escape(str(x)) for x in plain]
            table.add_row(*cells[:4], tunnel(r), *cells[4:])
        return table
    # A node with many members (a count): its row sums them up; only the members whose
    # tunnel is not up get rows of their own here (--wide shows every one).
    big = {r.name for r in rows if r.members > MEMBER_ROWS}
    shown = [r for r in rows if not (r.tunnel == "up" and r.name.partition(members.SEP)[0] in big
                                     and members.SEP in r.name)]
    hidden, rows = len(rows) - len(shown), shown
    table = _compact(title)
    if hidden:
        table.caption = f"{hidden} member(s) with their tunnel up not shown (--wide shows every one)"
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


def _sizes(r) -> str:
    """A tunnel's packet sizes (SPEC S29): `MTU 1396, MRU 1400/1400, outer ↑1437 ↓1396`: its
    interface's MTU, the MRU client and server asked for, the largest outer GRE each way."""
    out, back = (getattr(r, "outer", "") or "/").split("/", 1)
    parts = [f"MTU {r.tunnel_mtu}" if getattr(r, "tunnel_mtu", None) else "",
             f"MRU {r.mru}" if getattr(r, "mru", "") else "", f"outer ↑{out} ↓{back}" if out else ""]
    return ", ".join(x for x in parts if x)


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
    from ..up import configure, lifecycle
    from ..model import topology

    suites.wanted_kernel(kernel)  # a bad --kernel is said before the file is read
    path = topology_file(topology_arg)
    topo = topology.load(path, name)  # validate before touching any engine
    warnings(path, topo)
    configure.require()  # before a VM boots for a lab Ansible could not configure
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


@app.command("exec", cls=NodeCommand, context_settings={"allow_extra_args": True})
def exec_(ctx: typer.Context, lab: str = typer.Argument(...), node: str = typer.Argument(...),
          engine: Optional[str] = EngineOpt, kernel: Optional[str] = LabKernelOpt) -> None:
    """Run a command in a lab node, e.g. `pptp-lab exec default client ip addr`. Options go
    before the command (`exec --kernel trixie default client ip addr`): its own words, from
    the first one on, are all passed to it."""
    if not ctx.args:
        raise LabError("exec: give a command after the node name")
    from ..model import members

    eng, lab = _lab_on(lab, engine, kernel)
    res = eng.exec(eng.node(lab, members.split(node)[0]), ctx.args, check=False)  # a member runs in its node
    sys.stdout.write(res.out)
    raise typer.Exit(res.rc)


@app.command()
def logs(lab: str, node: str, engine: Optional[str] = EngineOpt, kernel: Optional[str] = LabKernelOpt) -> None:
    """pppd's log of a node (and pptpd's calls on a server); NODE#I: one member's of a node
    with a count."""
    from ..model import members
    from ..up import queries

    eng, lab = _lab_on(lab, engine, kernel)
    name, index = members.split(node)
    sys.stdout.write(queries.ppp_log(eng, eng.node(lab, name), index))


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
             engine: Optional[str] = EngineOpt,
             strict: bool = typer.Option(False, "--strict", help="warnings (valid, but cannot work) "
                                         "are errors")) -> None:
    """Run every check `up` makes before creating anything, and create nothing: each file
    and, when an engine is running, the names and subnets it would need there. Warns of
    what is valid but cannot work (a PPP pool on a lab network, a client dialling an
    address no node has)."""
    from ..up import lifecycle
    from ..model import topology

    topos, errors = [], []
    for path in topologies:
        try:
            topo = topology.load(found := topology_file(path))
        except LabError as exc:
            errors.append(str(exc))
            continue
        lines = warnings(found, topo, show=not strict)
        if strict and lines:
            errors += lines
            continue
        topos.append(topo)
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

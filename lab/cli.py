"""The `pptp-lab` command: thin front end over the lab's layers."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from . import engine as engine_mod
from . import images, vm
from .errors import LabError
from .host import console

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Containerised PPTP VPN lab orchestrator and integration testbed.")
vm_app = typer.Typer(no_args_is_help=True, help="The built-in VM engine (Debian kernel with PPP, dockerd inside).")
image_app = typer.Typer(no_args_is_help=True, help="The lab's node image.")
app.add_typer(vm_app, name="vm")
app.add_typer(image_app, name="image")

EngineOpt = typer.Option(None, "--engine", help="local | vm | auto (default: $PPTP_LAB_ENGINE or auto)")


def _print(data, as_json: bool) -> None:
    if as_json:
        print(json.dumps(data, indent=1, default=str))
        return
    table = Table(show_header=False)
    for k, v in data.items():
        table.add_row(str(k), str(v))
    console.print(table)


@app.command()
def doctor(engine: Optional[str] = EngineOpt, as_json: bool = typer.Option(False, "--json")) -> None:
    """Show what was probed, which engine the lab would use, and why."""
    choice = engine or engine_mod.wanted()
    local = engine_mod.probe_local()
    report = {
        "requested": choice,
        "local engine": "reachable" if local.reachable else "not reachable",
        "local PPP": local.ppp, "local pptp helper": local.helper,
        "local detail": "; ".join(local.detail),
        "vm": vm.status()["state"],
    }
    if local.fits and choice != "vm":
        report["chosen"], report["why"] = "local", "its kernel has PPP and the pptp helper"
    elif choice == "local":
        report["chosen"] = "none"
        report["what to do"] = ("on the engine's host: modprobe ppp_generic ppp_async ppp_mppe "
                                "nf_conntrack_pptp nf_nat_pptp; or use --engine vm")
    else:
        report["chosen"] = "vm"
        report["why"] = "requested" if choice == "vm" else "the local engine cannot run PPP tunnels"
    _print(report, as_json)


@app.command()
def analyze(files: list[Path] = typer.Argument(..., help="pcap or pcapng files (several: e.g. inside and outside a NAT)"),
            as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
            ladder: Optional[Path] = typer.Option(None, "--ladder", help="write ladder diagrams: out.html or out.svg")) -> None:
    """Sessions, call IDs, phases, losses and what went wrong, from PPTP captures."""
    from . import pptp, report

    for f in files:
        if not f.is_file():
            raise LabError(f"{f}: no such capture file")
    try:
        result = pptp.analyze(files)
    except ValueError as exc:
        raise LabError(str(exc)) from exc
    if ladder:
        if ladder.suffix not in (".html", ".svg"):
            raise LabError(f"--ladder {ladder}: give a .html or .svg file name")
        report.write_ladder(result, ladder)
    if as_json:
        print(json.dumps(result.to_dict(), indent=1, default=str))
    else:
        report.print_report(result, console)


capture_app = typer.Typer(no_args_is_help=True, help="Captures of a running lab.")
app.add_typer(capture_app, name="capture")


def _running_engine(engine: Optional[str]):
    eng = engine_mod.running(engine)
    if eng is None:
        raise LabError("no engine is running (the VM is down and no local engine fits): nothing to show")
    return eng


def _status_table(rows, title: str) -> None:
    table = Table(title=title)
    for col in ("node", "kind", "state", "addresses", "tunnel", "PPP address", "peer", "call IDs (client/server)"):
        table.add_column(col)
    for r in rows:
        colour = "green" if r.tunnel == "up" else "red" if r.tunnel == "down" else ""
        table.add_row(r.name, r.kind, r.state, ", ".join(f"{k} {v}" for k, v in r.addresses.items()),
                      f"[{colour}]{r.tunnel}[/]" if colour else r.tunnel, r.ppp_address, r.peer_address, r.call_ids)
    console.print(table)


@app.command()
def up(topology_file: Path = typer.Argument(Path("topologies/default.yaml"), metavar="TOPOLOGY"),
       name: Optional[str] = typer.Option(None, "--name", help="lab name (default: the file's name:)"),
       engine: Optional[str] = EngineOpt,
       capture: bool = typer.Option(True, "--capture/--no-capture", help="tcpdump on every segment"),
       as_json: bool = typer.Option(False, "--json")) -> None:
    """Bring a topology up: networks, nodes, configuration, capture, live tunnels."""
    from . import lifecycle, topology

    topo = topology.load(topology_file, name)  # validate before touching any engine
    eng = engine_mod.select(engine)
    rows = lifecycle.up(eng, topo, with_capture=capture)
    if as_json:
        print(lifecycle.to_json(rows))
    else:
        _status_table(rows, f"lab {topo.name} on the {eng.name} engine")


@app.command()
def down(lab: str = typer.Argument("default", help="lab name or topology file"),
         engine: Optional[str] = EngineOpt) -> None:
    """Remove exactly what the lab created (also after a crash half-way); collect captures."""
    from . import lifecycle

    lab = _lab_name(lab)
    eng = engine_mod.running(engine)
    if eng is None:
        console.print(f"no engine running: lab {lab} has nothing left to remove")
        return
    gone, run = lifecycle.down(eng.client, lab)
    console.print(f"lab {lab}: removed {gone} objects" + (f"; captures in {run}" if run else ""))


def _lab_name(arg: str) -> str:
    if arg.endswith((".yaml", ".yml")):
        from . import topology
        return topology.load(arg).name
    return arg


@app.command()
def status(lab: str = typer.Argument("default"), engine: Optional[str] = EngineOpt,
           as_json: bool = typer.Option(False, "--json")) -> None:
    """Nodes, addresses, tunnel state, PPP addresses and call IDs of a running lab."""
    from . import lifecycle

    lab = _lab_name(lab)
    rows = lifecycle.status(_running_engine(engine).client, lab)
    if as_json:
        print(lifecycle.to_json(rows))
    else:
        _status_table(rows, f"lab {lab}")


@app.command("exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def exec_(ctx: typer.Context, lab: str = typer.Argument(...), node: str = typer.Argument(...),
          engine: Optional[str] = EngineOpt) -> None:
    """Run a command in a lab node, e.g. `pptp-lab exec default client ip addr`."""
    from . import deploy, lifecycle

    if not ctx.args:
        raise LabError("exec: give a command after the node name")
    res = deploy.run(lifecycle.node(_running_engine(engine).client, _lab_name(lab), node), ctx.args, check=False)
    sys.stdout.write(res.out)
    raise typer.Exit(res.rc)


@app.command()
def logs(lab: str, node: str, engine: Optional[str] = EngineOpt) -> None:
    """pppd's log of a node (and pptpd's calls on a server)."""
    from . import deploy, lifecycle

    c = lifecycle.node(_running_engine(engine).client, _lab_name(lab), node)
    sys.stdout.write(deploy.run(c, "cat /var/log/ppp.log 2>/dev/null; ps -o pid,args -C pptpd,pppd,pptp 2>/dev/null",
                                check=False).out)


@capture_app.command("stop")
def capture_stop(lab: str = typer.Argument("default"), engine: Optional[str] = EngineOpt) -> None:
    """Stop capturing and collect the pcaps into runs/<lab>/<run-id>/."""
    from . import capture

    run = capture.stop(_running_engine(engine).client, _lab_name(lab))
    console.print(f"captures in {run}" if run else f"lab {lab} has no capture running")


policy_app = typer.Typer(no_args_is_help=True, help="Firewall filter policies of a running lab.")
nat_app = typer.Typer(no_args_is_help=True, help="NAT nodes of a running lab.")
app.add_typer(policy_app, name="policy")
app.add_typer(nat_app, name="nat")


@policy_app.command("show")
def policy_show(lab: str, node: str, engine: Optional[str] = EngineOpt,
                as_json: bool = typer.Option(False, "--json")) -> None:
    """The firewall node's rules with their packet counters."""
    from . import deploy, lifecycle, policy

    c = lifecycle.node(_running_engine(engine).client, _lab_name(lab), node)
    res = deploy.run(c, "nft -j list table inet pptp_lab_filter", check=False)
    if not res.ok:
        raise LabError(f"{node} has no lab filter table (policy open, or not a firewall node)")
    rows = policy.parse_counters(res.out)
    if as_json:
        print(json.dumps(rows, indent=1))
        return
    table = Table(title=f"{node}: table inet pptp_lab_filter")
    for col in ("chain", "rule", "packets", "bytes"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["chain"], r["comment"], str(r["packets"]), str(r["bytes"]))
    console.print(table)


@nat_app.command("show")
def nat_show(lab: str, node: str, engine: Optional[str] = EngineOpt,
             as_json: bool = typer.Option(False, "--json")) -> None:
    """Conntrack entries for TCP 1723 and GRE on a NAT node, with the call IDs seen."""
    from . import deploy, lifecycle, policy

    c = lifecycle.node(_running_engine(engine).client, _lab_name(lab), node)
    out = deploy.run(c, "conntrack -L -p tcp --dport 1723 2>/dev/null; conntrack -L -p gre 2>/dev/null",
                     check=False).out
    rows = policy.parse_conntrack(out)
    if as_json:
        print(json.dumps(rows, indent=1))
        return
    table = Table(title=f"{node}: conntrack (TCP 1723 and GRE)")
    for col in ("proto", "state", "original", "reply", "call IDs (orig / reply)", "helper"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["proto"], r["state"], r["orig"], r["reply"],
                      f"{r.get('orig_call_ids', '')} / {r.get('reply_call_ids', '')}".strip(" /"), r["helper"])
    console.print(table)


@app.command("test")
def test_(topologies: list[Path] = typer.Argument(..., metavar="TOPOLOGY..."),
          engine: Optional[str] = EngineOpt) -> None:
    """Bring each topology up, check its `expect:` block on real tunnels and captures, and
    write JUnit XML and an HTML report (runs/<lab>/<run-id>/)."""
    from . import testrun, topology

    topos = [topology.load(p) for p in topologies]  # all validated before anything runs
    eng = engine_mod.select(engine)
    failed = 0
    for topo in topos:
        res = testrun.run(eng, topo)
        junit, page = testrun.write(res)
        table = Table(title=f"pptp-lab test {topo.name}: {'PASS' if res.passed else 'FAIL'}")
        for col in ("check", "result", "detail"):
            table.add_column(col)
        for c in res.checks:
            table.add_row(c.name, "[green]pass[/]" if c.passed else "[red]FAIL[/]", c.detail)
        console.print(table)
        console.print(f"JUnit: {junit}\nreport: {page}")
        failed += not res.passed
    raise typer.Exit(1 if failed else 0)


@app.command()
def schema() -> None:
    """Print the topology JSON schema (topologies/topology.schema.json)."""
    from . import topology

    sys.stdout.write(topology.json_schema())


@vm_app.command("build")
def vm_build() -> None:
    """Build (or find cached) the guest disk, kernel and initrd."""
    art = vm.build()
    console.print(f"VM artefacts: {art}")


@vm_app.command("up")
def vm_up() -> None:
    """Boot the VM (idempotent) and load the node image into its Docker."""
    st = vm.up()
    images.ensure_node_image(vm.client_for(st))
    console.print(f"DOCKER_HOST={st.url}")


@vm_app.command("down")
def vm_down(wipe: bool = typer.Option(False, help="also delete the overlay disk (loaded images)")) -> None:
    """Power the VM off; nothing is left running."""
    console.print(vm.down(wipe=wipe))


@vm_app.command("status")
def vm_status(as_json: bool = typer.Option(False, "--json")) -> None:
    """Truthful VM state: running, booting, crashed or stopped."""
    _print(vm.status(), as_json)


@vm_app.command("exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def vm_exec(ctx: typer.Context) -> None:
    """Run a command in the guest (e.g. `pptp-lab vm exec lsmod`)."""
    if not ctx.args:
        raise LabError("vm exec: give a command, e.g. `pptp-lab vm exec lsmod`")
    rc, out = vm.exec_in_guest(ctx.args)
    sys.stdout.write(out)
    raise typer.Exit(rc)


@image_app.command("build")
def image_build() -> None:
    """Build (or find cached) the node base rootfs tarball."""
    console.print(f"node base: {images.base_tarball()}")


@image_app.command("load")
def image_load(engine: Optional[str] = EngineOpt) -> None:
    """Load the node image into the selected engine."""
    eng = engine_mod.select(engine)
    console.print(f"{images.ensure_node_image(eng.client)} on {eng.name} ({eng.why})")


def main() -> None:
    try:
        app()
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)  # one line, never wrapped
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]")
        sys.exit(130)

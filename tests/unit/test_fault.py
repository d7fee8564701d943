"""lab.fault against a fake engine that records every argv a verb would run in a node and
plays the node's answers (a small file system for cat/rm/put_files, canned outputs), so
each verb's exact words, its checks, its record and its undo are pinned down here. The
fixed shell scripts the verbs pass values to run under sh with stand-ins for ip, sleep,
nft and iptables-restore."""
import json
import os
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from lab.up import capture, fault, faultlog
from lab import cli
from lab.core import names
from lab.reports import runfiles
from lab.model import topology
from lab.up.apply import APPLIED
from lab.engines import ExecResult
from lab.core.errors import LabError
from lab.core.paths import shipped_topology, runs_dir
from lab.pytest_plugin import Lab

ROUTES = [  # what `ip -j -4 route show dev internet` prints on the default lab's client
    {"dst": "default", "gateway": "198.51.100.1", "flags": []},
    {"dst": "198.51.100.0/24", "protocol": "kernel", "scope": "link", "prefsrc": "198.51.100.10", "flags": []},
    {"dst": "192.0.2.10", "gateway": "198.51.100.1", "flags": []},          # pptp-linux's host route
    {"dst": "10.9.0.0/16", "metric": 7, "flags": []},                       # no gateway
    {"dst": "10.8.0.0/16; reboot", "gateway": "198.51.100.1", "flags": []},  # not an address: left out
    {"dst": "10.7.0.0/16", "nexthops": [{"gateway": "198.51.100.1"}]},      # multipath: left out
]


class Box:
    def __init__(self, name):
        self.name, self.status = name, "running"


class FakeEngine:
    """Duck-typed lab.engines.Engine for one running lab."""
    name = "fake"

    def __init__(self, topo, answer=None, clock=0.25):
        self.topo, self.answer, self.clock = topo, answer or (lambda node, argv: None), clock
        self.labels = {names.MODEL: json.dumps(topology.public_data(topo, label=True))}
        self.calls: list[tuple[str, list[str]]] = []  # (node, argv), restarts as ["<restart>"]
        self.files: dict[tuple[str, str], str] = {}

    def networks(self, lab=None):
        return [SimpleNamespace(attrs={"Labels": self.labels})] if lab == self.topo.name else []

    def node(self, lab, name):
        if lab != self.topo.name or name not in self.topo.nodes:
            raise LabError(f"lab {lab} has no node {name}")
        return Box(name)

    def exec(self, box, cmd, check=True):
        argv = cmd if isinstance(cmd, list) else ["sh", "-c", cmd]
        if argv == ["date", "+%s.%N"]:  # the clock read: not one of the fault's commands
            return ExecResult(0, f"{time.time() + self.clock:.9f}\n")
        self.calls.append((box.name, argv))
        res = self.answer(box.name, argv) or self._files(box.name, argv)
        if check and not res.ok:
            raise LabError(f"{box.name}: {argv} failed")
        return res

    def _files(self, node, argv):
        path = argv[1] if argv[0] == "cat" else argv[2].split()[1] if argv[:2] == ["sh", "-c"] and \
            argv[2].startswith("cat ") else None
        if path is not None:
            text = self.files.get((node, path))
            return ExecResult(0, text) if text is not None else ExecResult(1, "")
        if argv[:2] == ["rm", "-f"]:
            self.files.pop((node, argv[2]), None)
        return ExecResult(0, "")

    def put_files(self, box, files):
        for path, (text, mode) in files.items():
            assert mode == 0o600
            self.files[(box.name, path)] = text
            self.calls.append((box.name, ["<put>", path]))

    def restart_node(self, box):
        self.calls.append((box.name, ["<restart>"]))


def default():
    return topology.load(shipped_topology("default"))


def answers(**by_argv0):
    """An answer function: the first argv word -> (rc, output)."""
    def answer(node, argv):
        if argv[0] in by_argv0:
            return ExecResult(*by_argv0[argv[0]])
        if argv[:3] == ["ip", "-j", "-4"]:
            return ExecResult(0, json.dumps(ROUTES))
        return None
    return answer


@pytest.fixture
def eng():
    return FakeEngine(default(), answers(pkill=(0, "pptpd killed (pid 41)\npptpd killed (pid 57)\n")))


def cmds(eng, node=None):
    return [argv for n, argv in eng.calls if node is None or n == node]


def log():
    return faultlog.read("default")


# ------------------------------------------------------------------ kill
def test_kill_sends_sigkill_by_exact_name_and_records_it(eng):
    before = time.time()
    f = fault.inject(eng, "default", "kill", "vpn", "pptpd")
    assert cmds(eng) == [["pkill", "-KILL", "-e", "-x", "pptpd"]]
    assert (f.verb, f.node, f.args, f.undo) == ("kill", "vpn", ["pptpd"], None)
    assert f.detail == {"pids": [41, 57]} and f.done == "SIGKILL to pptpd (pid 41, 57)"
    assert before <= f.started <= f.ended <= time.time()
    assert f.clock_offset == pytest.approx(0.25, abs=0.05)
    assert log() == [f.to_dict()]


@pytest.mark.parametrize("program", ["sshd", "pptpd; reboot", "PPTPD", "pptp*", ""])
def test_kill_takes_only_the_three_programs(eng, program):
    with pytest.raises(LabError, match="is not one of pptpd, pppd, pptp") as err:
        fault.kill(eng, "default", "vpn", program)
    assert "\n" not in str(err.value) and cmds(eng) == [] and log() == []


def test_killing_what_does_not_run_is_an_error_and_no_fault(eng):
    eng.answer = answers(pkill=(1, ""))
    with pytest.raises(LabError, match="^kill: no pppd process runs in client$"):
        fault.kill(eng, "default", "client", "pppd")
    assert log() == []


# ------------------------------------------------------------------ names
@pytest.mark.parametrize("lab, node, message", [
    ("default", "nobody", "lab default has no node nobody (nodes: fw, vpn, intranet-host, client, nat, home-client)"),
    ("default", "vpn\nreboot", "lab default has no node 'vpn\\nreboot'"),
    ("other", "vpn", "no lab other on the fake engine"),
    ("../etc", "vpn", "fault: ../etc is no lab name"),
])
def test_an_unknown_lab_or_node_is_one_line_naming_it(eng, lab, node, message):
    with pytest.raises(LabError) as err:
        fault.inject(eng, lab, "restart", node)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
    assert cmds(eng) == []


def test_a_network_the_node_is_not_on_is_refused(eng):
    with pytest.raises(LabError, match=r"^client has no interface on perimeter \(its networks: internet\)$"):
        fault.inject(eng, "default", "link", "client", "perimeter", "down")
    assert cmds(eng) == []


@pytest.mark.parametrize("args, message", [
    (("dance", "vpn"), "fault: no verb dance (verbs: kill, restart, link, netem, conntrack-flush, reload)"),
    (("kill", "vpn"), "fault kill: give kill NODE pptpd|pppd|pptp"),
    (("restart",), "fault restart: give restart NODE"),
    (("link", "client", "internet"), "fault link: give link NODE NET down|up|flap SECONDS"),
    (("link", "client", "internet", "up", "3"), "link up: takes no SECONDS (only flap does)"),
    (("link", "client", "internet", "flap"), "link flap: give how long the link stays down"),
    (("link", "client", "internet", "sideways"), "link: sideways is not down, up or flap"),
    (("netem", "client", "internet"), "fault netem: give netem NODE NET"),
    (("conntrack-flush", "nat", "now"), "fault conntrack-flush: give conntrack-flush NODE"),
    (("link", "client", "internet", "flap", ["3"]), "fault: \"['3']\" is neither a word nor a number"),
])
def test_wrong_words_for_a_verb_say_how_to_call_it(eng, args, message):
    with pytest.raises(LabError) as err:
        fault.inject(eng, "default", *args)
    assert str(err.value).startswith(message)
    assert cmds(eng) == []


# ------------------------------------------------------------------ link
def test_link_down_keeps_the_routes_it_removes_and_up_puts_them_back(eng):
    down = fault.inject(eng, "default", "link", "client", "internet", "down")
    saved = "/etc/pptp-lab/fault-link-internet.json"
    assert cmds(eng) == [["cat", saved], ["ip", "-j", "-4", "route", "show", "dev", "internet"],
                         ["<put>", saved], ["ip", "link", "set", "dev", "internet", "down"]]
    assert down.undo == ["link", "client", "internet", "up"] and down.detail == {"interface": "internet"}
    assert json.loads(eng.files[("client", saved)]) == [
        {"dst": "default", "gateway": "198.51.100.1", "metric": 0},
        {"dst": "192.0.2.10/32", "gateway": "198.51.100.1", "metric": 0},
        {"dst": "10.9.0.0/16", "metric": 7}]
    eng.calls.clear()
    up = fault.undo(eng, "default", down)
    assert cmds(eng) == [["cat", saved],
                         ["sh", "-c", fault.UP_SCRIPT, "sh", "internet", "default", "198.51.100.1", "0",
                          "192.0.2.10/32", "198.51.100.1", "0", "10.9.0.0/16", "-", "7"],
                         ["rm", "-f", saved]]
    assert (up.verb, up.args, up.undo) == ("link", ["internet", "up"], None)
    assert ("client", saved) not in eng.files
    assert [r["args"] for r in log()] == [["internet", "down"], ["internet", "up"]]


def test_a_link_a_fault_took_down_is_not_taken_down_twice(eng):
    fault.link(eng, "default", "client", "internet", "down")
    for again in (["down"], ["flap", "1"]):
        with pytest.raises(LabError, match="^link: client's internet is down .*`pptp-lab fault default link "
                                           "client internet up` first$"):
            fault.link(eng, "default", "client", "internet", *again)
    assert len(log()) == 1
    fault.link(eng, "default", "client", "internet", "up")
    fault.link(eng, "default", "client", "internet", "flap", "1")
    assert len(log()) == 3


def test_a_failed_link_down_leaves_no_saved_routes(eng):
    eng.answer = lambda node, argv: ExecResult(2, "RTNETLINK answers: Operation not permitted") \
        if argv[:3] == ["ip", "link", "set"] else answers()(node, argv)
    with pytest.raises(LabError, match=r"^client: `ip link set dev internet down` failed \(exit 2\): "
                                       "RTNETLINK answers: Operation not permitted$"):
        fault.link(eng, "default", "client", "internet", "down")
    assert not eng.files and log() == []


def test_flap_is_one_exec_and_records_the_node_clock_times(eng):
    out = "down 1700000000.100000000\nup 1700000002.600000000\n"
    eng.answer = lambda node, argv: ExecResult(0, out) if argv[:2] == ["sh", "-c"] else answers()(node, argv)
    f = fault.inject(eng, "default", "link", "client", "internet", "flap", "2500ms")
    assert cmds(eng) == [["cat", "/etc/pptp-lab/fault-link-internet.json"],
                         ["ip", "-j", "-4", "route", "show", "dev", "internet"],
                         ["sh", "-c", fault.FLAP_SCRIPT, "sh", "internet", "2.5", "default", "198.51.100.1", "0",
                          "192.0.2.10/32", "198.51.100.1", "0", "10.9.0.0/16", "-", "7"]]
    assert f.args == ["internet", "flap", "2.5"] and f.undo is None
    assert f.detail == {"interface": "internet", "down_at": 1700000000.1, "up_at": 1700000002.6}


@pytest.mark.parametrize("given, secs", [("3", "3"), (3, "3"), (0.5, "0.5"), ("2.25s", "2.25"), ("500ms", "0.5"),
                                         ("3600", "3600")])
def test_flap_seconds_are_read_as_numbers(eng, given, secs):
    fault.inject(eng, "default", "link", "client", "internet", "flap", given)
    assert cmds(eng)[-1][5] == secs


@pytest.mark.parametrize("given", ["0", "0ms", "-1", "3601", "1e3", "5m", "3 ", "3;reboot", "$(reboot)", "0.0001"])
def test_flap_seconds_out_of_range_or_not_numbers_are_refused(eng, given):
    with pytest.raises(LabError, match="^link flap .*: give how long the link stays down"):
        fault.inject(eng, "default", "link", "client", "internet", "flap", given)
    assert cmds(eng) == []


def test_a_network_whose_name_cannot_name_an_interface_is_found_by_address():
    topo = topology.Topology.model_validate({
        "name": "longnet", "networks": {"a-very-long-network": {"subnet": "10.1.0.0/24"}},
        "nodes": {"a": {"kind": "host", "interfaces": {"a-very-long-network": "10.1.0.2"}}}})
    out = ("1: lo    inet 127.0.0.1/8 scope host lo\n"
           "7: eth0    inet 10.1.0.2/24 brd 10.1.0.255 scope global eth0\n")
    eng = FakeEngine(topo, lambda node, argv: ExecResult(0, out) if argv[:2] == ["ip", "-o"] else None)
    f = fault.netem(eng, "longnet", "a", "a-very-long-network", "loss=1%")
    assert cmds(eng) == [["ip", "-o", "-4", "addr", "show"],
                         ["tc", "qdisc", "replace", "dev", "eth0", "root", "netem", "loss", "1%"]]
    assert f.detail["interface"] == "eth0"
    eng.answer = lambda node, argv: ExecResult(0, "7: eth0    inet 10.1.0.99/24\n")
    with pytest.raises(LabError, match="^a: no interface holds 10.1.0.2, its address on a-very-long-network$"):
        fault.netem(eng, "longnet", "a", "a-very-long-network", "clear")


# ------------------------------------------------------------------ netem
@pytest.mark.parametrize("params, words", [
    (["loss=10%"], ["loss", "10%"]),
    (["loss=0.50%", "duplicate=100%"], ["loss", "0.5%", "duplicate", "100%"]),
    (["reorder=25%", "delay=50ms", "loss=1.5%"], ["delay", "50ms", "loss", "1.5%", "reorder", "25%"]),
    (["delay=1.5s"], ["delay", "1500ms"]),
    (["delay=250us"], ["delay", "250us"]),
    (["delay=0.25ms"], ["delay", "250us"]),
    (["delay=60s", "loss=0%"], ["delay", "60000ms", "loss", "0%"]),
])
def test_netem_words_are_numbers_written_back_in_tc_order(eng, params, words):
    f = fault.inject(eng, "default", "netem", "nat", "internet", *params)
    assert cmds(eng) == [["tc", "qdisc", "replace", "dev", "internet", "root", "netem", *words]]
    assert f.undo == ["netem", "nat", "internet", "clear"] and f.args == ["internet", *params]


@pytest.mark.parametrize("params, message", [
    (["loss=101%"], "netem loss=101%: give a percentage from 0% to 100%"),
    (["loss=10"], "netem loss=10: give a percentage"),
    (["loss=10%;reboot"], "netem loss='10%;reboot': give a percentage"),
    (["loss=-1%"], "netem loss=-1%: give a percentage"),
    (["delay=50"], "netem delay=50: give a time up to 60s"),
    (["delay=61s"], "netem delay=61s: give a time up to 60s"),
    (["delay=1h"], "netem delay=1h: give a time"),
    (["reorder=25%"], "netem reorder: needs a delay"),
    (["loss=1%", "loss=2%"], "netem: loss given twice"),
    (["rate=1mbit"], "netem: rate=1mbit is not one of delay=..., loss=..., duplicate=..., reorder=... or clear"),
    (["loss"], "netem: loss is not one of"),
    (["clear", "loss=1%"], "netem: clear is not one of"),
])
def test_netem_values_that_are_not_numbers_in_range_are_refused(eng, params, message):
    with pytest.raises(LabError) as err:
        fault.inject(eng, "default", "netem", "nat", "internet", *params)
    assert str(err.value).startswith(message) and cmds(eng) == []


def test_netem_clear_removes_the_qdisc_and_minds_none_being_there(eng):
    f = fault.inject(eng, "default", "netem", "nat", "home", "clear")
    assert cmds(eng) == [["tc", "qdisc", "del", "dev", "home", "root"]] and f.done == "home: netem removed"
    eng.answer = answers(tc=(2, "Error: Cannot delete qdisc with handle of zero.\n"))
    assert fault.inject(eng, "default", "netem", "nat", "home", "clear").done == "home: no qdisc to remove"
    eng.answer = answers(tc=(1, "Error: Operation not permitted.\n"))
    with pytest.raises(LabError, match="removing the qdisc of home failed"):
        fault.inject(eng, "default", "netem", "nat", "home", "clear")


# ------------------------------------------------------------------ conntrack, restart, reload
def test_conntrack_flush_runs_conntrack_and_counts_what_it_deleted(eng):
    said = "conntrack v1.4.7 (conntrack-tools): 12 flow entries have been deleted.\n"
    eng.answer = answers(conntrack=(0, said))
    f = fault.inject(eng, "default", "conntrack-flush", "nat")
    assert cmds(eng) == [["conntrack", "-F"]] and f.detail == {"entries": 12} and f.undo is None
    assert f.done == said.strip()


def test_restart_configures_the_node_again_and_starts_what_its_kind_runs(eng):
    f = fault.inject(eng, "default", "restart", "vpn")
    assert cmds(eng) == [["<restart>"], ["sh", "/etc/pptp-lab/configure.sh"],
                         ["sh", "-c", "pgrep -x pptpd >/dev/null || pptpd"]]
    assert "started what its kind runs (pptp-server)" in f.done
    eng.calls.clear()
    f = fault.inject(eng, "default", "restart", "client")  # a client is not dialled again
    assert cmds(eng) == [["<restart>"], ["sh", "/etc/pptp-lab/configure.sh"]]
    assert f.done == "container restarted, configured again"


def test_restart_that_cannot_configure_is_an_error_naming_the_command(eng):
    eng.answer = lambda node, argv: ExecResult(1, "no interface holds\n192.0.2.10") if argv[0] == "sh" else None
    with pytest.raises(LabError) as err:
        fault.restart(eng, "default", "vpn")
    assert str(err.value) == "vpn: `sh /etc/pptp-lab/configure.sh` failed (exit 1): no interface holds 192.0.2.10"
    # The container did restart: the fault is on the time line, marked as failed half-way.
    [rec] = log()
    assert (rec["verb"], rec["node"], rec["detail"]) == ("restart", "vpn", {"failed": True})
    assert rec["done"].startswith("FAILED half-way (the container restarted): vpn: `sh /etc/pptp-lab/configure.sh`")


def test_a_reload_that_fails_after_the_flush_is_recorded_as_failed(eng):
    eng.answer = lambda node, argv: ExecResult(1, "nft: syntax error") if argv[:2] == ["sh", "-c"] else None
    with pytest.raises(LabError, match="nft: syntax error"):
        fault.inject(eng, "default", "reload", "nat")
    [rec] = log()
    assert rec["verb"] == "reload" and rec["detail"] == {"failed": True} and "flushed" in rec["done"]


def test_reload_flushes_and_loads_the_nodes_rule_files_again(eng):
    f = fault.inject(eng, "default", "reload", "nat")
    assert cmds(eng, "nat")[-1] == ["sh", "-c", fault.RELOAD_SCRIPT, "sh", "/etc/pptp-lab/nat.nft"]
    assert f.detail == {"files": ["/etc/pptp-lab/nat.nft"]} and f.undo is None


def test_reload_reads_what_apply_changed_and_refuses_a_node_without_rules(eng):
    with pytest.raises(LabError, match=r"^reload: fw \(firewall\) has no rules of the lab's"):
        fault.reload(eng, "default", "fw")  # policy open: no table of the lab's
    applied = topology.public_data(default())["nodes"]["fw"] | {"policy": "pptp-documented"}
    eng.files[("fw", APPLIED)] = json.dumps(applied)
    fault.reload(eng, "default", "fw")
    assert cmds(eng, "fw")[-1] == ["sh", "-c", fault.RELOAD_SCRIPT, "sh", "/etc/pptp-lab/filter.nft"]
    with pytest.raises(LabError, match=r"^reload: vpn \(pptp-server\) has no rules"):
        fault.reload(eng, "default", "vpn")


def test_the_docker_engine_restarts_with_a_short_grace_and_checks_the_node_runs():
    from lab.engines.docker import DockerEngine

    seen = []

    class Container:
        name, status = "default-vpn", "running"

        def restart(self, timeout):
            seen.append(("restart", timeout))

        def reload(self):
            seen.append(("reload",))

    eng = DockerEngine("local", "unix:///nowhere", client=object())
    box = Container()
    eng.restart_node(box)
    assert seen == [("restart", 2), ("reload",)]
    box.status = "exited"
    with pytest.raises(LabError, match="^default-vpn is exited after its restart$"):
        eng.restart_node(box)


# ------------------------------------------------------------------ the fixed scripts, run
STUBS = {  # each logs its argv, one word a line, then a blank line
    name: 'for w in "$0" "$@"; do echo "$w"; done >> "$LOG"; echo >> "$LOG"'
    for name in ("ip", "sleep", "nft", "iptables-restore")}


@pytest.fixture
def sh(tmp_path):
    bin_dir, logfile = tmp_path / "bin", tmp_path / "log"
    bin_dir.mkdir()
    for name, body in STUBS.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)

    def run(argv):
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "LOG": str(logfile)}
        r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=20)
        runs = logfile.read_text().split("\n\n") if logfile.exists() else []
        logfile.unlink(missing_ok=True)
        return r, [[os.path.basename(ws[0])] + ws[1:] for ws in (x.split("\n") for x in runs if x)]
    return run


def test_the_flap_script_runs_down_sleep_up_and_puts_each_route_back_word_for_word(sh, eng):
    fault.inject(eng, "default", "link", "client", "internet", "flap", "1")
    argv = cmds(eng)[-1]
    r, ran = sh(argv[:5] + ["1", "default", "198.51.100.1", "0", "10.9.0.0/16", "-", "7",
                            "$(touch x)", "-", "0", "a b", "* ;", "1 *"])
    assert r.returncode == 0, r.stderr
    assert ran == [["ip", "link", "set", "dev", "internet", "down"], ["sleep", "1"],
                   ["ip", "link", "set", "dev", "internet", "up"],
                   ["ip", "route", "replace", "default", "via", "198.51.100.1", "dev", "internet", "metric", "0"],
                   ["ip", "route", "replace", "10.9.0.0/16", "dev", "internet", "metric", "7"],
                   ["ip", "route", "replace", "$(touch x)", "dev", "internet", "metric", "0"],  # words, never run
                   ["ip", "route", "replace", "a b", "via", "* ;", "dev", "internet", "metric", "1 *"]]
    assert [ln.split()[0] for ln in r.stdout.splitlines()] == ["down", "up"]
    assert fault.node_time(r.stdout, "up") >= fault.node_time(r.stdout, "down")


def test_the_up_script_and_the_reload_script(sh):
    r, ran = sh(["sh", "-c", fault.UP_SCRIPT, "sh", "eth0", "default", "-", "0"])
    assert r.returncode == 0 and ran == [["ip", "link", "set", "dev", "eth0", "up"],
                                         ["ip", "route", "replace", "default", "dev", "eth0", "metric", "0"]]
    r, ran = sh(["sh", "-c", fault.RELOAD_SCRIPT, "sh", "/etc/pptp-lab/ruleset.iptables", "/etc/pptp-lab/nat.nft"])
    assert r.returncode == 0 and ran == [["nft", "flush", "ruleset"],
                                         ["iptables-restore", "/etc/pptp-lab/ruleset.iptables"],
                                         ["nft", "-f", "/etc/pptp-lab/nat.nft"]]


# ------------------------------------------------------------------ the plugin: undo
def test_lab_fault_as_context_managers_undoes_in_reverse_order(eng):
    lab = Lab(eng, default())
    with lab.fault("netem", "client", "internet", "delay=50ms") as slow:
        with lab.fault("link", "nat", "home", "down") as cut:
            assert [r["verb"] + " " + " ".join(r["args"]) for r in log()] == [
                "netem internet delay=50ms", "link home down"]
    assert [(r["verb"], r["node"], r["args"]) for r in log()] == [
        ("netem", "client", ["internet", "delay=50ms"]), ("link", "nat", ["home", "down"]),
        ("link", "nat", ["home", "up"]), ("netem", "client", ["internet", "clear"])]
    assert cut.undone.args == ["home", "up"] and slow.undone.args == ["internet", "clear"]
    assert slow.fault.undo == ["netem", "client", "internet", "clear"]
    assert cut.undo() is cut.undone and len(log()) == 4  # once only


def test_lab_fault_undoes_when_the_block_fails_and_a_plain_call_is_left_in_place(eng):
    lab = Lab(eng, default())
    with pytest.raises(AssertionError, match="boom"):
        with lab.fault("netem", "client", "internet", "loss=5%"):
            raise AssertionError("boom")
    assert [r["args"][-1] for r in log()] == ["loss=5%", "clear"]
    kept = lab.fault("link", "client", "internet", "flap", 2)  # nothing to undo
    assert kept.fault.args == ["internet", "flap", "2"] and kept.undo() is None
    lab.fault("kill", "vpn", "pptpd")
    assert [r["verb"] for r in log()] == ["netem", "netem", "link", "kill"]


def test_a_failing_undo_is_noted_on_the_blocks_own_error(eng):
    lab = Lab(eng, default())
    with pytest.raises(AssertionError) as err:
        with lab.fault("netem", "client", "internet", "loss=5%"):
            eng.answer = answers(tc=(1, "Error: busy"))
            raise AssertionError("boom")
    assert str(err.value) == "boom"
    assert any("undoing the fault failed too: client: removing the qdisc" in n for n in err.value.__notes__)


def test_a_failing_undo_after_a_block_that_went_well_is_the_error(eng):
    lab = Lab(eng, default())
    with pytest.raises(LabError, match="^client: removing the qdisc of internet failed"):
        with lab.fault("netem", "client", "internet", "loss=5%"):
            eng.answer = answers(tc=(1, "Error: busy"))


def test_lab_wait_ended_waits_for_pppd_and_pptp_to_exit():
    still = {"left": 1}  # pgrep finds pppd or pptp once, then neither

    def answer(node, argv):
        if "pgrep -x pppd" in argv[-1]:
            still["left"] -= 1
            return ExecResult(0 if still["left"] >= 0 else 1, "")
        return None
    lab = Lab(FakeEngine(default(), answer), default())
    lab.wait_ended("client")
    assert still["left"] == -1
    still["left"] = 10 ** 9
    with pytest.raises(AssertionError, match="^client: pppd/pptp still running 0s after the hang-up"):
        lab.wait_ended("client", timeout=0.05)


# ------------------------------------------------------------------ the record
def test_the_fault_log_is_owner_only_and_goes_into_the_manifest_of_its_capture(eng, tmp_path):
    fault.inject(eng, "default", "conntrack-flush", "nat")
    path = runs_dir() / "default" / faultlog.FILE
    assert oct(path.stat().st_mode & 0o777) == "0o600" and oct(path.parent.stat().st_mode & 0o777) == "0o700"
    rec = log()[0]
    old = dict(rec, started=rec["started"] - 3600, verb="kill")  # before this capture started
    faultlog.append("default", old)
    since = rec["started"] + rec["clock_offset"] - 1  # the capture's start, on the engine's clock
    taken = faultlog.take("default", since)
    assert taken == [rec] and not path.exists()

    run = tmp_path / "run"
    run.mkdir()
    capture.write_manifest(run, "default", "r1", [], {}, since, time.time(), taken)
    assert json.loads((run / "manifest.json").read_text())["faults"] == [rec]
    assert runfiles.manifest_faults(run) == [rec]
    capture.write_manifest(run, "default", "r1", [], {}, since, time.time())
    assert "faults" not in json.loads((run / "manifest.json").read_text())


def test_a_torn_line_in_the_log_is_skipped(eng):
    fault.inject(eng, "default", "conntrack-flush", "nat")
    with open(faultlog.path("default"), "a") as fh:
        fh.write('{"verb": "kill", "sta')
    assert [r["verb"] for r in log()] == ["conntrack-flush"]


# ------------------------------------------------------------------ the command line
def run_cli(monkeypatch, capsys, eng, *args):
    monkeypatch.setattr(cli.engine_mod, "running", lambda choice=None, kernel=None: eng)
    monkeypatch.setattr(sys, "argv", ["pptp-lab", *args])
    with pytest.raises(SystemExit) as done:
        cli.main()
    out = capsys.readouterr()
    return done.value.code, out.out, out.err


def test_the_command_line_injects_prints_the_undo_and_exits_0(monkeypatch, capsys, eng):
    code, out, err = run_cli(monkeypatch, capsys, eng, "fault", "default", "link", "client", "internet", "down")
    assert code == 0 and out == ""  # what happened goes where the lab's messages go (stderr)
    assert "✓ link client internet down: internet down (3 route(s) kept for up)" in err
    assert "undo: pptp-lab fault default link client internet up" in err
    code, out, _ = run_cli(monkeypatch, capsys, eng, "fault", "default", "netem", "nat", "internet", "loss=10%",
                           "--json")
    assert code == 0 and json.loads(out)["commands"] == [
        ["tc", "qdisc", "replace", "dev", "internet", "root", "netem", "loss", "10%"]]


def test_the_command_line_gives_a_bad_value_as_one_line_and_exit_2(monkeypatch, capsys, eng):
    code, out, err = run_cli(monkeypatch, capsys, eng, "fault", "default", "link", "client", "internet", "flap", "-1")
    assert code == 2 and out == ""
    assert err.splitlines() == ["error: link flap -1: give how long the link stays down, more than 0 and up to "
                                "3600 seconds, e.g. 3 or 2.5s or 500ms"]
    assert cmds(eng) == []


def test_the_command_line_help_lists_every_verb(monkeypatch, capsys, eng):
    code, out, _ = run_cli(monkeypatch, capsys, eng, "fault", "--help")
    assert code == 0
    for usage in fault.USAGE.values():
        assert usage.split(" ", 1)[0] in out


# ------------------------------------------------------------------ the ladder
def ladder_session(phase="data"):
    from lab.pptp.session import Event, Session

    s = Session(1, "/x/internet.pcap", "198.51.100.10", "192.0.2.10", start=100.0)
    s.events = [Event(100.0, 1, "client", "SCCRQ", ""), Event(101.0, 2, "server", "SCCRP", ""),
                Event(103.0, 3, "client", "OCRQ", "")]
    s.phase, s.verdict = phase, "a verdict"
    return s


def fault_record(started, offset, verb="link", args=("internet", "down"), done="internet down"):
    return {"verb": verb, "node": "client", "args": list(args), "started": started, "ended": started + 0.1,
            "done": done, "clock_offset": offset}


def rows(svg):
    """(time stamp, label) of each ladder row, top to bottom."""
    import xml.etree.ElementTree as ET

    ns = "{http://www.w3.org/2000/svg}"
    out = []
    for g in ET.fromstring(svg).iter(f"{ns}g"):
        texts = [t for t in g.iter(f"{ns}text")]
        out.append((texts[0].text.strip(), " ".join(t.text for t in texts[1:]), g.get("class")))
    return out


def test_faults_are_drawn_on_the_ladder_at_their_engine_time_between_the_packets():
    from lab.reports import report

    faults = [fault_record(100.3, 0.2),                                  # 100.5 on the capture's clock
              fault_record(98.0, 0.0, "kill", ["pptpd"], "SIGKILL"),     # before the session: not drawn
              fault_record(110.0, 0.0, "netem", ["internet", "clear"], "")]
    drawn = rows(report.ladder_svg(ladder_session(), faults=faults))
    assert drawn == [("0.000s", "SCCRQ", None),
                     ("0.500s", "fault: link client internet down — internet down", "fault"),
                     ("1.000s", "SCCRP", None), ("3.000s", "OCRQ", None),
                     ("10.000s", "fault: netem client internet clear", "fault")]  # no teardown seen: after it too
    torn = rows(report.ladder_svg(ladder_session("teardown"), faults=faults))
    assert [r[1] for r in torn if r[2] == "fault"] == ["fault: link client internet down — internet down"]
    assert rows(report.ladder_svg(ladder_session())) == [r for r in drawn if r[2] is None]


def test_the_test_report_and_analyze_draw_the_faults_of_the_runs_manifest(tmp_path, monkeypatch):
    from lab import pptp
    from lab.reports import report

    from . import pptpgen as g

    run = tmp_path / "run"
    run.mkdir()
    pcap = g.full_session(teardown="client").write(run / "internet.pcap")
    (s,) = pptp.analyze([pcap]).sessions
    at = s.events[3].ts + 0.001
    capture.write_manifest(run, "default", "r1", [pcap], {}, None, time.time(),
                           [fault_record(at, 0.0, "conntrack-flush", [], "12 flow entries have been deleted.")])
    res = runfiles.Result(default(), run_dir=run, report=pptp.analyze([pcap]), faults=runfiles.manifest_faults(run))
    page = report.test_html(res)
    assert page.count('<g class="fault">') == 1 and "fault: conntrack-flush client — 12 flow entries" in page
    out = tmp_path / "ladder.html"
    r = subprocess.run([sys.executable, "-c", "from lab.cli import main; main()", "analyze", str(pcap),
                        "--ladder", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert out.read_text().count('<g class="fault">') == 1


def test_a_manifest_fault_without_the_fields_a_ladder_needs_is_left_out(tmp_path):
    good = fault_record(1.0, 0.0)
    (tmp_path / "manifest.json").write_text(json.dumps({"faults": [
        good, {"verb": "kill"}, dict(good, started="soon"), dict(good, args="x"), dict(good, clock_offset="x"), 7]}))
    assert runfiles.manifest_faults(tmp_path) == [good]
    (tmp_path / "manifest.json").write_text(json.dumps({"faults": {"not": "a list"}}))
    assert runfiles.manifest_faults(tmp_path) == []

"""What `pptp-lab test` leaves in its run directory, and `pptp-lab report RUN_DIR` building
the same report again from those files alone (captures made with scapy, no lab)."""
import json
import subprocess
import sys

from scapy.utils import PcapNgReader
from typer.testing import CliRunner

from lab.up import capture
from lab.reports import graph, report, runfiles
from lab.model import topology
from lab.cli import app
from lab.core.errors import LabError

from . import synthrun

runner = CliRunner()


def written(tmp_path, **extra):
    res = synthrun.result(tmp_path)
    for k, v in extra.items():
        setattr(res, k, v)
    runfiles.write(res)
    return res, res.run_dir


def test_a_run_keeps_checks_and_topology_and_no_secret(tmp_path):
    res, run = written(tmp_path)
    assert {p.name for p in run.iterdir()} == {"internet.pcap", "home.pcap", "manifest.json", "junit.xml",
                                               "checks.json", "topology.json", "versions.json", "report.html",
                                               "report.json", "internet.annotated.pcapng", "home.annotated.pcapng"}
    for p in run.iterdir():
        data = p.read_bytes()
        assert b"alice-secret" not in data and b"bob-secret" not in data, p.name
    saved = json.loads((run / "topology.json").read_text())
    assert saved["nodes"]["client"]["pptp_client"]["secret"] == topology.REMOVED
    assert topology.Topology.model_validate(saved).nodes.keys() == res.topo.nodes.keys()
    checks = json.loads((run / "checks.json").read_text())
    assert [c["name"] for c in checks] == [c.name for c in res.checks]
    assert checks[3]["where"] == {"capture": "home.pcap", "frame": 9, "event": "LCP Configure-Request"}
    assert checks[3]["path"]["at"] == "fw" and checks[3]["path"]["seen"] == {
        "home": False, "internet": False, "perimeter": True}


def test_report_rebuilds_the_same_page_and_json_from_the_run_directory(tmp_path):
    res, run = written(tmp_path)
    page, data = (run / "report.html").read_text(), (run / "report.json").read_text()
    assert page == report.test_html(res)  # what `test` wrote is what test_html gives
    (run / "report.html").unlink()
    (run / "report.json").unlink()
    out = runner.invoke(app, ["report", str(run)])
    assert out.exit_code == 0, out.output
    assert "default: FAIL (3 of 6 checks failed)" in out.output and f"report: {run / 'report.html'}" in out.output
    assert (run / "report.html").read_text() == page
    # The failing client's packet redrawn on the topology from checks.json alone.
    assert 'class="path-seen" stroke="#070" data-client="home-client" data-segment="perimeter"' in page
    assert ("<title>home-client: GRE to the client dropped by fw, table inet fw, chain forward, rule "
            "`iifname &quot;perimeter&quot; ip protocol gre drop` (handle 7)</title>") in page
    assert (run / "report.json").read_text() == data
    js = json.loads(data)
    assert js["passed"] is False and len(js["checks"]) == 6
    assert [s["phase"] for s in js["analysis"]["sessions"]] == ["lcp", "teardown", "auth"]


def test_each_capture_gets_an_annotated_copy_with_the_failed_checks_packet(tmp_path):
    res, run = written(tmp_path)
    comments = {n: (p.comments or []) for n, p in enumerate(PcapNgReader(str(run / "home.annotated.pcapng")), 1)}
    (failed,) = [c for c in res.checks if not c.passed and c.where.get("capture") == "home.pcap"]
    frame = failed.where["frame"]
    assert [c for c in comments[frame] if c.startswith(b"check failed")] == [
        f"check failed: {failed.name}: {failed.detail}".encode()]
    assert not any(c.startswith(b"check failed") for n, said in comments.items() if n != frame for c in said)
    assert any(b"phase lcp begins" in c for said in comments.values() for c in said)  # the analyser's own too
    page = (run / "report.html").read_text()
    assert "<a href='home.annotated.pcapng'>home.annotated.pcapng</a>" in page
    assert "<a href='internet.annotated.pcapng'>" in page


def test_report_json_prints_checks_and_analysis(tmp_path):
    _, run = written(tmp_path)
    out = runner.invoke(app, ["report", str(run), "--json"])
    assert out.exit_code == 0, out.output
    js = json.loads(out.output)
    assert js["lab"] == "default" and js["checks"][1]["name"] == "client: tunnel up"
    assert len(js["analysis"]["sessions"]) == 3


def error(*args) -> str:
    res = runner.invoke(app, ["report", *map(str, args)])
    assert isinstance(res.exception, LabError), res.output
    return str(res.exception)


def test_a_run_directory_missing_files_is_a_one_line_error_naming_them(tmp_path):
    assert error(tmp_path / "nowhere") == f"{tmp_path / 'nowhere'}: no such run directory"
    (tmp_path / "empty").mkdir()
    assert error(tmp_path / "empty").startswith(
        f"{tmp_path / 'empty'}: missing manifest.json, checks.json, topology.json: not the directory")
    _, run = written(tmp_path)
    (run / "home.pcap").unlink()
    assert f"{run}: missing home.pcap:" in error(run)
    # A run collected by `down` (no `test`): pcaps and manifest only.
    (run / "checks.json").unlink()
    (run / "topology.json").unlink()
    assert f"{run}: missing checks.json, topology.json, home.pcap:" in error(run)


def test_a_manifest_that_lists_no_capture_or_is_not_json(tmp_path):
    _, run = written(tmp_path)
    capture.write_manifest(run, "default", run.name, [], {}, None, 0.0)
    assert "missing captures (manifest.json lists none)" in error(run)
    (run / "manifest.json").write_text("{not json")
    assert error(run).startswith(f"{run / 'manifest.json'}: not readable as JSON")


def test_the_error_reaches_the_user_as_one_line_and_exit_status_2(tmp_path):
    res = subprocess.run([sys.executable, "-c", "from lab.cli import main; main()", "report", str(tmp_path)],
                         capture_output=True, text=True)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.splitlines() == [f"error: {tmp_path}: missing manifest.json, checks.json, topology.json: "
                                       "not the directory of a `pptp-lab test` run"]


def test_load_gives_back_the_result(tmp_path):
    res, run = written(tmp_path)
    back = runfiles.load(run)
    assert back.checks == res.checks and back.topo.name == "default" and back.run_dir == run
    assert [s.verdict for s in back.report.sessions] == [s.verdict for s in res.report.sessions]


def test_the_versions_the_run_ran_are_kept_and_read_back_checked(tmp_path):
    res, run = written(tmp_path)
    assert json.loads((run / "versions.json").read_text()) == res.versions
    assert json.loads((run / "report.json").read_text())["versions"]["vpn"]["pptpd"] == "1.4.0-12"
    assert ("<p>ran on kernel 6.1.0-37-amd64; ppp 2.4.9-1+1.1+b1; pptpd 1.4.0-12; pptp-linux 1.10.0-1+b1</p>"
            in (run / "report.html").read_text())
    assert runfiles.load(run).versions == res.versions
    # versions.json travels with the run: what does not look like a version, a package or a
    # node of the topology is not read back.
    (run / "versions.json").write_text(json.dumps({
        "vpn": {"kernel": "<script>", "ppp": "2.5.2-1+1", "bash": "5.2", "pptpd": 7},
        "intruder": {"ppp": "2.4.9"}, "client": "6.1"}))
    assert runfiles.load(run).versions == {"vpn": {"ppp": "2.5.2-1+1"}}
    for text in ("[1, 2]", "{not json"):
        (run / "versions.json").write_text(text)
        assert runfiles.load(run).versions == {}
    (run / "versions.json").unlink()  # a run of an older pptp-lab
    back = runfiles.load(run)
    assert back.versions == {} and "ran on kernel" not in report.test_html(back)


def test_a_checks_json_from_before_paths_still_loads(tmp_path):
    res, run = written(tmp_path)
    old = json.loads((run / "checks.json").read_text())
    for c in old:
        del c["path"]
    (run / "checks.json").write_text(json.dumps(old))
    back = runfiles.load(run)
    assert all(c.path == {} for c in back.checks)
    assert [c.name for c in back.checks] == [c.name for c in res.checks]
    page = report.test_html(back)
    assert "path-seen" not in page and "path-legend" not in page
    assert graph.topology_svg(res.topo) in page


def test_where_the_time_went_is_kept_shown_and_read_back_checked(tmp_path):
    res, run = written(tmp_path, timings={"nodes": 12.04, "dial (traced)": 2.5})
    assert json.loads((run / "report.json").read_text())["timings"] == {"nodes": 12.04, "dial (traced)": 2.5}
    assert "time: nodes 12.0 s, dial (traced) 2.5 s" in (run / "report.html").read_text()
    assert runfiles.load(run).timings == {"nodes": 12.04, "dial (traced)": 2.5}
    data = json.loads((run / "report.json").read_text())
    data["timings"] = {"<b>": 1, "x": "3", "y": True}
    (run / "report.json").write_text(json.dumps(data))
    back = runfiles.load(run)
    assert back.timings == {"<b>": 1.0} and "time: &lt;b&gt; 1.0 s" in report.test_html(back)
    (run / "report.json").write_text("[1]")
    assert runfiles.load(run).timings == {}


TCPDUMP_LOG = """tcpdump: listening on br-1, link-type EN10MB (Ethernet), snapshot length 262144 bytes
tcpdump: 6 packets captured, 12 packets received by filter, 0 packets dropped by kernel
1200 packets captured
1207 packets received by filter
0 packets dropped by kernel
2400 packets captured
2419 packets received by filter
7 packets dropped by kernel
"""


def test_tcpdumps_own_count_of_lost_packets_is_read_kept_and_shown(tmp_path):
    """A capture that lost packets says so (tcpdump's last "dropped by kernel", from SIGUSR1
    or its exit): a sequence gap on that segment may be the capture's, not the network's."""
    assert capture.stats(TCPDUMP_LOG) == {"captured": 2400, "received": 2419, "dropped": 7}
    assert capture.stats("tcpdump: listening on br-1\n") == {}
    # SIGUSR1's one line, as tcpdump 4.99 prints it (seen in the guest)
    assert capture.stats("tcpdump: 6 packets captured, 12 packets received by filter, 0 packets dropped by "
                         "kernel\n") == {"captured": 6, "received": 12, "dropped": 0}
    assert capture.stats("1 packet captured\n1 packet received by filter\n0 packets dropped by kernel\n") == \
        {"captured": 1, "received": 1, "dropped": 0}
    res = synthrun.result(tmp_path)
    files = sorted(res.run_dir.glob("*.pcap"))
    capture.write_manifest(res.run_dir, "default", res.run_dir.name, files, {"internet": "br-1", "home": "br-2"},
                           None, 0.0, tcpdump={"internet": capture.stats(TCPDUMP_LOG), "home": {"dropped": 0}})
    assert runfiles.manifest_capture_losses(res.run_dir) == {"internet": 7}
    res.capture_losses = runfiles.manifest_capture_losses(res.run_dir)
    runfiles.write(res)
    page = (res.run_dir / "report.html").read_text()
    assert "tcpdump lost 7 packet(s) here" in page and page.count("tcpdump lost") == 1
    assert json.loads((res.run_dir / "report.json").read_text())["capture_losses"] == {"internet": 7}
    assert runfiles.load(res.run_dir).capture_losses == {"internet": 7}
    # What a stranger's manifest says is checked: no count that is not a whole number.
    manifest = json.loads((res.run_dir / "manifest.json").read_text())
    manifest["captures"][0]["tcpdump"] = {"dropped": "7<b>"}
    manifest["captures"][1]["tcpdump"] = {"dropped": True}
    (res.run_dir / "manifest.json").write_text(json.dumps(manifest))
    assert runfiles.manifest_capture_losses(res.run_dir) == {}

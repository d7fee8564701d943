"""Reports without Docker: JUnit XML, the conformance rows, the topology picture and the
`pptp-lab test` HTML page, from a session built with scapy."""
import xml.etree.ElementTree as ET

from lab.reports import conformance, graph, report, runfiles
from lab import pptp
from lab.model import topology
from lab.diagnosis.checks import Check
from lab.pptp.session import Event, Session
from tests import REPO

from . import pptpgen as g


def test_junit_xml_counts_failures_and_carries_the_detail():
    root = ET.fromstring(report.junit_xml("lab", [("a", True, "ok", 1.5), ("b", False, "phase call: no GRE", 0)]))
    assert root.get("tests") == "2" and root.get("failures") == "1"
    (failure,) = root.iter("failure")
    assert failure.get("message") == "phase call: no GRE"


def test_conformance_rows_mark_what_differs(tmp_path):
    s = pptp.analyze([g.full_session(teardown="client").write(tmp_path / "s.pcap")]).sessions
    rows = {r[0]: r for r in conformance.rows(s)}
    assert rows["S2"][3] == "as documented" and rows["S3"][3] == "as documented"
    assert rows["S4"][2] == "0 SLI" and rows["S4"][3] == "differs"
    assert rows["S7"][2] == "0 header deviation(s)"
    assert rows["S10"][3] == "differs" and "SLI (client → server)" in rows["S10"][1]


def test_test_report_page_has_checks_conformance_topology_and_ladders(tmp_path):
    topo = topology.load(REPO / "topologies" / "default.yaml")
    analysed = pptp.analyze([g.full_session().write(tmp_path / "internet.pcap")])
    res = runfiles.Result(topo, [Check("client: tunnel up", "S16", True, "ppp0 up"),
                                 Check("home-client: tunnel up", "S16", False, "phase call: no GRE")],
                          run_dir=tmp_path, report=analysed)
    junit, page = runfiles.write(res)
    text = page.read_text()
    assert "FAIL" in text and "phase call: no GRE" in text
    assert "<td>S4</td>" in text and "internet.pcap" in text
    assert text.count("<svg") == 2  # topology + one ladder
    assert graph.topology_svg(topo) in text  # the same drawing as `pptp-lab graph`, no twin
    assert ET.parse(junit).getroot().get("failures") == "1"


def test_the_topology_picture_writes_every_address_in_full(tmp_path):
    """It once cut them short ("198.1")."""
    topo = topology.load(REPO / "topologies" / "default.yaml")
    text = report.test_html(runfiles.Result(topo))
    for node in topo.nodes.values():
        for net, addr in node.interfaces.items():
            assert f">{net} {addr}</text>" in text


def _session(events, teardown=()):
    s = Session(1, "/x/internet.pcap", "198.51.100.10", "192.0.2.10", start=100.0)
    s.events, s.teardown, s.verdict = events, list(teardown), "a verdict " * 30
    return s


def test_a_ladder_wraps_a_long_label_and_never_cuts_it():
    detail = "malformed: " + " ".join(f"field{i}=value{i}" for i in range(60)) + " " + "x" * 200
    s = _session([Event(100.0, 1, "client", "SCCRQ", detail, malformed=True)])
    svg = report.ladder_svg(s)
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    lines = [t.text for t in root.iter(f"{ns}text") if t.text and t.get("fill") == "#b00"]
    assert len(lines) > 3 and "".join(lines).replace(" ", "") == f"SCCRQ ({detail})".replace(" ", "")
    assert all(graph.text_width(x) <= report.LABEL_MAX for x in lines)
    title = [t.text for t in root.iter(f"{ns}text") if t.get("font-weight") == "bold"][:-2]
    assert " ".join(title) == "session 1: " + s.verdict.strip() and len(title) > 1
    assert int(root.get("width")) < 1200  # fits a 1280 px page


def test_teardown_rows_say_which_way_they_went(tmp_path):
    analysed = pptp.analyze([g.full_session(teardown="server").write(tmp_path / "internet.pcap")])
    (s,) = analysed.sessions
    svg = report.ladder_svg(s)
    assert "LCP Terminate-Request — teardown, server → client" in svg
    assert "LCP Terminate-Ack — teardown, client → server" in svg
    assert "SCCRQ (" in svg and "SCCRQ — teardown" not in svg  # only the teardown steps
    page = report.test_html(runfiles.Result(topology.load(REPO / "topologies" / "default.yaml"),
                                            report=analysed))
    first = s.teardown[0]
    assert (f"<tr><td>1</td><td>LCP Terminate-Request</td><td>server → client</td>"
            f"<td><a href='#internet-frame-{first.frame}'>{first.frame}</a></td></tr>") in page
    assert f'<g id="internet-frame-{first.frame}">' in page


def test_a_failing_check_links_to_the_ladder_row_of_its_packet(tmp_path):
    from . import synthrun

    res = synthrun.result(tmp_path)
    (failed,) = [c for c in res.checks if c.name == "home-client: tunnel up"]
    assert failed.where == {"capture": "home.pcap", "frame": 9, "event": "LCP Configure-Request"}
    page = report.test_html(res)
    assert "<a href='#home-frame-9'>ladder: home.pcap frame 9 (LCP Configure-Request)</a>" in page
    assert '<g id="home-frame-9">' in page
    # A frame the ladder does not draw: the link goes to the session, the frame is named.
    failed.where = {"capture": "home.pcap", "frame": 4, "event": "SCCRP"}
    s = next(s for s in res.report.sessions if s.source.endswith("home.pcap"))
    s.events = s.events[:1] * report.LADDER_EVENTS + s.events
    assert f"<a href='#session-{s.id}'>ladder of session {s.id}</a>: home.pcap frame 4 (SCCRP)" in report.test_html(res)


def test_the_topology_shows_the_path_of_each_failing_client_once():
    a = {"client": "a", "segments": ["internet"], "nodes": [], "at": "fw"}
    b = {"client": "b", "segments": ["internet"], "nodes": [], "at": "fw"}
    found = [Check("b: dropped by fw", "S22", True, "", path=b), Check("a: tunnel up", "S16", False, "", path=a),
             Check("a: dropped by fw", "S22", False, "", path=dict(a, at="nat")), Check("ok", "", True, "")]
    assert report.packet_paths(found) == [a, b]  # a failing check's first, then an expected drop
    assert report.packet_paths([Check("ok", "", True, "")]) == []


def test_a_hostile_rule_text_stays_text_in_the_page(tmp_path):
    from . import synthrun

    res = synthrun.result(tmp_path)
    (failed,) = [c for c in res.checks if c.path]
    failed.path["rule"] = "</title><script>alert(1)</script>"
    page = report.test_html(res)
    assert "<script>" not in page
    assert "dropped by fw, &lt;/title&gt;&lt;script&gt;alert(1)&lt;/script&gt;</title>" in page

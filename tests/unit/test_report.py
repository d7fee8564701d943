"""Reports without Docker: JUnit XML, the conformance rows, the topology picture and the
`pptp-lab test` HTML page, from a session built with scapy."""
import xml.etree.ElementTree as ET

from lab import conformance, graph, pptp, report, runfiles, topology
from lab.checks import Check
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
    assert rows["S10"][3] == "differs" and "SLI (client)" in rows["S10"][1]


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


def test_the_topology_picture_writes_every_address_in_full():
    """It once cut them short ("198.1")."""
    topo = topology.load(REPO / "topologies" / "default.yaml")
    text = report.test_html(runfiles.Result(topo))
    for node in topo.nodes.values():
        for net, addr in node.interfaces.items():
            assert f">{net} {addr}</text>" in text

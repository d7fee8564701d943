"""The reports as a person sees them: rendered by headless Chromium 1280 px wide and
measured there (no text out of its picture or box, no text on other text, no table cell
overflowing, no link to a missing anchor). Skipped where Chromium is not installed."""
from lab.reports import graph, report

from . import browser, synthrun
from .bigtopo import big_topology


def test_the_measuring_finds_what_overflows():
    """The script itself: a page made to fail every way is reported every way."""
    page = ("<!doctype html><html><body>"
            '<svg class="topology" width="80" height="60" font-family="monospace" font-size="12">'
            '<g class="node" data-name="a"><rect class="box" x="5" y="5" width="50" height="20"/>'
            '<text x="8" y="18">198.51.100.10</text></g>'
            '<g class="node" data-name="b"><rect class="box" x="40" y="10" width="50" height="20"/></g>'
            '<text x="8" y="22">on top</text></svg>'
            "<table><tr><td style='max-width:40px'>" + "x" * 60 + "</td></tr></table>"
            "<a href='#nowhere'>link</a></body></html>")
    m = browser.measure(page)
    found = browser.problems(m)
    assert set(found) == {"outside_svg", "outside_box", "overlapping_text", "text_on_box", "overlapping_boxes",
                          "cells", "broken_links"}, found
    assert found["outside_svg"][0][1] == "198.51.100.10" and found["broken_links"] == ["#nowhere"]


def test_the_test_report_at_1280_px(tmp_path):
    res = synthrun.result(tmp_path)
    m = browser.measure(report.test_html(res))
    assert browser.problems(m) == {}
    assert m["svgs"] == 4 and m["texts"] > 100  # topology and three ladders were measured
    assert m["scrolled"] == [], "a picture wider than the page"
    assert m["page"][0] <= m["page"][1], "the page scrolls sideways"


def test_a_22_node_graph_at_1280_px():
    topo = big_topology()
    state = {"home1-client-1": {"state": "running", "tunnel": "up", "ppp_address": "172.16.0.10",
                                "peer_address": "172.16.0.1", "call_ids": "50229/128"},
             "vpn": {"state": "running", "tunnel": "1 call(s)"}, "r1": {"state": "exited"}}
    m = browser.measure(graph.page(topo, state))
    assert browser.problems(m) == {}
    assert m["texts"] >= 5 * len(topo.nodes) and m["page"][0] <= m["page"][1]

"""The one report of a matrix run (lab.testing.matrix), in runs/matrix/<stamp>/: index.html (a grid
of topology rows and kernel[/image] columns, each column headed by the kernel release and
ppp, pptpd and pptp-linux versions its cells ran, each failing cell with its verdict, then
the stable differences between passing cells), junit.xml (one testcase per cell, classname
matrix.<topology>, name kernel=K[,image=I]) and matrix.json."""
from __future__ import annotations

import html
import json
import os
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

from . import cellfacts, report
from ..core.paths import private_dir, runs_dir

STATE_CLASS = {"PASS": "pass", "FAIL": "fail"}


def cell_facts(cell) -> dict[str, str]:
    """The facts of the run the grid shows."""
    return cellfacts.facts(cell.result.report, cell.topo) if cell.result and cell.result.report else {}


def run_facts(cell) -> list[dict[str, str]]:
    """The facts of each run of the cell (one unless --repeat)."""
    return [cellfacts.facts(r.report, cell.topo) for r in cell.runs or [cell.result] if r and r.report]


def cell_versions(cell) -> dict[str, dict[str, str]]:
    """node -> versions of the first run that recorded them."""
    return next((r.versions for r in cell.runs or [cell.result] if r and r.versions), {})


def column_versions(cells) -> dict[str, list[str]]:
    """Per column (cell label): the version lines of its cells (cellfacts.versions), the
    distinct ones in order: one kernel and userland per column, unless a topology gives its
    nodes an `image:` of their own."""
    out: dict[str, dict[str, None]] = {}
    for c in cells:
        out.setdefault(c.label, {}).update(dict.fromkeys(cellfacts.versions(cell_versions(c))))
    return {label: list(lines) for label, lines in out.items()}


def _rows_and_columns(cells) -> tuple[list[str], list[str]]:
    return list(dict.fromkeys(c.topo.name for c in cells)), list(dict.fromkeys(c.label for c in cells))


def differences(cells) -> dict[str, list[tuple[str, dict[str, str]]] | None]:
    """Per topology: the stable facts in which its passing cells differ (None: fewer than two
    passed)."""
    out = {}
    for topo in _rows_and_columns(cells)[0]:
        passing = {c.label: run_facts(c) for c in cells if c.topo.name == topo and c.passed}
        out[topo] = cellfacts.differences(passing) if len(passing) > 1 else None
    return out


def unsteady(cells) -> dict[str, list[str]]:
    """Per topology: the facts that differed between two runs of one of its passing cells."""
    out: dict[str, dict[str, None]] = {}
    for c in cells:
        if c.passed:
            out.setdefault(c.topo.name, {}).update(dict.fromkeys(cellfacts.unsteady(run_facts(c))))
    return {t: list(names) for t, names in out.items() if names}


def junit(cells) -> str:
    """One testsuite per topology (report.junit_xml), wrapped in one testsuites."""
    root = ET.Element("testsuites", name="matrix")
    for topo in _rows_and_columns(cells)[0]:
        cases = [(c.label, c.passed, c.verdict if not c.passed else f"{c.topo.name} {c.label}: pass", c.seconds)
                 for c in cells if c.topo.name == topo]
        root.append(ET.fromstring(report.junit_xml(f"matrix.{topo}", cases)))
    root.set("tests", str(len(cells)))
    root.set("failures", str(sum(not c.passed for c in cells)))
    return ET.tostring(root, encoding="unicode", xml_declaration=True)


def data(cells) -> dict:
    return {"cells": [{"topology": c.topo.name, "kernel": c.kernel, "image": c.image, "label": c.label,
                       "state": c.state, "verdict": c.verdict, "seconds": round(c.seconds, 1),
                       "run_dir": str(c.result.run_dir) if c.result and c.result.run_dir else None,
                       "runs": [str(r.run_dir) if r.run_dir else None for r in c.runs],
                       "versions": cell_versions(c), "facts": cell_facts(c)} for c in cells],
            "timing_facts": list(cellfacts.TIMING),
            "differences": {t: [{"fact": f, "values": v} for f, v in d] if d is not None else None
                            for t, d in differences(cells).items()},
            "differed_between_runs": unsteady(cells)}


def _cell_html(c, out_dir: Path) -> str:
    e = html.escape
    link = ""
    if c.page and c.page.exists():
        link = f" <a href='{e(os.path.relpath(c.page, out_dir))}'>report</a>"
    why = f"<div class='why'>{e(c.verdict)}</div>" if not c.passed and c.verdict else ""
    return f"<td class='{STATE_CLASS.get(c.state, 'other')}'><b>{e(c.state)}</b>{link}{why}</td>"


def page(cells, out_dir: Path, wall: float) -> str:
    e = html.escape
    topos, labels = _rows_and_columns(cells)
    by = {(c.topo.name, c.label): c for c in cells}
    passed = sum(c.passed for c in cells)
    heads = column_versions(cells)
    timing = ", ".join(cellfacts.TIMING)
    parts = ["<!doctype html><meta charset=utf-8><title>pptp-lab test: matrix</title>"
             "<style>body{font:14px sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{padding:.3em .8em;border:1px solid #ddd;text-align:left;vertical-align:top}"
             ".pass{color:#070}.fail{color:#b00}.other{color:#777}.why{color:#333;font-size:90%;max-width:30em}"
             ".ran{font-weight:normal;font-size:85%;color:#333}"
             "</style>",
             f"<h1>pptp-lab test: matrix, {passed} of {len(cells)} cells passed</h1><p>wall time {wall:.0f} s</p>",
             "<table><tr><th>topology</th>" + "".join(
                 f"<th>{e(x)}" + "".join(f"<div class='ran'>{e(v)}</div>" for v in heads[x]) + "</th>"
                 for x in labels) + "</tr>"]
    for t in topos:
        parts.append(f"<tr><th>{e(t)}</th>" + "".join(_cell_html(by[t, x], out_dir) if (t, x) in by else "<td></td>"
                                                     for x in labels) + "</tr>")
    parts.append("</table><h2>Differences between passing cells</h2>"
                 "<p>The phase each session reached, server call ID allocation, how clients pick call IDs, "
                 "who started a teardown, NAT helper behaviour, read from each cell's analysed captures (at "
                 f"the server's segment; NATs at their outside). Not compared, as they depend on timing: {timing}; "
                 "nor a fact that differed between two runs of one cell (--repeat).</p>")
    noisy = unsteady(cells)
    for t, diff in differences(cells).items():
        parts.append(f"<h3>{e(t)}</h3>")
        if noisy.get(t):
            parts.append("<p>left out, as they differed between runs of one cell: "
                         + e(", ".join(noisy[t])) + "</p>")
        if diff is None:
            parts.append("<p>fewer than two passing cells: nothing to compare</p>")
        elif not diff:
            parts.append("<p>the passing cells agree on every stable fact</p>")
        else:
            cols = list(diff[0][1])
            parts.append("<table><tr><th>fact</th>" + "".join(f"<th>{e(x)}</th>" for x in cols) + "</tr>"
                         + "".join(f"<tr><td>{e(f)}</td>" + "".join(f"<td>{e(v[x])}</td>" for x in cols) + "</tr>"
                                   for f, v in diff) + "</table>")
    return "\n".join(parts)


def write(cells, wall: float, out_dir: Path | None = None) -> tuple[Path, Path]:
    """(junit.xml, index.html) in out_dir (default runs/matrix/<stamp>/), with matrix.json."""
    if out_dir is None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        out_dir = private_dir(private_dir(runs_dir() / "matrix") / stamp)
    xml, index = out_dir / "junit.xml", out_dir / "index.html"
    xml.write_text(junit(cells))
    index.write_text(page(cells, out_dir, wall))
    (out_dir / "matrix.json").write_text(json.dumps(data(cells), indent=1))
    return xml, index

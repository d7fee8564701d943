"""Measure a page as a person sees it, in headless Chromium at 1280 px: a script added to a
copy of the page measures every SVG text, box and table cell and writes what it found into
the DOM, which `--dump-dom` prints. No browser driver or download needed."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

WIDTH = 1280
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# Rectangles are the rendered ones (getBoundingClientRect), in CSS px; 0.5 px of slack for
# anti-aliasing. A text's rectangle is its glyph cells, so two that touch do not overlap.
SCRIPT = r"""
<script>
(function () {
  const slack = 0.5;
  const rect = r => [+r.left.toFixed(1), +r.top.toFixed(1), +r.right.toFixed(1), +r.bottom.toFixed(1)];
  const inside = (a, b) => a.left >= b.left - slack && a.right <= b.right + slack &&
                           a.top >= b.top - slack && a.bottom <= b.bottom + slack;
  const meet = (a, b) => a.left < b.right - slack && b.left < a.right - slack &&
                         a.top < b.bottom - slack && b.top < a.bottom - slack;
  const label = t => [...t.childNodes].filter(n => n.nodeType === 3).map(n => n.data).join("").trim();
  const out = {outside_svg: [], outside_box: [], overlapping_text: [], text_on_box: [],
               overlapping_boxes: [], cells: [], scrolled: [], broken_links: [], texts: 0, svgs: 0};
  document.querySelectorAll("svg").forEach(svg => {
    out.svgs += 1;
    const kind = svg.getAttribute("class") || "svg";
    const view = svg.getBoundingClientRect();
    const texts = [...svg.querySelectorAll("text")].filter(t => label(t));
    const rects = texts.map(t => t.getBoundingClientRect());
    const boxes = [...svg.querySelectorAll("g.node")]
      .map(g => [g, g.querySelector("rect.box").getBoundingClientRect()]);
    out.texts += texts.length;
    texts.forEach((t, i) => {
      const r = rects[i];
      if (!inside(r, view)) out.outside_svg.push([kind, label(t), rect(r), rect(view)]);
      const own = t.closest("g.node");
      for (const [g, b] of boxes) {
        if (g === own && !inside(r, b)) out.outside_box.push([kind, label(t), rect(r), rect(b)]);
        if (g !== own && meet(r, b)) out.text_on_box.push([kind, label(t), g.dataset.name]);
      }
      for (let j = i + 1; j < texts.length; j++)
        if (meet(r, rects[j])) out.overlapping_text.push([kind, label(t), label(texts[j])]);
    });
    for (let i = 0; i < boxes.length; i++)
      for (let j = i + 1; j < boxes.length; j++)
        if (meet(boxes[i][1], boxes[j][1]))
          out.overlapping_boxes.push([boxes[i][0].dataset.name, boxes[j][0].dataset.name]);
  });
  document.querySelectorAll("td, th, h1, h2, h3, p, li").forEach(c => {
    if (c.scrollWidth > c.clientWidth + 1)
      out.cells.push([c.tagName, c.textContent.slice(0, 80), c.scrollWidth, c.clientWidth]);
  });
  document.querySelectorAll(".scroll").forEach(d => {
    if (d.scrollWidth > d.clientWidth + 1)
      out.scrolled.push([d.firstElementChild.getAttribute("class"), d.scrollWidth, d.clientWidth]);
  });
  document.querySelectorAll("a[href^='#']").forEach(a => {
    const href = a.getAttribute("href");
    if (!document.getElementById(decodeURIComponent(href.slice(1)))) out.broken_links.push(href);
  });
  out.page = [document.documentElement.scrollWidth, window.innerWidth];
  const pre = document.createElement("pre");
  pre.id = "measured";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>
"""


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not found:
        pytest.skip("no Chromium on this machine")
    return found


def measure(page_html: str, width: int = WIDTH) -> dict:
    """What the measuring script found on the page rendered `width` px wide."""
    browser = chromium()
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "page.html"
        page.write_text(page_html.replace("</body>", SCRIPT + "</body>"))
        res = subprocess.run([browser, *FLAGS, f"--user-data-dir={Path(tmp) / 'profile'}",
                              f"--window-size={width},1000", "--dump-dom", page.as_uri()],
                             capture_output=True, text=True, timeout=60)
    found = re.search(r'<pre id="measured">(.*?)</pre>', res.stdout, re.S)
    assert found, f"Chromium printed no measurements (exit {res.returncode}): {res.stderr[-2000:]}"
    return json.loads(found.group(1).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))


def problems(m: dict) -> dict:
    """Only the kinds of fault that were found (an empty dict: none)."""
    keys = ("outside_svg", "outside_box", "overlapping_text", "text_on_box", "overlapping_boxes", "cells",
            "broken_links")
    return {k: m[k] for k in keys if m[k]}

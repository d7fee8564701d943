"""What the topology picture (lab.reports.graph) and the packet paths drawn on it
(lab.reports.packetpath) share: sizes, text measures and where a box's wires run. Its
own module so that packetpath needs nothing of graph, which draws the paths."""
from __future__ import annotations

import re
import unicodedata
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .graph import Box

FONT = 12      # px, monospace
LINE = 16      # px per text line in a box
MARGIN = 12


def text_width(text: str, size: float = FONT) -> float:
    """Width of `text` in a monospace font, on the generous side: monospace fonts advance
    0.6 em per character; a character outside Latin may come from a wider fallback font."""
    width = 0.0
    for ch in text:
        if unicodedata.combining(ch):
            continue
        if unicodedata.east_asian_width(ch) in ("W", "F"):
            width += 1.1
        elif ord(ch) >= 0x2000:
            width += 1.0
        else:
            width += 0.62
    return width * size


def wrap(text: str, max_px: float, size: float = FONT) -> list[str]:
    """`text` in lines at most max_px wide, broken at spaces (a word longer than a line is
    cut where it must be). Nothing is dropped but the spaces at the breaks."""
    if text_width(text, size) <= max_px:
        return [text]
    lines, line = [], ""
    for word in re.findall(r"\S+\s*|\s+", text):
        if line and text_width((line + word).rstrip(), size) > max_px:
            lines.append(line.rstrip())
            line = ""
        while text_width(word.rstrip(), size) > max_px:
            cut = next(k for k in range(len(word), 0, -1) if text_width(word[:k], size) <= max_px or k == 1)
            lines.append(word[:cut])
            word = word[cut:]
        line += word
    if line.strip():
        lines.append(line.rstrip())
    return lines


def wires(b: Box, bus_y: list[float]):
    """(bus index, x, y of the box's edge, buses the wire only crosses) for each wire of a box."""
    ups = sorted((k for k in b.buses if k < b.band), reverse=True)  # the nearest bus first
    downs = sorted(k for k in b.buses if k >= b.band)
    for edge, ks in ((b.y, ups), (b.y + b.h, downs)):
        for j, k in enumerate(ks):
            x = b.x + b.w * (j + 1) / (len(ks) + 1)
            crossed = range(k + 1, b.band) if k < b.band else range(b.band, k)
            yield k, x, edge, [c for c in crossed if c not in b.buses]

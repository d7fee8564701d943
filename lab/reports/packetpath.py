"""A failing client's packet drawn on the topology picture (lab.reports.graph): the way it went,
from lab.diagnosis.why.path_data as checks.json keeps it. On each segment of the client's path, from
the wire it came in by to the wire it left by, and on those wires: solid green where that
segment's capture saw the packet that went missing, grey dashed where it did not; the node
that dropped it in red, a short label in its box and the rule as the box's tooltip.

A path comes from a file (`pptp-lab report RUN_DIR`): every value is checked for its type,
names the topology does not have are left out, and every text is escaped."""
from __future__ import annotations

import html

from . import drawing

SEEN, UNSEEN, DROP, LOST = "#070", "#888", "#b00", "#a60"
UNTRACED = "no rule traced a drop (routing? rp_filter? a conntrack INVALID drop outside nft?)"


def _text(v) -> str:
    return v if isinstance(v, str) else ""


def clean(p) -> dict | None:
    """A path as lab.diagnosis.why.path_data makes it, or None when it is not one."""
    if not isinstance(p, dict):
        return None
    segs, nodes, seen = p.get("segments"), p.get("nodes"), p.get("seen")
    if not (isinstance(segs, list) and isinstance(nodes, list) and segs
            and all(isinstance(x, str) for x in segs + nodes)):
        return None
    seen = {k: v for k, v in seen.items() if isinstance(k, str) and isinstance(v, bool)} \
        if isinstance(seen, dict) else {}
    return {"client": _text(p.get("client")), "server": _text(p.get("server")), "segments": segs,
            "nodes": nodes, "packet": _text(p.get("packet")) or "a packet", "seen": seen, "at": _text(p.get("at")),
            "rule": _text(p.get("rule")), "action": _text(p.get("action")) or "dropped",
            "cause": _text(p.get("cause")), "because": _text(p.get("because"))}


class Marked:
    """What the paths add to a picture: `lines` for lab.reports.graph.layout, `boxes` (node ->
    (stroke colour, tooltip)), then overlay() and legend() to draw."""

    def __init__(self, topo, paths: list):
        self.topo = topo
        self.paths = [c for c in map(clean, paths) if c is not None]
        self.lines: dict[str, list[tuple[str, str]]] = {}
        self.boxes: dict[str, tuple[str, str]] = {}
        for p in self.paths:
            at = p["at"]
            if at not in topo.nodes:
                continue
            if p["rule"]:
                label = f"✕ {p['action']} here: {p['packet']}"
                title = f"{p['client']}: {p['packet']} {p['action']} by {at}, {p['rule']}"
            elif p["cause"] and p["cause"] != "not-enough-evidence":
                label = f"✕ {p['packet']}: {p['cause']}"
                title = f"{p['client']}: {p['because'] or p['cause']}"
            else:
                label = f"? {p['packet']} lost here"
                title = f"{p['client']}: {p['packet']} went missing at {at}: {p['because'] or UNTRACED}"
            lines = self.lines.setdefault(at, [])
            if (label, "bad") not in lines:
                lines.append((label, "bad"))
            colour, before = self.boxes.get(at, (LOST, ""))
            self.boxes[at] = (DROP if p["rule"] else colour, (before + "\n" if before else "") + title)

    def _legends(self) -> list[list[tuple[str, str]]]:
        out = []
        for p in self.paths:
            parts = [(f"{p['client']}: {p['packet']}", "#333")]
            seen = [s for s in p["segments"] if p["seen"].get(s) is True]
            unseen = [s for s in p["segments"] if p["seen"].get(s) is False]
            if seen:
                parts.append(("━ seen on " + ", ".join(seen), SEEN))
            if p["at"] in self.topo.nodes:
                parts.append((f"✕ {p['action']} by {p['at']} (its box: the rule)" if p["rule"]
                              else f"? lost at {p['at']}, no rule traced a drop", DROP if p["rule"] else LOST))
            if unseen:
                parts.append(("┅ not seen on " + ", ".join(unseen), UNSEEN))
            out.append(parts)
        return out

    def size(self, geo: dict, tunnels: bool) -> tuple[float, float]:
        """The picture's width and height with the legend lines below the tunnels' one."""
        legends = self._legends()
        wide = max((drawing.text_width("  ".join(t for t, _ in parts)) for parts in legends), default=0)
        rows = len(legends) + (1 if tunnels else 0)
        return (max(geo["width"], drawing.MARGIN * 2 + wide),
                geo["height"] + drawing.LINE * max(rows - 1, 0))

    def legend(self, y: float) -> list[str]:
        e = html.escape
        out = []
        for i, parts in enumerate(self._legends()):
            spans = "<tspan>  </tspan>".join(f'<tspan fill="{c}">{e(t)}</tspan>' for t, c in parts)
            out.append(f'<text class="legend path-legend" x="{drawing.MARGIN}" y="{y + drawing.LINE * i:.1f}">'
                       f"{spans}</text>")
        return out

    def overlay(self, order: list[str], boxes: list, geo: dict) -> list[str]:
        """Each path's segments and wires, over the buses and under the boxes."""
        e = html.escape
        pos = {n: i for i, n in enumerate(order)}
        by_name = {b.name: b for b in boxes}
        bus_y = geo["bus_y"]
        out = []
        for j, p in enumerate(self.paths):
            dy = (j - (len(self.paths) - 1) / 2) * 9  # paths side by side on a shared bus
            segs = p["segments"]
            touching = [(p["client"], segs[:1]), *((n, segs[i:i + 2]) for i, n in enumerate(p["nodes"])),
                        (p["server"], segs[-1:])]
            xs: dict[str, list[float]] = {}
            wires = []
            for name, nets in touching:
                if name not in by_name:
                    continue
                for k, x, edge, _ in drawing.wires(by_name[name], bus_y):
                    if order[k] in nets and order[k] in p["seen"]:
                        xs.setdefault(order[k], []).append(x)
                        wires.append((order[k], x, edge))
            for seg in segs:
                if seg not in pos or seg not in p["seen"]:
                    continue
                y = bus_y[pos[seg]] + dy
                a, b = min(xs.get(seg, [geo["left"]])), max(xs.get(seg, [geo["right"]]))
                if b - a < 20:
                    a, b = a - 10, b + 10
                out.append(self._line(p, seg, f'x1="{a:.1f}" y1="{y:.1f}" x2="{b:.1f}" y2="{y:.1f}"', 6,
                                      f"{e(p['client'])}: {e(p['packet'])} "
                                      f"{'seen' if p['seen'][seg] else 'not seen'} on {e(seg)}"))
            for seg, x, edge in wires:
                ends = f'x1="{x:.1f}" y1="{edge:.1f}" x2="{x:.1f}" y2="{bus_y[pos[seg]] + dy:.1f}"'
                out.append(self._line(p, seg, ends, 4, ""))
        return out

    @staticmethod
    def _line(p: dict, seg: str, ends: str, width: int, title: str) -> str:
        e = html.escape
        seen = p["seen"][seg]
        style = (f'class="path-seen" stroke="{SEEN}"' if seen
                 else f'class="path-unseen" stroke="{UNSEEN}" stroke-dasharray="6 4"')
        under = "" if seen else f'<line {ends} stroke="#fff" stroke-width="{width + 2}"/>'  # dashes on white
        return (f'{under}<line {style} data-client="{e(p["client"])}" data-segment="{e(seg)}" {ends} '
                f'stroke-width="{width}">' + (f"<title>{title}</title>" if title else "") + "</line>")

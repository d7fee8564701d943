"""The topology picture, drawn from the topology alone (nothing deployed): each network a
horizontal bus, each node a box wired to the buses it sits on, every address written out
in full, NAT and firewall roles, and a dashed arrow for the tunnel each client dials. With
`state` (a running lab's status rows by node) the boxes also show the live tunnels.

Used by `pptp-lab graph` and by the `pptp-lab test` report. All text is inside boxes or in
the left margin, and boxes never share room, so no label can sit on another; sizes come
from the text (monospace, estimated generously), so nothing is ever cut short."""
from __future__ import annotations

import html
import itertools
import math
from dataclasses import dataclass, field

from .drawing import FONT, LINE, MARGIN, text_width, wires, wrap  # noqa: F401 (wrap: graph.wrap, as before)
from ..model import kinds

PAD = 8        # px inside a box, around its text
GAP = 24       # px between boxes side by side
WIRE = 30      # px from a box to the bus it touches
LANE = 14      # px between the tunnels' vertical lanes right of the buses
TRACK = 5      # px between tunnels running side by side in the gap above or below boxes
COLOURS = {"": "#06c", "up": "#070", "down": "#b00", "stalled": "#b60"}  # a tunnel as planned, up, down, stalled
STYLE = {"kind": "fill:#555", "role": "fill:#704", "tunnel": "fill:#06c", "good": "fill:#070", "bad": "fill:#b00",
         "live": "fill:#036", "name": "font-weight:bold"}  # per class of box line
BRUTE_FORCE = 7  # networks up to which every order is tried (7! = 5040)


@dataclass
class Box:
    name: str
    lines: list[tuple[str, str]]  # (text, css class) from the top
    buses: list[int]              # positions of its networks' buses, in interface order
    band: int = 0                 # the gap between buses it sits in: band t is above bus t
    x: float = 0.0
    y: float = 0.0
    w: float = 0.0
    h: float = 0.0
    span: range = field(default_factory=lambda: range(0))  # bands its box and wires pass through

    @property
    def cx(self) -> float:
        return self.x + self.w / 2

    @property
    def cy(self) -> float:
        return self.y + self.h / 2


def network_order(topo) -> list[str]:
    """Networks top to bottom so that nodes on several networks span as few buses as
    possible (then: networks with role internet near the top, then the file's order)."""
    nets = list(topo.networks)
    links = [[nets.index(n) for n in node.interfaces] for node in topo.nodes.values()
             if len(node.interfaces) > 1]
    internet = [i for i, n in enumerate(nets) if topo.networks[n].role == "internet"]

    def cost(order):
        pos = {n: i for i, n in enumerate(order)}
        return (sum(max(pos[n] for n in ln) - min(pos[n] for n in ln) for ln in links),
                sum(pos[i] for i in internet))

    if len(nets) <= BRUTE_FORCE:
        best = min(itertools.permutations(range(len(nets))), key=cost)
        return [nets[i] for i in best]
    # Too many orders to try: grow the order from the top, each time taking the network
    # with most links to the last one placed (then to any placed one).
    order = [internet[0] if internet else 0]
    rest = [i for i in range(len(nets)) if i != order[0]]
    while rest:
        def score(i):
            return (sum(1 for ln in links if i in ln and order[-1] in ln),
                    sum(1 for ln in links if i in ln and any(j in ln for j in order)), -i)
        nxt = max(rest, key=score)
        order.append(nxt)
        rest.remove(nxt)
    return [nets[i] for i in order]


def _tunnels(topo) -> list[tuple[str, str]]:
    """(client, node it dials) for every client whose server is a node of the lab."""
    out = []
    for name, node in topo.nodes.items():
        target = topo.reached_at(node.pptp_client.server) if node.pptp_client else None
        if target and target != name:
            out.append((name, target))
    return out


def _lines(topo, name: str, node, state: dict | None) -> list[tuple[str, str]]:
    out = [(name, "name"), (node.kind, "kind")]
    out += [(f"{net} {addr}", "addr") for net, addr in node.interfaces.items()]
    out += kinds.get(node.kind).labels(topo, name, node)  # each kind says what it is
    live = (state or {}).get(name)
    if live:
        if live.get("state") and live["state"] != "running":
            out.append((f"state {live['state']}", "bad"))
        tunnel = live.get("tunnel", "")
        if tunnel in ("up", "down", "stalled"):
            out.append((f"tunnel {tunnel}", "good" if tunnel == "up" else "bad"))
        elif tunnel:
            out.append((tunnel, "live"))  # a server's "N call(s)"
        if live.get("ppp_address"):
            out.append((f"PPP {live['ppp_address']} → {live.get('peer_address') or '?'}", "live"))
        if live.get("call_ids"):
            out.append((f"call IDs {live['call_ids']}", "live"))
    return out


def _fit(occupied: list[list[tuple[float, float]]], bands: range, x0: float, w: float) -> float:
    """The leftmost x from x0 where a box w wide is free in every band of `bands`."""
    taken = sorted(iv for b in bands for iv in occupied[b])
    x = x0
    for a, b in taken:
        if x + w + GAP <= a:
            break
        if b + GAP > x:
            x = b + GAP
    return x


def layout(topo, state: dict | None = None, extra: dict | None = None) -> tuple[list[str], list[Box], dict]:
    """Networks in order, placed boxes, and the picture's geometry. `extra`: node name ->
    more (text, css class) lines for its box."""
    order = network_order(topo)
    pos = {n: i for i, n in enumerate(order)}
    labels = {n: (n, net.subnet + (f" · {net.role}" if net.role != "other" else ""))
              for n, net in topo.networks.items()}
    left = MARGIN + max(text_width(t) for pair in labels.values() for t in pair) + 2 * GAP
    boxes = []
    for name, node in topo.nodes.items():
        lines = _lines(topo, name, node, state) + (extra or {}).get(name, [])
        buses = [pos[n] for n in node.interfaces]
        width = max(max(text_width(t) for t, _ in lines) + 2 * PAD, 16.0 * (len(buses) + 1))
        boxes.append(Box(name, lines, buses, w=width, h=2 * PAD + LINE * len(lines)))
    occupied: list[list[tuple[float, float]]] = [[] for _ in range(len(order) + 1)]
    in_band = [0] * (len(order) + 1)
    # Nodes spanning most buses first: their wires reserve their column through every band
    # they cross; single-network nodes then fill in above or below their bus.
    for box in sorted(boxes, key=lambda b: -(max(b.buses) - min(b.buses))):
        lo, hi = min(box.buses), max(box.buses)
        if lo == hi:
            box.x, box.band = min((_fit(occupied, range(t, t + 1), left, box.w), t) for t in (lo, lo + 1))
            box.span = range(box.band, box.band + 1)
        else:
            box.span = range(lo + 1, hi + 1)
            box.x = _fit(occupied, box.span, left, box.w)
            box.band = min(box.span, key=lambda t: (in_band[t], t))
        in_band[box.band] += 1
        for t in box.span:
            occupied[t].append((box.x, box.x + box.w))
    # Heights: each band as tall as its tallest box plus room for the wires.
    bus_y: list[float] = []
    band_top: list[float] = []
    y = float(MARGIN)
    for t in range(len(order) + 1):
        band_top.append(y)
        tallest = max((b.h for b in boxes if b.band == t), default=0)
        for b in boxes:
            if b.band == t:
                b.y = y + WIRE + (tallest - b.h) / 2
        if tallest:
            y += 2 * WIRE + tallest
        elif t == 0:
            y += FONT + 6  # room for the first bus's name above it
        elif t < len(order):
            y += 2 * WIRE  # room for the bus labels and for wires passing through
        if t < len(order):
            bus_y.append(y)
    band_top.append(y)  # the bottom of the last band
    bottom = max(y, bus_y[-1] + FONT + 8)  # below the last bus's subnet label
    legend_y = bottom + LINE + 4
    right = max([left + 200] + [b.x + b.w for b in boxes]) + GAP / 2  # where the buses end
    targets = _tunnels(topo)
    lanes = {t: right + GAP + LANE * i for i, t in enumerate(dict.fromkeys(t for _, t in targets))}
    width = max(lanes.values(), default=right) + MARGIN
    return order, boxes, {"labels": labels, "bus_y": bus_y, "band_top": band_top, "left": left,
                          "right": right, "lanes": lanes, "width": width,
                          "legend_y": legend_y, "height": legend_y + MARGIN}


def _tunnel_path(src: Box, dst: Box, geo: dict) -> str:
    """A tunnel's route, clear of every box and label: down from the client into the gap
    below its row, right to the server's lane past the buses' ends, along the gap above the
    server's row, and down into the server. Tunnels to one server share its lane and the
    last stretch; tunnels to different servers run on separate tracks in those gaps."""
    top = geo["band_top"]
    track = TRACK * (list(geo["lanes"]).index(dst.name) % 4)  # 4 tracks fit in a gap
    below = top[src.band + 1] - WIRE + 6 + track  # between src's row and the bus below it
    above = top[dst.band] + 8 + track             # between the bus above dst's row and the row
    xs, xd = src.x + src.w - 10, dst.x + dst.w - 10
    return (f"M{xs:.1f},{src.y + src.h:.1f} V{below:.1f} H{geo['lanes'][dst.name]:.1f} V{above:.1f} "
            f"H{xd:.1f} V{dst.y:.1f}")


def topology_svg(topo, state: dict | None = None, paths: list | None = None) -> str:
    """The topology as an SVG document (see the module's doc). `state`: node name ->
    {state, tunnel, ppp_address, peer_address, call_ids} (lab.up.lifecycle.NodeStatus fields).
    `paths`: failing clients' packets to draw on it (lab.diagnosis.why.path_data; lab.reports.packetpath)."""
    e = html.escape
    marked = None
    if paths:
        from . import packetpath  # imports nothing of this module (lab.reports.drawing)
        marked = packetpath.Marked(topo, paths)
    order, boxes, geo = layout(topo, state, marked.lines if marked else None)
    bus_y, width, height = geo["bus_y"], geo["width"], geo["height"]
    if marked:
        width, height = marked.size(geo, bool(_tunnels(topo)))
    by_name = {b.name: b for b in boxes}
    width, height = math.ceil(width), math.ceil(height)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="topology" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="monospace" font-size="{FONT}">',
           "<style>" + " ".join(f".topology text.{cls}{{{rule}}}" for cls, rule in STYLE.items()) + "</style>",
           '<defs>' + "".join(
               f'<marker id="topology-arrow-{c[1:]}" markerWidth="10" markerHeight="8" refX="10" refY="4" '
               f'orient="auto"><path d="M0,0 L10,4 L0,8 z" fill="{c}"/></marker>' for c in COLOURS.values())
           + '</defs>', '<rect width="100%" height="100%" fill="#fff"/>']  # legible on a dark page too
    for i, net in enumerate(order):
        name, sub = geo["labels"][net]
        y = bus_y[i]
        out.append(f'<g class="net" data-name="{e(net)}">'
                   f'<line x1="{MARGIN}" y1="{y}" x2="{geo["right"]:.1f}" y2="{y}" stroke="#4a7" stroke-width="4"/>'
                   f'<text x="{MARGIN}" y="{y - 6}" font-weight="bold">{e(name)}</text>'
                   f'<text x="{MARGIN}" y="{y + FONT + 4}" fill="#555">{e(sub)}</text></g>')
    for b in boxes:
        for k, x, edge, crossed in wires(b, bus_y):
            for c in crossed:
                # A gap in a bus the wire only crosses, so it reads as a hop, not a joint.
                out.append(f'<rect x="{x - 4:.1f}" y="{bus_y[c] - 4}" width="8" height="8" fill="#fff"/>')
            out.append(f'<line x1="{x:.1f}" y1="{edge:.1f}" x2="{x:.1f}" y2="{bus_y[k]}" stroke="#666" '
                       f'stroke-width="1.5"/><circle cx="{x:.1f}" cy="{bus_y[k]}" r="3.5" fill="#4a7"/>')
    if marked:
        out += marked.overlay(order, boxes, geo)
    tunnels = _tunnels(topo)
    for name, target in tunnels:
        tunnel = ((state or {}).get(name) or {}).get("tunnel")
        colour = COLOURS.get(tunnel, COLOURS[""])
        out.append(f'<path class="tunnel" d="{_tunnel_path(by_name[name], by_name[target], geo)}" fill="none" '
                   f'stroke="{colour}" stroke-width="1.5" stroke-dasharray="6 4" '
                   f'marker-end="url(#topology-arrow-{colour[1:]})">'
                   f'<title>{e(name)} dials {e(topo.nodes[name].pptp_client.server)} ({e(target)})'
                   + (f": tunnel {e(tunnel)}" if tunnel else "") + '</title></path>')
    for b in boxes:
        mark = marked.boxes.get(b.name) if marked else None
        out.append(f'<g class="node" data-name="{e(b.name)}">'
                   + (f'<title>{e(mark[1])}</title>' if mark else "") +
                   f'<rect class="box" x="{b.x:.1f}" y="{b.y:.1f}" width="{b.w:.1f}" height="{b.h:.1f}" rx="5" '
                   + (f'fill="#fee" stroke="{mark[0]}" stroke-width="3"/>' if mark else 'fill="#eef" stroke="#336"/>'))
        for i, (text, cls) in enumerate(b.lines):
            out.append(f'<text class="{cls}" x="{b.x + PAD:.1f}" y="{b.y + PAD + LINE * i + FONT:.1f}">'
                       f'{e(text)}</text>')
        out.append("</g>")
    if tunnels:
        out.append(f'<text class="legend" x="{MARGIN}" y="{geo["legend_y"]:.1f}" fill="{COLOURS[""]}">'
                   "- - -&gt; the tunnel each client dials</text>")
    if marked:
        out += marked.legend(geo["legend_y"] + (LINE if tunnels else 0))
    out.append("</svg>")
    return "\n".join(out)


def page(topo, state: dict | None = None) -> str:
    """An HTML page around the picture (`pptp-lab graph -o x.html`)."""
    e = html.escape
    title = f"topology {topo.name}" + (" (live)" if state else "")
    return "\n".join([
        "<!doctype html><html><head><meta charset='utf-8'>", f"<title>{e(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em} .scroll{overflow-x:auto}</style></head><body>",
        f"<h1>{e(title)}</h1>" + (f"<p>{e(topo.description)}</p>" if topo.description else ""),
        f"<div class='scroll'>{topology_svg(topo, state)}</div>", "</body></html>"])


def state_from(rows) -> dict:
    """`state` for topology_svg from lab.up.lifecycle.status rows."""
    return {r.name: {"state": r.state, "tunnel": r.tunnel, "ppp_address": r.ppp_address,
                     "peer_address": r.peer_address, "call_ids": r.call_ids} for r in rows}

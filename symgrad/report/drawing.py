"""The tape drawn as a layered graph, top to bottom: inputs above the values that read them.

Two engines give the same kind of drawing (boxes sized from their labels, edges as SVG
paths that go around boxes, never under them):

* ``dot`` — Graphviz, through the ``graphviz`` package, when the ``dot`` binary is on PATH;
  its splines are routed around the nodes;
* ``sugiyama`` — pure Python (``grandalf``'s Sugiyama layout: ranks, crossing reduction,
  Brandes–Köpf coordinates), used without the binary. A long edge gets a dummy vertex in
  every layer it crosses; it is drawn straight down through its dummy's slot inside a layer
  and as a curve inside the gaps between layers, where no box is, so it cannot pass under
  a box.

>>> import symgrad as sg
>>> g = sg.models.mha(2, 2, 1, 2)
>>> lay = tape_layout(g, engine="sugiyama")
>>> len(lay["boxes"]) == len(g.values), lay["engine"]
(True, 'sugiyama')
>>> all(b["w"] >= text_width(b["label"]) + 2 * PAD_X for b in lay["boxes"])
True
"""
from __future__ import annotations

import re
import shutil

FONT_PX = 13            #: font size of both text lines (monospace: the width is predictable)
CHAR_W = 0.62 * FONT_PX  #: a monospace advance is 0.6em (DejaVu, Liberation, Menlo); margin
PAD_X = 10              #: text inset from the box's sides
BOX_H = 44              #: two lines of text
GAP_X = 24              #: least horizontal space between boxes (and edge slots) in a layer
GAP_Y = 46              #: space between layers: edges change column only here
SLOT_W = 10             #: width reserved in a layer for an edge passing through it
MARGIN = 12


def text_width(text: str) -> float:
    """Width of ``text`` in the drawing's monospace font, rounded up."""
    return round(len(text) * CHAR_W + 0.5, 1)


def tape_layout(graph, engine: str = "auto") -> dict:
    """Boxes (one per tape value) and edges (one per distinct value read, ``reads`` > 1 when
    a node reads it twice) with SVG coordinates; ``engine``: auto, dot or sugiyama."""
    n_in = len(graph.inputs)
    boxes = []
    for i, name in enumerate(graph.values):
        node = graph.nodes[i - n_in] if i >= n_in else None
        label = f"{node.op if node else 'input'} {'x'.join(map(str, graph.shape(i)))}"
        boxes.append({"index": i, "name": name, "label": label, "input": node is None,
                      "output": i == graph.output, "h": BOX_H,
                      "w": max(text_width(name), text_width(label)) + 2 * PAD_X})
    reads: dict = {}
    for k, node in enumerate(graph.nodes):
        for r in node.reads:
            reads[(r, n_in + k)] = reads.get((r, n_in + k), 0) + 1
    if engine == "auto":
        engine = "dot" if shutil.which("dot") and _has_graphviz() else "sugiyama"
    if engine == "dot":
        try:
            paths = _dot(boxes, list(reads))
        except Exception:   # a broken Graphviz install: the pure-Python layout still works
            engine, paths = "sugiyama", None
    if engine == "sugiyama":
        paths = _sugiyama(boxes, list(reads))
    elif engine != "dot":
        raise ValueError(f"unknown layout engine {engine!r}: auto, dot or sugiyama")
    edges = [{"source": boxes[s]["name"], "target": boxes[t]["name"], "reads": n,
              "d": _path_d(paths[s, t]), "end": paths[s, t][-1][-1]}
             for (s, t), n in reads.items()]
    width = max(b["x"] + b["w"] for b in boxes) + MARGIN
    height = max(b["y"] + b["h"] for b in boxes) + MARGIN
    for b in boxes:   # text baselines: two lines, each FONT_PX high, centred in the box
        b["text_x"] = round(b["x"] + PAD_X, 1)
        b["name_y"] = round(b["y"] + BOX_H / 2 - 4, 1)
        b["label_y"] = round(b["y"] + BOX_H / 2 + FONT_PX, 1)
    return {"boxes": boxes, "edges": edges, "width": round(width), "height": round(height),
            "engine": engine, "font": FONT_PX}


def _has_graphviz() -> bool:
    try:
        import graphviz  # noqa: F401
    except ImportError:
        return False
    return True


def _path_d(segments) -> str:
    """SVG path data from [start point, then ('L', p) or ('C', c1, c2, p) segments]."""
    (x, y), rest = segments[0], segments[1:]
    out = [f"M {x:.1f} {y:.1f}"]
    for seg in rest:
        out.append(seg[0] + " " + " ".join(f"{px:.1f} {py:.1f}" for px, py in seg[1:]))
    return " ".join(out)


# ----- Graphviz ------------------------------------------------------------------------

def _dot(boxes, pairs) -> dict:
    """Place the boxes and route the edges with ``dot``; returns {(s, t): path segments}."""
    import graphviz
    inch = 72.0
    d = graphviz.Digraph(graph_attr={"rankdir": "TB", "nodesep": str(GAP_X / inch),
                                     "ranksep": str(GAP_Y / inch), "splines": "spline"},
                         node_attr={"shape": "box", "fixedsize": "true", "label": ""},
                         edge_attr={"arrowhead": "none"})
    for b in boxes:
        d.node(f"v{b['index']}", width=f"{b['w'] / inch:.4f}", height=f"{b['h'] / inch:.4f}")
    for s, t in pairs:
        d.edge(f"v{s}", f"v{t}")
    plain = d.pipe(format="plain", encoding="utf-8")
    height, paths = 0.0, {}
    for line in plain.splitlines():
        f = line.split() or [""]
        if f[0] == "graph":
            height = float(f[3])
        elif f[0] == "node":
            b = boxes[int(f[1][1:])]
            b["x"] = round(float(f[2]) * inch - b["w"] / 2 + MARGIN, 1)
            b["y"] = round((height - float(f[3])) * inch - b["h"] / 2 + MARGIN, 1)
        elif f[0] == "edge":
            n = int(f[3])
            pts = [(float(f[4 + 2 * i]) * inch + MARGIN,
                    (height - float(f[5 + 2 * i])) * inch + MARGIN) for i in range(n)]
            paths[int(f[1][1:]), int(f[2][1:])] = [pts[0]] + [
                ("C", pts[i], pts[i + 1], pts[i + 2]) for i in range(1, n - 2, 3)]
    return paths


# ----- pure Python: grandalf's Sugiyama layout -------------------------------------------

class _View:
    def __init__(self, w, h):
        self.w, self.h, self.xy = w, h, (0.0, 0.0)


def _sugiyama(boxes, pairs) -> dict:
    """Rank and order with grandalf, then place and route (see the module docstring)."""
    from grandalf.graphs import Edge, Vertex, graph_core
    from grandalf.layouts import SugiyamaLayout
    vertices = [Vertex(b["index"]) for b in boxes]
    for v, b in zip(vertices, boxes):
        v.view = _View(b["w"], b["h"])
    # components in tape order (grandalf's Graph collects a component's edges in a set,
    # which would make the drawing differ from run to run)
    part = list(range(len(boxes)))

    def find(i):
        while part[i] != i:
            part[i] = part[part[i]]
            i = part[i]
        return i
    for s, t in pairs:
        part[find(s)] = find(t)
    groups: dict = {}
    for i in range(len(boxes)):
        groups.setdefault(find(i), []).append(i)
    cores = [graph_core([vertices[i] for i in members],
                        [Edge(vertices[s], vertices[t]) for s, t in pairs if find(s) == root])
             for root, members in groups.items()]
    layers_all, dummies, offset = [], {}, 0.0
    for core in cores:   # one layout per connected component, side by side
        sug = SugiyamaLayout(core)
        sug.xspace, sug.yspace = GAP_X, GAP_Y
        sug.dw, sug.dh = SLOT_W, BOX_H
        roots = [v for v in core.sV if not v.e_in()]
        sug.init_all(roots=roots, optimize=True)
        sug.draw(3)
        layers = [[(v.view.xy[0], v) for v in layer] for layer in sug.layers]
        right = _separate(layers)
        for k, layer in enumerate(layers):
            while len(layers_all) <= k:
                layers_all.append([])
            layers_all[k].extend((x + offset, v) for x, v in layer)
        for e, ctrl in sug.ctrls.items():
            dummies[e.v[0].data, e.v[1].data] = [ctrl[r] for r in sorted(ctrl)][1:-1]
        offset += right + GAP_X * 2
    xs = {}
    for k, layer in enumerate(layers_all):
        for x, v in layer:
            xs[v] = x
            if not hasattr(v, "ctrl"):   # a real vertex, not a dummy
                b = boxes[v.data]
                b["x"], b["y"] = round(x - b["w"] / 2, 1), _top(k)
                b["rank"] = k
    return _route(boxes, pairs, {p: [xs[d] for d in ds] for p, ds in dummies.items()})


def _top(rank: int) -> float:
    return MARGIN + rank * (BOX_H + GAP_Y)


def _separate(layers) -> float:
    """Shift the centres so that neighbours in a layer keep GAP_X apart (grandalf's
    balancing respects that in general; this makes it a guarantee) and the leftmost edge
    is at MARGIN; returns the rightmost edge."""
    width = lambda v: v.view.w   # noqa: E731  (dummies: SLOT_W)
    left = min(x - width(v) / 2 for layer in layers for x, v in layer)
    right = 0.0
    for layer in layers:
        layer.sort(key=lambda xv: xv[0])
        prev = None
        for j, (x, v) in enumerate(layer):
            x = x - left + MARGIN
            if prev is not None:
                px, pv = prev
                x = max(x, px + (width(pv) + width(v)) / 2 + GAP_X)
            layer[j] = prev = (x, v)
            right = max(right, x + width(v) / 2)
    return right


def _route(boxes, pairs, through) -> dict:
    """Each edge leaves its source's bottom side and enters its target's top side at a port
    spread along the side (ordered by where the edge goes, so the ports do not cross);
    through each layer it crosses it runs straight down its dummy's slot."""
    def first_x(s, t):
        return (through.get((s, t)) or [boxes[t]["x"] + boxes[t]["w"] / 2])[0]

    def last_x(s, t):
        return (through.get((s, t)) or [boxes[s]["x"] + boxes[s]["w"] / 2])[-1]

    out_port, in_port = {}, {}
    for side, port, key in ((0, out_port, first_x), (1, in_port, last_x)):
        by_box: dict = {}
        for p in pairs:
            by_box.setdefault(p[side], []).append(p)
        for i, ps in by_box.items():
            b = boxes[i]
            ps.sort(key=lambda p: key(*p))
            for j, p in enumerate(ps):
                port[p] = b["x"] + b["w"] * (j + 1) / (len(ps) + 1)
    paths = {}
    for s, t in pairs:
        src, dst = boxes[s], boxes[t]
        start = (out_port[s, t], src["y"] + src["h"])
        segments, (x, y) = [start], start
        for k, dx in enumerate(through.get((s, t), []), start=src["rank"] + 1):
            segments.append(_gap_curve((x, y), (dx, _top(k))))
            x, y = dx, _top(k) + BOX_H
            segments.append(("L", (x, y)))
        segments.append(_gap_curve((x, y), (in_port[s, t], dst["y"])))
        paths[s, t] = segments
    return paths


def _gap_curve(a, b):
    """A cubic from a (a layer's bottom) to b (the next layer's top) with vertical tangents:
    its control points lie between the two y's, so the curve stays inside the gap."""
    mid = (a[1] + b[1]) / 2
    return ("C", (a[0], mid), (b[0], mid), b)


def path_points(d: str, steps: int = 16) -> list:
    """Points along an SVG path of M, L and C commands (absolute coordinates), for checks.

    >>> path_points("M 0 0 L 0 10 C 0 15 10 15 10 20", steps=2)
    [(0.0, 0.0), (0.0, 10.0), (0.0, 10.0), (5.0, 15.0), (10.0, 20.0)]
    """
    tokens = re.findall(r"[MLC]|-?[\d.]+", d)
    pts, cur, k = [], None, 0
    while k < len(tokens):
        cmd = tokens[k]
        n = {"M": 1, "L": 1, "C": 3}[cmd]
        nums = [float(v) for v in tokens[k + 1:k + 1 + 2 * n]]
        ctrl = [(nums[2 * i], nums[2 * i + 1]) for i in range(n)]
        if cmd == "C":
            p0, (p1, p2, p3) = cur, ctrl
            for i in range(steps + 1):
                u = i / steps
                pts.append(tuple(round((1 - u) ** 3 * a + 3 * (1 - u) ** 2 * u * b
                                       + 3 * (1 - u) * u ** 2 * c + u ** 3 * e, 6)
                                 for a, b, c, e in zip(p0, p1, p2, p3)))
        else:
            pts.append(ctrl[0])
        cur = ctrl[-1]
        k += 1 + 2 * n
    return pts

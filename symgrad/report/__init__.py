"""Static HTML proof reports: view models here, markup in jinja2 templates shipped as package
data (templates/, static/), modelled on coverage.py's html report. Offline: no CDN, no
network; every page opens from the file system. Every user-supplied string is escaped
(autoescape); only MathML from SymPy's presentation printer, Pygments' highlighted source
and the SVG numbers are inserted as markup.

>>> from symgrad.report import tape_layout
>>> import symgrad as sg
>>> lay = tape_layout(sg.models.mha(2, 2, 1, 2))
>>> lay["width"] > 0 and len(lay["boxes"]) == len(sg.models.mha(2, 2, 1, 2).values)
True
"""
from __future__ import annotations

import inspect
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path

import jinja2
import numpy as np
import symengine as se
import sympy as sp
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

HERE = Path(__file__).resolve().parent
DAG_THEOREM_URL = "dag-theorem.md"   # copied next to the pages with the other static files
_MAX_NODES = 600   # expressions larger than this are not rendered as MathML

_env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")),
                          autoescape=True, trim_blocks=True, lstrip_blocks=True,
                          undefined=jinja2.StrictUndefined)


def write_report(directory, outcomes) -> Path:
    """Write index.html, one page per obligation and one per graph into ``directory``;
    returns the index's path."""
    from ..gate import versions
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    for f in (HERE / "static").iterdir():
        shutil.copy(f, out / f.name)
    (out / "pygments.css").write_text(HtmlFormatter().get_style_defs(".source"),
                                      encoding="utf-8")
    env = {"versions": versions(),
           "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    rows, pages = [], 0
    for k, o in enumerate(outcomes):
        graph_page = f"graph-{k}.html" if o.kind == "graph" and o.verdict not in (
            "error", "internal") else None
        parts = []
        for j, r in enumerate(o.results):
            page = f"obligation-{k}-{j}.html"
            parts.append({"name": r["name"], "verdict": r["verdict"], "page": page})
            _render(out / page, "obligation.html", env=env, outcome=o, graph_page=graph_page,
                    r=r, op=_op_view(o, r))
            pages += 1
        if graph_page:
            _render(out / graph_page, "graph.html", env=env, outcome=o, parts=parts,
                    graph=_graph_view(o), dag_theorem=DAG_THEOREM_URL)
        rows.append({"o": o, "parts": parts,
                     "link": graph_page or (parts[0]["page"] if parts else None),
                     "method": o.results[-1]["method"] if o.results else "",
                     "terms": sum(r["terms"] for r in o.results),
                     "shapes": _shapes_text(o)})
    counts = {v: sum(1 for o in outcomes if o.verdict == v or (v, o.verdict) == (
        "error", "internal")) for v in ("proved", "refuted", "unknown", "error")}
    met = sum(1 for o in outcomes if o.met)
    index = out / "index.html"
    _render(index, "index.html", env=env, rows=rows, counts=counts, met=met,
            total=len(outcomes))
    return index


def _render(path: Path, template: str, **context):
    path.write_text(_env.get_template(template).render(**context), encoding="utf-8")


def _shapes_text(o) -> str:
    s = o.spec
    if "shapes" in s:
        return ", ".join("x".join(map(str, sh)) for sh in s["shapes"])
    dims = [f"{d}={s[d]}" for d in ("n", "d_model", "heads", "head_dim", "d_ff") if d in s]
    return ", ".join(dims)


def mathml(expr) -> str | None:
    """SymPy's presentation MathML of ``expr`` in a display <math> element, or None when
    the expression is too large to read."""
    e = sp.sympify(expr)
    if sp.count_ops(e, visual=False) > _MAX_NODES:
        return None
    body = sp.mathml(e, printer="presentation")
    return f'<math xmlns="http://www.w3.org/1998/Math/MathML" display="block">{body}</math>'


def _op_view(o, r) -> dict | None:
    """Forward (formula, one entry in MathML), the rule's highlighted source and one entry
    of the reference derivative, for an obligation about a library op."""
    from ..api import op_params
    from ..mutants import MUTANTS
    from ..ops import OPS
    from ..tensor import symbols
    name = r["name"]
    if o.kind == "mutant":
        m = MUTANTS[o.spec["mutant"]]
        op_name, rule, params = m.op, m.vjp, m.params or {}
    else:
        match = re.match(r"(?:node )?([a-z_]+)\(", name)
        if not match or match.group(1) not in OPS:
            return None
        op_name, rule, params = match.group(1), None, None
        if o.kind == "node":
            from ..gate import parse_params
            params = parse_params(o.spec.get("params", {}))
    op = OPS[op_name]
    rule = rule or op.vjp
    from .formulas import FORMULAS
    formula = FORMULAS.get(op.name)
    view = {"name": op.name, "signature": op.signature, "doc": op.doc,
            "formula": mathml(formula) if formula is not None else None,
            "source": _source(rule), "forward_source": _source(op.forward),
            "entry": None, "reference": None, "exact": True, "error": None,
            "entry_index": "", "reference_of": "",
            "bug": MUTANTS[o.spec["mutant"]].bug if o.kind == "mutant" else None}
    try:
        shapes = [tuple(s) for s in r["shapes"]]
        reads = None
        if "#" in name:   # a node reading one input twice: mul(2x3#0, 2x3#0)
            reads = [int(x) for x in re.findall(r"#(\d+)", name)]
        arg_shapes = shapes if reads is None else [shapes[i] for i in reads]
        values = op_params(op, arg_shapes, params)
        view["exact"] = params is not None or o.kind == "node" or all(
            str(v) == r["params"].get(k) for k, v in values.items()
            if not isinstance(v, np.ndarray))
        names = list(op.args)
        arrays = [symbols(n, s) for n, s in zip(names, shapes)]
        args = arrays if reads is None else [arrays[i] for i in reads]
        out = np.asarray(op.forward(*args, **values), dtype=object)
        first = out.flat[0]
        view["entry_index"] = ",".join("0" for _ in out.shape)
        view["entry"] = mathml(first)
        g = symbols("g", out.shape)
        x0 = arrays[0].flat[0]
        phi = se.Add(*[g[k] * se.sympify(out[k]) for k in np.ndindex(out.shape)])
        view["reference_of"] = str(x0)
        view["reference"] = mathml(se.diff(phi, x0))
    except Exception as exc:  # a display aid only: say why it is missing
        view["error"] = f"{type(exc).__name__}: {exc}"
    return view


def _source(fun) -> str:
    try:
        text = inspect.getsource(fun)
    except (OSError, TypeError):
        return "<source not available>"
    return highlight(text, PythonLexer(), HtmlFormatter(cssclass="source"))


def _graph_view(o) -> dict | None:
    from ..models.catalog import build_graph
    s = o.spec
    dims = {d: s[d] for d in ("n", "d_model", "heads", "head_dim", "d_ff")}
    graph = build_graph(s["graph"], dims, s.get("layout", "pytorch"), s.get("form", "whole"),
                        s.get("fixed_weights", False))
    saved = []
    n_in = len(graph.inputs)
    for i, name in enumerate(graph.values):
        node = graph.nodes[i - n_in] if i >= n_in else None
        saved.append({"index": i, "name": name, "shape": "x".join(map(str, graph.shape(i))),
                      "op": node.op if node else "input",
                      "reads": ", ".join(graph.values[r] for r in node.reads) if node else ""})
    return {"name": graph.name, "info": dict(graph.info), "saved": saved,
            "layout": tape_layout(graph), "backprop": s.get("backprop")}


def tape_layout(graph, box_w=150, box_h=38, gap_x=40, gap_y=14) -> dict:
    """Coordinates for the SVG drawing of a tape: one column per depth (longest path from
    an input), values in tape order down each column, an edge per read."""
    n_in = len(graph.inputs)
    depth = [0] * len(graph.values)
    for k, node in enumerate(graph.nodes):
        depth[n_in + k] = 1 + max(depth[r] for r in node.reads)
    rows: dict = {}
    boxes = []
    for i, name in enumerate(graph.values):
        col = depth[i]
        row = rows.get(col, 0)
        rows[col] = row + 1
        node = graph.nodes[i - n_in] if i >= n_in else None
        boxes.append({"x": 10 + col * (box_w + gap_x), "y": 10 + row * (box_h + gap_y),
                      "w": box_w, "h": box_h, "name": name,
                      "label": f"{node.op if node else 'input'} "
                               f"{'x'.join(map(str, graph.shape(i)))}",
                      "input": node is None, "output": i == graph.output})
    edges = []
    for k, node in enumerate(graph.nodes):
        b = boxes[n_in + k]
        for r in node.reads:
            a = boxes[r]
            edges.append({"x1": a["x"] + a["w"], "y1": a["y"] + a["h"] / 2,
                          "x2": b["x"], "y2": b["y"] + b["h"] / 2})
    width = 20 + (max(depth) + 1) * (box_w + gap_x)
    height = 20 + max(rows.values()) * (box_h + gap_y)
    return {"boxes": boxes, "edges": edges, "width": width, "height": height}

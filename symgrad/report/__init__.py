"""Static HTML proof reports: view models here, markup in jinja2 templates shipped as package
data (templates/, static/), modelled on coverage.py's html report. Offline: no CDN, no
network; every page opens from the file system. Every user-supplied string is escaped
(autoescape); only MathML (SymPy's presentation printer; statements.py, which escapes the
names it writes), Pygments' highlighted source, markdown rendered with raw HTML escaped
(docs.py) and the SVG numbers are inserted as markup. The tape drawing: drawing.py.

>>> from symgrad.report import tape_layout
>>> import symgrad as sg
>>> lay = tape_layout(sg.models.mha(2, 2, 1, 2))
>>> lay["width"] > 0 and len(lay["boxes"]) == len(sg.models.mha(2, 2, 1, 2).values)
True
>>> lay["engine"] in ("dot", "sugiyama")
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

from ..prove.budget import _smaller_than
from .docs import markdown_page
from .drawing import tape_layout
from .statements import corollary_statement, end_to_end_statement, node_statement

HERE = Path(__file__).resolve().parent
DAG_THEOREM_URL = "dag-theorem.html"   # rendered from static/dag-theorem.md
_MAX_NODES = 600   # expressions larger than this are not rendered as MathML

_env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")),
                          autoescape=True, trim_blocks=True, lstrip_blocks=True,
                          undefined=jinja2.StrictUndefined)


def write_report(directory, outcomes, layout: str = "auto") -> Path:
    """Write index.html, one page per obligation and one per graph into ``directory``, and
    the documents they cite (static/*.md) as HTML; returns the index's path. ``layout``: the
    tape drawing's engine (auto: Graphviz dot when installed, else pure-Python sugiyama)."""
    from ..gate import versions
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    env = {"versions": versions(), "dag_theorem": DAG_THEOREM_URL,
           "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    for f in (HERE / "static").iterdir():
        if f.suffix == ".md":
            title, body = markdown_page(f.read_text(encoding="utf-8"))
            _render(out / f.with_suffix(".html").name, "doc.html", env=env, title=title,
                    body=body, source=f.name)
        else:
            shutil.copy(f, out / f.name)
    (out / "pygments.css").write_text(HtmlFormatter().get_style_defs(".source"),
                                      encoding="utf-8")
    rows = []
    for k, o in enumerate(outcomes):
        graph = _graph_view(o, layout) if o.kind == "graph" and o.verdict not in (
            "error", "internal") else None
        graph_page = f"graph-{k}.html" if graph else None
        parts = [{"name": r["name"], "verdict": r["verdict"], "page": f"obligation-{k}-{j}.html"}
                 for j, r in enumerate(o.results)]
        for j, r in enumerate(o.results):
            op = _op_view(o, r)
            _render(out / parts[j]["page"], "obligation.html", env=env, outcome=o,
                    graph_page=graph_page, r=r, op=op, graph=graph,
                    st=_statement(r, j, op, graph, parts))
        if graph_page:
            _render(out / graph_page, "graph.html", env=env, outcome=o, parts=parts,
                    graph=graph, conditions=_tape_conditions(o))
        rows.append({"o": o, "parts": parts,
                     "link": graph_page or (parts[0]["page"] if parts else None),
                     "method": o.results[-1]["method"] if o.results else "",
                     "terms": sum(r["terms"] for r in o.results),
                     "shapes": _shapes_text(o)})
    counts = {v: sum(1 for o in outcomes if o.verdict == v or (v, o.verdict) == (
        "error", "internal")) for v in ("proved", "verified", "refuted", "unknown", "error")}
    met = sum(1 for o in outcomes if o.met)
    index = out / "index.html"
    _render(index, "index.html", env=env, rows=rows, counts=counts, met=met,
            total=len(outcomes))
    return index


def _statement(r, j, op, graph, parts) -> dict:
    """What the page of result ``r`` (the ``j``-th of its outcome) states (statements.py);
    kind "plain" when it is none of a node obligation, the DAG corollary and the end-to-end
    obligation. A graph's node obligations come first, in ``node_obligations`` order."""
    if graph and r["name"].endswith(": DAG corollary"):
        return corollary_statement(graph, parts)
    if graph and r["name"].endswith(": end to end"):
        return end_to_end_statement(graph, r)
    if op and op.get("out_shape") is not None:
        return node_statement(op, r, graph["uses"].get(j, []) if graph else [])
    return {"kind": "plain"}


def _tape_conditions(o) -> list:
    """The graph's domain over tape values (the same on the corollary and end to end)."""
    return next((r["tape_conditions"] for r in o.results if r.get("tape_conditions")), [])


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
    if isinstance(expr, se.Basic) and not _smaller_than(expr, 4 * _MAX_NODES):
        return None     # SymPy's operation count would walk a shared DAG as a tree first
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
            "entry_index": "", "reference_of": "", "args": op.args, "reads": None,
            "out_shape": None,
            "bug": MUTANTS[o.spec["mutant"]].bug if o.kind == "mutant" else None}
    try:
        shapes = [tuple(s) for s in r["shapes"]]
        reads = None
        if "#" in name:   # a node reading one input twice: mul(2x3#0, 2x3#0)
            reads = [int(x) for x in re.findall(r"#(\d+)", name)]
        arg_shapes = shapes if reads is None else [shapes[i] for i in reads]
        view["reads"] = reads
        values = op_params(op, arg_shapes, params)
        view["exact"] = params is not None or o.kind == "node" or all(
            str(v) == r["params"].get(k) for k, v in values.items()
            if not isinstance(v, np.ndarray))
        names = list(op.args)
        arrays = [symbols(n, s) for n, s in zip(names, shapes)]
        args = arrays if reads is None else [arrays[i] for i in reads]
        out = np.asarray(op.forward(*args, **values), dtype=object)
        view["out_shape"] = out.shape
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


def _graph_view(o, layout: str = "auto") -> dict:
    """The tape of a graph outcome: its drawing, saved tensors, which node obligation each
    node rests on, and the backprop engine it was checked with."""
    from ..models.catalog import build_graph
    s = o.spec
    dims = {d: s[d] for d in ("n", "d_model", "heads", "head_dim", "d_ff")}
    graph = build_graph(s["graph"], dims, s.get("layout", "pytorch"), s.get("form", "whole"),
                        s.get("fixed_weights", False))
    saved, uses = [], {}
    n_in = len(graph.inputs)
    owner = _node_obligation_of(graph)
    for i, name in enumerate(graph.values):
        node = graph.nodes[i - n_in] if i >= n_in else None
        shape = graph.shape(i)
        row = {"index": i, "name": name, "shape": "x".join(map(str, shape)), "dims": shape,
               "size": int(np.prod(shape)), "op": node.op if node else "input",
               "reads": ", ".join(graph.values[r] for r in node.reads) if node else "",
               "obligation": owner[i - n_in] if node else None}
        if node:
            uses.setdefault(row["obligation"], []).append(f"{name} = {node.op}({row['reads']})")
        saved.append(row)
    verdicts = {kind: next((r["verdict"] for r in o.results if r["name"].endswith(suffix)),
                           None)
                for kind, suffix in (("corollary", ": DAG corollary"),
                                     ("end_to_end", ": end to end"))}
    e2e = next((r for r in o.results if r["name"].endswith(": end to end")), {})
    return {"name": graph.name, "info": dict(graph.info), "saved": saved, "uses": uses,
            "layout": tape_layout(graph, layout), "engine": _engine_view(s.get("backprop")),
            "verdicts": verdicts, "end_to_end_evidence": e2e.get("evidence", "exact")}


def _node_obligation_of(graph) -> list:
    """For each node of the tape, the index of its node obligation in
    ``node_obligations(graph)`` (the order of a graph's results): two nodes share one
    exactly when ``node_obligations`` keeps one of them."""
    from types import SimpleNamespace
    from ..prove.tape import node_obligations
    firsts = [node for node, _, _ in node_obligations(graph)]
    return [next(j for j, first in enumerate(firsts) if len(node_obligations(
        SimpleNamespace(nodes=[first, node], shape=graph.shape))) == 1)
        for node in graph.nodes]


def _engine_view(name) -> dict | None:
    """An engine mutant (the graph's ``backprop``): its docstrings and source, with the
    module-level helpers it calls (the wrong delivery step is in one of those)."""
    if not name:
        return None
    from .. import mutants
    fun = mutants.ENGINE_MUTANTS.get(name)
    if fun is None:
        return {"name": name, "doc": "", "source": ""}
    helpers = [getattr(mutants, n) for n in fun.__code__.co_names
               if getattr(getattr(mutants, n, None), "__module__", "") == mutants.__name__]
    funs = [fun] + [h for h in helpers if inspect.isfunction(h)]
    return {"name": name, "doc": " ".join(inspect.getdoc(f) or "" for f in funs).strip(),
            "source": "".join(_source(f) for f in funs)}

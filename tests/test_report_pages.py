"""The report as proof pages: each obligation page states its theorem (the adjoint identity
of a node, the DAG corollary citing its node obligations, the composed end-to-end identity
with its seed blocks and tape conditions); an engine mutant's pages say why the corollary and
the end-to-end verdicts are both true; the tape drawing is a layered graph whose edges go
around boxes, not under them, with labels inside their boxes — checked from the SVG's
coordinates for the pure-Python layout always and for Graphviz where ``dot`` is installed;
and a real browser renders the decoder's tape and a REFUTED page within the viewport's width
with readable MathML (skipped without Chromium)."""
import re
import shutil
import xml.etree.ElementTree as ET
from dataclasses import replace

import pytest
from test_report import Page, browser_findings, needs_chromium, screenshot

from symgrad import gate
from symgrad.models.catalog import GRAPHS, build_graph
from symgrad.prove.result import Result, Verdict
from symgrad.report import write_report
from symgrad.report.drawing import tape_layout

DOT = shutil.which("dot")
ENGINES = ["sugiyama", pytest.param("dot", marks=pytest.mark.skipif(
    DOT is None, reason="Graphviz is not installed (no `dot` binary): the report uses the "
    "pure-Python layout, tested here always"))]
DIMS = dict(n=2, d_model=2, heads=1, head_dim=2, d_ff=4)
GATE = '''
[[graph]]
graph = "decoder"
end_to_end = false

[[graph]]
graph = "residual"
backprop = "backprop_drops_fanout_accumulation"
expect = "refuted"
'''
SVG = "{http://www.w3.org/2000/svg}"


def _split_end_to_end(decoder):
    """The decoder outcome with an end-to-end result split by seed block (as the prover
    writes one too large as a whole: a block table, tape conditions, a residual legend)."""
    r = Result(name="decoder: end to end", verdict=Verdict.UNKNOWN,
               method="normal form per seed block", seconds=3.5, terms=120, entries=40,
               side_conditions=[], reason="too large as one identity; split by seed block",
               residual="A0*x[0,0] - A0*x[0,1]").to_json()
    corollary = next(c for c in decoder.results if c["name"].endswith("DAG corollary"))
    r.update(blocks=[{"value": "x", "verdict": "proved", "terms": 2, "seconds": 0.02},
                     {"value": "ffn.out", "verdict": "unknown", "terms": 1909116,
                      "seconds": 4.6}],
             tape_conditions=corollary.get("tape_conditions") or [
                 {"node": "probs", "op": "hard_masked_softmax", "reason": "denominator",
                  "text": "exp(scaled[0,1,0]) + exp(scaled[0,1,1]) ≠ 0", "discharged": True}],
             side_conditions=[{"text": "exp(x[0,0]*Wq[0,0]) + exp(x[0,1]*Wq[1,0]) ≠ 0",
                               "reason": "denominator", "discharged": True}],
             legend={"A0": "exp(x[0,1])"})
    return replace(decoder, title="graph decoder, split end to end", verdict="unknown",
                   results=decoder.results + [r], spec=dict(decoder.spec, end_to_end=True))


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gate")
    (tmp / "gate.toml").write_text(GATE)
    obligations, errors = gate.collect([str(tmp)])
    assert not errors
    done = gate.run_all(obligations, 1, None)
    return done + [_split_end_to_end(done[0])]


@pytest.fixture(scope="module")
def reports(outcomes, tmp_path_factory):
    """One report per layout engine (dot only where it is installed)."""
    out = {}
    for engine in ["sugiyama"] + ["dot"] * bool(DOT):
        out[engine] = write_report(tmp_path_factory.mktemp(engine), outcomes,
                                   layout=engine).parent
    return out


def _page(report, heading):
    """The page whose <h1> is ``heading``."""
    for path in sorted(report.glob("*.html")):
        if re.search(r"<h1>" + re.escape(heading) + "</h1>", path.read_text()):
            return path
    raise AssertionError(f"no page titled {heading!r}")


# ----- the drawing: geometry from the SVG ---------------------------------------------------

def _points(d, steps=24):
    """Points along an SVG path of absolute M, L, C commands (independent of drawing.py)."""
    pts = []
    for cmd, args in re.findall(r"([MLC])([^MLC]*)", d):
        v = [float(x) for x in re.findall(r"-?[\d.]+", args)]
        us = [k / steps for k in range(1, steps + 1)]
        if cmd == "M":
            pts.append((v[0], v[1]))
        elif cmd == "L":
            (x0, y0), (x1, y1) = pts[-1], v
            pts += [(x0 + u * (x1 - x0), y0 + u * (y1 - y0)) for u in us]
        else:
            (x0, y0), (x1, y1, x2, y2, x3, y3) = pts[-1], v
            pts += [((1 - u) ** 3 * x0 + 3 * (1 - u) ** 2 * u * x1 + 3 * (1 - u) * u * u * x2
                     + u ** 3 * x3, (1 - u) ** 3 * y0 + 3 * (1 - u) ** 2 * u * y1
                     + 3 * (1 - u) * u * u * y2 + u ** 3 * y3) for u in us]
    return pts


def _inside(p, b, margin=1.0):
    return (b["x"] + margin < p[0] < b["x"] + b["w"] - margin
            and b["y"] + margin < p[1] < b["y"] + b["h"] - margin)


def assert_clean_drawing(boxes, edges, font_px):
    """No two boxes overlap; every edge starts at its source's border and ends at its
    target's, and no point of it lies inside any box; each text fits inside its box (a
    monospace advance is at most 0.61em: DejaVu and Liberation Mono have 0.6)."""
    by_name = {b["name"]: b for b in boxes}
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not (a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"]
                        and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]), \
                f"boxes {a['name']} and {b['name']} overlap"
        for text in a["texts"]:
            assert a["x"] + 4 <= text["x"] and text["x"] + 0.61 * font_px * len(
                text["text"]) <= a["x"] + a["w"] - 4, f"{text['text']!r} overflows its box"
            assert a["y"] + font_px * 0.8 <= text["y"] <= a["y"] + a["h"] - 3
    for e in edges:
        pts = _points(e["d"])
        src, dst = by_name[e["source"]], by_name[e["target"]]
        assert _inside(pts[0], src, -2.5) and not _inside(pts[0], src, 2.5), e
        assert _inside(pts[-1], dst, -2.5) and not _inside(pts[-1], dst, 2.5), e
        for p in pts:
            hit = [b["name"] for b in boxes if _inside(p, b)]
            assert not hit, f"edge {e['source']} → {e['target']} passes under {hit} at {p}"


def _svg_drawing(page_path):
    """Boxes (with their texts) and edges of the tape's SVG on a graph page."""
    html = page_path.read_text(encoding="utf-8")
    svg = ET.fromstring(re.search(r"<svg .*?</svg>", html, re.S).group(0))
    boxes = []
    for g in svg.iter(SVG + "g"):
        if "box" not in g.get("class", "").split():
            continue
        r = g.find(SVG + "rect")
        boxes.append({"name": g.get("data-value"),
                      **{k: float(r.get(a)) for k, a in (("x", "x"), ("y", "y"),
                                                         ("w", "width"), ("h", "height"))},
                      "texts": [{"text": t.text, "x": float(t.get("x")),
                                 "y": float(t.get("y"))} for t in g.findall(SVG + "text")]})
    edges = [{"source": p.get("data-source"), "target": p.get("data-target"), "d": p.get("d")}
             for p in svg.iter(SVG + "path") if p.get("class") == "edge"]
    font = float(re.search(r"font-size: ([\d.]+)px", svg.get("style")).group(1))
    return svg, boxes, edges, font


@pytest.mark.parametrize("engine", ENGINES)
def test_decoder_tape_is_a_layered_drawing_that_fits_the_page(reports, engine):
    svg, boxes, edges, font = _svg_drawing(_page(reports[engine], "graph decoder (n=2, "
                                                 "d_model=2, heads=1, head_dim=2, d_ff=4) "
                                                 "end_to_end=false"))
    g = build_graph("decoder", DIMS, "pytorch", "whole", False)
    assert [b["name"] for b in boxes] == g.values            # one box per tape value
    assert {(e["source"], e["target"]) for e in edges} == {
        (g.values[r], node.name) for node in g.nodes for r in node.reads}
    assert_clean_drawing(boxes, edges, font)
    # scales to the page: a viewBox and the CSS that caps the width at 100%
    width = float(svg.get("width"))
    assert svg.get("viewBox") == f"0 0 {svg.get('width')} {svg.get('height')}"
    assert width <= 1000, "the decoder's tape should fit a page without shrinking much"
    css = (reports[engine] / "style.css").read_text()
    assert re.search(r"\.tape-view svg \{[^}]*max-width: 100%", css)
    # layered top to bottom: every edge goes down, from its source's bottom
    by_name = {b["name"]: b for b in boxes}
    assert all(by_name[e["source"]]["y"] < by_name[e["target"]]["y"] for e in edges)


@pytest.mark.parametrize("engine", ENGINES)
def test_every_catalog_graph_draws_cleanly(engine):
    for name in sorted(GRAPHS):
        for form in (("whole", "decomposed") if name == "layernorm" else ("whole",)):
            for fixed in ((False, True) if name == "decoder" else (False,)):
                lay = tape_layout(build_graph(name, DIMS, "pytorch", form, fixed), engine)
                assert lay["engine"] == engine
                boxes = [dict(b, texts=[{"text": b["name"], "x": b["text_x"],
                                         "y": b["name_y"]},
                                        {"text": b["label"], "x": b["text_x"],
                                         "y": b["label_y"]}]) for b in lay["boxes"]]
                edges = [dict(e) for e in lay["edges"]]
                assert_clean_drawing(boxes, edges, lay["font"])


# ----- what each page states ------------------------------------------------------------------

def test_a_node_page_states_the_adjoint_identity_at_its_shapes(reports):
    page = Page(_page(reports["sugiyama"], "node matmul(2x2, 2x2)"))
    statement = page.section_text("statement")
    assert statement.startswith("Statement Theorem (the adjoint identity of matmul )")
    raw = _page(reports["sugiyama"], "node matmul(2x2, 2x2)").read_text()
    identity = re.search(r'id="identity-math">(.*?)</div>', raw, re.S).group(1)
    for piece in ("<mi>matmul</mi>", "<mi>vjp</mi>", "<mi>x</mi>", "<mi>W</mi>", "⟨", "⟩"):
        assert piece in identity
    assert statement.count("ℝ 2 × 2") == 3     # x, W and ḡ
    assert "Qbig = matmul(x, Wq)" in statement and "attn = matmul(concat, Wo)" in statement


def test_the_corollary_page_cites_its_node_obligations_and_the_theorem(reports, outcomes):
    path = _page(reports["sugiyama"], "decoder: DAG corollary")
    page = Page(path)
    statement = page.section_text("statement")
    assert "If every node obligation below holds" in statement
    assert "holds for an engine that implements the tape semantics" in statement
    links = {a["href"] for t, a in page.tags if t == "a"}
    assert "dag-theorem.html" in links
    nodes = [r["name"] for r in outcomes[0].results if r["name"].startswith("node ")]
    cited = {re.search(r"<h1>(.*?)</h1>", (path.parent / h).read_text()).group(1)
             for h in links if h.startswith("obligation-")}
    assert cited == set(nodes)
    assert "ln1 = layer_norm(residual1, gamma1, beta1)" in statement
    assert "engine-note" not in page.ids     # Graph.backprop: nothing to reconcile


def test_the_end_to_end_page_states_the_composed_identity_and_its_evidence(reports):
    path = _page(reports["sugiyama"], "decoder: end to end")
    page = Page(path)
    statement = page.section_text("statement")
    assert "Theorem (end to end, decoder)" in statement and "Graph.backprop" in statement
    assert "37 tape values" in statement and "whole-tape seed" in statement
    raw = path.read_text()
    assert "<mi>backprop</mi>" in raw and "<mi>T</mi></msup>" in raw
    rows = {r["cells"][0]: r for r in page.rows if r["cells"] and r["cells"][0] in (
        "x", "ffn.out")}
    assert rows["ffn.out"]["attrs"]["data-verdict"] == "unknown"
    assert rows["ffn.out"]["cells"][2:] == ["1909116", "4.600"]
    assert "linear in the seed" in page.section_text("evidence")
    # the tape conditions first; the conditions over the inputs folded away
    conditions = page.section_text("conditions")
    assert conditions.index("probs (hard_masked_softmax)") < conditions.index(
        "as checked, over the inputs")
    assert page.ids["raw-conditions"]["tag"] == "details"
    assert "open" not in page.ids["raw-conditions"]["attrs"]
    assert "A0 exp(x[0,1])" in page.section_text("residual")   # the legend of atoms


def test_an_engine_mutant_says_why_corollary_and_end_to_end_disagree(reports):
    title = ("graph residual (n=2, d_model=2, heads=1, head_dim=2) "
             "backprop=backprop_drops_fanout_accumulation")
    graph_page = Page(_page(reports["sugiyama"], title))
    for page in (graph_page, Page(_page(reports["sugiyama"], "residual: DAG corollary")),
                 Page(_page(reports["sugiyama"], "residual: end to end"))):
        note = page.section_text("engine-note")
        assert note.startswith("Why the DAG corollary is proved and end to end is refuted.")
        assert "backprop_drops_fanout_accumulation" in note
        assert "implements those semantics" in note and "Drops fan-out accumulation" in note
    assert graph_page.section_text("verdict") == "refuted"
    corollary_row = next(r for r in graph_page.rows if r["cells"][0].endswith("DAG corollary"))
    assert corollary_row["cells"][1] == "proved for the tape semantics, not this engine"
    e2e = Page(_page(reports["sugiyama"], "residual: end to end"))
    assert e2e.section_text("verdict") == "refuted" and "differing entry" in e2e.section_text(
        "witness")
    assert "the engine mutant backprop_drops_fanout_accumulation run on symbols" in \
        e2e.section_text("statement")


def test_the_cited_documents_are_pages_of_the_report(reports):
    report = reports["sugiyama"]
    doc = Page(report / "dag-theorem.html")
    assert doc.section_text("doc").startswith("The DAG theorem: node obligations imply")
    assert any(t == "pre" for t, _ in doc.tags) and any(t == "strong" for t, _ in doc.tags)
    assert not list(report.glob("*.md"))
    for path in report.glob("*.html"):
        hrefs = [a.get("href", "") for t, a in Page(path).tags if t == "a"]
        assert not [h for h in hrefs if re.search(r"\.md($|#)", h)], path.name


# ----- a real browser -----------------------------------------------------------------------

#: run inside each page (in an iframe of the probe): what overflows the viewport's width
#: (an element clipped by a scrolling ancestor inside the viewport does not), the tape's
#: drawn font size and texts against their boxes, and the MathML's font sizes
PROBE = r"""
function probe(win) {
  var d = win.document, W = win.innerWidth, out = {width: W};
  out.scrollWidth = d.documentElement.scrollWidth;
  function clipped(el) {
    for (var a = el.parentElement; a; a = a.parentElement) {
      var s = win.getComputedStyle(a);
      if (s.overflowX !== "visible" && a.getBoundingClientRect().right <= W + 0.5) return true;
    }
    return false;
  }
  out.overflowing = Array.from(d.body.querySelectorAll("*")).filter(function (el) {
    var r = el.getBoundingClientRect();
    return r.width > 0 && r.right > W + 0.5 && !clipped(el);
  }).map(function (el) { return el.tagName + "." + el.className; }).slice(0, 10);
  var svg = d.querySelector("#tape svg");
  if (svg) {
    var scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
    out.tapeFontPx = 13 * scale;
    out.boxes = svg.querySelectorAll("g.box").length;
    out.textOutside = Array.from(svg.querySelectorAll("g.box")).filter(function (g) {
      var r = g.querySelector("rect").getBBox();
      return Array.from(g.querySelectorAll("text")).some(function (t) {
        var b = t.getBBox();
        return b.x < r.x || b.x + b.width > r.x + r.width || b.y < r.y || b.y + b.height > r.y + r.height;
      });
    }).map(function (g) { return g.dataset.value; });
    var button = d.getElementById("tape-zoom");
    button.click();
    out.actual = [d.getElementById("tape-view").classList.contains("actual"),
                  Math.round(svg.getBoundingClientRect().width), svg.viewBox.baseVal.width];
    button.click();
  }
  var math = d.querySelector("#identity-math math");
  if (math) {
    out.mathPx = parseFloat(win.getComputedStyle(math).fontSize);
    out.textPx = parseFloat(win.getComputedStyle(d.body).fontSize);
    out.smallestMathPx = Math.min.apply(null, Array.from(math.querySelectorAll("mi, mn, mo")).map(
      function (e) { return parseFloat(win.getComputedStyle(e).fontSize); }));
    var box = math.getBoundingClientRect();
    out.mathBox = [box.width, box.height];
  }
  return out;
}
"""


@needs_chromium
@pytest.mark.parametrize("engine", ENGINES)
def test_a_browser_draws_the_decoder_tape_and_a_refuted_page_within_the_width(
        reports, engine, tmp_path):
    report = reports[engine]
    pages = {"tape": _page(report, "graph decoder (n=2, d_model=2, heads=1, head_dim=2, "
                                   "d_ff=4) end_to_end=false").name,
             "refuted": _page(report, "residual: end to end").name,
             "corollary": _page(report, "decoder: DAG corollary").name}
    frames = [(key, width) for key in pages for width in (1280, 800)]
    probe = report / "probe-pages.html"
    probe.write_text("<!DOCTYPE html><html><body><pre id=\"out\">waiting</pre>" + "".join(
        f'<iframe id="{k}-{w}" src="{pages[k]}" width="{w}" height="900"></iframe>'
        for k, w in frames) + f"""<script>{PROBE}
var res = {{}}, left = {len(frames)};
Array.from(document.querySelectorAll("iframe")).forEach(function (f) {{
  f.onload = function () {{
    try {{ res[f.id] = probe(f.contentWindow); }} catch (e) {{ res[f.id] = {{error: String(e)}}; }}
    if (--left === 0) document.getElementById("out").textContent = JSON.stringify(res);
  }};
}});
</script></body></html>""")
    found = browser_findings(probe)
    for key, width in frames:
        r = found[f"{key}-{width}"]
        assert "error" not in r, r
        assert r["scrollWidth"] <= r["width"] and not r["overflowing"], (key, width, r)
    tape = found["tape-1280"]
    assert tape["boxes"] == 37 and not tape["textOutside"]
    assert tape["tapeFontPx"] >= 12, "the decoder's tape is drawn too small to read"
    assert found["tape-800"]["tapeFontPx"] >= 9
    assert tape["actual"][0] and tape["actual"][1] == tape["actual"][2]  # actual size: 1:1
    for key in ("refuted", "corollary"):
        r = found[f"{key}-1280"]
        assert r["mathPx"] >= 1.2 * r["textPx"] and r["smallestMathPx"] >= 11, r
        assert r["mathBox"][1] >= 18
    for key, page in pages.items():
        screenshot(report / page, tmp_path / f"{key}.png", size="1280,1800")

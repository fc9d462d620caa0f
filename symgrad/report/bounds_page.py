"""The HTML page of ``symgrad bounds --report DIR``: per output entry, each method's enclosure
against the range found by sampling and gradient ascent (an SVG plot), the widths, and the
theorem each method rests on."""
from __future__ import annotations

from datetime import datetime, timezone
from html import escape
from pathlib import Path

import numpy as np

THEOREMS = {
    "ibp": "Inclusion: every node's code run on outward-rounded intervals encloses the node's "
           "values over the box of its inputs; composed node by node.",
    "ops": "The same, with whole-op rules: softmax y_k = 1/(1 + Σ_{j≠k} exp(x_j − x_k)) is "
           "monotone in each score, so its range over a box of scores is read off the corners; "
           "LayerNorm's x̂_i = u_i/√(u_i²/d + S_i/d + ε) is monotone in u_i and in S_i; "
           "elementwise ops are monotone where their proved VJP has a fixed sign.",
    "centered": "Mean value theorem, node by node: every value is carried as an affine form "
                "v* + A·η ± e in the input noise and one noise symbol per node remainder; "
                "a node's remainder is bounded by its Jacobian enclosed on nested boxes "
                "(from its proved VJP rule), a product's exactly, LayerNorm and softmax "
                "also as chains of sharp steps.",
    "taylor": "Taylor's theorem, node by node: every value is carried as c + a·ε + εᵀBε "
              "± r with the quadratic part in the input noise kept exactly; a smooth "
              "function's remainder is ∫ ½(1 − s)² f‴ δ³ ds with f‴ enclosed on nested "
              "intervals, softmax as exp(z − LSE(z)) with the log-sum-exp's third-order "
              "remainder ≤ w³/24, a product's cubic and quartic terms bounded by their "
              "coefficients' masses.",
    "cubic": "Taylor's theorem to third order, node by node: every value is carried as "
             "c + a·ε + εᵀBε + C[ε³] ± r; the cubic terms of products, of smooth functions "
             "and of the log-sum-exp (its third cumulant tensor) are kept with their signs, "
             "the remainders are fourth order (∫ ⅙(1 − s)³ f⁗ δ⁴ ds; the log-sum-exp's "
             "≤ w⁴/192, w the spread of a row's scores).",
    "subdivide": "The box is the union of its pieces; the hull of the pieces' enclosures "
                 "encloses f over the box.",
}
COLOURS = {"ibp": "#c0392b", "ops": "#e67e22", "centered": "#2980b9", "taylor": "#8e44ad",
           "cubic": "#16a085", "subdivide": "#27ae60"}


def _svg(entries, inner_lo, inner_hi, methods) -> str:
    """One row per output entry: a bar per method, the sampled range in black; each row
    scaled to the widest bar of the tightest two methods (wider ones are clipped with an
    arrow)."""
    rows, height, width = [], 14 * (len(methods) + 1) + 10, 520
    for r, index in enumerate(entries):
        lo_i, hi_i = inner_lo[index], inner_hi[index]
        spans = [(m, lo[index], hi[index]) for m, (lo, hi) in methods.items()]
        tight = sorted(spans, key=lambda t: t[2] - t[1])[:2]
        left = min([lo_i] + [t[1] for t in tight])
        right = max([hi_i] + [t[2] for t in tight])
        pad = (right - left) * 0.05 or 1e-12
        left, right = left - pad, right + pad

        def x(v):
            return 110 + (min(max(v, left), right) - left) / (right - left) * (width - 130)
        y0 = r * height
        parts = [f'<text x="0" y="{y0 + 12}" font-size="11">out[{",".join(map(str, index))}]'
                 f'</text>']
        for k, (m, lo, hi) in enumerate(spans):
            y = y0 + 4 + 14 * k
            clip = ("◀" if lo < left else "") + ("▶" if hi > right else "")
            parts.append(f'<rect x="{x(lo):.1f}" y="{y}" width="{max(x(hi) - x(lo), 1):.1f}" '
                         f'height="9" fill="{COLOURS.get(m, "#888")}"><title>{m}: '
                         f'[{lo:.6g}, {hi:.6g}]</title></rect>')
            if clip:
                parts.append(f'<text x="{width - 16}" y="{y + 8}" font-size="9">{clip}</text>')
        y = y0 + 4 + 14 * len(spans)
        parts.append(f'<rect x="{x(lo_i):.1f}" y="{y}" width="{max(x(hi_i) - x(lo_i), 1):.1f}" '
                     f'height="9" fill="#000"><title>sampled: [{lo_i:.6g}, {hi_i:.6g}]</title>'
                     f'</rect>')
        rows.append("\n".join(parts))
    total = height * len(entries)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{total}" '
            f'font-family="sans-serif">' + "\n".join(rows) + "</svg>")


def write_bounds_report(directory, graph, values, found, samples: int = 64,
                        ascent: int = 4) -> Path:
    """Write the page (``index.html``, as every report) into ``directory``; returns its
    path."""
    from ..intervals.enclose import Box
    from ..intervals.sample import inner_range
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    names = [n for n, _ in graph.inputs]
    box = Box(graph, values, found.radius, [names.index(p) for p in found.perturb])
    inner = inner_range(graph, box, samples=samples, corners=samples, ascent=ascent)
    i_lo, i_hi = inner.lo[graph.output], inner.hi[graph.output]
    methods = dict(found.per_method) or {found.method: found.values[graph.values[-1]]}
    inner_w = float(np.mean(i_hi - i_lo))
    table = "".join(
        f"<tr><td style='color:{COLOURS.get(m, '#888')}'>{m}</td>"
        f"<td>{float(np.mean(hi - lo)):.6g}</td>"
        f"<td>{(float(np.mean(hi - lo)) / inner_w if inner_w else float('nan')):.3g}×</td>"
        f"<td>{escape(THEOREMS.get(m, ''))}</td></tr>" for m, (lo, hi) in methods.items())
    outside = int(sum(np.sum((l < found.values[n][0]) | (h > found.values[n][1]))
                      for n, l, h in zip(graph.values, inner.lo, inner.hi)))
    entries = list(np.ndindex(i_lo.shape))
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<title>bounds: {escape(graph.name)}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}td{{padding:.2em .6em;
vertical-align:top}}table{{border-collapse:collapse}}tr{{border-bottom:1px solid #ddd}}</style>
</head><body>
<h1>Interval bounds: {escape(graph.name)}</h1>
<p>Box: each of {escape(', '.join(found.perturb))} within {found.radius:g} of its value (L∞);
the other inputs fixed. Method <b>{escape(found.method)}</b>, {found.pieces} piece(s),
{found.seconds:.2f} s. Outward-rounded float64 endpoints, python-flint arb for
transcendental functions; theorems: docs/bounds.md.</p>
<p>Sampled and gradient-ascent points: {len(inner.points)}; values outside an enclosure:
<b>{outside}</b> (must be 0). Mean width of the sampled range of out: {inner_w:.6g}.</p>
<table><tr><th>method</th><th>mean width of out</th><th>÷ sampled range</th>
<th>theorem</th></tr>{table}</table>
<h2>Each output entry</h2>
<p>Bars: each method's enclosure (colours as in the table), the sampled range in black.</p>
{_svg(entries, i_lo, i_hi, methods)}
<p style="color:#888">symgrad, {datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}</p>
</body></html>"""
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path

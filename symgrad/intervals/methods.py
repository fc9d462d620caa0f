"""The enclosure methods over a box of graph inputs, each tighter than the last (the theorems:
docs/bounds.md):

* ``ibp`` — every node's own forward code run on intervals, node by node (the naive
  baseline: LeanCert's and auto_LiRPA's IBP).
* ``ops`` — the same, with whole-op rules where they are tighter (softmax by cancellation,
  LayerNorm as a whole, monotone pieces of elementwise functions; :mod:`.rules`), each
  intersected with the naive enclosure.
* ``centered`` — the first-order (mean-value) form c + A·η ± e of every tape value, the
  node Jacobians from the graph's **proved** VJP rules run on intervals (:mod:`.enclose`),
  intersected with ``ops``; it also encloses the output's Jacobian over the box.
* ``taylor`` — the second-order form c + a·ε + εᵀBε ± r (:mod:`.taylor`), intersected with
  ``centered``.
* ``cubic`` — the third-order form c + a·ε + εᵀBε + C[ε³] ± r (:mod:`.cubic`), intersected
  with ``taylor``.
* ``subdivide`` — the box split along its most influential coordinates (the largest
  radius × Σ|J|) into 2^s pieces, as many as the time budget allows; each piece enclosed by
  the form that was narrowest on the whole box (``cubic``, ``taylor`` or ``centered``); the
  union (hull) of the pieces' enclosures, intersected with the whole box's.
"""
from __future__ import annotations

import itertools
import math
import time

import numpy as np

from .enclose import Box, _hull, _intersect, forward, jacobian, mean_value
from .interval import NotSupported, bounds_arrays
from .cubic import cubic_form
from .taylor import taylor_form

METHODS = ("ibp", "ops", "centered", "taylor", "cubic", "subdivide", "auto")


#: how many times the timed piece's seconds each piece is planned to take (on the
#: benchmark's graphs pieces took 0.9–1.2 times the first one on average)
PIECE_MARGIN = 1.15


def enclose_box(graph, box: Box, method: str, budget: float, grad: bool = False) -> dict:
    """Every tape value's enclosure by ``method`` (and, with ``grad`` or where the method
    computes it, J over the box). Returns {"values": [...], "jacobian": J or None,
    "pieces": n, "per_method": {method: out enclosure}}."""
    t0 = time.perf_counter()
    per_method = {}
    if method == "ibp":
        vals = forward(graph, box.intervals(), tight=False)
        per_method["ibp"] = vals[graph.output]
        J = jacobian(graph, vals, box.perturbed) if grad else None
        return {"values": vals, "jacobian": J, "pieces": 1, "per_method": per_method}
    try:   # the naive baseline, for comparison (it may fail where the others do not)
        per_method["ibp"] = forward(graph, box.intervals(), tight=False)[graph.output]
    except NotSupported:
        pass
    vals = forward(graph, box.intervals(), tight=True)
    per_method["ops"] = vals[graph.output]

    def result(J, pieces=1):
        return {"values": vals, "jacobian": J, "pieces": pieces, "per_method": per_method}
    if method == "ops":
        return result(jacobian(graph, vals, box.perturbed) if grad else None)
    cache: dict = {}
    centred, J = mean_value(graph, box, cache)
    vals = [_intersect(a, b) for a, b in zip(vals, centred)]
    per_method["centered"] = vals[graph.output]
    if method == "centered":
        return result(J)
    forms = {"centered": (lambda piece: mean_value(graph, piece, cache))}
    for name, form in (("taylor", taylor_form), ("cubic", cubic_form)):
        own: dict = {}   # the form's cache of Jacobians that do not vary
        try:
            vals = form(graph, box, vals, own)
        except NotSupported:
            if method == name:
                raise
            continue
        per_method[name] = vals[graph.output]
        forms[name] = (lambda piece, form=form, own=own: (
            form(graph, piece, forward(graph, piece.intervals(), tight=True), own), None))
        if method == name:
            return result(J)
    # pieces by the form that was narrowest on the whole box
    best = min(forms, key=lambda name: _mean_width(per_method[name]))
    enclose = forms[best]

    # subdivide: the most influential coordinates, bisected, as the budget allows
    coords = _influence(box, J)
    if coords:   # one piece, timed (the caches filled on the whole box make pieces cheaper)
        t_piece = time.perf_counter()
        i, e = coords[0]
        lo = [a.copy() for a in box.lo]
        lo[i][e] = (box.lo[i][e] + box.hi[i][e]) / 2
        enclose(box.piece(lo, box.hi))
        t_piece = time.perf_counter() - t_piece
    left = budget - (time.perf_counter() - t0)
    # pieces vary in time around the one timed: plan for each to take PIECE_MARGIN times it
    s = int(math.floor(math.log2(max(left / max(PIECE_MARGIN * t_piece, 1e-3), 1)))) \
        if left > 0 else 0
    s = max(0, min(s, len(coords), 12))
    if method == "subdivide":
        s = max(s, min(1, len(coords)))
    if s == 0:
        per_method["subdivide"] = vals[graph.output]
        return result(J)
    chosen = coords[:s]
    hull_vals, hull_J, pieces = None, None, 0
    for bits in itertools.product((0, 1), repeat=s):
        lo = [a.copy() for a in box.lo]
        hi = [a.copy() for a in box.hi]
        for bit, (i, e) in zip(bits, chosen):
            m = (box.lo[i][e] + box.hi[i][e]) / 2
            if bit:
                lo[i][e] = m
            else:
                hi[i][e] = m
        pv, pJ = enclose(box.piece(lo, hi))
        hull_vals = pv if hull_vals is None else [_hull(a, b) for a, b in zip(hull_vals, pv)]
        if pJ is not None:
            hull_J = pJ if hull_J is None else {i: _hull(hull_J[i], pJ[i]) for i in pJ}
        pieces += 1
    vals = [_intersect(a, b) for a, b in zip(vals, hull_vals)]
    if hull_J is not None:
        J = {i: _intersect(J[i], hull_J[i]) for i in J}
    per_method["subdivide"] = vals[graph.output]
    return result(J, pieces)


def _mean_width(a) -> float:
    lo, hi = bounds_arrays(a)
    return float(np.mean(hi - lo))


def _influence(box: Box, J: dict) -> list:
    """Perturbed coordinates (input, entry), most influential first: r_e · Σ_k |J_ke|."""
    _, rad = box.center()
    scored = []
    for i in box.perturbed:
        lo, hi = bounds_arrays(J[i])
        mag = np.maximum(np.abs(lo), np.abs(hi))
        out_axes = tuple(range(mag.ndim - len(box.lo[i].shape)))
        total = mag.sum(axis=out_axes) * rad[i]
        for e in np.ndindex(total.shape):
            if box.hi[i][e] > box.lo[i][e]:
                scored.append((float(total[e]), i, e))
    scored.sort(key=lambda t: -t[0])
    return [(i, e) for _, i, e in scored]



"""The enclosure methods over a box of graph inputs (docs/bounds.md states each theorem).

* ``ibp`` — every node's own forward code run on intervals, node by node (the naive
  baseline: LeanCert's and auto_LiRPA's IBP).
* ``ops`` — the same, with whole-op rules where they are tighter (softmax by cancellation,
  LayerNorm as a whole, monotone pieces of elementwise functions; :mod:`.rules`), each
  intersected with the naive enclosure.
* ``centered`` — the mean-value form for the output: f(X) ⊆ f(x₀) + J(X)(X − x₀), with
  J(X) the interval Jacobian from the graph's **proved** VJP rules run backward on the
  ``ops`` enclosures of the tape (one backward pass per output entry), intersected with
  ``ops``.
* ``subdivide`` — the box split along its most influential coordinates (the largest
  radius × Σ|J|) into 2^s pieces, as many as the time budget allows; each piece enclosed by
  ``centered``; the union (hull) of the pieces' enclosures, intersected with the whole box's.
"""
from __future__ import annotations

import itertools
import math
import time

import numpy as np

from ..ops import get_op
from .interval import U, NotSupported, as_interval, bounds_arrays, interval_array, \
    matmul_bounds
from .rules import ELEMENTWISE, LOCAL, RULES

METHODS = ("ibp", "ops", "centered", "subdivide", "auto")


def forward(graph, inputs: list, tight: bool) -> list:
    """Interval enclosures of every tape value (object arrays of Interval) from the inputs'
    (object arrays of Interval or numbers): each node's code (``tight``: with its rule)."""
    vals = list(inputs)
    for node in graph.nodes:
        args = [vals[r] for r in node.reads]
        if tight:
            vals.append(forward_node(node, args))
            continue
        try:
            vals.append(np.asarray(get_op(node.op).forward(*args, **node.params),
                                   dtype=object))
        except (NotSupported, ZeroDivisionError, OverflowError) as exc:
            raise NotSupported(f"node {node.name} ({node.op}): {exc}") from None
    return vals


def _intersect(a, b) -> np.ndarray:
    la, ha = bounds_arrays(a)
    lb, hb = bounds_arrays(b)
    return interval_array(np.maximum(la, lb), np.minimum(ha, hb))


def _hull(a, b) -> np.ndarray:
    la, ha = bounds_arrays(a)
    lb, hb = bounds_arrays(b)
    return interval_array(np.minimum(la, lb), np.maximum(ha, hb))


def jacobian(graph, vals: list, perturbed: list) -> dict:
    """{input index: J} with J[k + e] an Interval enclosing ∂out_k/∂input_e over the box
    whose tape enclosures are ``vals``: the engine's backprop (the proved VJP rules) from
    the seed e_k, one pass per output entry."""
    out_index = graph.output
    shape = graph.shape(out_index)
    J = {i: np.empty(shape + graph.shape(i), dtype=object) for i in perturbed}
    for k in np.ndindex(shape):
        seed = np.zeros(shape, dtype=object)
        seed[k] = 1
        cot = graph.backprop(vals, {out_index: seed})
        for i in perturbed:
            c = np.asarray(cot[i], dtype=object)
            for e in np.ndindex(c.shape):
                J[i][k + e] = as_interval(c[e])
    return J


class Box:
    """The input box: perturbed inputs [x − r, x + r] (outward rounded), the rest points."""

    def __init__(self, graph, values: dict, radius: float, perturbed: list):
        self.graph, self.perturbed = graph, perturbed
        self.lo, self.hi = [], []
        for i, (name, shape) in enumerate(graph.inputs):
            v = np.asarray(values[name], dtype=float)
            if i in perturbed:
                self.lo.append(np.nextafter(v - radius, -np.inf) if radius else v.copy())
                self.hi.append(np.nextafter(v + radius, np.inf) if radius else v.copy())
            else:
                self.lo.append(v.copy())
                self.hi.append(v.copy())

    def piece(self, lo, hi) -> "Box":
        b = object.__new__(Box)
        b.graph, b.perturbed, b.lo, b.hi = self.graph, self.perturbed, lo, hi
        return b

    def intervals(self) -> list:
        return [interval_array(lo, hi) for lo, hi in zip(self.lo, self.hi)]

    def center(self) -> tuple:
        """x₀ (a float point in the box) and r with |x − x₀| ≤ r on the box."""
        mid = [(lo + hi) / 2 for lo, hi in zip(self.lo, self.hi)]
        rad = [np.maximum(np.nextafter(m - lo, np.inf), np.nextafter(hi - m, np.inf))
               for m, lo, hi in zip(mid, self.lo, self.hi)]
        return mid, rad


def _pair_add(a, b):
    if a is None:
        return b
    return (np.nextafter(a[0] + b[0], -np.inf), np.nextafter(a[1] + b[1], np.inf))


def _local_jacobians(op, node, args, out) -> list:
    """Per argument position p, (lo, hi) of ∂out_k/∂arg_e over the box as a |out| × |arg|
    matrix: the op's proved VJP rule run on the intervals with the seed e_k, per k."""
    shape = out.shape
    size = int(np.prod(shape))
    sizes = [int(np.prod(np.shape(a))) for a in args]
    if node.op in ELEMENTWISE:   # a diagonal Jacobian: one pass with ḡ = 1 gives it
        ones = np.empty(shape, dtype=object)
        ones.fill(1)
        d_lo, d_hi = bounds_arrays(op.vjp(ones, out, *args, **node.params)[0])
        lo, hi = np.zeros((size, size)), np.zeros((size, size))
        lo[np.arange(size), np.arange(size)] = d_lo.ravel()
        hi[np.arange(size), np.arange(size)] = d_hi.ravel()
        return [(lo, hi)]
    lo = [np.zeros((size, n)) for n in sizes]
    hi = [np.zeros((size, n)) for n in sizes]
    for row, k in enumerate(np.ndindex(shape)):
        seed = np.zeros(shape, dtype=object)
        seed[k] = 1
        local = LOCAL.get(node.op)
        cots = local(seed, out, args, node.params) if local is not None else \
            op.vjp(seed, out, *args, **node.params)
        for p, c in enumerate(cots):
            if c is None:
                continue
            c_lo, c_hi = bounds_arrays(np.broadcast_to(np.asarray(c, dtype=object),
                                                       np.shape(args[p])))
            lo[p][row], hi[p][row] = c_lo.ravel(), c_hi.ravel()
    return list(zip(lo, hi))


def _up(x):
    return np.nextafter(x, np.inf)


def _relative(n: int) -> float:
    """1 + a bound on the relative rounding error of a sum of n nonnegative float products."""
    return 1 + 1.01 * (n + 2) * U / (1 - (n + 2) * U)


def _padded(A, columns: int) -> np.ndarray:
    """A with zero columns appended up to ``columns`` (symbols created after it)."""
    if A.shape[1] == columns:
        return A
    return np.hstack([A, np.zeros((A.shape[0], columns - A.shape[1]))])


#: pieces of [0, 1] over which a node's remainder integral is bounded
SPLITS = 4


def _scaled(centre, box, reach, t: float) -> np.ndarray:
    """u* + t·D with D = [−reach, reach] ∩ (U − u*), as intervals (u* in ``centre``)."""
    c_lo, c_hi = bounds_arrays(centre)
    u_lo, u_hi = bounds_arrays(box)
    r = reach.reshape(c_lo.shape)
    d_lo = np.maximum(-r, np.nextafter(u_lo - c_hi, -np.inf))
    d_hi = np.minimum(r, np.nextafter(u_hi - c_lo, np.inf))
    lo = np.nextafter(c_lo + np.nextafter(t * d_lo, -np.inf), -np.inf)
    hi = np.nextafter(c_hi + np.nextafter(t * d_hi, np.inf), np.inf)
    return interval_array(np.minimum(lo, c_lo), np.maximum(hi, c_hi))


def _product_reach(a, b):   # |ΔA·ΔB| ≤ reach_A · reach_B, rounded up
    k = a.shape[-1]
    return _up((a @ b) * _relative(k))


#: bilinear ops: the bound on their second-order term from the operands' reaches
BILINEAR = {"matmul": _product_reach, "batched_matmul": _product_reach,
            "mul": lambda a, b: _up(a * b * _relative(1))}


def mean_value(graph, box: Box) -> tuple:
    """Every tape value v enclosed by a first-order form in the input noise ε ∈ [−1, 1]^m
    (x = x₀ + r ⊙ ε): v(x) ∈ v* + A_v ε ± e_v, where v* is v at the box's centre. A node
    f with reads u: f(u) − f(u*) = J(ξ)(u − u*) (the mean value theorem, per entry) =
    M(u − u*) + (J(ξ) − M)(u − u*) for any matrix M, so A_f = M·A_u (cancellations kept:
    the residual x + attn adds the coefficients of both) and e_f = |M|·e_u +
    mag(J(U) − M)·(|A_u|·1 + e_u) + rounding, with J(U) the node's interval Jacobian over
    the enclosures U of what it reads — from its **proved** VJP rule — and M its midpoint.
    Each enclosure is the form's range intersected with ``ops``. The interval Jacobian of
    the output, J_out = Σ L · J_read over the box, comes along. Returns (values, {input:
    J of out})."""
    mid, rad = box.center()
    point = forward(graph, [interval_array(m, m) for m in mid], tight=False)
    offsets, total = {}, 0
    for i in box.perturbed:
        offsets[i] = total
        total += box.lo[i].size
    vals = list(box.intervals())
    forms, jac = [], []
    columns = total        # noise symbols: the inputs', then one per remainder
    for i in range(len(graph.inputs)):
        n = box.lo[i].size
        A = np.zeros((n, total))
        if i in offsets:
            A[np.arange(n), offsets[i] + np.arange(n)] = rad[i].ravel()
            eye = np.zeros((n, total))
            eye[np.arange(n), offsets[i] + np.arange(n)] = 1.0
            jac.append((eye, eye.copy()))
        else:
            jac.append(None)
        forms.append((A, np.zeros(n)))
    for node in graph.nodes:
        op = get_op(node.op)
        args = [vals[r] for r in node.reads]
        out = forward_node(node, args)
        size = out.size
        c_lo, c_hi = bounds_arrays(point[len(vals)])
        half = _up((c_hi - c_lo) / 2).ravel()       # |c − v*| where c is the centre's midpoint
        varying = [forms[r][0].any() or forms[r][1].any() for r in node.reads]
        A, err, J = np.zeros((size, columns)), np.zeros(size), None
        if any(varying):
            # a product of two varying values: f(u) − f(u*) = J(u*)(u − u*) + B(Δ₁, Δ₂)
            # exactly, |B| bounded by the product of the reaches (half the mean-value bound);
            # any other node: the remainder ∫₀¹ (J(u* + tΔ) − M)Δ dt, bounded piecewise over
            # t ∈ [(k−1)/K, k/K] by J on the box u* + (k/K)·D, D = [−reach, reach] ∩ (U − u*)
            bilinear = node.op in BILINEAR and len(set(node.reads)) == 2 and all(varying)
            centre = [point[r] for r in node.reads]
            local = _local_jacobians(op, node, centre, point[len(vals)])
            reaches = []
            for p, r in enumerate(node.reads):
                A_r, e_r = forms[r]
                reaches.append(_up(np.abs(_padded(A_r, columns)).sum(axis=1) *
                                   _relative(columns) + e_r) if varying[p] else None)
            steps = [1.0] if bilinear else [k / SPLITS for k in range(1, SPLITS + 1)]
            spreads = []
            for t in steps:
                args_t = [_scaled(point[r], vals[r], reaches[p], t) if varying[p] else vals[r]
                          for p, r in enumerate(node.reads)]
                loc_t = _local_jacobians(op, node, args_t, forward_node(node, args_t))
                spreads.append(loc_t)
            box_local = spreads[-1]
            remainder = np.zeros(size)
            for p, r in enumerate(node.reads):
                A_r, e_r = forms[r]
                if not varying[p]:
                    continue
                A_r = _padded(A_r, columns)
                L_lo, L_hi = local[p]
                M = (L_lo + L_hi) / 2
                reach = reaches[p]
                absM = np.abs(M)
                A = A + M @ A_r
                k = M.shape[1]
                rounding = (absM @ np.abs(A_r)).sum(axis=1) * (2.02 * (k + columns + 2) * U)
                err = err + absM @ e_r * _relative(k) + rounding
                if bilinear:   # J(u*) − M: the width of the centre's enclosure only
                    spread = np.maximum(_up(M - L_lo), _up(L_hi - M))
                    remainder = remainder + spread @ reach * _relative(k)
                else:
                    for loc_t in spreads:
                        t_lo, t_hi = loc_t[p]
                        spread = np.maximum(_up(M - t_lo), _up(t_hi - M))
                        remainder = remainder + (spread @ reach) * (_relative(k) / len(spreads))
                if jac[r] is not None:
                    J = _pair_add(J, matmul_bounds(*box_local[p], *jac[r]))
            reaches = [r_ for r_, v in zip(reaches, varying) if v]
            reaches = [r_.reshape(np.shape(args[p])) for r_, p in
                       zip(reaches, [p for p, v in enumerate(varying) if v])]
            if bilinear:
                remainder = remainder + BILINEAR[node.op](*reaches).ravel()
            err = _up(err * _relative(len(node.reads) + 1))
            # the remainder of each entry becomes a noise symbol of its own: later linear
            # maps combine these coefficients exactly (with cancellation), as they do ε's
            remainder = _up(remainder * _relative(len(node.reads) + 1))
            rows = np.nonzero(remainder > 0)[0]
            if rows.size:
                fresh = np.zeros((size, rows.size))
                fresh[rows, np.arange(rows.size)] = remainder[rows]
                A = np.hstack([A, fresh])
                columns += rows.size
        radius = _up((np.abs(A).sum(axis=1) * _relative(columns) + err) * _relative(2) + half)
        centre = ((c_lo + c_hi) / 2).ravel()
        form_range = interval_array(np.nextafter(centre - radius, -np.inf).reshape(out.shape),
                                    np.nextafter(centre + radius, np.inf).reshape(out.shape))
        out = _intersect(out, form_range)
        forms.append((A, _up(err + half)))
        vals.append(out)
        jac.append(J)
    J_out = jac[graph.output]
    shape = graph.shape(graph.output)
    by_input = {}
    for i in box.perturbed:
        n = box.lo[i].size
        if J_out is None:
            z = np.zeros(shape + box.lo[i].shape)
            by_input[i] = interval_array(z, z)
        else:
            sl = slice(offsets[i], offsets[i] + n)
            by_input[i] = interval_array(J_out[0][:, sl].reshape(shape + box.lo[i].shape),
                                         J_out[1][:, sl].reshape(shape + box.lo[i].shape))
    return vals, by_input


def forward_node(node, args):
    """One node's ``ops`` enclosure: its code on intervals, intersected with its rule."""
    op = get_op(node.op)
    rule = RULES.get(node.op)
    try:
        naive = np.asarray(op.forward(*args, **node.params), dtype=object)
    except (NotSupported, ZeroDivisionError, OverflowError) as exc:
        if rule is None:
            raise NotSupported(f"node {node.name} ({node.op}): {exc}") from None
        naive = None
    if rule is None:
        return naive
    special = np.asarray(rule(args, node.params), dtype=object)
    return special if naive is None else _intersect(naive, special)


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
    if method == "ops":
        J = jacobian(graph, vals, box.perturbed) if grad else None
        return {"values": vals, "jacobian": J, "pieces": 1, "per_method": per_method}
    t_piece = time.perf_counter()
    centred, J = mean_value(graph, box)
    vals = [_intersect(a, b) for a, b in zip(vals, centred)]
    per_method["centered"] = vals[graph.output]
    t_piece = time.perf_counter() - t_piece + (t_piece - t0)
    if method == "centered":
        return {"values": vals, "jacobian": J, "pieces": 1, "per_method": per_method}
    # subdivide: the most influential coordinates, bisected, as the budget allows
    left = budget - (time.perf_counter() - t0)
    coords = _influence(box, J)
    s = int(math.floor(math.log2(max(left / max(t_piece, 1e-3), 1)))) if left > 0 else 0
    s = max(0, min(s, len(coords), 12))
    if method == "subdivide":
        s = max(s, min(1, len(coords)))
    if s == 0:
        per_method["subdivide"] = vals[graph.output]
        return {"values": vals, "jacobian": J, "pieces": 1, "per_method": per_method}
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
        piece = box.piece(lo, hi)
        pv, pJ = mean_value(graph, piece)
        hull_vals = pv if hull_vals is None else [_hull(a, b) for a, b in zip(hull_vals, pv)]
        hull_J = pJ if hull_J is None else {i: _hull(hull_J[i], pJ[i]) for i in pJ}
        pieces += 1
    vals = [_intersect(a, b) for a, b in zip(vals, hull_vals)]
    J = {i: _intersect(J[i], hull_J[i]) for i in J}
    per_method["subdivide"] = vals[graph.output]
    return {"values": vals, "jacobian": J, "pieces": pieces, "per_method": per_method}


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

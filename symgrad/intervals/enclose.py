"""The first-order machinery (docs/bounds.md states each theorem): ``forward`` (``ibp``
and ``ops``: each node's code on intervals, with its whole-op rule), ``jacobian`` (the
output's interval Jacobian from the proved VJPs), ``Box`` and ``mean_value`` — the
``centered`` form: every tape value as c + A·η ± e, node Jacobians from the graph's
**proved** VJP rules run on intervals, remainders as fresh noise symbols — and the
first-order algebra of the LayerNorm and softmax chains (:mod:`.chains`). The methods
themselves, and subdivision, are in :mod:`.methods`.
"""
from __future__ import annotations


import numpy as np

from ..ops import get_op
from .chains import CHAINS
from .interval import U, Interval, NotSupported, as_interval, bounds_arrays, \
    interval_array, matmul_bounds
from .rules import ELEMENTWISE, LOCAL, RULES

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
        seed = _unit_seed(shape, k)
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
            given = np.asarray(values[name])
            v = given.astype(float)
            lo, hi = v.copy(), v.copy()
            if given.dtype.kind == "f" and given.dtype.itemsize > 8:   # a long double: the
                inexact = v.astype(given.dtype) != given                # box around it
                lo = np.where(inexact, np.nextafter(v, -np.inf), v)
                hi = np.where(inexact, np.nextafter(v, np.inf), v)
            if i in perturbed and radius:
                lo, hi = np.nextafter(lo - radius, -np.inf), np.nextafter(hi + radius, np.inf)
            self.lo.append(lo)
            self.hi.append(hi)

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


def _unit_seed(shape, k) -> np.ndarray:
    """e_k as intervals: every product the VJP code forms with it is then an interval
    operation, outward rounded — never a float product of the op's float parameters (two
    float matrices in a row would multiply in plain floats)."""
    seed = np.empty(shape, dtype=object)
    seed.flat[:] = [Interval(0.0, 0.0) for _ in range(seed.size)]
    seed[k] = Interval(1.0, 1.0)
    return seed


def _local_jacobians(op, node, args, out) -> list:
    """Per argument position p, (lo, hi) of ∂out_k/∂arg_e over the box as a |out| × |arg|
    matrix: the op's proved VJP rule run on the intervals with the seed e_k, per k."""
    shape = out.shape
    size = int(np.prod(shape))
    sizes = [int(np.prod(np.shape(a))) for a in args]
    if node.op in ELEMENTWISE:   # a diagonal Jacobian: one pass with ḡ = 1 gives it
        ones = np.empty(shape, dtype=object)
        ones.flat[:] = [Interval(1.0, 1.0) for _ in range(ones.size)]
        d_lo, d_hi = bounds_arrays(op.vjp(ones, out, *args, **node.params)[0])
        lo, hi = np.zeros((size, size)), np.zeros((size, size))
        lo[np.arange(size), np.arange(size)] = d_lo.ravel()
        hi[np.arange(size), np.arange(size)] = d_hi.ravel()
        return [(lo, hi)]
    lo = [np.zeros((size, n)) for n in sizes]
    hi = [np.zeros((size, n)) for n in sizes]
    for row, k in enumerate(np.ndindex(shape)):
        seed = _unit_seed(shape, k)
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


def _down(x):
    return np.nextafter(x, -np.inf)


def _gamma(k: int) -> float:
    """A bound (with slack) on the relative rounding error of a float sum of k products."""
    return 2.02 * (k + 2) * U / (1 - (k + 2) * U)


#: the absolute rounding error of one float operation whose result underflows (2⁻¹⁰⁷⁵,
#: rounded up): relative bounds alone fail below the normal range
TINY = 2.0 ** -1074


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


def _constant_jacobian(op, node, varying) -> bool:
    """Whether the node's Jacobian with respect to its varying reads is the same everywhere:
    a linear op, a bilinear one (or affine) whose other reads are fixed. Subdivision then
    reuses its enclosure over the whole box on every piece — sound for any op, since the
    whole box contains the piece; tight for these."""
    if op.linearity == "linear":
        return True
    others_fixed = sum(varying) == 1 and len(set(node.reads)) == len(node.reads)
    if op.linearity == "bilinear":
        return others_fixed
    return node.op == "affine" and others_fixed and varying[0]


#: noise symbols up to which a product's remainder is bounded as a quadratic form
QUADRATIC_COLUMNS = 600


def _product_pairs(op_name, shapes):
    """Per output entry of a product, the (row of a, row of b) pairs it sums over."""
    if op_name == "matmul":
        (n, k), (_, p) = shapes
        return [[(i * k + t, t * p + j) for t in range(k)] for i in range(n) for j in range(p)]
    if op_name == "batched_matmul":
        (b, n, k), (_, _, p) = shapes
        return [[(bb * n * k + i * k + t, bb * k * p + t * p + j) for t in range(k)]
                for bb in range(b) for i in range(n) for j in range(p)]
    if op_name == "mul" and shapes[0] == shapes[1]:
        return [[(i, i)] for i in range(int(np.prod(shapes[0])))]
    return None


def _quadratic_bound(pairs, A_a, e_a, A_b, e_b) -> np.ndarray:
    """|Σ_t Δa_t Δb_t| per output entry, Δa = A_a η ± e_a: the quadratic form ηᵀQη,
    Q = Σ_t a_t b_tᵀ, is bounded over the box η ∈ [−1, 1]^m by its diagonal's signed sums and
    Σ_{l<m} |Q_lm + Q_ml| (cancellations across t kept), plus the cross terms with e and the
    rounding of Q (γ_k Σ_t |a_t|·1·|b_t|·1)."""
    out = np.zeros(len(pairs))
    m = A_a.shape[1]
    for o, terms in enumerate(pairs):
        ra = [t[0] for t in terms]
        rb = [t[1] for t in terms]
        a, b = A_a[ra], A_b[rb]
        k = len(terms)
        Q = a.T @ b
        sym_q = Q + Q.T
        diag = np.diag(Q)
        off = (np.abs(sym_q).sum() - np.abs(np.diag(sym_q)).sum()) / 2
        hi = np.maximum(diag, 0).sum() + off
        lo = np.minimum(diag, 0).sum() - off
        mags_a, mags_b = np.abs(a).sum(axis=1), np.abs(b).sum(axis=1)
        rounding = 2.02 * (k + 2) * U * float(mags_a @ mags_b) * 4
        cross = float(mags_a @ e_b[rb] + e_a[ra] @ mags_b + e_a[ra] @ e_b[rb])
        total = max(hi, -lo) + cross + rounding
        out[o] = total * (1 + 2.02 * (m * m + k + 8) * U) + (m * m * (k + 1) + 8) * TINY
    return _up(out)


def _product_reach(a, b):   # |ΔA·ΔB| ≤ reach_A · reach_B, rounded up
    k = a.shape[-1]
    return _up((a @ b) * _relative(k) + (k + 1) * TINY)


#: bilinear ops: the bound on their second-order term from the operands' reaches
BILINEAR = {"matmul": _product_reach, "batched_matmul": _product_reach,
            "mul": lambda a, b: _up(a * b * _relative(1) + TINY)}


def mean_value(graph, box: Box, cache: dict | None = None) -> tuple:
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
        chain = None
        if node.op in CHAINS and varying[0] and not any(varying[1:]):
            r0 = node.reads[0]
            x_lo, x_hi = bounds_arrays(point[r0])
            sym = _Symbols(columns)
            try:
                x_form = (((x_lo + x_hi) / 2).ravel(), forms[r0][0], forms[r0][1])
                chain = CHAINS[node.op](Affine(sym), x_form, node, args)
            except (NotSupported, ZeroDivisionError, OverflowError):
                chain = None
        if any(varying):
            # a product of two varying values: f(u) − f(u*) = J(u*)(u − u*) + B(Δ₁, Δ₂)
            # exactly, |B| bounded by the product of the reaches (half the mean-value bound);
            # any other node: the remainder ∫₀¹ (J(u* + tΔ) − M)Δ dt, bounded piecewise over
            # t ∈ [(k−1)/K, k/K] by J on the box u* + (k/K)·D, D = [−reach, reach] ∩ (U − u*)
            bilinear = node.op in BILINEAR and len(set(node.reads)) == 2 and all(varying)
            reaches = [_reach(_padded(forms[r][0], columns), forms[r][1], columns)
                       if varying[p] else None for p, r in enumerate(node.reads)]
            key = (len(vals), tuple(varying))
            if cache is not None and key in cache:
                # a Jacobian that cannot vary (below): its enclosure over the whole box,
                # computed once, holds on every piece (sound whatever the op)
                local = box_local = cache[key]
                spreads = [local]
            else:
                centre = [point[r] for r in node.reads]
                local = _local_jacobians(op, node, centre, point[len(vals)])
                if _constant_jacobian(op, node, varying):
                    args_1 = [_scaled(point[r], vals[r], reaches[p], 1.0) if varying[p]
                              else vals[r] for p, r in enumerate(node.reads)]
                    spreads = [_local_jacobians(op, node, args_1, forward_node(node, args_1))]
                    if cache is not None:
                        cache[key] = spreads[0]
                else:
                    # elementwise Jacobians are one cheap pass: finer steps (the bound tends
                    # to ½·max|f″|·reach² as they shrink)
                    splits = 4 * SPLITS if node.op in ELEMENTWISE else SPLITS
                    steps = [1.0] if bilinear else [k / splits for k in range(1, splits + 1)]
                    spreads = []
                    for t in steps:
                        args_t = [_scaled(point[r], vals[r], reaches[p], t) if varying[p]
                                  else vals[r] for p, r in enumerate(node.reads)]
                        spreads.append(_local_jacobians(op, node, args_t,
                                                        _any_enclosure(node, args_t)))
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
                rounding = (absM @ np.abs(A_r)).sum(axis=1) * (2.02 * (k + columns + 2) * U) \
                    + (k + 2) * (columns + 2) * TINY
                err = err + absM @ e_r * _relative(k) + rounding
                if bilinear:   # J(u*) − M: the width of the centre's enclosure only
                    spread = np.maximum(_up(M - L_lo), _up(L_hi - M))
                    remainder = remainder + spread @ reach * _relative(k) + (k + 1) * TINY
                else:
                    for loc_t in spreads:
                        t_lo, t_hi = loc_t[p]
                        spread = np.maximum(_up(M - t_lo), _up(t_hi - M))
                        remainder = remainder + (spread @ reach) * (_relative(k) / len(spreads)) \
                            + (k + 1) * TINY
                if jac[r] is not None:
                    J = _pair_add(J, matmul_bounds(*box_local[p], *jac[r]))
            reaches = [r_ for r_, v in zip(reaches, varying) if v]
            reaches = [r_.reshape(np.shape(args[p])) for r_, p in
                       zip(reaches, [p for p, v in enumerate(varying) if v])]
            if bilinear:
                bound = BILINEAR[node.op](*reaches).ravel()
                pairs = _product_pairs(node.op, [np.shape(a) for a in args])
                if pairs is not None and columns <= QUADRATIC_COLUMNS:
                    (A_a, e_a), (A_b, e_b) = [forms[r] for r in node.reads]
                    bound = np.minimum(bound, _quadratic_bound(
                        pairs, _padded(A_a, columns), e_a, _padded(A_b, columns), e_b))
                remainder = remainder + bound
            err = _up(err * _relative(len(node.reads) + 1))
            # the remainder of each entry becomes a noise symbol of its own: later linear
            # maps combine these coefficients exactly (with cancellation), as they do ε's
            symbols = _Symbols(columns)
            A = symbols.fresh(A, remainder * _relative(len(node.reads) + 1))
            columns = symbols.columns
        if chain is not None:   # the chain of sharp steps, where it is the narrower form
            c_out, A_c, e_c = chain
            mid_out = ((c_lo + c_hi) / 2).ravel()
            e_c = _up((e_c + np.abs(c_out - mid_out)) * _relative(2))
            if np.mean(np.abs(A_c).sum(axis=1) + e_c) < np.mean(np.abs(A).sum(axis=1) + err):
                columns = sym.columns
                A, err = _padded(A_c, columns), e_c
            else:
                A = _padded(A, columns)
        radius = _up((np.abs(A).sum(axis=1) * _relative(columns) + err) * _relative(2) + half +
                     (columns + 2) * TINY)
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


def _any_enclosure(node, args):
    """An enclosure of the node's output for its VJP (which may read it): for an elementwise
    op its code on intervals (its tight rule bisects, and these VJPs read x), else the
    ``ops`` enclosure (softmax's VJP reads y, which the cancellation rule keeps ≤ 1)."""
    if node.op in ELEMENTWISE:
        try:
            return np.asarray(get_op(node.op).forward(*args, **node.params), dtype=object)
        except (NotSupported, ZeroDivisionError, OverflowError):
            pass
    return forward_node(node, args)


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


# ----- the first-order form as an algebra of the LayerNorm and softmax chains (chains.py) ---
#
# Linear maps (no remainder), univariate functions (the piecewise bound with K = 2·SPLITS
# nested intervals) and products (|Δa·Δb| ≤ reach_a·reach_b). A form is (c, A, e): every
# value lies in c + A·η ± e, c a float vector.

class _Symbols:
    """The count of noise symbols, and fresh ones for remainders."""

    def __init__(self, columns: int):
        self.columns = columns

    def fresh(self, A, remainder):
        remainder = _up(remainder)
        rows = np.nonzero(remainder > 0)[0]
        if not rows.size:
            return A
        new = np.zeros((A.shape[0], rows.size))
        new[rows, np.arange(rows.size)] = remainder[rows]
        self.columns += rows.size
        return np.hstack([_padded(A, self.columns - rows.size), new])


def _reach(A, e, columns):
    return _up(np.abs(A).sum(axis=1) * _relative(columns) + e + (columns + 2) * TINY)


def _centre(lo, hi):
    """A float centre of [lo, hi] and the distance bound to every point of it."""
    c = (lo + hi) / 2
    return c, np.maximum(_up(c - lo), _up(hi - c))


def _linear(sym, parts, offset=None):
    """Σ M_p·form_p (+ offset, a float vector): parts [(M, (c, A, e))]."""
    size = parts[0][0].shape[0]
    c_lo = np.zeros(size) if offset is None else offset.copy()
    c_hi = c_lo.copy()
    A = np.zeros((size, sym.columns))
    e = np.zeros(size)
    for M, (c, A_p, e_p) in parts:
        lo, hi = matmul_bounds(M, M, c[:, None], c[:, None])
        c_lo = np.nextafter(c_lo + lo[:, 0], -np.inf)
        c_hi = np.nextafter(c_hi + hi[:, 0], np.inf)
        A_p = _padded(A_p, sym.columns)
        A = A + M @ A_p
        k = M.shape[1]
        e = e + (np.abs(M) @ e_p) * _relative(k) + \
            (np.abs(M) @ np.abs(A_p)).sum(axis=1) * (2.02 * (k + sym.columns + 2) * U) + \
            (k + 2) * (sym.columns + 2) * TINY
    c, half = _centre(c_lo, c_hi)
    return c, A, _up((e + half) * _relative(len(parts) + 1))


def path_piece(c: float, step: float, domain, known=None, j: int = 0) -> Interval:
    """c ± step (each end one ulp outward) — a piece of the path from c to the argument —
    clipped to the domain and to ``known`` (entry ``j`` of its (lo, hi)), where the true
    argument cannot go; never short of c itself."""
    lo = max(np.nextafter(c - step, -np.inf), min(domain[0], c))
    hi = min(np.nextafter(c + step, np.inf), max(domain[1], c))
    if known is not None:
        lo = min(max(lo, known[0][j]), c)
        hi = max(min(hi, known[1][j]), c)
    return Interval(lo, hi)


def _univariate(sym, form, fn, domain=(-np.inf, np.inf), known=None):
    """f(u) entrywise (``fn``: f and f′): f(c) + f′(c)(u − c) + R, |R| ≤ Σ_k (1/K)·mag(f′(U_k) − M)·reach;
    ``known`` (lo, hi) encloses u too (each U_k is clipped to it)."""
    c, A, e = form
    reach = _reach(A, e, sym.columns)
    lo, hi = [], []
    M, spread_c, rem = np.zeros(c.size), np.zeros(c.size), np.zeros(c.size)
    K = 2 * SPLITS
    for j in range(c.size):
        point = Interval(c[j], c[j])
        value = fn.at(point, 0)
        lo.append(value.lo)
        hi.append(value.hi)
        slope = fn.at(point, 1)
        m = (slope.lo + slope.hi) / 2
        M[j] = m
        spread_c[j] = max(_up(m - slope.lo), _up(slope.hi - m))
        total = 0.0
        for k in range(1, K + 1):
            s = fn.at(path_piece(c[j], k / K * reach[j], domain, known, j), 1)
            total += max(abs(s.lo - m), abs(s.hi - m))
        rem[j] = total / K * reach[j] + TINY
    c_out, half = _centre(np.array(lo), np.array(hi))
    A_p = _padded(A, sym.columns)
    A_out = M[:, None] * A_p
    e_out = np.abs(M) * e + spread_c * reach + np.abs(A_out).sum(axis=1) * (2.02 * U) + half + \
        (sym.columns + 4) * TINY
    A_out = sym.fresh(A_out, _up(rem * _relative(K + 2)))
    return c_out, A_out, _up(e_out * _relative(4))


def _product(sym, a, b):
    """a ⊙ b = c_a c_b + c_b Δa + c_a Δb + Δa Δb, |Δa Δb| ≤ reach_a·reach_b."""
    c_a, A_a, e_a = a
    c_b, A_b, e_b = b
    lo, hi = [], []
    for x, y in zip(c_a, c_b):
        v = Interval(x, x) * Interval(y, y)
        lo.append(v.lo)
        hi.append(v.hi)
    c, half = _centre(np.array(lo), np.array(hi))
    A_a, A_b = _padded(A_a, sym.columns), _padded(A_b, sym.columns)
    A = c_b[:, None] * A_a + c_a[:, None] * A_b
    rounding = (np.abs(c_b[:, None] * A_a) + np.abs(c_a[:, None] * A_b)).sum(axis=1) * (4.04 * U)
    e = np.abs(c_b) * e_a + np.abs(c_a) * e_b + rounding + half + 3 * (sym.columns + 4) * TINY
    rem = _reach(A_a, e_a, sym.columns) * _reach(A_b, e_b, sym.columns) + TINY
    A = sym.fresh(A, _up(rem * _relative(2)))
    return c, A, _up(e * _relative(4))


class Affine:
    """The first-order form (c, A, e) as an algebra of the chains (chains.py)."""

    def __init__(self, sym: _Symbols):
        self.sym = sym

    def linear(self, parts, offset=None):
        return _linear(self.sym, parts, offset)

    def univariate(self, form, fn, domain=(-np.inf, np.inf), known=None):
        return _univariate(self.sym, form, fn, domain, known)

    def product(self, a, b):
        return _product(self.sym, a, b)

    def centre(self, form):
        return form[0]

    def recentre(self, form, lo, hi):
        c, half = _centre(lo, hi)
        return c, form[1], _up(form[2] + half)

    def magnitude(self, form):
        return np.abs(form[0]) + _reach(form[1], form[2], self.sym.columns)

    def widen(self, form, extra):
        return form[0], form[1], _up(form[2] + extra)

    def bounds(self, form):
        c, A, e = form
        reach = _reach(A, e, self.sym.columns)
        return np.nextafter(c - reach, -np.inf), np.nextafter(c + reach, np.inf)

    def linear_part(self, form):
        return form[0], _padded(form[1], self.sym.columns)

    def columns(self):
        return self.sym.columns

    def condense(self, form, since):
        return form

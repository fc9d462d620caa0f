"""LayerNorm and softmax as chains of steps whose remainders are sharp, for any form algebra.

The interval Jacobian of a whole LayerNorm or softmax row is loose (x̂ and y appear several
times in it), so a remainder built on it is too. Both ops are written here as chains of
linear maps (no remainder), univariate functions of one entry (exp, 1/v, (v + ε)^(-1/2)) and
entrywise products. An *algebra* carries the forms through the chain; two exist:

* the first-order affine form c + A·η ± e (:class:`symgrad.intervals.enclose.Affine`),
* the second-order Taylor form c + a·ε + εᵀBε ± r (:class:`symgrad.intervals.taylor.Taylor`).

An algebra provides ``linear(parts, offset)``, ``univariate(form, kind, domain, consts)``,
``product(a, b)``, ``centre(form)``, ``recentre(form, lo, hi)``, ``magnitude(form)`` and
``widen(form, extra)``.

The univariate functions and their derivatives are SymEngine expressions (``KINDS``, and
every elementwise op's own forward), enclosed over an interval by :func:`interval_of`.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import symengine as se
from flint import arb

from .interval import FUNCTIONS, Interval, NotSupported, _ball_bounds, as_interval, bounds_arrays

_T = se.Symbol("t")
_EPS = se.Symbol("eps")

#: the univariate steps of the chains, as expressions in t (ε a constant of the node)
KINDS = {"exp": se.exp(_T), "recip": 1 / _T, "rsqrt": (_T + _EPS) ** se.Rational(-1, 2)}


def interval_of(expr, env: dict) -> Interval:
    """An enclosure of a SymEngine expression over intervals for its symbols (``env``):
    +, ×, whole and half-whole powers, exp and the functions of ``FUNCTIONS``, each
    outward rounded. Anything else: NotSupported."""
    return compile_interval(expr, list(env))(*env.values())


def compile_interval(expr, symbols: list):
    """``interval_of`` compiled once: a function of the intervals of ``symbols`` (in that
    order); the constants are enclosed once, here."""
    position = {s: k for k, s in enumerate(symbols)}

    def build(e):
        if e in position:
            k = position[e]
            return lambda xs: xs[k]
        if not e.free_symbols:
            value = as_interval(e)
            return lambda xs: value
        args = e.args
        if isinstance(e, (se.Add, se.Mul)):
            parts = [build(x) for x in args]
            if isinstance(e, se.Add):
                def add(xs):
                    total = parts[0](xs)
                    for part in parts[1:]:
                        total = total + part(xs)
                    return total
                return add

            def mul(xs):
                total = parts[0](xs)
                for part in parts[1:]:
                    total = total * part(xs)
                return total
            return mul
        if isinstance(e, se.Pow):
            base, power = args
            if base == se.E:
                inner = build(power)
                return lambda xs: FUNCTIONS["exp"](inner(xs))
            if power.free_symbols:
                raise NotSupported(f"a power with a varying exponent ({e})")
            q = Fraction(str(power))
            inner = build(base)
            if q.denominator == 1:
                return lambda xs: inner(xs) ** q.numerator
            if q.denominator == 2:
                return lambda xs: FUNCTIONS["sqrt"](inner(xs)) ** q.numerator
            raise NotSupported(f"a power with exponent {q}")
        fun = FUNCTIONS.get(type(e).__name__.lower())
        if fun is not None and len(args) == 1:
            inner = build(args[0])
            return lambda xs: fun(inner(xs))
        raise NotSupported(f"no interval enclosure for {type(e).__name__} in {e}")
    compiled = build(expr)
    return lambda *xs: compiled(xs)


#: pieces of the known range over which a fitted polynomial's error is enclosed
FIT_PIECES = 8


class Univariate:
    """A function of one entry: ``at(X, k)`` encloses its k-th derivative over the interval
    X (derivatives past ``order`` are taken when first asked for)."""

    def __init__(self, expr, consts: dict | None = None, order: int = 3):
        env = {se.Symbol(k) if isinstance(k, str) else k: as_interval(v)
               for k, v in (consts or {}).items()}
        self._names = {k: se.Symbol(f"_c{j}") for j, k in enumerate(env)}
        self._consts = list(env.values())
        self.derivatives = [expr]
        self._compiled = []
        self._extend(order)

    def _extend(self, order: int):
        """Derivatives up to ``order``, each compiled with ε and the like as interval
        constants."""
        while len(self.derivatives) <= order:
            self.derivatives.append(se.diff(self.derivatives[-1], _T))
        for d in self.derivatives[len(self._compiled):]:
            d = d.xreplace(self._names)
            self._compiled.append(compile_interval(d, [_T] + list(self._names.values())))

    def at(self, X: Interval, k: int) -> Interval:
        if k >= len(self._compiled):
            self._extend(k)
        return self._compiled[k](X, *self._consts)

    def fit(self, c: float, lo: float, hi: float, degree: int, memo: dict | None = None):
        """A polynomial p(t) = Σ_k p_k (t − c)^k of ``degree`` that interpolates f at the
        Chebyshev points of [lo, hi], and an enclosure [g_lo, g_hi] of f − p over [lo, hi]:
        (p, g_lo, g_hi), or None where [lo, hi] is not a finite interval wide enough for
        ``degree`` + 1 distinct nodes. The p_k are floats, exact by definition; the enclosure is rigorous (on each
        of the pieces X with midpoint m, g(m) + g′(m)(X − m) + ½g″(X)(X − m)²; FIT_PIECES
        equal pieces at first, the one that sticks out furthest past the midpoints' values
        split in two while it sticks out by more than 5 % of their range, up to
        4·FIT_PIECES)."""
        if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
            return None
        memo = {} if memo is None else memo

        def at(X, order):   # f's enclosures, shared by the fits of one range (``memo``)
            key = (X.lo, X.hi, order)
            if key not in memo:
                memo[key] = self.at(X, order)
            return memo[key]
        k = np.arange(degree + 1)
        nodes = (lo + hi) / 2 + (hi - lo) / 2 * np.cos(np.pi * (2 * k + 1) / (2 * degree + 2))
        if np.unique(nodes).size < degree + 1:   # a range a few ulps wide: no fit
            return None
        values = []
        for t in nodes:
            v = at(Interval(t, t), 0)
            values.append((v.lo + v.hi) / 2)
        if not np.all(np.isfinite(values)):
            return None
        try:
            p = np.linalg.solve(np.vander(nodes - c, degree + 1, increasing=True), values)
        except np.linalg.LinAlgError:
            return None
        if not np.all(np.isfinite(p)):
            return None
        # p′ and p″'s coefficients as intervals (j·p_j is not always a float)
        dp = [Interval(p[j], p[j]) * j for j in range(1, degree + 1)]
        ddp = [dp[j] * j for j in range(1, degree)]

        def poly(coef, X):   # Horner on intervals, in X − c
            D = X - c
            total = Interval(0.0, 0.0)
            for q in reversed(coef):
                total = total * D + q
            return total

        def piece(a, b):   # (enclosure of g over [a, b], g at its midpoint)
            m = (a + b) / 2
            M, X = Interval(m, m), Interval(a, b)
            H = X - M
            at_m = at(M, 0) - poly(p, M)
            g = at_m + (at(M, 1) - poly(dp, M)) * H + (at(X, 2) - poly(ddp, X)) * (H ** 2) * 0.5
            return g, at_m
        edges = np.linspace(lo, hi, FIT_PIECES + 1)   # its ends are lo and hi exactly
        pieces = [(a, b, *piece(a, b)) for a, b in zip(edges[:-1], edges[1:])]
        # split the piece that sticks out furthest past the midpoint values, while allowed
        while len(pieces) < FIT_PIECES * 4:
            top = max(q[3].hi for q in pieces)
            bottom = min(q[3].lo for q in pieces)
            k = max(range(len(pieces)), key=lambda i: max(pieces[i][2].hi - top,
                                                          bottom - pieces[i][2].lo))
            a, b, g, _ = pieces[k]
            if max(g.hi - top, bottom - g.lo) <= 0.05 * (top - bottom):
                break
            m = (a + b) / 2
            if not a < m < b:
                break
            pieces[k:k + 1] = [(a, m, *piece(a, m)), (m, b, *piece(m, b))]
        g_lo = min(q[2].lo for q in pieces)
        g_hi = max(q[2].hi for q in pieces)
        if not (np.isfinite(g_lo) and np.isfinite(g_hi)):
            return None
        return p, g_lo, g_hi

    @classmethod
    def of_op(cls, op, params: dict, order: int = 3) -> "Univariate":
        """An elementwise op's own forward, run on the symbol t."""
        key = ("op", op.name, repr(sorted(params.items())), order)
        if key not in _MADE:
            out = np.asarray(op.forward(np.array([_T], dtype=object), **params), dtype=object)
            _MADE[key] = cls(se.sympify(out.flat[0]), order=order)
        return _MADE[key]

    @classmethod
    def kind(cls, name: str, order: int = 3, **consts) -> "Univariate":
        key = ("kind", name, repr(sorted(consts.items())), order)
        if key not in _MADE:
            _MADE[key] = cls(KINDS[name], consts, order)
        return _MADE[key]


#: the univariate functions made so far (derivatives and their compiled enclosures)
_MADE: dict = {}


def _rows_matrix(rows: int, d: int, block) -> np.ndarray:
    return np.kron(np.eye(rows), block)


def variance_floor(alg, u, rows: int, d: int) -> np.ndarray:
    """Per row, a lower bound of mean(u²) over the box: the lower end, over the box, of the
    row's tangent plane Σ 2w_i u_i − ⌈Σ w_i²⌉ ≤ Σ u_i² (:func:`tangent_planes`, any real w;
    a linear form in u, whose range the algebra bounds), over d, rounded down. The bound is
    best at w = u where mean(u²) is least; w is the least-norm point of u's linear part
    c + a·z over z ∈ [−1, 1]^m (any w is sound). The row's lower end of mean(u²)'s own form
    is often near 0 where this one is near the true minimum."""
    plane = tangent_planes(alg, u, rows, d, [list(range(r * d, (r + 1) * d)) for r in range(rows)])
    lo, _ = alg.bounds(plane)
    with np.errstate(invalid="ignore"):
        floor = np.nextafter(lo / d, -np.inf)
    return np.where(np.isfinite(floor), floor, -np.inf)   # a NaN (an overflow) bounds nothing


def tangent_planes(alg, u, rows: int, d: int, select: list, at=None):
    """Linear lower bounds of Σ_{j ∈ idx} u_j², one per list idx in ``select`` (indices into
    u, rows of d flattened), as one form in ``alg``: Σ 2w_j u_j − ⌈Σ w_j²⌉ (from
    u_j² ≥ 2w_j u_j − w_j² for any real w_j; 2w is exact), w the value of the
    selected entries' linear part c + a·z at z = ``at[i]``, or where it is least in norm."""
    c, a = alg.linear_part(u)
    M = np.zeros((len(select), rows * d))
    offset = np.zeros(len(select))
    least = _least_norm_points(c, a, select) if at is None else None
    for i, idx in enumerate(select):
        w = least[i] if at is None else c[idx] + a[idx] @ at[i][:a.shape[1]]
        M[i, idx] = 2 * w
        total = sum((arb(float(v)) ** 2 for v in w), arb(0))
        offset[i] = -_ball_bounds(total)[1]
    return alg.linear([(M, u)], offset=offset)


def _least_norm_points(c, a, select: list, steps: int = 200) -> list:
    """For each list idx of ``select``, c[idx] + a[idx]·z at a z ∈ [−1, 1]^m where its norm
    is (nearly) least: projected gradient descent with step 1/L, L = 2‖a[idx]‖₂² (the
    gradient's Lipschitz constant), from z = 0; c[idx] itself where a[idx] is empty,
    zero, not finite or too small or large to descend on. The distinct lists of one length
    go as one batch."""
    out = [None] * len(select)
    groups: dict = {}
    for i, idx in enumerate(select):
        groups.setdefault(tuple(idx), []).append(i)
    by_length: dict = {}
    for key in groups:
        by_length.setdefault(len(key), []).append(key)
    for keys in by_length.values():
        C = np.array([c[list(k)] for k in keys])                 # (G, L)
        A = np.array([a[list(k)] for k in keys])                 # (G, L, m)
        good = np.isfinite(A).all(axis=(1, 2)) if A.size else np.zeros(len(keys), bool)
        A = np.where(good[:, None, None], A, 0.0)
        norm = np.linalg.norm(A, 2, axis=(1, 2)) ** 2 if A.size else np.zeros(len(keys))
        with np.errstate(divide="ignore", over="ignore"):
            step = np.where(norm > 0, 1 / (2 * np.where(norm > 0, norm, 1.0)), np.inf)
        # no linear part, or one too small or large to descend on: its centre
        step = np.where(good & (norm > 0) & np.isfinite(norm) & np.isfinite(step), step, 0.0)
        z = np.zeros((len(keys), A.shape[2], 1))
        At = np.swapaxes(A, 1, 2)
        for _ in range(steps):
            z = np.clip(z - step[:, None, None] * 2 * (At @ (C[:, :, None] + A @ z)), -1.0, 1.0)
        W = C + (A @ z)[:, :, 0]
        for key, w in zip(keys, W):
            for i in groups[key]:
                out[i] = w
    return out


def centred(alg, x, rows: int, d: int):
    """u = x − mean(x) per row of d, in ``alg`` (the float matrix I − 11ᵀ/d is exact when d
    is a power of 2, within 2⁻⁵² per entry otherwise, which widens u)."""
    u = alg.linear([(_rows_matrix(rows, d, np.eye(d) - np.full((d, d), 1.0 / d)), x)])
    if d & (d - 1):
        u = alg.widen(u, _rows_matrix(rows, d, np.ones((d, d))) @ alg.magnitude(x) * 2.0 ** -52)
    return u


def layer_norm_chain(alg, x, gamma, beta, eps, shape):
    """y = γ ⊙ (u · (var + ε)^(-1/2)) + β per row, u = x − mean, var = mean(u²)."""
    d = shape[-1]
    rows = int(np.prod(shape[:-1]))
    exact = (d & (d - 1)) == 0   # 1/d exact in binary when d is a power of 2
    since = alg.columns()
    u = centred(alg, x, rows, d)
    square = alg.product(u, u)
    mean = _rows_matrix(rows, d, np.full((1, d), 1.0 / d))
    var = alg.linear([(mean, square)])
    if not exact:
        var = alg.widen(var, mean.astype(bool).astype(float) @ alg.magnitude(square) * 2.0 ** -52)
    v_lo, v_hi = alg.bounds(var)
    known = (np.maximum(np.maximum(v_lo, variance_floor(alg, u, rows, d)), 0.0), v_hi)
    scale = alg.univariate(var, Univariate.kind("rsqrt", eps=eps), domain=(0.0, np.inf),
                           known=known)
    scale = alg.condense(scale, since)
    scale_b = alg.linear([(_rows_matrix(rows, d, np.ones((d, 1))), scale)])
    xhat = alg.product(u, scale_b)
    g_lo, g_hi = bounds_arrays(gamma)
    b_lo, b_hi = bounds_arrays(beta)
    if np.any(g_lo != g_hi) or np.any(b_lo != b_hi):
        return None
    G = np.diag(np.tile(g_lo.ravel(), rows))
    return alg.linear([(G, xhat)], offset=np.tile(b_lo.ravel(), rows))


def softmax_chain(alg, x, shape, keep=None, bias=None):
    """y = e ⊙ (Σ e)^(-1) per row, e = exp(x + bias − shift) on the kept entries."""
    L = shape[-1]
    rows = int(np.prod(shape[:-1]))
    c = alg.centre(x)
    b = np.zeros(c.size) if bias is None else np.asarray(bias, dtype=float).ravel()
    keep_flat = np.ones(c.size, bool) if keep is None else np.asarray(keep, bool).ravel()
    if not all(keep_flat[r * L:(r + 1) * L].any() for r in range(rows)):
        return None     # a fully masked row is the op's own special case
    approx = c + b
    shift = np.repeat([max(approx[r * L + j] for j in range(L) if keep_flat[r * L + j])
                       for r in range(rows)], L)
    # z = x + bias − shift (softmax does not change under a shift), its centre enclosed
    lo = np.nextafter(np.nextafter(c + b, -np.inf) - shift, -np.inf)
    hi = np.nextafter(np.nextafter(c + b, np.inf) - shift, np.inf)
    z = alg.recentre(x, lo, hi)
    e = alg.univariate(z, Univariate.kind("exp"))
    e = alg.linear([(np.diag(keep_flat.astype(float)), e)])
    total = alg.linear([(_rows_matrix(rows, L, np.ones((1, L))), e)])
    recip = alg.univariate(total, Univariate.kind("recip"),
                           domain=(np.finfo(float).tiny, np.inf))
    recip_b = alg.linear([(_rows_matrix(rows, L, np.ones((L, 1))), recip)])
    return alg.product(e, recip_b)


def _numbers(bias):
    lo, hi = bounds_arrays(np.asarray(bias, dtype=object))
    if np.any(lo != hi):
        raise NotSupported("a bias that is not a float")
    return lo


#: ops enclosed by a chain of sharp steps instead of their interval Jacobian:
#: (algebra, form of the first read, node, the reads' enclosures) → form or None
CHAINS = {
    "layer_norm": lambda alg, x, node, args: layer_norm_chain(
        alg, x, args[1], args[2], node.params["eps"], np.shape(args[0])),
    "softmax": lambda alg, x, node, args: softmax_chain(alg, x, np.shape(args[0])),
    "hard_masked_softmax": lambda alg, x, node, args: softmax_chain(
        alg, x, np.shape(args[0]), keep=node.params["mask"]),
    "masked_softmax": lambda alg, x, node, args: softmax_chain(
        alg, x, np.shape(args[0]), bias=_numbers(node.params["bias"])),
}

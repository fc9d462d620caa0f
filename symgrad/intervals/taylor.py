"""The second-order Taylor form (docs/bounds.md, "taylor").

Every tape value v is carried as v(x₀ + ρ ⊙ ε) ∈ c + a·ε + εᵀBε ± r for all ε ∈ [−1, 1]^n
(entrywise; x₀ the box's centre, ρ its radii, n the perturbed input entries): c a float
vector, a the linear and B the quadratic coefficients (floats, read exactly), r a remainder
radius that also absorbs every rounding error. The quadratic part keeps what the first-order
form loses as a fresh remainder: the curvature of softmax, LayerNorm and GELU and the
product of two varying factors, with its signs — the over-approximation left is third
order in the radius, plus the bound of the quadratic over the box.

A node with reads u = c_u + δ (|δ| ≤ R, δ = p + ρ with p = a·ε + εᵀBε and |ρ| ≤ r):

* affine in its varying reads (a linear op; a product, matmul or affine map whose other
  reads are fixed): f(u) = f(c_u) + J·δ exactly, J from the op's **proved** VJP rule on
  intervals (its midpoint M, the rest |J − M| ≤ D into r);
* a product of two varying values: (c₁ + δ₁)(c₂ + δ₂) expanded, the products of the two
  linear parts kept in B, the third- and fourth-order terms bounded into r;
* a smooth elementwise function (and the univariate steps of the LayerNorm and softmax
  chains): Taylor's theorem with the Lagrange remainder, f(c + δ) = f(c) + f′(c)δ +
  ½f″(c)δ² + ⅙f‴(ξ)δ³, f‴ enclosed over c + [−R, R] (within the function's domain and the
  value's enclosure) from the op's own forward differentiated by SymEngine;
* any other node: the mean-value theorem, f(u) = f(c_u) + J(ξ)·δ, J(ξ) in the interval
  Jacobian over the reads' enclosures — first order, sound for every op the VJP rules cover.

The range of c + a·ε + εᵀBε over the box is bounded per coordinate, max over ε_i of
a_i ε_i + B_ii ε_i², plus Σ_{i<j} |B_ij + B_ji|; every float operation's rounding error is
bounded by γ_k times the same sum on absolute values (plus 2⁻¹⁰⁷⁴ per operation for
underflow) and added to r.
"""
from __future__ import annotations

import math

import numpy as np
from flint import arb

from ..ops import get_op
from . import joint
from .chains import CHAINS, Univariate, _numbers
from .enclose import TINY, Affine, _constant_jacobian, _down, _gamma, _local_jacobians, \
    _padded, _product_pairs, _up, forward_node, path_piece
from .interval import U, Interval, NotSupported, _ball_bounds, bounds_arrays, interval_array, matmul_bounds
from .rules import ELEMENTWISE

#: elementwise ops with three continuous derivatives wherever they are defined
SMOOTH = ELEMENTWISE - {"relu"}

#: pieces of [0, 1] over which the third-order remainder's integral is bounded, and their
#: weights ∫ ½(1 − s)² ds, rounded up
PIECES = 8
WEIGHTS = [_w * (1 + 2.0 ** -50) for _w in
           (((1 - (k - 1) / PIECES) ** 3 - (1 - k / PIECES) ** 3) / 6 for k in range(1, PIECES + 1))]

#: Taylor's rest, as a fraction of an entry's change (its rest plus |f′|·R), from which
#: fitted polynomials are tried too (:func:`series`)
FIT_FROM = 0.05

#: an entry whose form's enclosure is this many times wider than the known one restarts as
#: that interval (it loses its correlations, which no longer pay)
RESET = 2

#: value entries × n² up to which the quadratic coefficients are kept (8 bytes each)
MAX_COEFFICIENTS = 16_000_000


def _centre(lo, hi):
    """A float centre of [lo, hi] and its distance to every point of it (0 for a point)."""
    c = (lo + hi) / 2
    d = np.maximum(c - lo, hi - c)   # 0 only where lo = c = hi
    return c, np.where(d > 0, _up(d), 0.0)


class Symbols:
    """The noise symbols, as columns of a: first the perturbed inputs' (ε, ``inputs`` of
    them), then ``spare`` symbols of the polynomial part that no form uses until
    :meth:`take` hands them out (``n`` counts both: the axes of B and C), then one per
    remainder entry (η) — a later linear map combines those coefficients exactly, as it
    does ε's."""

    def __init__(self, inputs: int, spare: int = 0):
        self.n = self.columns = inputs + spare
        self.spare = list(range(inputs, inputs + spare))

    def take(self, k: int):
        """k spare symbols of the polynomial part (columns of a, axes of B and C) that no form
        has used, or None when fewer are left."""
        if len(self.spare) < k:
            return None
        taken, self.spare = self.spare[:k], self.spare[k:]
        return taken

    def fresh(self, a, remainder):
        # a NaN (∞·0 of an overflowed bound) is no bound at all: ∞, never dropped
        remainder = _up(np.where(np.isnan(remainder), np.inf, remainder))
        rows = np.nonzero(remainder > 0)[0]
        a = _padded(a, self.columns)
        if not rows.size:
            return a
        new = np.zeros((a.shape[0], rows.size))
        new[rows, np.arange(rows.size)] = remainder[rows]
        self.columns += rows.size
        return np.hstack([a, new])


def diagonal_range(a, B):
    """Per entry, (max, min) over the box of Σ_i a_i ε_i + B_ii ε_i² — each symbol's exact
    range, from its ends or its vertex −a_i²/(4B_ii) when that lies inside (the comparison
    that decides is exact) — and Σ_{i<j} |B_ij + B_ji|, the most the rest of εᵀBε can add."""
    n = B.shape[1]
    d = np.einsum("kii->ki", B)
    iu = np.triu_indices(n, 1)
    off = np.abs(B[:, iu[0], iu[1]] + B[:, iu[1], iu[0]]).sum(axis=1)

    def top(al, be):   # Σ_i max over t ∈ [−1, 1] of al_i t + be_i t²
        vertex = (be < 0) & (np.abs(al) < -2 * be)
        safe = np.where(vertex, be, -1.0)
        return np.where(vertex, -al * al / (4 * safe), np.abs(al) + be).sum(axis=1)
    return top(a, d), -top(-a, -d), off


class Ranged:
    """What a form's range gives: :meth:`reach` and :meth:`enclosure` from ``poly_range``
    and the remainder ``r``."""

    __slots__ = ()

    def reach(self):
        """R with |v − c| ≤ R, and P with |the polynomial part| ≤ P."""
        lo, hi = self.poly_range()
        P = np.maximum(hi, -lo)
        return _up(P + self.r), P

    def enclosure(self):
        lo, hi = self.poly_range()
        return _down(_down(self.c + lo) - self.r), _up(_up(self.c + hi) + self.r)


class Form(Ranged):
    """c + a·(ε, η) + εᵀBε ± r per entry (flattened): c (N,), a (N, columns), B (N, n, n)
    over the symbols of the polynomial part only (ε and the spare ones), r (N,)."""

    __slots__ = ("c", "a", "B", "r")

    def __init__(self, c, a, B, r):
        r = np.where(np.isnan(r), np.inf, r)
        bad = ~(np.isfinite(a).all(axis=1) & np.isfinite(B).reshape(len(B), -1).all(axis=1) &
                np.isfinite(c))
        if bad.any():   # an overflowed row: nothing known but that the value exists
            a, B, c = a.copy(), B.copy(), np.where(bad, 0.0, c)
            a[bad], B[bad], r = 0.0, 0.0, np.where(bad, np.inf, r)
        self.c, self.a, self.B, self.r = c, a, B, r

    @property
    def varying(self) -> bool:
        return bool(self.a.any() or self.B.any() or self.r.any())

    def masses(self):
        """(Σ|a_ε|, Σ|a_η|, Σ|B|) per entry, rounded up: bounds of |a_ε·ε|, |a_η·η| and
        |εᵀBε| on the box."""
        n = self.B.shape[1]
        m = self.a.shape[1]
        ma = _up(np.abs(self.a[:, :n]).sum(axis=1) * (1 + _gamma(n)))
        mf = _up(np.abs(self.a[:, n:]).sum(axis=1) * (1 + _gamma(m)))
        mB = _up(np.abs(self.B).reshape(len(self.B), -1).sum(axis=1) * (1 + _gamma(n * n)))
        return ma, mf, mB

    def poly_range(self):
        """(lo, hi) of a·(ε, η) + εᵀBε over the box, per entry: per input symbol the exact
        range of a_i ε_i + B_ii ε_i², Σ_{i<j} |B_ij + B_ji| for the rest of B, ±|a_η|."""
        n = self.B.shape[1]
        hi, lo, off = diagonal_range(self.a[:, :n], self.B)
        ma, mf, mB = self.masses()
        slack = _gamma(n * n + 2 * n) * 2 * (ma + mB) + (n * n + 4 * n) * TINY
        rest = off * (1 + _gamma(n * n)) + mf + slack
        lo, hi = _down(lo - rest), _up(hi + rest)
        bad = np.isnan(lo) | np.isnan(hi)
        return np.where(bad, -np.inf, lo), np.where(bad, np.inf, hi)

    def moved(self, c, r):
        """The same polynomial part around centre ``c``, remainder ``r``."""
        return Form(c, self.a, self.B, r)

    def with_a(self, a, r):
        """The same centre and quadratic part with coefficients ``a`` and remainder ``r``."""
        return Form(self.c, a, self.B, r)

    @staticmethod
    def seeded(c, a, sym):
        """An input's form: c + a·ε exactly."""
        return Form(c, a, np.zeros((len(c), sym.n, sym.n)), np.zeros(len(c)))


def constant(lo, hi, sym: Symbols) -> Form:
    lo, hi = np.ravel(lo), np.ravel(hi)
    c, half = _centre(lo, hi)
    n = sym.n
    return Form(c, np.zeros((c.size, sym.columns)), np.zeros((c.size, n, n)), half)


def linear(parts, base, sym: Symbols) -> Form:
    """Σ_p J_p·(u_p − c_p) + f(c), J_p = M_p + E_p with |E_p| ≤ D_p (D_p None: 0); ``base``
    (lo, hi) encloses f(c). The E_p terms become fresh symbols."""
    c, half = _centre(*base)
    n = sym.n
    a = np.zeros((c.size, sym.columns))
    B = np.zeros((c.size, n, n))
    r = half.copy()
    fresh = np.zeros(c.size)
    terms = len(parts) + 2
    for M, D, form in parts:
        k = M.shape[1]
        absM = np.abs(M)
        ma, mf, mB = form.masses()
        a = a + M @ _padded(form.a, sym.columns)
        B = B + (M @ form.B.reshape(len(form.B), -1)).reshape(-1, n, n)
        r = r + absM @ form.r * (1 + _gamma(k)) + absM @ (ma + mf + mB) * _gamma(k + terms) + \
            (k + terms) * (sym.columns + n * n + 2) * TINY
        if D is not None:
            R, _ = form.reach()
            fresh = fresh + D @ R * (1 + _gamma(k))
    a = sym.fresh(a, fresh * (1 + _gamma(terms)))
    return Form(c, a, B, _up(r * (1 + _gamma(2 * terms))))


def product(x: Form, y: Form, P, Q, sym: Symbols) -> Form:
    """out_o = Σ_t x[P_ot]·y[Q_ot]: (c_x + p_x + ρ_x)(c_y + p_y + ρ_y) expanded; the product
    of the two ε-linear parts kept in B, the other terms of p_x·p_y and the ρ·p terms
    bounded (fresh symbols)."""
    k = P.shape[1]
    n = sym.n
    xc, yc = x.c[P], y.c[Q]
    xa, ya = _padded(x.a, sym.columns)[P], _padded(y.a, sym.columns)[Q]
    c = (xc * yc).sum(axis=1)
    a = np.einsum("ok,okn->on", xc, ya) + np.einsum("ok,okn->on", yc, xa)
    B = (np.einsum("ok,okij->oij", xc, y.B[Q]) + np.einsum("ok,okij->oij", yc, x.B[P]) +
         np.einsum("oki,okj->oij", xa[:, :, :n], ya[:, :, :n]))
    (ma_x, mf_x, mB_x), (ma_y, mf_y, mB_y) = x.masses(), y.masses()
    P_x, P_y = x.reach()[1], y.reach()[1]
    ma_x, mf_x, mB_x, P_x, rx = ma_x[P], mf_x[P], mB_x[P], P_x[P], x.r[P]
    ma_y, mf_y, mB_y, P_y, ry = ma_y[Q], mf_y[Q], mB_y[Q], P_y[Q], y.r[Q]
    axc, ayc = np.abs(xc), np.abs(yc)
    rounding = (_gamma(2 * k + 2) * (axc * (ma_y + mf_y + mB_y) + ayc * (ma_x + mf_x + mB_x) +
                                     ma_x * ma_y + axc * ayc)).sum(axis=1)
    # p_x·p_y − (a_ε,x·ε)(a_ε,y·ε) and the ρ terms
    rest = (ma_x * mf_y + mf_x * (ma_y + mf_y) + (ma_x + mf_x) * mB_y + mB_x * P_y +
            (P_x + rx) * ry + P_y * rx).sum(axis=1)
    r = (axc * ry + ayc * rx).sum(axis=1) + rounding
    a = sym.fresh(a, rest * (1 + _gamma(k + 8)))
    return Form(c, a, B, _up(r * (1 + _gamma(k + 8)) + k * (sym.columns + n * n + 8) * TINY))


def nested_sup(fn: Univariate, order: int, weights, c: float, R: float, domain, known, j):
    """Σ_k w_k·sup|f^(order)| over c + s_k·[−R, R], s_k = k/len(weights), rounded up: the
    integral remainder ∫₀¹ w(s) f^(order)(c + sδ) δ^order ds over |δ| ≤ R, bounded piecewise
    (w_k ≥ ∫ w over [s_{k−1}, s_k]). The domain and ``known`` (entry ``j`` of its (lo, hi))
    clip each interval where the true argument cannot go; c itself always stays in."""
    pieces = len(weights)
    total = 0.0
    for k in range(1, pieces + 1):
        d = fn.at(path_piece(c, _up(k / pieces * R), domain, known, j), order)
        total += max(abs(d.lo), abs(d.hi)) * weights[k - 1]
    return _up(total * (1 + _gamma(pieces)))


def series(fn: Univariate, form, order: int, weights, domain, known) -> list:
    """Candidates for the polynomial in δ = v − c (v the argument, c its centre) that
    stands for f(c + δ), each with what it leaves: [(v0, f, s, tail)] — v0 (2, N) encloses
    the constant term, f (order, N) holds the float coefficients of δ¹ … δ^order, s (order,
    N) their distances to the true ones, tail (N) a bound on the rest. Every candidate is
    sound for every entry; the caller keeps, per entry, the one whose enclosure is
    narrowest.

    * first, Taylor's at c: f^(k)(c)/k!, the rest R^(order+1) times the integral
      remainder's coefficient bounded piecewise (:func:`nested_sup`);
    * then per degree 1 … order, a polynomial fitted over the range the argument is known
      to lie in — c ± R, within the domain and ``known`` (lo, hi) — its constant the float
      centre of p₀ plus the enclosure of f minus it over that range, the rest the distance
      to that enclosure's ends (:meth:`Univariate.fit`; Taylor's where no fit is made).
      Where R is as large as c is far from a singularity (a variance near 0 under
      (var + ε)^(-1/2)), Taylor's rest grows as R^(order+1), while a fit's stays near the
      best polynomial's error."""
    c = form.c
    R, _ = form.reach()
    N = c.size
    v0 = np.zeros((2, N))
    f, s, tail = np.zeros((order, N)), np.zeros((order, N)), np.zeros(N)
    for j in range(N):
        point = Interval(c[j], c[j])
        d0 = fn.at(point, 0)
        v0[:, j] = d0.lo, d0.hi
        for k in range(1, order + 1):
            d = fn.at(point, k)
            f[k - 1, j], s[k - 1, j] = _centre(_down(np.float64(d.lo) / math.factorial(k)),
                                               _up(np.float64(d.hi) / math.factorial(k)))
        t = nested_sup(fn, order + 1, weights, c[j], R[j], domain, known, j) * R[j] ** order
        tail[j] = _up(t * R[j] * (1 + _gamma(order)))
    out = [(v0, f, s, tail)]
    # a fit only where Taylor's rest is a fair part of the entry's change (elsewhere it
    # cannot gain much, and its coefficients are not the derivatives later steps share)
    wanted = np.isfinite(R) & (R > 0) & (np.isinf(tail) |
                                         (tail > FIT_FROM * (np.abs(f[0]) * R + tail)))
    memos = {j: {} for j in np.nonzero(wanted)[0]}   # f's enclosures, shared by the degrees
    for degree in range(1, order + 1 if wanted.any() else 1):
        fv0, ff, fs, ftail = v0.copy(), f.copy(), s.copy(), tail.copy()
        for j in memos:
            lo = max(_down(c[j] - R[j]), domain[0])
            hi = min(_up(c[j] + R[j]), domain[1])
            if known is not None:
                lo, hi = max(lo, known[0][j]), min(hi, known[1][j])
            try:
                fitted = fn.fit(c[j], lo, hi, degree, memos[j])
            except (NotSupported, ZeroDivisionError, OverflowError):
                fitted = None   # f or a derivative not enclosed on the range: Taylor's
            if fitted is None:
                continue
            p, g_lo, g_hi = fitted
            # f(c + δ) = p₀ + Σ p_k δ^k + g, g ∈ [g_lo, g_hi]: the constant the centre
            # of p₀ + g (a float), the rest (as a fresh symbol) its distance to the ends
            e = Interval(p[0], p[0]) + Interval(g_lo, g_hi)
            centre, half = _centre(e.lo, e.hi)
            fv0[:, j] = centre, centre
            ff[:, j] = np.concatenate([p[1:], np.zeros(order - degree)])
            fs[:, j], ftail[j] = 0.0, half
        out.append((fv0, ff, fs, ftail))
    return out


def _chosen(candidates: list, form_class, sym: Symbols):
    """Per entry, the candidate (c, a, B, …, r, rest) whose form's enclosure (``form_class``,
    the rest as one more symbol) is narrowest, as a form with its rest as fresh symbols."""
    if len(candidates) == 1:
        pick = np.zeros(len(candidates[0][0]), dtype=int)
    else:
        widths = []
        for c, a, *poly, r, rest in candidates:
            lo, hi = form_class(c, np.hstack([a, rest[:, None]]), *poly, r).enclosure()
            widths.append(hi - lo)
        widths = np.array(widths)
        pick = np.argmin(np.where(np.isnan(widths), np.inf, widths), axis=0)
    fields = []
    for k in range(len(candidates[0])):
        chosen = np.array(candidates[0][k])   # a copy (of a zero-stride array, a full one)
        for i, cand in enumerate(candidates[1:], start=1):
            rows = pick == i
            if rows.any():
                chosen[rows] = cand[k][rows]
        fields.append(chosen)
    c, a, *poly, r, rest = fields
    return form_class(c, sym.fresh(a, rest), *poly, r)


def univariate(form: Form, fn: Univariate, sym: Symbols, domain=(-np.inf, np.inf),
               known=None) -> Form:
    """f entrywise by Taylor's theorem or a fitted polynomial (module docstring,
    :func:`series`), per entry the narrowest; ``known`` (lo, hi) encloses the argument
    too. The remainder's terms become fresh symbols."""
    R, _ = form.reach()
    ma, mf, mB = form.masses()
    n = sym.n
    a_in = form.a[:, :n]
    W = mf + mB + form.r   # δ = a_ε·ε + w, |w| ≤ W: δ² − (a_ε·ε)² = 2(a_ε·ε)w + w²

    def build(v0, f, s, tail):
        (f1, f2), (s1, s2) = f, s
        c_out, half = _centre(v0[0], v0[1])
        a = f1[:, None] * _padded(form.a, sym.columns)
        B = f1[:, None, None] * form.B + f2[:, None, None] * np.einsum("ki,kj->kij", a_in, a_in)
        rest = s1 * R + s2 * R * R + np.abs(f2) * (2 * ma * W + W * W) + tail
        r = np.abs(f1) * form.r + half + _gamma(3) * (np.abs(f1) * (ma + mf + mB) +
                                                     np.abs(f2) * ma * ma)
        r = _up(r * (1 + _gamma(12)) + (sym.columns + n * n + 16) * TINY)
        return c_out, a, B, r, _up(rest * (1 + _gamma(12)))

    return _chosen([build(*cand) for cand in series(fn, form, 2, WEIGHTS, domain, known)],
                   Form, sym)


class Algebra:
    """A form module's steps as an algebra of the chains (chains.py): ``kit`` gives its
    ``linear``, ``univariate`` and ``product`` (this module's, or :mod:`.cubic`'s)."""

    def __init__(self, sym: Symbols, kit=None):
        self.sym, self.kit = sym, kit or KIT

    def linear(self, parts, offset=None):
        size = parts[0][0].shape[0]
        c_lo = np.zeros(size) if offset is None else offset.astype(float)
        c_hi = c_lo.copy()
        for M, form in parts:
            lo, hi = matmul_bounds(M, M, form.c[:, None], form.c[:, None])
            c_lo, c_hi = _down(c_lo + lo[:, 0]), _up(c_hi + hi[:, 0])
        return self.kit.linear([(M, None, form) for M, form in parts], (c_lo, c_hi), self.sym)

    def univariate(self, form, fn, domain=(-np.inf, np.inf), known=None):
        return self.kit.univariate(form, fn, self.sym, domain, known)

    def product(self, a, b):
        idx = np.arange(a.c.size)[:, None]
        return self.kit.product(a, b, idx, idx, self.sym)

    def centre(self, form):
        return form.c

    def recentre(self, form, lo, hi):
        c, half = _centre(lo, hi)
        return form.moved(c, _up(form.r + half))

    def magnitude(self, form):
        R, _ = form.reach()
        return _up(np.abs(form.c) + R)

    def widen(self, form, extra):
        return form.moved(form.c, _up(form.r + extra))

    def bounds(self, form):
        return form.enclosure()

    def columns(self):
        return self.sym.columns

    def condense(self, form, since: int):
        """The same values with the symbols from column ``since`` on (and r) folded, per
        entry, into one spare symbol of the polynomial part (its coefficient their mass):
        later products keep its products with ε as polynomial terms. Unchanged when no
        spare symbols are left."""
        N = form.c.size
        taken = self.sym.take(N)
        if taken is None:
            return form
        a = _padded(form.a, self.sym.columns).copy()
        mass = _up((np.abs(a[:, since:]).sum(axis=1) + form.r) * (1 + _gamma(a.shape[1])) +
                   a.shape[1] * TINY)
        a[:, since:] = 0.0
        a[np.arange(N), taken] = np.where(mass > 0, mass, 0.0)
        return form.with_a(a, np.zeros(N))

    def linear_part(self, form):
        return form.c, form.a


def lse_at_centre(c, rows: int, L: int, keep, bias):
    """At the centre z = c + bias (kept entries of each row of L): LSE(z) enclosed in arb,
    (2, rows); P (rows, rows·L) the float midpoints of p = softmax(z) per row, D ≥ |p − P|."""
    N = rows * L
    lse = np.zeros((2, rows))
    p_lo, p_hi = np.zeros(N), np.zeros(N)
    for row in range(rows):
        live = [row * L + j for j in range(L) if keep[row * L + j]]
        s = [arb(c[k]) + arb(bias[k]) for k in live]
        top = max(c[k] + bias[k] for k in live)
        total = sum(((v - top).exp() for v in s), arb(0))
        value = total.log() + top
        lse[:, row] = _ball_bounds(value)
        for k, v in zip(live, s):
            p_lo[k], p_hi[k] = _ball_bounds((v - value).exp())
    P = np.zeros((rows, N))
    D = np.zeros((rows, N))
    for row in range(rows):
        sl = slice(row * L, (row + 1) * L)
        mid = (p_lo[sl] + p_hi[sl]) / 2
        P[row, sl] = mid
        D[row, sl] = np.maximum(_up(mid - p_lo[sl]), _up(p_hi[sl] - mid))
    return lse, P, D


def _logsumexp(form: Form, rows: int, L: int, keep, bias, sym: Symbols) -> Form:
    """LSE(z) = log Σ_j exp(z_j) per row (kept entries, z = form + bias) by Taylor's theorem:
    LSE(c + δ) = LSE(c) + p·δ + ½δᵀ(diag p − ppᵀ)δ + R₃, p = softmax(c) (enclosed in arb),
    and the third derivative along δ is the third central moment of δ under the softmax
    weights, at most w³/4 when every δ_j lies in an interval of width w: |R₃| ≤ w³/24."""
    n = sym.n
    lse, P, D = lse_at_centre(form.c, rows, L, keep, bias)
    out = linear([(P, D if D.any() else None, form)], (lse[0], lse[1]), sym)
    R, _ = form.reach()
    ma, mf, mB = form.masses()
    W = mf + mB + form.r           # δ = a_ε·ε + w, |w| ≤ W
    a_in = form.a[:, :n]
    B = out.B.copy()
    rest = np.zeros(rows)
    rounding = np.zeros(rows)
    for row in range(rows):
        sl = slice(row * L, (row + 1) * L)
        p = P[row, sl]
        d = D[row, sl]
        H = np.diag(p) - np.outer(p, p)
        # |H − H(p)| for p in its enclosure: |Δp| + |Δp|·(2|p| + |Δp|) entrywise, rounded up
        dH = _up(np.diag(d) + np.outer(d, 2 * np.abs(p) + d) + 4 * U * (np.abs(np.diag(p)) +
                                                                      np.outer(np.abs(p), np.abs(p))))
        A = a_in[sl]
        B[row] = B[row] + 0.5 * (A.T @ H @ A)
        absH = np.abs(H)
        m = ma[sl]
        rounding[row] = _gamma(2 * L + n) * 0.5 * (m @ absH @ m)
        w = _up(2 * R[sl].max())
        rest[row] = 0.5 * (m @ absH @ W[sl] + W[sl] @ absH @ m + W[sl] @ absH @ W[sl]) + \
            0.5 * (R[sl] @ dH @ R[sl]) + w * w * w / 24
    a = sym.fresh(out.a, rest * (1 + _gamma(2 * L + 8)))
    r = _up((out.r + rounding) * (1 + _gamma(4)) + (n * n + 8) * TINY)
    return Form(out.c, a, B, r)


def softmax_lse(form: Form, shape, sym: Symbols, keep=None, bias=None, kit=None) -> Form:
    """softmax(z) = exp(z − LSE(z)) per row (masked entries 0): the log-sum-exp by the
    ``kit``'s ``logsumexp`` (this module's by default), then exp of a nonpositive
    argument by its ``univariate``."""
    kit = kit or KIT
    L = shape[-1]
    rows = int(np.prod(shape[:-1]))
    N = rows * L
    keep = np.ones(N, bool) if keep is None else np.asarray(keep, bool).ravel()
    if not all(keep[r * L:(r + 1) * L].any() for r in range(rows)):
        raise NotSupported("a fully masked row")
    bias = np.zeros(N) if bias is None else np.asarray(bias, dtype=float).ravel()
    lse = kit.logsumexp(form, rows, L, keep, bias, sym)
    spread = np.kron(np.eye(rows), np.ones((L, 1)))
    alg = Algebra(sym, kit)
    w = alg.linear([(np.eye(N), form), (-spread, lse)], offset=bias)
    y = kit.univariate(w, Univariate.kind("exp"), sym, domain=(-np.inf, 0.0))
    return alg.linear([(np.diag(keep.astype(float)), y)])


#: the softmax ops :func:`softmax_lse` covers: node → its keyword arguments
SOFTMAX = {
    "softmax": lambda node: {},
    "hard_masked_softmax": lambda node: {"keep": node.params["mask"]},
    "masked_softmax": lambda node: {"bias": _numbers(node.params["bias"])},
}


def _first_order(form: Form, sym: Symbols) -> tuple:
    """The form as a first-order one (c, A, e): εᵀBε ∈ m ± h becomes c + m and a fresh
    symbol with coefficient h."""
    n = sym.n
    quad = Form(np.zeros(form.c.size), np.zeros((form.c.size, n)), form.B, np.zeros(form.c.size))
    lo, hi = quad.poly_range()
    m, h = _centre(lo, hi)
    c = form.c + m
    e = form.r + np.abs(c) * U + TINY   # the rounding of c + m
    return c, sym.fresh(form.a, h), _up(e)


def _second_order(form: tuple, sym: Symbols) -> Form:
    c, A, e = form
    n = sym.n
    return Form(c, _padded(A, sym.columns), np.zeros((c.size, n, n)), e)


def _narrowest(forms: list, kit, sym: Symbols):
    """Per entry, the row of the form whose enclosure is narrowest."""
    best = forms[0]
    for other in forms[1:]:
        lo, hi = best.enclosure()
        o_lo, o_hi = other.enclosure()
        best = kit.rows(best, other, (o_hi - o_lo) < (hi - lo), sym)
    return best


def _narrowest_rows(first: Form, second: Form, take, sym: Symbols) -> Form:
    """The rows of ``second`` where ``take``, of ``first`` elsewhere."""
    t = take[:, None]
    return Form(np.where(take, second.c, first.c),
                np.where(t, _padded(second.a, sym.columns), _padded(first.a, sym.columns)),
                np.where(t[:, :, None], second.B, first.B), np.where(take, second.r, first.r))


def _jacobian_parts(centre, local, forms, varying):
    """[(M, D, form)] per varying read: M the midpoint of its Jacobian at the centre,
    D ≥ |J − M| over ``local`` (the enclosure where J is taken)."""
    parts = []
    for p, form in enumerate(forms):
        if varying[p]:
            M = (centre[p][0] + centre[p][1]) / 2
            D = np.maximum(_up(M - local[p][0]), _up(local[p][1] - M))
            parts.append((M, D if D.any() else None, form))
    return parts


class Kit:
    """A form module's steps for the shared pass (:func:`form_pass`): ``name`` and
    ``power`` (the order of the form: its coefficients per value are entries × n^power),
    ``limit`` on those, ``constant``, ``linear``, ``product``, ``univariate``,
    ``logsumexp``, ``softmax`` (exp(z − LSE(z))), ``rows`` (rows of one form or another), ``seeded``
    (an input's form) and ``chains(sym, form)``: the (algebra, form in it, back to this
    form) each chain of :mod:`.chains` runs in."""

    def __init__(self, **steps):
        self.__dict__.update(steps)


def _both_algebras(sym, form):
    """The chains in this form and in the first-order one (its quadratic part bounded)."""
    def back(out):
        return out if isinstance(out, Form) else _second_order(out, sym)
    return [(Algebra(sym), form, back), (Affine(sym), _first_order(form, sym), back)]


def _constant_local(op, node, args_point, cache, key):
    """A node's local Jacobians where they do not vary (:func:`_constant_jacobian`), at the
    reads' centres, kept in ``cache`` under ``key`` (shared by the pieces of a box)."""
    local = cache.get(key) if cache is not None else None
    if local is None:
        local = _local_jacobians(op, node, args_point,
                                 np.asarray(forward_node(node, args_point), dtype=object))
        if cache is not None:
            cache[key] = local
    return local


def _node(kit, node, forms, vals, args_point, sym, cache, key):
    """One node's form from its reads' forms (``vals`` their enclosures)."""
    op = get_op(node.op)
    varying = [f.varying for f in forms]
    base = bounds_arrays(np.asarray(forward_node(node, args_point), dtype=object))
    base = (base[0].ravel(), base[1].ravel())
    if _constant_jacobian(op, node, varying):
        local = _constant_local(op, node, args_point, cache, key)
        return kit.linear(_jacobian_parts(local, local, forms, varying), base, sym)
    if node.op in CHAINS and varying[0] and not any(varying[1:]):
        # the chain in each algebra, each entry from the narrowest (all rows share the
        # symbols: each is a sound form on its own). A softmax's chain in the form's own
        # algebra is skipped: exp(z − LSE(z)) in the same order was never wider downstream
        # on the benchmark graphs, and the chain's univariate steps cost a third of the pass
        found = []
        for algebra, form, back in kit.chains(sym, forms[0]):
            if node.op in SOFTMAX and isinstance(algebra, Algebra):
                continue
            try:
                out = CHAINS[node.op](algebra, form, node, vals)
            except (NotSupported, ZeroDivisionError, OverflowError):
                continue
            if out is not None:
                found.append(back(out))
        if node.op in SOFTMAX:
            try:
                found.append(kit.softmax(forms[0], np.shape(vals[0]), sym,
                                         **SOFTMAX[node.op](node)))
            except (NotSupported, ZeroDivisionError, OverflowError):
                pass
        if found:
            return _narrowest(found, kit, sym)
    reads = node.reads
    if node.op in ("matmul", "batched_matmul", "mul") and len(set(reads)) == 2 and all(varying):
        pairs = _product_pairs(node.op, [np.shape(v) for v in vals])
        if pairs is not None:
            P = np.array([[t[0] for t in o] for o in pairs], dtype=np.intp)
            Q = np.array([[t[1] for t in o] for o in pairs], dtype=np.intp)
            return kit.product(forms[0], forms[1], P, Q, sym)
    if node.op in SMOOTH and len(reads) == 1:
        try:
            fn = Univariate.of_op(op, node.params)
            lo, hi = bounds_arrays(vals[0])
            return kit.univariate(forms[0], fn, sym, known=(lo.ravel(), hi.ravel()))
        except (NotSupported, ZeroDivisionError, OverflowError):
            pass
    # the mean-value theorem over the reads' enclosures: first order
    local = _local_jacobians(op, node, vals, np.asarray(forward_node(node, vals), dtype=object))
    centre = _local_jacobians(op, node, args_point,
                              np.asarray(forward_node(node, args_point), dtype=object))
    return kit.linear(_jacobian_parts(centre, local, forms, varying), base, sym)


def form_pass(kit, graph, box, ops_vals=None, cache: dict | None = None) -> list:
    """Every tape value's enclosure over ``box`` by ``kit``'s form, node by node
    (intersected with ``ops_vals`` where given). NotSupported when the coefficients would
    not fit."""
    mid, rad = box.center()
    offsets, n = {}, 0
    for i in box.perturbed:
        offsets[i] = n
        n += box.lo[i].size
    largest = max(int(np.prod(graph.shape(v))) for v in range(len(graph.values)))
    if largest * n ** kit.power > kit.limit:
        raise NotSupported(f"the {kit.name} form would hold {largest}×{n}^{kit.power} "
                           f"coefficients per value (more than {kit.limit:,})")
    # one spare symbol per LayerNorm row (Algebra.condense), checked against the computed
    # values only: an input's form holds its B and C as zero-stride arrays (cubic) or n²
    # floats (taylor), not n³
    spare = sum(int(np.prod(graph.shape(node.reads[0])[:-1])) for node in graph.nodes
                if node.op == "layer_norm")
    computed = max((int(np.prod(graph.shape(v))) for v in range(len(graph.inputs),
                                                                len(graph.values))), default=0)
    if computed * (n + spare) ** kit.power > kit.limit:
        spare = 0
    sym = Symbols(n, spare)
    forms, vals = [], []
    for i in range(len(graph.inputs)):
        if i in offsets:   # x₀ + ρ ⊙ ε, exactly
            size = box.lo[i].size
            a = np.zeros((size, sym.columns))
            a[np.arange(size), offsets[i] + np.arange(size)] = rad[i].ravel()
            forms.append(kit.seeded(mid[i].ravel().copy(), a, sym))
        else:
            forms.append(kit.constant(box.lo[i], box.hi[i], sym))
        vals.append(interval_array(box.lo[i], box.hi[i]))
    last = {}
    for j, node in enumerate(graph.nodes):
        for r in node.reads:
            last[r] = j
    spreads = {}   # a LayerNorm's index: (its centred input's form, γ, β, ε), for _joint
    with np.errstate(over="ignore", invalid="ignore"):   # overflowed rows become (0, 0, ∞)
        for j, node in enumerate(graph.nodes):
            forms.append(_step(kit, graph, node, forms, vals, sym, ops_vals, cache, spreads))
            for r in node.reads:   # free what no later node reads (the output's is kept)
                if last.get(r) == j and r != graph.output:
                    forms[r] = None
                    spreads.pop(r, None)
    return vals


def _step(kit, graph, node, forms, vals, sym, ops_vals, cache, spreads):
    """One node's form; its enclosure appended to ``vals`` (narrowed by :mod:`.joint`'s
    bounds where they apply)."""
    index = len(forms)
    shape = graph.shape(index)
    reads = [forms[r] for r in node.reads]
    args = [vals[r] for r in node.reads]
    point = [interval_array(f.c.reshape(np.shape(v)), f.c.reshape(np.shape(v)))
             for f, v in zip(reads, args)]
    if not any(f.varying for f in reads):
        lo, hi = bounds_arrays(np.asarray(forward_node(node, args), dtype=object))
        form = kit.constant(lo, hi, sym)
    else:
        try:
            form = _node(kit, node, reads, args, point, sym, cache, index)
        except (ZeroDivisionError, OverflowError) as exc:
            raise NotSupported(f"node {node.name} ({node.op}): {exc}") from None
    lo, hi = form.enclosure()
    if ops_vals is not None:   # entries the known enclosure bounds better: a constant
        k_lo, k_hi = (v.ravel() for v in bounds_arrays(ops_vals[index]))
        wider = RESET * (k_hi - k_lo) < (hi - lo)
        if wider.any():
            form = kit.rows(form, kit.constant(k_lo, k_hi, sym), wider, sym)
        lo, hi = np.maximum(lo, k_lo), np.minimum(hi, k_hi)
    if any(f.varying for f in reads):
        try:
            found = _joint(kit, node, index, reads, args, point, sym, spreads, cache)
        except (NotSupported, ZeroDivisionError, OverflowError, np.linalg.LinAlgError):
            found = None
        if found is not None:
            lo, hi = np.maximum(lo, found[0]), np.minimum(hi, found[1])
    vals.append(interval_array(lo.reshape(shape), hi.reshape(shape)))
    return form


def _joint(kit, node, index, reads, args, point, sym, spreads, cache):
    """(lo, hi) of a LayerNorm's output, or of an affine map of one that mixes its entries,
    by :mod:`.joint`'s rule; None where it does not apply. A LayerNorm's centred input is
    kept in ``spreads`` for the maps that read it."""
    alg = Algebra(sym, kit)
    if node.op == "layer_norm":
        if any(f.varying for f in reads[1:]):
            return None
        found = joint.layer_norm_bounds(alg, reads[0], args[1], args[2], node.params["eps"],
                                        np.shape(args[0]))
        if found is None:
            return None
        lo, hi, u = found
        spreads[index] = (u, bounds_arrays(args[1])[0], args[2], node.params["eps"])
        return lo, hi
    varying = [f.varying for f in reads]
    sources = [r for r, v in zip(node.reads, varying) if v]
    if len(sources) != 1 or sources[0] not in spreads or node.reads.count(sources[0]) != 1:
        return None
    op = get_op(node.op)
    if not _constant_jacobian(op, node, varying):
        return None
    p = node.reads.index(sources[0])
    M_lo, M_hi = _constant_local(op, node, point, cache, index)[p]
    if not (np.isfinite(M_lo).all() and np.isfinite(M_hi).all()) or \
            not (((M_lo > 0) | (M_hi < 0)).sum(axis=1) > 1).any():   # no entry mixes
        return None
    u, gamma, beta, eps = spreads[sources[0]]
    d = np.shape(gamma)[-1]
    b_lo, b_hi = _map_at(node, args, p, beta)   # the map at x̂ = 0: its read is β
    return joint.affine_bounds(alg, u, eps, gamma, M_lo, M_hi, b_lo.ravel(), b_hi.ravel(),
                                d)


def _map_at(node, args, p, row):
    """(lo, hi) of the node with its read ``p`` equal to ``row`` (intervals) in every row,
    the other reads at their enclosures."""
    at = list(args)
    at[p] = np.broadcast_to(np.asarray(row, dtype=object), np.shape(args[p]))
    return bounds_arrays(np.asarray(forward_node(node, at), dtype=object))


#: the second-order form's steps
KIT = Kit(name="second-order", power=2, limit=MAX_COEFFICIENTS, constant=constant,
          linear=linear, product=product, univariate=univariate, logsumexp=_logsumexp,
          softmax=softmax_lse, rows=_narrowest_rows, seeded=Form.seeded, chains=_both_algebras)


def taylor_form(graph, box, ops_vals=None, cache: dict | None = None) -> list:
    """Every tape value's enclosure over ``box`` by the second-order form (intersected with
    ``ops_vals`` where given). NotSupported when the coefficients would not fit."""
    return form_pass(KIT, graph, box, ops_vals, cache)

"""The third-order Taylor form (docs/bounds.md, "cubic").

Every tape value v is carried as v(x₀ + ρ ⊙ ε) ∈ c + a·(ε, η) + εᵀBε + C[ε, ε, ε] ± r for all
ε ∈ [−1, 1]^n (the second-order form of :mod:`.taylor` with a cubic term): what the
second-order form bounds as a fresh remainder — the third derivatives of softmax, LayerNorm
and GELU, and the products of a linear with a quadratic part — is kept with its signs, and
the over-approximation left is fourth order in the radius. At a radius where the inputs of
softmax move by a few tenths, that is what separates a loose enclosure from a tight one.

A node with reads u = c_u + δ, δ = A + Q + K + F + ρ (A = a_ε·ε, Q = εᵀBε, K = C[ε³],
F = a_η·η, |ρ| ≤ r):

* affine in its varying reads: f(c_u) + J·δ exactly, J from the op's **proved** VJP rule on
  intervals (as in :mod:`.taylor`);
* a product of two varying values: (c₁ + δ₁)(c₂ + δ₂) expanded; A₁A₂ kept in B, A₁Q₂ + Q₁A₂
  in C, the terms of degree four and more and those with F or ρ bounded into fresh symbols;
* a smooth elementwise function: f(c + δ) = f(c) + f′δ + ½f″δ² + ⅙f‴δ³ + R₄, keeping f′δ,
  ½f″(A² + 2AQ) and ⅙f‴A³; R₄ = ∫₀¹ ⅙(1 − s)³ f⁗(c + sδ) δ⁴ ds with f⁗ enclosed over
  c + s_k·[−R, R] piecewise (from the op's own forward differentiated by SymEngine);
* softmax as exp(z − LSE(z)): LSE(c + δ) = LSE(c) + p·δ + ½δᵀHδ + ⅙T[δ, δ, δ] + R₄, with
  H and T the second and third cumulant tensors of the one-hot distribution p =
  softmax(c), and |R₄| ≤ w⁴/192 when every δ_j lies in an interval of width w (the fourth
  cumulant of a variable on an interval of width w is at most w⁴/8 in size);
* any other node: the mean-value theorem (first order), as in :mod:`.taylor`.

The range of the polynomial over the box: per input symbol the exact range of
a_i ε_i + B_ii ε_i², plus Σ_{i<j} |B_ij + B_ji| and Σ|C|; every float operation's rounding
error is bounded by γ_k times the same sums on absolute values and added to r.
"""
from __future__ import annotations

import numpy as np
from flint import arb

from ..ops import get_op
from .chains import CHAINS, Univariate
from .enclose import TINY, _constant_jacobian, _local_jacobians, _padded, _product_pairs, \
    _up, forward_node
from .interval import NotSupported, U, Interval, _ball_bounds, bounds_arrays, interval_array, \
    matmul_bounds
from .taylor import RESET, SMOOTH, SOFTMAX, Symbols, _centre, _down, _gamma, _jacobian_parts

#: pieces of [0, 1] over which the fourth-order remainder's integral is bounded, and their
#: weights ∫ ⅙(1 − s)³ ds, rounded up
PIECES = 8
WEIGHTS = [_w * (1 + 2.0 ** -50) for _w in
           (((1 - (k - 1) / PIECES) ** 4 - (1 - k / PIECES) ** 4) / 24
            for k in range(1, PIECES + 1))]

#: value entries × n³ up to which the cubic coefficients are kept (8 bytes each)
MAX_COEFFICIENTS = 6_000_000


class Form3:
    """c + a·(ε, η) + εᵀBε + C[ε³] ± r per entry (flattened): c (N,), a (N, columns),
    B (N, n, n), C (N, n, n, n) over the input symbols ε only, r (N,)."""

    __slots__ = ("c", "a", "B", "C", "r", "_masses")

    def __init__(self, c, a, B, C, r):
        r = np.where(np.isnan(r), np.inf, r)
        self.c, self.a, self.B, self.C, self.r = c, a, B, C, r
        masses = self._sums()
        # a row with an infinite or NaN coefficient (or one whose masses overflow) is an
        # overflowed row: nothing known but that the value exists
        bad = ~(np.isfinite(sum(masses)) & np.isfinite(c))
        if bad.any():
            a, B, C = a.copy(), B.copy(), C.copy()
            a[bad], B[bad], C[bad] = 0.0, 0.0, 0.0
            self.c, self.a, self.B, self.C = np.where(bad, 0.0, c), a, B, C
            self.r = np.where(bad, np.inf, r)
            masses = self._sums()
        self._masses = masses

    @property
    def varying(self) -> bool:
        return bool(any(m.any() for m in self._masses) or self.r.any())

    def masses(self):
        """(Σ|a_ε|, Σ|a_η|, Σ|B|, Σ|C|) per entry, rounded up: bounds of |a_ε·ε|, |a_η·η|,
        |εᵀBε| and |C[ε³]| on the box (computed when the form is made: it is not changed
        after)."""
        return self._masses

    def _sums(self):
        n = self.B.shape[1]
        N = len(self.c)

        def mass(x, k):   # Σ|x| per row, rounded up; exactly 0 where the row is 0
            total = np.abs(x).reshape(N, -1).sum(axis=1)
            return np.where(total > 0, _up(total * (1 + _gamma(k))), 0.0)
        return (mass(self.a[:, :n], n), mass(self.a[:, n:], self.a.shape[1]),
                mass(self.B, n * n), mass(self.C, n ** 3))

    def poly_range(self):
        """(lo, hi) of the polynomial over the box, per entry (module docstring)."""
        n = self.B.shape[1]
        a, B = self.a[:, :n], self.B
        d = _sum("kii->ki", B)
        iu = np.triu_indices(n, 1)
        off = np.abs(B[:, iu[0], iu[1]] + B[:, iu[1], iu[0]]).sum(axis=1)

        def top(al, be):   # Σ_i max over t ∈ [−1, 1] of al_i t + be_i t²
            vertex = (be < 0) & (np.abs(al) < -2 * be)    # exact comparisons
            safe = np.where(vertex, be, -1.0)
            return np.where(vertex, -al * al / (4 * safe), np.abs(al) + be).sum(axis=1)
        ma, mf, mB, mC = self.masses()
        slack = _gamma(n * n + 2 * n) * 2 * (ma + mB) + (n * n + 4 * n) * TINY
        rest = off * (1 + _gamma(n * n)) + mf + mC + slack
        lo, hi = _down(-top(-a, -d) - rest), _up(top(a, d) + rest)
        bad = np.isnan(lo) | np.isnan(hi)
        return np.where(bad, -np.inf, lo), np.where(bad, np.inf, hi)

    def reach(self):
        """R with |v − c| ≤ R, and P with |the polynomial| ≤ P."""
        lo, hi = self.poly_range()
        P = np.maximum(hi, -lo)
        return _up(P + self.r), P

    def enclosure(self):
        lo, hi = self.poly_range()
        return _down(_down(self.c + lo) - self.r), _up(_up(self.c + hi) + self.r)


def _zeros(N: int, sym: Symbols):
    n = sym.n
    return np.zeros((N, sym.columns)), np.zeros((N, n, n)), np.zeros((N, n, n, n))


def constant(lo, hi, sym: Symbols) -> Form3:
    lo, hi = np.ravel(lo), np.ravel(hi)
    c, half = _centre(lo, hi)
    return Form3(c, *_zeros(c.size, sym), half)


def linear(parts, base, sym: Symbols) -> Form3:
    """Σ_p J_p·(u_p − c_p) + f(c), J_p = M_p + E_p with |E_p| ≤ D_p (D_p None: 0); ``base``
    (lo, hi) encloses f(c). The E_p terms become fresh symbols."""
    c, half = _centre(*base)
    n = sym.n
    a, B, C = np.zeros((c.size, sym.columns)), None, None
    r = half.copy()
    fresh = np.zeros(c.size)
    terms = len(parts) + 2
    for M, D, form in parts:
        k = M.shape[1]
        absM = np.abs(M)
        ma, mf, mB, mC = form.masses()
        a = a + _apply(M, _padded(form.a, sym.columns))
        if mB.any():
            term = _apply(M, form.B.reshape(k, -1)).reshape(-1, n, n)
            B = term if B is None else B + term
        if mC.any():
            term = _apply(M, form.C.reshape(k, -1)).reshape(-1, n, n, n)
            C = term if C is None else C + term
        r = r + absM @ form.r * (1 + _gamma(k)) + \
            absM @ (ma + mf + mB + mC) * _gamma(k + terms) + \
            (k + terms) * (sym.columns + n * n + n ** 3 + 2) * TINY
        if D is not None:
            R, _ = form.reach()
            fresh = fresh + D @ R * (1 + _gamma(k))
    a = sym.fresh(a, fresh * (1 + _gamma(terms)))
    B = np.zeros((c.size, n, n)) if B is None else B
    C = np.zeros((c.size, n, n, n)) if C is None else C
    return Form3(c, a, B, C, _up(r * (1 + _gamma(2 * terms))))


def _sum(spec, *operands):
    """np.einsum with its contraction order optimized."""
    return np.einsum(spec, *operands, optimize=len(operands) > 2)


def _apply(M, X):
    """M @ X, by gathering rows where M is a selection (each row one 1, the rest 0: a
    reshape, a transpose; exactly the same result)."""
    ones = M == 1
    if ones.sum(axis=1).max(initial=0) <= 1 and ((M == 0) | ones).all() and ones.any(axis=1).all():
        return X[np.argmax(ones, axis=1)]
    return M @ X


def product(x: Form3, y: Form3, P, Q, sym: Symbols) -> Form3:
    """out_o = Σ_t x[P_ot]·y[Q_ot], expanded (module docstring)."""
    k = P.shape[1]
    n = sym.n
    xc, yc = x.c[P], y.c[Q]
    xa, ya = _padded(x.a, sym.columns)[P], _padded(y.a, sym.columns)[Q]
    xe, ye = xa[:, :, :n], ya[:, :, :n]
    (ma_x, mf_x, mB_x, mC_x), (ma_y, mf_y, mB_y, mC_y) = x.masses(), y.masses()
    c = (xc * yc).sum(axis=1)
    a = _sum("ok,okn->on", xc, ya) + _sum("ok,okn->on", yc, xa)
    B = _sum("oki,okj->oij", xe, ye)
    C = np.zeros((len(c), n, n, n))
    if mB_y.any():
        yB = y.B[Q]
        B += _sum("ok,okij->oij", xc, yB)
        C += _sum("oki,okjl->oijl", xe, yB)
    if mB_x.any():
        xB = x.B[P]
        B += _sum("ok,okij->oij", yc, xB)
        C += _sum("okij,okl->oijl", xB, ye)
    if mC_y.any():
        C += _sum("ok,okijl->oijl", xc, y.C[Q])
    if mC_x.any():
        C += _sum("ok,okijl->oijl", yc, x.C[P])
    P_x, P_y = x.reach()[1], y.reach()[1]
    ma_x, mf_x, mB_x, mC_x, P_x, rx = (v[P] for v in (ma_x, mf_x, mB_x, mC_x, P_x, x.r))
    ma_y, mf_y, mB_y, mC_y, P_y, ry = (v[Q] for v in (ma_y, mf_y, mB_y, mC_y, P_y, y.r))
    axc, ayc = np.abs(xc), np.abs(yc)
    rounding = (_gamma(3 * k + 4) * (axc * (ma_y + mf_y + mB_y + mC_y) +
                                     ayc * (ma_x + mf_x + mB_x + mC_x) + ma_x * ma_y +
                                     ma_x * mB_y + mB_x * ma_y + axc * ayc)).sum(axis=1)
    # the product of the polynomials minus A_x A_y, A_x Q_y and Q_x A_y; then the ρ terms
    rest = (mf_x * P_y + (ma_x + mB_x + mC_x) * mf_y + mB_x * (mB_y + mC_y) +
            mC_x * (ma_y + mB_y + mC_y) + ma_x * mC_y + (P_x + rx) * ry + P_y * rx).sum(axis=1)
    r = (axc * ry + ayc * rx).sum(axis=1) + rounding
    a = sym.fresh(a, rest * (1 + _gamma(k + 12)))
    return Form3(c, a, B, C, _up(r * (1 + _gamma(k + 12)) +
                                 k * (sym.columns + n * n + 2 * n ** 3 + 8) * TINY))


def _centred(d: Interval, scale: float = 1.0):
    """A float centre of d·scale and its distance to every point of it (scale a power of 2
    or an exact small integer reciprocal bounded outward)."""
    return _centre(_down(np.float64(d.lo) * scale), _up(np.float64(d.hi) * scale))


def univariate(form: Form3, fn: Univariate, sym: Symbols, domain=(-np.inf, np.inf),
               known=None) -> Form3:
    """f entrywise by Taylor's theorem to third order (module docstring); ``known``
    (lo, hi) encloses the argument too. The remainder's terms become fresh symbols."""
    c = form.c
    R, _ = form.reach()
    ma, mf, mB, mC = form.masses()
    N = c.size
    v0 = np.zeros((2, N))
    f1, s1, f2, s2, f3, s3, t4 = (np.zeros(N) for _ in range(7))
    for j in range(N):
        point = Interval(c[j], c[j])
        d0 = fn.at(point, 0)
        v0[:, j] = d0.lo, d0.hi
        f1[j], s1[j] = _centred(fn.at(point, 1))
        f2[j], s2[j] = _centred(fn.at(point, 2), 0.5)
        # ⅙f‴: the sixth of each endpoint, rounded outward (1/6 is not a float)
        d3 = fn.at(point, 3)
        f3[j], s3[j] = _centre(_down(_down(np.float64(d3.lo) / 6) * (1 - 2 * U)),
                               _up(_up(np.float64(d3.hi) / 6) * (1 + 2 * U)))
        total = 0.0
        for k in range(1, PIECES + 1):
            s_k = k / PIECES
            lo = max(_down(c[j] - s_k * R[j]), min(domain[0], c[j]))
            hi = min(_up(c[j] + s_k * R[j]), max(domain[1], c[j]))
            if known is not None:
                lo = min(max(lo, known[0][j]), c[j])
                hi = max(min(hi, known[1][j]), c[j])
            d4 = fn.at(Interval(lo, hi), 4)
            total += max(abs(d4.lo), abs(d4.hi)) * WEIGHTS[k - 1]
        t4[j] = _up(total * (1 + _gamma(PIECES)))
    c_out, half = _centre(v0[0], v0[1])
    n = sym.n
    A = form.a[:, :n]
    a = f1[:, None] * _padded(form.a, sym.columns)
    B = f1[:, None, None] * form.B + f2[:, None, None] * _sum("ki,kj->kij", A, A)
    C = (f1[:, None, None, None] * form.C +
         (2 * f2)[:, None, None, None] * _sum("ki,kjl->kijl", A, form.B) +
         f3[:, None, None, None] * _sum("ki,kj,kl->kijl", A, A, A))
    W = mf + mB + mC + form.r      # δ = A + w, |w| ≤ W
    W2 = mf + mC + form.r          # δ = A + Q + w₂, |w₂| ≤ W2
    # δ² − A² − 2AQ = 2A·w₂ + (Q + w₂)²;  δ³ − A³ = 3A²w + 3Aw² + w³
    rest = (s1 * R + s2 * R * R + s3 * R * R * R +
            np.abs(f2) * (2 * ma * W2 + (mB + W2) ** 2) +
            np.abs(f3) * (3 * ma * ma * W + 3 * ma * W * W + W * W * W) +
            t4 * R * R * R * R)
    r = np.abs(f1) * form.r + half + _gamma(8) * (
        np.abs(f1) * (ma + mf + mB + mC) + np.abs(f2) * (ma * ma + 2 * ma * mB) +
        np.abs(f3) * ma * ma * ma)
    a = sym.fresh(a, rest * (1 + _gamma(16)))
    return Form3(c_out, a, B, C, _up(r * (1 + _gamma(16)) +
                                     (sym.columns + n * n + n ** 3 + 16) * TINY))


class Cubic:
    """The third-order form as an algebra of the chains (chains.py)."""

    def __init__(self, sym: Symbols):
        self.sym = sym

    def linear(self, parts, offset=None):
        size = parts[0][0].shape[0]
        c_lo = np.zeros(size) if offset is None else offset.astype(float)
        c_hi = c_lo.copy()
        for M, form in parts:
            lo, hi = matmul_bounds(M, M, form.c[:, None], form.c[:, None])
            c_lo, c_hi = _down(c_lo + lo[:, 0]), _up(c_hi + hi[:, 0])
        return linear([(M, None, form) for M, form in parts], (c_lo, c_hi), self.sym)

    def univariate(self, form, fn, domain=(-np.inf, np.inf)):
        return univariate(form, fn, self.sym, domain)

    def product(self, a, b):
        idx = np.arange(a.c.size)[:, None]
        return product(a, b, idx, idx, self.sym)

    def centre(self, form):
        return form.c

    def recentre(self, form, lo, hi):
        c, half = _centre(lo, hi)
        return Form3(c, form.a, form.B, form.C, _up(form.r + half))

    def magnitude(self, form):
        R, _ = form.reach()
        return _up(np.abs(form.c) + R)

    def widen(self, form, extra):
        return Form3(form.c, form.a, form.B, form.C, _up(form.r + extra))


def _cumulants(p):
    """H = diag p − ppᵀ and T_jkl = p_j[j=k=l] − p_j p_l[j=k] − p_j p_k[j=l] − p_k p_j[k=l] +
    2 p_j p_k p_l: the second and third derivatives of log Σ exp at the point where the
    softmax is p."""
    L = p.size
    eye = np.eye(L)
    H = np.diag(p) - np.outer(p, p)
    T = np.zeros((L, L, L))
    T[np.arange(L), np.arange(L), np.arange(L)] = p
    pp = np.outer(p, p)
    T -= _sum("jk,jl->jkl", eye, pp)      # p_j p_l [j = k]
    T -= _sum("jl,jk->jkl", eye, pp)      # p_j p_k [j = l]
    T -= _sum("kl,jk->jkl", eye, pp)      # p_j p_k [k = l]
    T += 2 * _sum("j,k,l->jkl", p, p, p)
    return H, T


def _logsumexp(form: Form3, rows: int, L: int, keep, bias, sym: Symbols) -> Form3:
    """LSE(z) per row (kept entries, z = form + bias) to third order (module docstring)."""
    n = sym.n
    N = rows * L
    lse = np.zeros((2, rows))
    p_lo, p_hi = np.zeros(N), np.zeros(N)
    for row in range(rows):
        live = [row * L + j for j in range(L) if keep[row * L + j]]
        s = [arb(form.c[k]) + arb(bias[k]) for k in live]
        top = max(form.c[k] + bias[k] for k in live)
        total = sum(((v - top).exp() for v in s), arb(0))
        value = total.log() + top
        lse[:, row] = _ball_bounds(value)
        for k, v in zip(live, s):
            p_lo[k], p_hi[k] = _ball_bounds((v - value).exp())
    Pm = np.zeros((rows, N))
    D = np.zeros((rows, N))
    for row in range(rows):
        sl = slice(row * L, (row + 1) * L)
        mid = (p_lo[sl] + p_hi[sl]) / 2
        Pm[row, sl] = mid
        D[row, sl] = np.maximum(_up(mid - p_lo[sl]), _up(p_hi[sl] - mid))
    out = linear([(Pm, D if D.any() else None, form)], (lse[0], lse[1]), sym)
    R, _ = form.reach()
    ma, mf, mB, mC = form.masses()
    W = mf + mB + mC + form.r      # δ = A + w
    W2 = mf + mC + form.r          # δ = A + Q + w₂
    A_all = form.a[:, :n]
    spread = _spreads(form, rows, L, keep, sym)
    B, C = out.B.copy(), out.C.copy()
    rest = np.zeros(rows)
    rounding = np.zeros(rows)
    for row in range(rows):
        sl = slice(row * L, (row + 1) * L)
        p, d = Pm[row, sl], D[row, sl]
        H, T = _cumulants(p)
        # |H(p') − H(p)| and |T(p') − T(p)| for p' within d of p: each entry is a signed sum
        # of monomials in p of degree ≤ 3, so the same sums on |p| + d minus on |p| bound it
        Habs, Tabs = _abs_cumulants(np.abs(p))
        Hd, Td = _abs_cumulants(np.abs(p) + d)
        dH = _up(Hd - Habs + 8 * U * Hd)
        dT = _up(Td - Tabs + 16 * U * Td)
        A, Qr = A_all[sl], form.B[sl]
        B[row] = B[row] + 0.5 * (A.T @ H @ A)
        C[row] = C[row] + _sum("ik,kmn->imn", A.T @ H, Qr) + \
            _sum("jkl,ja,kb,lc->abc", T, A, A, A) / 6
        absH, absT = np.abs(H), np.abs(T)
        m, mq, w, w2, Rr = ma[sl], mB[sl], W[sl], W2[sl], R[sl]
        rounding[row] = _gamma(3 * L + n + 8) * (
            0.5 * (m @ absH @ m) + m @ absH @ mq +
            _sum("jkl,j,k,l->", absT, m, m, m) / 6)
        width = spread[row]
        # ½(δᵀHδ − AᵀHA − 2AᵀHQ) = ½(QᵀHQ + 2AᵀHw₂ + 2QᵀHw₂ + w₂ᵀHw₂)
        quad = 0.5 * (mq @ absH @ mq + 2 * (m + mq) @ absH @ w2 + w2 @ absH @ w2)
        # ⅙(T[δ³] − T[A³]): δ_jδ_kδ_l − A_jA_kA_l = w_jδ_kδ_l + A_j w_k δ_l + A_jA_k w_l
        cub = (_sum("jkl,j,k,l->", absT, w, Rr, Rr) +
               _sum("jkl,j,k,l->", absT, m, w, Rr) +
               _sum("jkl,j,k,l->", absT, m, m, w)) / 6
        rest[row] = quad + cub + 0.5 * (Rr @ dH @ Rr) + \
            _sum("jkl,j,k,l->", dT, Rr, Rr, Rr) / 6 + width ** 4 / 192
    a = sym.fresh(out.a, _up(rest * (1 + _gamma(3 * L + 16))))
    r = _up((out.r + rounding) * (1 + _gamma(4)) + (n ** 3 + n * n + 8) * TINY)
    return Form3(out.c, a, B, C, r)


def _spreads(form: Form3, rows: int, L: int, keep, sym: Symbols):
    """Per row, w ≥ max_j δ_j − min_j δ_j over the box (kept entries; δ = form − c): the
    largest of sup(δ_j − δ_k) over the pairs, each from the difference's own form (what
    the two entries share cancels in it)."""
    pairs = [(row, row * L + j, row * L + k) for row in range(rows) for j in range(L)
             for k in range(L) if j != k and keep[row * L + j] and keep[row * L + k]]
    w = np.zeros(rows)
    if not pairs:
        return w
    M = np.zeros((len(pairs), rows * L))
    for t, (_, j, k) in enumerate(pairs):
        M[t, j], M[t, k] = 1.0, -1.0
    diff = linear([(M, None, form)], (np.zeros(len(pairs)), np.zeros(len(pairs))), sym)
    _, hi = diff.poly_range()
    sup = _up(hi + diff.r)
    for t, (row, _, _) in enumerate(pairs):
        w[row] = max(w[row], sup[t])
    return w


def _abs_cumulants(q):
    """The cumulant tensors' formulas with every sign +, at q ≥ 0: an entrywise bound
    that grows with q."""
    L = q.size
    eye = np.eye(L)
    H = np.diag(q) + np.outer(q, q)
    T = np.zeros((L, L, L))
    T[np.arange(L), np.arange(L), np.arange(L)] = q
    qq = np.outer(q, q)
    T += _sum("jk,jl->jkl", eye, qq) + _sum("jl,jk->jkl", eye, qq) + \
        _sum("kl,jk->jkl", eye, qq) + 2 * _sum("j,k,l->jkl", q, q, q)
    return H, T


def softmax_lse(form: Form3, shape, sym: Symbols, keep=None, bias=None) -> Form3:
    """softmax(z) = exp(z − LSE(z)) per row (masked entries 0)."""
    L = shape[-1]
    rows = int(np.prod(shape[:-1]))
    N = rows * L
    keep = np.ones(N, bool) if keep is None else np.asarray(keep, bool).ravel()
    if not all(keep[r * L:(r + 1) * L].any() for r in range(rows)):
        raise NotSupported("a fully masked row")
    bias = np.zeros(N) if bias is None else np.asarray(bias, dtype=float).ravel()
    lse = _logsumexp(form, rows, L, keep, bias, sym)
    spread = np.kron(np.eye(rows), np.ones((L, 1)))
    alg = Cubic(sym)
    w = alg.linear([(np.eye(N), form), (-spread, lse)], offset=bias)
    y = univariate(w, Univariate.kind("exp"), sym, domain=(-np.inf, 0.0))
    return alg.linear([(np.diag(keep.astype(float)), y)])


def _narrowest(forms: list, sym: Symbols) -> Form3:
    """Per entry, the row of the form whose enclosure is narrowest."""
    best = forms[0]
    for other in forms[1:]:
        lo, hi = best.enclosure()
        o_lo, o_hi = other.enclosure()
        best = _rows(best, other, (o_hi - o_lo) < (hi - lo), sym)
    return best


def _rows(first: Form3, second: Form3, take, sym: Symbols) -> Form3:
    """The rows of ``second`` where ``take``, of ``first`` elsewhere."""
    t = take[:, None]
    return Form3(np.where(take, second.c, first.c),
                 np.where(t, _padded(second.a, sym.columns), _padded(first.a, sym.columns)),
                 np.where(t[:, :, None], second.B, first.B),
                 np.where(t[:, :, None, None], second.C, first.C),
                 np.where(take, second.r, first.r))


def _node(node, forms, vals, args_point, sym, cache, key):
    """One node's third-order form from its reads' forms (``vals`` their enclosures)."""
    op = get_op(node.op)
    varying = [f.varying for f in forms]
    base = bounds_arrays(np.asarray(forward_node(node, args_point), dtype=object))
    base = (base[0].ravel(), base[1].ravel())
    if _constant_jacobian(op, node, varying):
        local = cache.get(key) if cache is not None else None
        if local is None:
            local = _local_jacobians(op, node, args_point,
                                     np.asarray(forward_node(node, args_point), dtype=object))
            if cache is not None:
                cache[key] = local
        return linear(_jacobian_parts(local, local, forms, varying), base, sym)
    if node.op in CHAINS and varying[0] and not any(varying[1:]):
        found = []
        try:
            out = CHAINS[node.op](Cubic(sym), forms[0], node, vals)
            if out is not None:
                found.append(out)
        except (NotSupported, ZeroDivisionError, OverflowError):
            pass
        if node.op in SOFTMAX:
            try:
                found.append(softmax_lse(forms[0], np.shape(vals[0]), sym,
                                         **SOFTMAX[node.op](node)))
            except (NotSupported, ZeroDivisionError, OverflowError):
                pass
        if found:
            return _narrowest(found, sym)
    reads = node.reads
    if node.op in ("matmul", "batched_matmul", "mul") and len(set(reads)) == 2 and all(varying):
        pairs = _product_pairs(node.op, [np.shape(v) for v in vals])
        if pairs is not None:
            P = np.array([[t[0] for t in o] for o in pairs], dtype=np.intp)
            Q = np.array([[t[1] for t in o] for o in pairs], dtype=np.intp)
            return product(forms[0], forms[1], P, Q, sym)
    if node.op in SMOOTH and len(reads) == 1:
        try:
            fn = Univariate.of_op(op, node.params)
            lo, hi = bounds_arrays(vals[0])
            return univariate(forms[0], fn, sym, known=(lo.ravel(), hi.ravel()))
        except (NotSupported, ZeroDivisionError, OverflowError):
            pass
    # the mean-value theorem over the reads' enclosures: first order
    local = _local_jacobians(op, node, vals, np.asarray(forward_node(node, vals), dtype=object))
    centre = _local_jacobians(op, node, args_point,
                              np.asarray(forward_node(node, args_point), dtype=object))
    return linear(_jacobian_parts(centre, local, forms, varying), base, sym)


def cubic_form(graph, box, ops_vals=None, cache: dict | None = None) -> list:
    """Every tape value's enclosure over ``box`` by the third-order form (intersected with
    ``ops_vals`` where given). NotSupported when the coefficients would not fit."""
    mid, rad = box.center()
    offsets, n = {}, 0
    for i in box.perturbed:
        offsets[i] = n
        n += box.lo[i].size
    largest = max(int(np.prod(graph.shape(v))) for v in range(len(graph.values)))
    if largest * n ** 3 > MAX_COEFFICIENTS:
        raise NotSupported(f"the third-order form would hold {largest}×{n}³ coefficients "
                           f"per value (more than {MAX_COEFFICIENTS:,})")
    sym = Symbols(n)
    forms, vals = [], []
    for i in range(len(graph.inputs)):
        if i in offsets:   # x₀ + ρ ⊙ ε, exactly
            size = box.lo[i].size
            a, B, C = _zeros(size, sym)
            a[np.arange(size), offsets[i] + np.arange(size)] = rad[i].ravel()
            form = Form3(mid[i].ravel().copy(), a, B, C, np.zeros(size))
        else:
            form = constant(box.lo[i], box.hi[i], sym)
        forms.append(form)
        vals.append(interval_array(box.lo[i], box.hi[i]))
    last = {}
    for j, node in enumerate(graph.nodes):
        for r in node.reads:
            last[r] = j
    with np.errstate(over="ignore", invalid="ignore"):
        for j, node in enumerate(graph.nodes):
            index = len(forms)
            shape = graph.shape(index)
            reads = [forms[r] for r in node.reads]
            args = [vals[r] for r in node.reads]
            point = [interval_array(f.c.reshape(np.shape(v)), f.c.reshape(np.shape(v)))
                     for f, v in zip(reads, args)]
            if not any(f.varying for f in reads):
                lo, hi = bounds_arrays(np.asarray(forward_node(node, args), dtype=object))
                form = constant(lo, hi, sym)
            else:
                try:
                    form = _node(node, reads, args, point, sym, cache, index)
                except (ZeroDivisionError, OverflowError) as exc:
                    raise NotSupported(f"node {node.name} ({node.op}): {exc}") from None
            lo, hi = form.enclosure()
            if ops_vals is not None:
                k_lo, k_hi = (v.ravel() for v in bounds_arrays(ops_vals[index]))
                wider = RESET * (k_hi - k_lo) < (hi - lo)
                if wider.any():
                    form = _rows(form, constant(k_lo, k_hi, sym), wider, sym)
                lo, hi = np.maximum(lo, k_lo), np.minimum(hi, k_hi)
            forms.append(form)
            vals.append(interval_array(lo.reshape(shape), hi.reshape(shape)))
            for r in node.reads:
                if last.get(r) == j and r != graph.output:
                    forms[r] = None
    return vals

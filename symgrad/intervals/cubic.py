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

from .chains import Univariate
from .enclose import TINY, _padded, _up
from .interval import U
from .taylor import Algebra, Kit, Ranged, Symbols, _centre, _down, _gamma, diagonal_range, \
    _chosen, form_pass, lse_at_centre, series, softmax_lse as taylor_softmax

#: pieces of [0, 1] over which the fourth-order remainder's integral is bounded, and their
#: weights ∫ ⅙(1 − s)³ ds, rounded up
PIECES = 8
WEIGHTS = [_w * (1 + 2.0 ** -50) for _w in
           (((1 - (k - 1) / PIECES) ** 4 - (1 - k / PIECES) ** 4) / 24
            for k in range(1, PIECES + 1))]

#: value entries × n³ up to which the cubic coefficients are kept (8 bytes each)
MAX_COEFFICIENTS = 6_000_000


class Form3(Ranged):
    """c + a·(ε, η) + εᵀBε + C[ε³] ± r per entry (flattened): c (N,), a (N, columns),
    B (N, n, n), C (N, n, n, n) over the symbols of the polynomial part only (ε and the
    spare ones), r (N,)."""

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
            if x.size == 0 or not any(x.strides):   # a zero array that holds one float
                return np.zeros(N)
            total = np.abs(x).reshape(N, -1).sum(axis=1)
            total = np.where(np.isnan(total), np.inf, total)   # a NaN coefficient: no bound
            return np.where(total > 0, _up(total * (1 + _gamma(k))), 0.0)
        return (mass(self.a[:, :n], n), mass(self.a[:, n:], self.a.shape[1]),
                mass(self.B, n * n), mass(self.C, n ** 3))

    def poly_range(self):
        """(lo, hi) of the polynomial over the box, per entry (module docstring)."""
        n = self.B.shape[1]
        hi, lo, off = diagonal_range(self.a[:, :n], self.B)
        ma, mf, mB, mC = self.masses()
        slack = _gamma(n * n + 2 * n) * 2 * (ma + mB) + (n * n + 4 * n) * TINY
        rest = off * (1 + _gamma(n * n)) + mf + mC + slack
        lo, hi = _down(lo - rest), _up(hi + rest)
        bad = np.isnan(lo) | np.isnan(hi)
        return np.where(bad, -np.inf, lo), np.where(bad, np.inf, hi)

    def moved(self, c, r):
        """The same polynomial part around centre ``c``, remainder ``r``."""
        return Form3(c, self.a, self.B, self.C, r)

    def with_a(self, a, r):
        """The same centre and polynomial part in ε with coefficients ``a``, remainder ``r``."""
        return Form3(self.c, a, self.B, self.C, r)

    @staticmethod
    def seeded(c, a, sym):
        """An input's form: c + a·ε exactly."""
        n = sym.n
        return Form3(c, a, _zero(len(c), n, n), _zero(len(c), n, n, n), np.zeros(len(c)))


def _zero(*shape):
    """A read-only array of zeros that holds one float (its strides are 0)."""
    return np.broadcast_to(np.zeros(1), shape)


def _zeros(N: int, sym: Symbols):
    n = sym.n
    return np.zeros((N, sym.columns)), _zero(N, n, n), _zero(N, n, n, n)


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
    B = _zero(c.size, n, n) if B is None else B
    C = _zero(c.size, n, n, n) if C is None else C
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
    C = np.zeros((len(c), n, n, n)) if (mB_x.any() or mB_y.any() or mC_x.any() or
                                        mC_y.any()) else _zero(len(c), n, n, n)
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
    B, C, moved = _symmetric(B, C)
    r = (axc * ry + ayc * rx).sum(axis=1) + rounding + moved
    a = sym.fresh(a, rest * (1 + _gamma(k + 12)))
    return Form3(c, a, B, C, _up(r * (1 + _gamma(k + 12)) +
                                 k * (sym.columns + n * n + 2 * n ** 3 + 8) * TINY))


def _symmetric(B, C):
    """B and C averaged over the orders of their symbol axes — the same polynomial in ε, with
    masses Σ|B|, Σ|C| as small as they can be — and per row a bound on what the float
    averaging changed in the polynomial's value on the box."""
    N = len(B)
    moved = np.zeros(N)
    if any(B.strides):
        moved = moved + np.abs(B).reshape(N, -1).sum(axis=1)
        B = (B + B.transpose(0, 2, 1)) * 0.5      # × ½ is exact
    if any(C.strides):
        moved = moved + np.abs(C).reshape(N, -1).sum(axis=1)
        C = (C + C.transpose(0, 1, 3, 2) + C.transpose(0, 2, 1, 3) + C.transpose(0, 2, 3, 1) +
             C.transpose(0, 3, 1, 2) + C.transpose(0, 3, 2, 1)) / 6
    return B, C, np.where(moved > 0, _up(moved * _gamma(8)), 0.0)


def univariate(form: Form3, fn: Univariate, sym: Symbols, domain=(-np.inf, np.inf),
               known=None) -> Form3:
    """f entrywise by Taylor's theorem to third order or a fitted polynomial (module
    docstring; :func:`.taylor.series`), per entry the narrowest; ``known`` (lo, hi)
    encloses the argument too. The remainder's terms become fresh symbols."""
    R, _ = form.reach()
    ma, mf, mB, mC = form.masses()
    W = mf + mB + mC + form.r      # δ = A + w, |w| ≤ W
    W2 = mf + mC + form.r          # δ = A + Q + w₂, |w₂| ≤ W2
    n = sym.n
    A = form.a[:, :n]
    AA, AAA = _sum("ki,kj->kij", A, A), _sum("ki,kj,kl->kijl", A, A, A)
    AQ = _sum("ki,kjl->kijl", A, form.B) if mB.any() else None

    def build(v0, f, s, tail):
        (f1, f2, f3), (s1, s2, s3) = f, s
        c_out, half = _centre(v0[0], v0[1])
        a = f1[:, None] * _padded(form.a, sym.columns)
        B = f2[:, None, None] * AA
        C = f3[:, None, None, None] * AAA
        if AQ is not None:
            B = B + f1[:, None, None] * form.B
            C = C + (2 * f2)[:, None, None, None] * AQ
        if mC.any():
            C = C + f1[:, None, None, None] * form.C
        # δ² − A² − 2AQ = 2A·w₂ + (Q + w₂)²;  δ³ − A³ = 3A²w + 3Aw² + w³
        rest = (s1 * R + s2 * R * R + s3 * R * R * R +
                np.abs(f2) * (2 * ma * W2 + (mB + W2) ** 2) +
                np.abs(f3) * (3 * ma * ma * W + 3 * ma * W * W + W * W * W) + tail)
        B, C, moved = _symmetric(B, C)
        r = np.abs(f1) * form.r + half + moved + _gamma(8) * (
            np.abs(f1) * (ma + mf + mB + mC) + np.abs(f2) * (ma * ma + 2 * ma * mB) +
            np.abs(f3) * ma * ma * ma)
        r = _up(r * (1 + _gamma(16)) + (sym.columns + n * n + n ** 3 + 16) * TINY)
        return c_out, a, B, C, r, _up(rest * (1 + _gamma(16)))

    return _chosen([build(*cand) for cand in series(fn, form, 3, WEIGHTS, domain, known)],
                   Form3, sym)


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
    lse, Pm, D = lse_at_centre(form.c, rows, L, keep, bias)
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
        # … plus the float error of H and T themselves, and of the subtraction
        dH = _up(Hd - Habs + 8 * U * Hd + _gamma(3) * Habs)
        dT = _up(Td - Tabs + 16 * U * Td + _gamma(6) * Tabs)
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
    B, C, moved = _symmetric(B, C)
    r = _up((out.r + rounding + moved) * (1 + _gamma(4)) + (n ** 3 + n * n + 8) * TINY)
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
    """softmax(z) = exp(z − LSE(z)) per row (masked entries 0), to third order."""
    return taylor_softmax(form, shape, sym, keep, bias, kit=KIT)


def _rows(first: Form3, second: Form3, take, sym: Symbols) -> Form3:
    """The rows of ``second`` where ``take``, of ``first`` elsewhere."""
    t = take[:, None]
    return Form3(np.where(take, second.c, first.c),
                 np.where(t, _padded(second.a, sym.columns), _padded(first.a, sym.columns)),
                 np.where(t[:, :, None], second.B, first.B),
                 np.where(t[:, :, None, None], second.C, first.C),
                 np.where(take, second.r, first.r))


#: the third-order form's steps
KIT = Kit(name="third-order", power=3, limit=MAX_COEFFICIENTS, constant=constant,
          linear=linear, product=product, univariate=univariate, logsumexp=_logsumexp,
          softmax=softmax_lse, rows=_rows, seeded=Form3.seeded,
          chains=lambda sym, form: [(Algebra(sym, KIT), form, lambda out: out)])


def cubic_form(graph, box, ops_vals=None, cache: dict | None = None) -> list:
    """Every tape value's enclosure over ``box`` by the third-order form (intersected with
    ``ops_vals`` where given). NotSupported when the coefficients would not fit."""
    return form_pass(KIT, graph, box, ops_vals, cache)

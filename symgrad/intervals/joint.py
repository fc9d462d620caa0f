"""A LayerNorm's outputs, and affine maps of them, bounded jointly in their numerator and
their spread (docs/bounds.md, "joint"), from the form of the LayerNorm's input.

Per row of d, with u = x − mean(x) and S = Σ_j u_j²:

* an output entry is x̂_k = u_k / √((u_k² + S_k)/d + ε), S_k = Σ_{j≠k} u_j², times γ_k plus
  β_k;
* an affine map of the outputs whose entry reads one row only (the FFN's first matmul, a
  pre-norm block's projections) is g_j + N_j / √(S/d + ε), N_j = Σ_k (M_jk γ_k) u_k and g_j
  its value at x̂ = 0 (the map at β).

Both are φ(p, q) = p / √((s·p² + q)/d + ε) of a numerator p and a spread q ≥ 0 (s = 1, 0),
increasing in p and non-increasing in q where p ≥ 0. The ops rule pairs the largest
numerator with the smallest spread over the box of x, which a wide box never reaches
together. Here both come from the same form of u, over the same symbols z ∈ [−1, 1]^m:

* the spread is bounded below by a linear form, S ≥ L := Σ_j 2w_j u_j − Σ_j w_j² for any
  real w (tangent planes of u_j²; w the least-norm point of u's linear part);
* p = c_p + a_p·z + e_p and L = c_L + a_L·z + e_L, the e's bounding the polynomial part
  beyond a·z and the remainder;
* for every slope λ ≥ 0, p − λL ≤ h(λ) := c_p + e_p⁺ − λ(c_L + e_L⁻) + Σ|a_p − λa_L| (the
  support function of the joint set); so on a band of spreads L ∈ [t_i, t_{i+1}] the
  numerator is at most P_i = min(max p, min_λ h(λ) + λt_{i+1}), and φ ≤ φ(P_i, max(t_i, 0))
  where P_i ≥ 0; where P_i < 0 the value is negative and at most φ(P_i, the largest S);
  spreads above the last band: φ(max p, t_last). The largest of these bounds the value;
  its least is minus the same for −p (φ is odd in p).

Every bound is rounded outward; ε enters as its enclosure.
"""
from __future__ import annotations

import math

import numpy as np

from .chains import centred, tangent_planes
from .enclose import TINY, _down, _gamma, _padded, _up
from .interval import U, as_interval, bounds_arrays

#: slopes λ = tan θ, θ evenly spaced in (0, π/2), and the bands' ends (the spread's range
#: cut into BANDS − 1 bands, and the open band above)
SLOPES = 48
BANDS = 384
_LAMBDAS = np.tan(np.linspace(0, np.pi / 2, SLOPES + 2)[1:-1])

#: entries × slopes × symbols up to which :func:`largest` works on entries at once
CHUNK = 1 << 22


def parts(form, columns: int):
    """(c, a, lo, hi): the form's values lie in c + a·z + [lo, hi] for z ∈ [−1, 1]^columns
    (a its linear coefficients over every symbol; lo, hi its polynomial part beyond them and
    its remainder)."""
    N = form.c.size
    lo, hi = form.with_a(np.zeros((N, form.B.shape[1])), np.zeros(N)).poly_range()
    return form.c, _padded(form.a, columns), _down(lo - form.r), _up(hi + form.r)


def _phi_up(P, T, s: float, d: int, eps_lo: float):
    """An upper bound of P / √((s·P² + T)/d + ε) for P ≥ 0, T ≥ 0, ε ≥ eps_lo."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # relative rounding above the normal range, 2⁻¹⁰⁷⁴ per operation below it
        den = ((s * P * P + T) / d + eps_lo) * (1 - 8 * U) - 8 * TINY
        value = P / (np.sqrt(den) * (1 - 4 * U)) * (1 + 4 * U)
    # an overflowed P² (den = ∞) or an underflowed den bounds nothing
    return np.where((den > 0) & np.isfinite(den), _up(value), np.inf)


def _phi_neg_up(P, S_max, s: float, d: int, eps_hi: float):
    """An upper bound of P / √((s·P² + S)/d + ε) for P < 0 and S ≤ S_max, ε ≤ eps_hi (the
    value increases in P, S and ε there)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        den = ((s * P * P + S_max) / d + eps_hi) * (1 + 8 * U) + 8 * TINY
        value = -P / (np.sqrt(den) * (1 + 4 * U)) * (1 - 4 * U)
    return np.where(np.isfinite(den), -_down(value), 0.0)


def largest(p, q, s: float, d: int, eps, S_max):
    """Per entry, an upper bound of φ(p, q) (module docstring) over the joint set of
    p = (c, a, lo, hi) and q = (c, a, lo, hi) (:func:`parts`, the same symbols); S_max bounds
    the spread from above (for a negative numerator)."""
    K, m = p[1].shape
    step = max(1, CHUNK // max(1, SLOPES * m))
    if K > step:   # a chunk of entries at a time: the slopes' sums are K × SLOPES × m
        return np.concatenate([
            largest(tuple(x[i:i + step] for x in p), tuple(x[i:i + step] for x in q), s, d,
                    eps, S_max[i:i + step]) for i in range(0, K, step)])
    cp, ap, _, hp = p
    cq, aq, lq, hq = q
    g = _gamma(m + 8)
    Sp, Sq = np.abs(ap).sum(axis=1), np.abs(aq).sum(axis=1)
    with np.errstate(invalid="ignore", over="ignore"):
        p_max = _up(cp + hp + Sp + g * (np.abs(cp) + np.abs(hp) + Sp))
        q_min = _down(cq + lq - Sq - g * (np.abs(cq) + np.abs(lq) + Sq))
        q_top = cq + Sq + np.where(np.isfinite(hq), hq, np.abs(lq))   # any value is sound
        lam = _LAMBDAS
        # h(λ) per entry and slope, with every rounding error bounded by the magnitudes
        spread = np.abs(ap[:, None, :] - lam[None, :, None] * aq[:, None, :]).sum(axis=2)
        size = (np.abs(cp) + np.abs(hp))[:, None] + lam[None, :] * (np.abs(cq) + np.abs(lq))[:, None] + \
            Sp[:, None] + lam[None, :] * Sq[:, None]
        h = (cp + hp)[:, None] - lam[None, :] * (cq + lq)[:, None] + spread + g * size
        t = _edges(q_min, q_top, d, eps.lo)
        reach = h[:, :, None] + lam[None, :, None] * t[:, None, 1:]
        reach = _up(reach + g * (np.abs(h)[:, :, None] + lam[None, :, None] * np.abs(t[:, None, 1:])))
        P = np.minimum(p_max[:, None], reach.min(axis=1))                  # band i: [t_i, t_i+1]
        P = np.concatenate([P, p_max[:, None]], axis=1)                     # the open band
        T = np.maximum(t, 0.0)                                              # their lower ends
    ok = np.isfinite(P) & np.isfinite(T)
    P_safe, T_safe = np.where(ok, P, 0.0), np.where(ok, T, 0.0)
    bound = np.where(P_safe >= 0, _phi_up(np.maximum(P_safe, 0.0), T_safe, s, d, eps.lo),
                     _phi_neg_up(np.minimum(P_safe, -0.0), S_max[:, None], s, d, eps.hi))
    bound = np.where(ok, bound, np.inf)
    return np.where(np.isnan(bound), np.inf, bound).max(axis=1)


def _edges(q_min, q_top, d: int, eps: float):
    """Per entry, BANDS ends from q_min up to q_top (any increasing ends are sound): about
    half evenly spaced, half where √(q/d + ε) grows geometrically — φ is steepest in q
    where q is small."""
    even = q_min[:, None] + (q_top - q_min)[:, None] * np.linspace(0, 1, BANDS // 2 + 1)[None, :]
    base = np.maximum(q_min, 0.0)
    v_lo, v_hi = np.sqrt(base / d + eps), np.sqrt(np.maximum(q_top, base) / d + eps)
    ratio = np.where(v_hi > v_lo, v_hi / np.where(v_lo > 0, v_lo, 1.0), 1.0)
    steps = np.linspace(0, 1, BANDS // 2 + 1)[None, 1:-1]
    geometric = d * (v_lo[:, None] * ratio[:, None] ** steps) ** 2 - d * eps
    geometric = np.clip(geometric, base[:, None], np.maximum(q_top, base)[:, None])
    return np.sort(np.concatenate([even, geometric], axis=1), axis=1)


def _bounds(alg, u, rows: int, d: int, select, p, minus, s: float, eps, S_max):
    """(upper, lower) bounds of φ(p, S) per entry, S = Σ_{j ∈ select[i]} u_j²: the better of
    two tangent planes each way — at the least-norm point of the selected entries' linear
    part, and at the corner z = ±sign(a_p) where p's linear part is largest (smallest)."""
    corner = np.sign(p[1])
    least = tangent_planes(alg, u, rows, d, select)
    bounds = []
    for numerator, at in ((p, corner), (minus, -corner)):
        best = None
        for plane in (least, tangent_planes(alg, u, rows, d, select, at)):
            q = parts(plane, alg.columns())
            width = q[1].shape[1]   # symbols the plane's form made are not in p: 0 there
            numerator = numerator[:1] + (_padded(numerator[1], width),) + numerator[2:]
            found = largest(numerator, q, s, d, eps, S_max)
            best = found if best is None else np.minimum(best, found)
        bounds.append(best)
    return bounds[0], -bounds[1]


def _spread_max(u_lo, u_hi, idx) -> float:
    top = np.maximum(u_lo[idx] ** 2, u_hi[idx] ** 2).sum()
    return float(_up(top * (1 + _gamma(len(idx))) + len(idx) * TINY))


def layer_norm_bounds(alg, x, gamma, beta, eps_value, shape):
    """(lo, hi, u): bounds of a LayerNorm's output (flattened) over the form ``x`` of its
    input by the joint rule (module docstring), and the centred input's form u; None where
    γ or β vary or a row has one entry."""
    g_lo, g_hi = bounds_arrays(gamma)
    b_lo, b_hi = bounds_arrays(beta)
    d = shape[-1]
    if np.any(g_lo != g_hi) or np.any(b_lo != b_hi) or d < 2:   # d = 1: x̂ = 0, the op's rule
        return None
    rows = int(np.prod(shape[:-1]))
    eps = as_interval(eps_value)
    u = centred(alg, x, rows, d)
    u_lo, u_hi = alg.bounds(u)
    select = [[r * d + j for j in range(d) if j != k] for r in range(rows) for k in range(d)]
    columns = alg.columns()
    p = parts(u, columns)
    minus = (-p[0], -p[1], -p[3], -p[2])
    S_max = np.array([_spread_max(u_lo, u_hi, idx) for idx in select])
    hi, lo = _bounds(alg, u, rows, d, select, p, minus, 1.0, eps, S_max)
    root = math.nextafter(math.sqrt(d - 1), math.inf)   # |x̂| < √(d − 1)
    hi, lo = np.minimum(hi, root), np.maximum(lo, -root)
    return _gamma_beta(lo, hi, np.tile(g_lo.ravel(), rows), np.tile(b_lo.ravel(), rows)) + (u,)


def _gamma_beta(lo, hi, gam, bet):
    """[γ·lo, γ·hi] + β, rounded outward."""
    a, b = gam * lo, gam * hi
    low, high = np.minimum(a, b), np.maximum(a, b)
    err = 2 * U * (np.maximum(np.abs(low), np.abs(high)) + np.abs(bet)) + 2 * TINY
    with np.errstate(invalid="ignore"):
        return _down(low + bet - err), _up(high + bet + err)


def _other_rows(M_lo, M_hi, D, in_row, gam, d: int):
    """Per entry, a bound of what M's width within the chosen row and the entries of other
    rows add: Σ |M_jk| |γ_k| √(d − 1), since |x̂| < √(d − 1)."""
    root = math.nextafter(math.sqrt(d - 1), math.inf)
    rest = np.where(in_row, D, np.maximum(np.abs(M_lo), np.abs(M_hi))) @ np.abs(gam) * root
    return _up(rest * (1 + _gamma(in_row.shape[1])) + in_row.shape[1] * TINY)


def affine_bounds(alg, u, eps_value, gamma, M_lo, M_hi, base_lo, base_hi, d: int):
    """(lo, hi) per entry j of g + M·(γ ⊙ x̂) (flattened; M ∈ [M_lo, M_hi], (J, rows·d)),
    where x̂ is the LayerNorm of the rows of d whose centred input has the form ``u``;
    [base_lo, base_hi] encloses g. Each entry is bounded through the row it reads most; what
    it reads of other rows, and M's width, add at most Σ |M_jk| |γ_k| √(d − 1)."""
    rows = u.c.size // d
    eps = as_interval(eps_value)
    J = M_lo.shape[0]
    gam = np.tile(np.asarray(gamma, dtype=float).ravel(), rows)
    M = (M_lo + M_hi) / 2
    D = _up(np.maximum(M - M_lo, M_hi - M))
    row_of = np.argmax(np.abs(M).reshape(J, rows, d).sum(axis=2), axis=1)
    in_row = (np.arange(rows * d)[None, :] // d) == row_of[:, None]
    Mg = np.where(in_row, M, 0.0) * gam[None, :]
    rest = _other_rows(M_lo, M_hi, D, in_row, gam, d)
    N = alg.linear([(Mg, u)])
    N = alg.widen(N, np.abs(Mg) @ alg.magnitude(u) * 1.01 * U)   # Mγ's rounding
    u_lo, u_hi = alg.bounds(u)
    select = [[r * d + j for j in range(d)] for r in row_of]
    columns = alg.columns()
    p = parts(N, columns)
    minus = (-p[0], -p[1], -p[3], -p[2])
    S_max = np.array([_spread_max(u_lo, u_hi, idx) for idx in select])
    top, bottom = _bounds(alg, u, rows, d, select, p, minus, 0.0, eps, S_max)
    err = 2 * U * (np.abs(base_lo) + np.abs(base_hi) + np.abs(top) + np.abs(bottom) + rest)
    with np.errstate(invalid="ignore"):
        lo = _down(base_lo + bottom - rest - err - TINY)
        hi = _up(base_hi + top + rest + err + TINY)
    return np.where(np.isnan(lo), -np.inf, lo), np.where(np.isnan(hi), np.inf, hi)

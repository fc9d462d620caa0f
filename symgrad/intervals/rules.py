"""Enclosures of whole ops that are tighter than running their code on intervals.

Each rule takes the op's argument intervals (object arrays of :class:`Interval`, or numbers)
and its parameters, and returns an enclosure of the op's output over that box; None when it
does not apply. Every rule is sound for the *box* of its arguments (each argument entry
anywhere in its interval, independently), which contains every point the graph can reach.

* softmax by cancellation: y_k = 1 / (1 + Σ_{j≠k} exp(x_j − x_k)), the j = k term exactly 1.
  y_k increases with x_k and decreases with every other x_j, so over a box of scores its range
  is exact: [1/(1 + Σ_{j≠k} e^{hi_j − lo_k}), 1/(1 + Σ_{j≠k} e^{lo_j − hi_k})] — never above 1
  (naive interval arithmetic on e^x/Σe^x can exceed 1). Likewise log-softmax, a finite
  additive bias, and the hard mask (masked entries exactly 0).
* LayerNorm as a whole: with u = x − mean(x) (an exact linear map of the box, per entry
  u_i = (1 − 1/d)·x_i − (1/d)·Σ_{j≠i} x_j) and S_i = Σ_{j≠i} u_j², x̂_i = h(u_i, S_i) =
  u_i / √(u_i²/d + S_i/d + ε); h increases with u_i (∂h/∂u = c/(u²/d + c)^{3/2} > 0,
  c = S_i/d + ε) and |h| decreases with S_i, so its range over the box of (u_i, S_i) is read
  off the corners; |x̂_i| < √(d − 1) bounds it too. Then y = γ·x̂ + β.
* elementwise functions: the derivative over the interval, from the op's **proved** VJP
  rule run on intervals with ḡ = 1; where its sign is fixed the function is monotone there
  and its range is the values at the ends; elsewhere the interval is bisected (to depth 7,
  the last pieces by the mean-value form f(m) + f′(X)(X − m)) and the pieces' enclosures
  joined.

All arithmetic is outward rounded in python-flint ``arb``.
"""
from __future__ import annotations

import math

import numpy as np
from flint import arb

from ..ops import get_op
from ..ops.norm import layer_norm_backward
from .interval import FUNCTIONS, Interval, _ball_bounds, as_interval, bounds_arrays, \
    interval_array


def _softmax_rows(lo, hi, keep=None, log=False):
    """Bounds of softmax (or log-softmax) along the last axis from score bounds; ``keep``
    marks the unmasked entries (masked ones are exactly 0)."""
    out_lo, out_hi = np.zeros(lo.shape), np.zeros(lo.shape)
    for row in np.ndindex(lo.shape[:-1]):
        n = lo.shape[-1]
        live = [j for j in range(n) if keep is None or keep[row + (j,)]]
        for k in live:
            big, small = arb(1), arb(1)
            for j in live:
                if j != k:
                    big += (arb(hi[row + (j,)]) - arb(lo[row + (k,)])).exp()
                    small += (arb(lo[row + (j,)]) - arb(hi[row + (k,)])).exp()
            if log:
                low, high = _ball_bounds(-big.log())[0], _ball_bounds(-small.log())[1]
                out_lo[row + (k,)], out_hi[row + (k,)] = low, min(high, 0.0)
            else:
                low, high = _ball_bounds(1 / big)[0], _ball_bounds(1 / small)[1]
                out_lo[row + (k,)], out_hi[row + (k,)] = max(low, 0.0), min(high, 1.0)
    return interval_array(out_lo, out_hi)


def _softmax(args, params):
    lo, hi = bounds_arrays(args[0])
    return _softmax_rows(lo, hi)


def _log_softmax(args, params):
    lo, hi = bounds_arrays(args[0])
    return _softmax_rows(lo, hi, log=True)


def _masked_softmax(args, params):
    lo, hi = bounds_arrays(np.asarray(args[0], dtype=object) + params["bias"])
    return _softmax_rows(lo, hi)


def _hard_masked_softmax(args, params):
    lo, hi = bounds_arrays(args[0])
    return _softmax_rows(lo, hi, keep=np.asarray(params["mask"], dtype=bool))


def layer_norm_stats(x, eps_value) -> tuple:
    """Enclosures of x̂ (object array) and of 1/√(var + ε) (shape (..., 1)) over the box of
    x, by the rule in the module docstring."""
    lo, hi = bounds_arrays(x)
    eps = as_interval(eps_value)
    d = lo.shape[-1]
    xhat_lo, xhat_hi = np.zeros(lo.shape), np.zeros(lo.shape)
    inv_lo, inv_hi = np.zeros(lo.shape[:-1] + (1,)), np.zeros(lo.shape[:-1] + (1,))
    root = math.nextafter(math.sqrt(d - 1), math.inf)   # |x̂| < √(d − 1), rounded up
    for row in np.ndindex(lo.shape[:-1]):
        l, h = [arb(v) for v in lo[row]], [arb(v) for v in hi[row]]
        sum_lo, sum_hi = sum(l, arb(0)), sum(h, arb(0))
        u = []
        for i in range(d):   # u_i = (1 − 1/d) x_i − (1/d) Σ_{j≠i} x_j, exact range on the box
            u_lo = ((d - 1) * l[i] - (sum_hi - h[i])) / d
            u_hi = ((d - 1) * h[i] - (sum_lo - l[i])) / d
            u.append((_ball_bounds(u_lo)[0], _ball_bounds(u_hi)[1]))
        squares = [Interval(*u_i) ** 2 for u_i in u]
        sq_lo = [arb(s.lo) for s in squares]
        sq_hi = [arb(s.hi) for s in squares]
        total_lo, total_hi = sum(sq_lo, arb(0)), sum(sq_hi, arb(0))
        var = Interval(max(_ball_bounds(total_lo / d)[0], 0.0), _ball_bounds(total_hi / d)[1])
        inv = FUNCTIONS["sqrt"](var + eps).reciprocal()
        inv_lo[row + (0,)], inv_hi[row + (0,)] = inv.lo, inv.hi
        for i in range(d):
            s_lo = arb(max(_ball_bounds(total_lo - sq_lo[i])[0], 0.0))
            s_hi = arb(_ball_bounds(total_hi - sq_hi[i])[1])

            def h_of(uv, s, e, which):
                val = arb(uv) / (arb(uv) ** 2 / d + s / d + arb(e)).sqrt()
                return _ball_bounds(val)[0 if which == "lo" else 1]
            u_lo, u_hi = u[i]
            # x̂_i = h(u_i, S_i): increasing in u_i; |h| decreasing in S_i and in ε
            low = h_of(u_lo, s_lo, eps.lo, "lo") if u_lo < 0 else \
                h_of(u_lo, s_hi, eps.hi, "lo")
            high = h_of(u_hi, s_lo, eps.lo, "hi") if u_hi >= 0 else \
                h_of(u_hi, s_hi, eps.hi, "hi")
            xhat_lo[row + (i,)] = max(low, -root)
            xhat_hi[row + (i,)] = min(high, root)
    return interval_array(xhat_lo, xhat_hi), interval_array(inv_lo, inv_hi)


def _layer_norm(args, params):
    x, gamma, beta = args
    xhat, _ = layer_norm_stats(x, params["eps"])
    return xhat * np.asarray(gamma, dtype=object) + np.asarray(beta, dtype=object)


def layer_norm_local(g, out, args, params):
    """LayerNorm's proved VJP closed form (:func:`symgrad.ops.norm.layer_norm_backward`)
    run on the rule's enclosures of x̂ and 1/√(var + ε) — and x̂ also from the output's
    own enclosure, (y − β)/γ, where γ excludes 0 — instead of the naive ones its code
    would recompute from x."""
    x, gamma, beta = args
    xhat, inv_std = layer_norm_stats(x, params["eps"])
    gam = np.asarray(gamma, dtype=object)
    g_lo, g_hi = bounds_arrays(gam)
    if np.all((g_lo > 0) | (g_hi < 0)):
        from_out = (np.asarray(out, dtype=object) - np.asarray(beta, dtype=object)) / gam
        xl, xh = bounds_arrays(xhat)
        fl, fh = bounds_arrays(from_out)
        xhat = interval_array(np.maximum(xl, fl), np.minimum(xh, fh))
    return layer_norm_backward(g, gam, xhat, inv_std)


#: ops whose local Jacobian is read off their VJP's closed form on tighter enclosures
LOCAL = {"layer_norm": layer_norm_local}


ELEMENTWISE = {"exp", "log", "tanh", "sigmoid", "silu", "gelu_tanh", "gelu_erf", "relu",
               "sqrt", "inv"}


def elementwise_range(op_name, x: Interval, params, depth: int = 7) -> Interval:
    """The range of an elementwise op over one interval: monotone pieces by the sign of its
    proved VJP with ḡ = 1, bisection elsewhere."""
    op = get_op(op_name)

    def value(v):
        return np.asarray(op.forward(np.array([v], dtype=object), **params),
                          dtype=object).flat[0]

    def piece(iv: Interval, level: int) -> Interval:
        xs = np.array([iv], dtype=object)
        out = np.asarray(op.forward(xs, **params), dtype=object)
        slope = as_interval(op.vjp(np.array([Interval(1.0, 1.0)], dtype=object), out, xs,
                                   **params)[0].flat[0])
        if slope.lo >= 0 or slope.hi <= 0:
            a, b = as_interval(value(Interval(iv.lo, iv.lo))), \
                as_interval(value(Interval(iv.hi, iv.hi)))
            lo_end, hi_end = (a, b) if slope.lo >= 0 else (b, a)
            return Interval(lo_end.lo, hi_end.hi)
        naive = as_interval(out.flat[0])
        if not (math.isfinite(iv.lo) and math.isfinite(iv.hi)):
            return naive
        if level >= depth:   # the mean-value form on the last piece: f(m) + f′(X)(X − m)
            mid = (iv.lo + iv.hi) / 2
            half = Interval(-(mid - iv.lo), iv.hi - mid) if iv.hi > iv.lo else Interval(0, 0)
            centre = as_interval(value(Interval(mid, mid))) + slope * half
            return naive.intersect(centre)
        mid = (iv.lo + iv.hi) / 2
        return piece(Interval(iv.lo, mid), level + 1).hull(piece(Interval(mid, iv.hi),
                                                                 level + 1)).intersect(naive)
    return piece(x, 0)


def _elementwise(name):
    def rule(args, params):
        x = np.asarray(args[0], dtype=object)
        out = np.empty(x.shape, dtype=object)
        for index in np.ndindex(x.shape):
            out[index] = elementwise_range(name, as_interval(x[index]), params)
        return out
    return rule


RULES = {"softmax": _softmax, "log_softmax": _log_softmax, "masked_softmax": _masked_softmax,
         "hard_masked_softmax": _hard_masked_softmax, "layer_norm": _layer_norm}
RULES.update({name: _elementwise(name) for name in ELEMENTWISE})

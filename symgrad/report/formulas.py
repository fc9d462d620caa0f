"""The general formula of every library op, as a SymPy equation for the report's MathML
(index names: i, j, k over rows, columns and the summed axis; n the summed length).
Display only: what is proved is the op's forward code, shown next to it entry by entry.

>>> from symgrad.ops import OPS
>>> set(FORMULAS) == set(OPS)
True
"""
import sympy as sp

i, j, k, n, b = sp.symbols("i j k n b", integer=True)
x, y, a, B, W, v = (sp.IndexedBase(s) for s in ("x", "y", "a", "b", "W", "v"))
g, be, bias, m = sp.IndexedBase("gamma"), sp.IndexedBase("beta"), sp.IndexedBase("bias"), \
    sp.IndexedBase("mask")
c, eps = sp.symbols("c epsilon")
H = sp.Function("H")
_sum = lambda e: sp.Sum(e, (k, 0, n - 1))  # noqa: E731
_mu = _sum(x[i, k]) / n
_softmax = sp.exp(x[i, j]) / _sum(sp.exp(x[i, k]))
_ew = lambda e: sp.Eq(y[i], e, evaluate=False)  # noqa: E731
_d, _base, _rep = sp.symbols("d base r", positive=True)
_theta = _base ** (-2 * sp.Mod(j, _d / 2) / _d)
_rotated = sp.IndexedBase("Rx")[b, i, j]     # (Rx)_j = −x_{j+d/2} (j < d/2), x_{j−d/2} (else)

FORMULAS = {
    "add": _ew(a[i] + B[i]), "sub": _ew(a[i] - B[i]), "mul": _ew(a[i] * B[i]),
    "scale": _ew(c * x[i]), "add_bias": _ew(x[i] + bias[i]),
    "matmul": sp.Eq(y[i, j], _sum(x[i, k] * W[k, j]), evaluate=False),
    "matmul_const": sp.Eq(y[i, j], _sum(x[i, k] * W[k, j]), evaluate=False),
    "batched_matmul": sp.Eq(y[b, i, j], _sum(a[b, i, k] * B[b, k, j]), evaluate=False),
    "affine": sp.Eq(y[i, j], _sum(x[i, k] * W[k, j]) + B[j], evaluate=False),
    "transpose": sp.Eq(y[i, j], x[j, i], evaluate=False),
    "transpose_last_two": sp.Eq(y[b, i, j], x[b, j, i], evaluate=False),
    "swap_first_two": sp.Eq(y[i, b, j], x[b, i, j], evaluate=False),
    "reshape": sp.Eq(y[i], x[i], evaluate=False),   # flat row-major index i
    "row_sum": sp.Eq(y[i], _sum(x[i, k]), evaluate=False),
    "row_mean": sp.Eq(y[i], _mu, evaluate=False),
    "broadcast_row": sp.Eq(y[i, j], v[i], evaluate=False),
    "broadcast_col": sp.Eq(y[i, j], v[j], evaluate=False),
    "exp": _ew(sp.exp(x[i])), "log": _ew(sp.log(x[i])), "tanh": _ew(sp.tanh(x[i])),
    "sigmoid": _ew(1 / (1 + sp.exp(-x[i]))), "silu": _ew(x[i] / (1 + sp.exp(-x[i]))),
    "sqrt": _ew(sp.sqrt(x[i])), "inv": _ew(1 / x[i]), "relu": _ew(x[i] * H(x[i])),
    "gelu_tanh": _ew(x[i] / 2 * (1 + sp.tanh(sp.sqrt(2 / sp.pi) * (
        x[i] + sp.Rational(44715, 1000000) * x[i] ** 3)))),
    "gelu_erf": _ew(x[i] / 2 * (1 + sp.erf(x[i] / sp.sqrt(2)))),
    "softmax": sp.Eq(y[i, j], _softmax, evaluate=False),
    "log_softmax": sp.Eq(y[i, j], x[i, j] - sp.log(_sum(sp.exp(x[i, k]))), evaluate=False),
    "masked_softmax": sp.Eq(y[i, j], sp.exp(x[i, j] + bias[i, j]) / _sum(
        sp.exp(x[i, k] + bias[i, k])), evaluate=False),
    "hard_masked_softmax": sp.Eq(y[i, j], m[i, j] * sp.exp(x[i, j]) / _sum(
        m[i, k] * sp.exp(x[i, k])), evaluate=False),
    "layer_norm": sp.Eq(y[i, j], g[j] * (x[i, j] - _mu) / sp.sqrt(
        _sum((x[i, k] - _mu) ** 2) / n + eps) + be[j], evaluate=False),
    "rms_norm": sp.Eq(y[i, j], g[j] * x[i, j] / sp.sqrt(_sum(x[i, k] ** 2) / n + eps),
                      evaluate=False),
    # d the head width, p = i the position, θ_j = base^(−2(j mod d/2)/d), R the rotate-half
    "rope": sp.Eq(y[b, i, j], x[b, i, j] * sp.cos(i * _theta) + _rotated * sp.sin(i * _theta),
                  evaluate=False),
    "repeat_kv": sp.Eq(y[b, i, j], x[sp.floor(b / _rep), i, j], evaluate=False),
    "swiglu": _ew(a[i] / (1 + sp.exp(-a[i])) * B[i]),
}

"""Elementwise math on symbolic arrays (and on single expressions).

Each function works on NumPy object arrays of SymEngine or SymPy expressions, on single
expressions and on plain numbers (which become exact SymEngine numbers):

>>> from symgrad.tensor import symbols
>>> x = symbols("x", (2,))
>>> [str(e) for e in exp(x)]
['exp(x[0])', 'exp(x[1])']
>>> str(sigmoid(x)[0])
'(1 + exp(-x[0]))**(-1)'
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import symengine as se
import sympy as sp

from .tensor import constant

__all__ = [
    "exp", "log", "tanh", "sigmoid", "sqrt", "erf", "step", "softplus", "rational", "pi",
    "sinh", "cosh", "erfc", "silu", "gelu_tanh", "gelu_erf", "relu", "matmul",
]


def _is_sympy(e) -> bool:
    return isinstance(e, sp.Basic)


def _lift(e):
    if isinstance(e, (float, Fraction)):
        return constant(e)
    if isinstance(e, (int, np.integer)):
        return se.Integer(int(e))
    return e


def _elementwise(name, se_fun, sp_fun, doc):
    def apply_one(e):
        e = _lift(e)
        return sp_fun(e) if _is_sympy(e) else se_fun(e)

    def f(x):
        if isinstance(x, np.ndarray):
            out = np.empty(x.shape, dtype=object)
            for index in np.ndindex(x.shape):
                out[index] = apply_one(x[index])
            return out
        return apply_one(x)

    f.__name__ = name
    f.__doc__ = doc
    return f


def _sympy_step(e):
    return sp.Heaviside(e)


def _symengine_step(e):
    return se.function_symbol("Heaviside", e)


exp = _elementwise("exp", se.exp, sp.exp, "e**x, entrywise.")
log = _elementwise("log", se.log, sp.log, "Natural logarithm, entrywise (needs x > 0).")
tanh = _elementwise("tanh", se.tanh, sp.tanh, "Hyperbolic tangent, entrywise.")
sinh = _elementwise("sinh", se.sinh, sp.sinh, "Hyperbolic sine, entrywise.")
cosh = _elementwise("cosh", se.cosh, sp.cosh, "Hyperbolic cosine, entrywise.")
sqrt = _elementwise("sqrt", se.sqrt, sp.sqrt, "Square root, entrywise (needs x > 0).")
erf = _elementwise("erf", se.erf, sp.erf, "Error function, entrywise.")
erfc = _elementwise("erfc", se.erfc, sp.erfc, "Complementary error function, entrywise.")
step = _elementwise(
    "step", _symengine_step, _sympy_step,
    "Heaviside step H(x), entrywise. Its derivative is 0 away from the jump; checks that "
    "use it carry the side condition x ≠ 0.",
)


def sigmoid(x):
    """The logistic function 1/(1+e^{-x}), entrywise."""
    return 1 / (1 + exp(-x))


def softplus(x):
    """log(1 + e^x), entrywise."""
    return log(1 + exp(x))


def silu(x):
    """x·sigmoid(x), entrywise."""
    return x * sigmoid(x)


def relu(x):
    """max(x, 0) written as x·H(x) (differentiable wherever x ≠ 0)."""
    return x * step(x)


def matmul(a, b):
    """``a @ b`` for symbolic arrays; 2-D SymEngine operands are multiplied by SymEngine's
    dense matrix product in C++ (each entry built as one sum), others by NumPy."""
    a, b = np.asarray(a, dtype=object), np.asarray(b, dtype=object)
    if a.ndim == 2 and b.ndim == 2 and a.size and b.size and a.shape[1] == b.shape[0] \
            and all(isinstance(v, se.Basic) for v in a.flat) \
            and all(isinstance(v, se.Basic) for v in b.flat):
        product = se.DenseMatrix(a.tolist()) * se.DenseMatrix(b.tolist())
        out = np.empty((a.shape[0], b.shape[1]), dtype=object)
        for i, row in enumerate(product.tolist()):
            out[i, :] = row
        return out
    return a @ b


def rational(p, q=1):
    """The exact rational p/q as a SymEngine number (``rational("0.044715")`` also works)."""
    return constant(Fraction(p) / Fraction(q))


pi = se.pi

#: The tanh-approximation constant of GELU, exact: 0.044715 = 8943/200000.
GELU_TANH_C = Fraction("0.044715")


def _gelu_tanh_one(m):
    c = m.Rational(GELU_TANH_C.numerator, GELU_TANH_C.denominator)
    return lambda e: e * (1 + m.tanh(m.sqrt(2 / m.pi) * (e + c * e**3))) / 2


def _gelu_erf_one(m):
    return lambda e: e * (1 + m.erf(e / m.sqrt(2))) / 2


gelu_tanh = _elementwise(
    "gelu_tanh", _gelu_tanh_one(se), _gelu_tanh_one(sp),
    "GELU, tanh approximation: x/2·(1 + tanh(√(2/π)·(x + 0.044715·x³))), entrywise.",
)
gelu_erf = _elementwise(
    "gelu_erf", _gelu_erf_one(se), _gelu_erf_one(sp),
    "GELU, exact form: x·Φ(x) = x/2·(1 + erf(x/√2)), entrywise.",
)

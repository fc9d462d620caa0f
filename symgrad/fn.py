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

from .errors import RuleError
from .scalar import Relation, Scalar, SymArray, heaviside, ieee_undefined, note_domain, \
    number, user_line
from .tensor import constant

__all__ = [
    "exp", "log", "tanh", "sigmoid", "sqrt", "erf", "step", "softplus", "rational", "pi",
    "sinh", "cosh", "erfc", "silu", "gelu_tanh", "gelu_erf", "relu", "matmul", "abs", "sign",
    "where", "maximum", "minimum", "clamp", "log1p", "expm1", "sin", "cos", "atan", "rsqrt",
    "leaky_relu", "indicator",
]


def _is_sympy(e) -> bool:
    return isinstance(e, sp.Basic)


def _lift(e):
    n = number(e) if isinstance(e, (int, float, Fraction, np.integer, np.floating)) else None
    return e if n is None else n


def _scalar_op(fun):
    """``fun`` on one expression, lifted to numbers (exact) and to Scalars (unwrapped and
    re-wrapped, so user code keeps its exactness guarantees)."""
    def apply_one(e):
        if isinstance(e, Scalar):
            return Scalar(apply_one(e.e))
        if isinstance(e, Relation):
            raise RuleError(f"the comparison {e} was passed where a value was expected "
                            f"(at {user_line()})")
        return fun(_lift(e))
    return apply_one


#: the functions defined only on part of the line: where they are not (see scalar.note_domain)
_DOMAIN = {"sqrt": "negative", "log": "nonpositive"}


def _elementwise(name, se_fun, sp_fun, doc):
    def value(e):
        kind = _DOMAIN.get(name)
        if kind is not None:
            note_domain(kind, e)
            if ieee_undefined(kind, e):
                return se.nan
        return sp_fun(e) if _is_sympy(e) else se_fun(e)
    symbolic = _scalar_op(value)

    def apply_one(e):
        # numbers of a numeric run (the randomized check's) say what the function is
        hook = getattr(type(e), "symgrad_apply", None)
        return hook(e, name) if hook is not None else symbolic(e)

    def f(x):
        if isinstance(x, np.ndarray):
            out = np.empty(x.shape, dtype=object)
            for index in np.ndindex(x.shape):
                out[index] = apply_one(x[index])
            return out.view(SymArray) if isinstance(x, SymArray) else out
        return apply_one(x)

    f.__name__ = name
    f.__doc__ = doc
    return f




exp = _elementwise("exp", se.exp, sp.exp, "e**x, entrywise.")
log = _elementwise("log", se.log, sp.log, "Natural logarithm, entrywise (needs x > 0).")
tanh = _elementwise("tanh", se.tanh, sp.tanh, "Hyperbolic tangent, entrywise.")
sinh = _elementwise("sinh", se.sinh, sp.sinh, "Hyperbolic sine, entrywise.")
cosh = _elementwise("cosh", se.cosh, sp.cosh, "Hyperbolic cosine, entrywise.")
sqrt = _elementwise("sqrt", se.sqrt, sp.sqrt, "Square root, entrywise (needs x > 0).")
erf = _elementwise("erf", se.erf, sp.erf, "Error function, entrywise.")
erfc = _elementwise("erfc", se.erfc, sp.erfc, "Complementary error function, entrywise.")
step = _elementwise(
    "step", heaviside, heaviside,
    "Heaviside step H(x), entrywise. Its derivative is 0 away from the jump; checks that "
    "use it carry the side condition x ≠ 0.",
)


sin = _elementwise("sin", se.sin, sp.sin, "Sine, entrywise.")
cos = _elementwise("cos", se.cos, sp.cos, "Cosine, entrywise.")
atan = _elementwise("atan", se.atan, sp.atan, "Arctangent, entrywise.")


def abs(x):  # noqa: A001 - the name users look for
    """|x| = x·(2H(x) − 1), entrywise (differentiable wherever x ≠ 0; checks carry that
    side condition). Python's ``abs()`` on a symbolic value gives the same."""
    return x * (2 * step(x) - 1)


def sign(x):
    """sign(x) = H(x) − H(−x): −1, 0 or 1 (its derivative is 0 wherever x ≠ 0)."""
    return step(x) - step(-x)


def where(cond, a, b):
    """``a`` where ``cond`` holds, else ``b``, entrywise with NumPy broadcasting. ``cond``
    compares symbolic values (``x > 0``, ``x - 1 <= y``, ``~(x > 0)``) and becomes the step
    H(u) of its difference u: ``H(u)·a + (1 − H(u))·b``, differentiable wherever u ≠ 0 (the
    side condition every check that uses it carries); ``>=``, ``==`` (a tie in a max's
    backward) and ``!=`` are exact at u = 0 too (see :func:`indicator`). Plain booleans
    pick as np.where."""
    cond, a, b = np.broadcast_arrays(np.asarray(cond, dtype=object),
                                     np.asarray(a, dtype=object), np.asarray(b, dtype=object))
    out = np.empty(cond.shape, dtype=object)
    for index in np.ndindex(cond.shape):
        c, x, y = cond[index], a[index], b[index]
        if isinstance(c, Relation):
            known = _truth(c)
            if known is not None:   # a comparison of numbers (code run at a point): the
                out[index] = x if known else y   # branch it picks, the other untouched
                continue
            UNDECIDED[0] += 1   # both branches stay in the value (see UNDECIDED)
            h = indicator(c)
            out[index] = h * x + (1 - h) * y
        elif isinstance(c, (bool, np.bool_)):
            out[index] = x if c else y
        else:
            raise RuleError(f"where() needs a comparison of symbolic values or a boolean as "
                            f"its condition, got {type(c).__name__} (at {user_line()})")
    return out.view(SymArray) if out.ndim else out[()]


#: comparisons ``where`` could not decide exactly — of constants (1 − √2) or of symbols a
#: point run leaves free (a parameter): both branches then stay in the value, and an
#: undefined one spoils it; a point run counts them
UNDECIDED = [0]


def _truth(rel: Relation):
    """Whether a comparison of two exact numbers holds; None when it is symbolic."""
    u = rel.u.e if isinstance(rel.u, Scalar) else rel.u
    if not isinstance(u, (se.Integer, se.Rational)):
        return None
    v = Fraction(str(u))
    return {">": v > 0, ">=": v >= 0, "==": v == 0, "!=": v != 0}[rel.op]


def indicator(rel: Relation):
    """1 where the comparison holds, else 0, as steps with H(0) = 0 (a step is 1 where its
    argument is > 0): u > 0 is H(u), u ≥ 0 is 1 − H(−u), u = 0 is 1 − H(u) − H(−u) (exactly
    1 at a tie), u ≠ 0 is H(u) + H(−u)."""
    u = rel.u if isinstance(rel.u, Scalar) or hasattr(type(rel.u), "symgrad_apply") \
        else Scalar(rel.u)
    if rel.op == ">":
        return step(u)
    if rel.op == ">=":
        return 1 - step(-u)
    if rel.op == "==":
        return 1 - step(u) - step(-u)
    return step(u) + step(-u)


def maximum(a, b):
    """max(a, b) entrywise: b + relu(a − b) (needs a ≠ b where it is differentiated)."""
    return b + relu(a - b)


def minimum(a, b):
    """min(a, b) entrywise: a − relu(a − b) (needs a ≠ b where it is differentiated)."""
    return a - relu(a - b)


def clamp(x, lo=None, hi=None):
    """x clipped to [lo, hi] (either may be None), as PyTorch's ``clamp``."""
    if lo is not None:
        x = maximum(x, lo)
    if hi is not None:
        x = minimum(x, hi)
    return x


def leaky_relu(x, negative_slope=0.01):
    """x for x > 0, negative_slope·x otherwise (the slope as the exact value of the float)."""
    a = np.asarray(x, dtype=object)
    positive = np.greater(a, 0, dtype=object) if a.ndim else a[()] > 0
    return where(positive, x, negative_slope * a)


def log1p(x):
    """log(1 + x), entrywise (needs x > −1)."""
    return log(1 + x)


def expm1(x):
    """e^x − 1, entrywise."""
    return exp(x) - 1


def rsqrt(x):
    """1/√x, entrywise (needs x > 0)."""
    return 1 / sqrt(x)


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
    """``a @ b`` for symbolic arrays; for 2-D SymEngine operands each entry is built as one
    n-ary sum, others by NumPy."""
    a, b = np.asarray(a, dtype=object), np.asarray(b, dtype=object)
    if a.ndim == 2 and b.ndim == 2 and a.size and b.size:   # numbers of a numeric run
        hook = getattr(type(a.flat[0]), "symgrad_matmul", None) or \
            getattr(type(b.flat[0]), "symgrad_matmul", None)
        if hook is not None:
            return hook(a, b)
    wrapped = any(isinstance(v, Scalar) for v in a.flat[:1]) or \
        any(isinstance(v, Scalar) for v in b.flat[:1])
    if wrapped and a.ndim == 2 and b.ndim == 2 and \
            all(isinstance(v, Scalar) for v in a.flat) and \
            all(isinstance(v, Scalar) for v in b.flat):
        bare = matmul(np.vectorize(lambda v: v.e, otypes=[object])(a),
                      np.vectorize(lambda v: v.e, otypes=[object])(b))
        return np.vectorize(Scalar, otypes=[object])(bare).view(SymArray)
    if a.ndim == 2 and b.ndim == 2 and a.size and b.size and a.shape[1] == b.shape[0] \
            and all(isinstance(v, se.Basic) for v in a.flat) \
            and all(isinstance(v, se.Basic) for v in b.flat):
        # each entry one n-ary sum (a pairwise accumulation, as in SymEngine's own dense
        # product, rebuilds the growing sum at every step: 5× slower at 256 terms)
        columns = b.T.tolist()
        out = np.empty((a.shape[0], b.shape[1]), dtype=object)
        for i, row in enumerate(a.tolist()):
            out[i, :] = [se.Add(*[p * q for p, q in zip(row, col)]) for col in columns]
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

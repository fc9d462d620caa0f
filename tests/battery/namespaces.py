"""The two namespaces a rule is written against.

``SYMBOLIC`` forwards to :mod:`symgrad.fn` lazily, so a function symgrad does not (yet)
have fails in the rules that use it and nowhere else. ``NUMERIC`` evaluates the same
names with mpmath on object arrays of ``mpf``: a Python float meeting an ``mpf`` is read
as its exact binary value there too, so both namespaces give a float constant the same
meaning. Both add elementwise comparisons (``gt``, ``ge``, ``lt``, ``le``, ``eq``, ``ne``)
for the conditions of ``where``, entry by entry with Python's operators: symgrad's
relations on the symbolic side (whatever comparing two of its values gives), booleans on
the numeric side.
"""
from __future__ import annotations

import operator
from fractions import Fraction

import mpmath as mp
import numpy as np

import symgrad as sg


def _elementwise(fun):
    def apply(x):
        if isinstance(x, np.ndarray):
            out = np.empty(x.shape, dtype=object)
            for index in np.ndindex(x.shape):
                out[index] = fun(x[index])
            return out
        return fun(x)
    return apply


def _binary(fun):
    return np.frompyfunc(fun, 2, 1)


class _Comparisons:
    """Entrywise comparisons: Relations on symbolic values, booleans on numbers."""

    gt = staticmethod(_binary(operator.gt))
    ge = staticmethod(_binary(operator.ge))
    lt = staticmethod(_binary(operator.lt))
    le = staticmethod(_binary(operator.le))
    eq = staticmethod(_binary(operator.eq))
    ne = staticmethod(_binary(operator.ne))


class _Symbolic(_Comparisons):
    """symgrad.fn, looked up when a rule runs, plus relational comparisons."""

    label = "symbolic"

    def __getattr__(self, name):
        return getattr(sg.fn, name)


def mpq(value) -> mp.mpf:
    """An exact rational (Fraction, int, or its string) as an mpf at the working precision."""
    fr = Fraction(value)
    return mp.mpf(fr.numerator) / fr.denominator


def _num_step(u):
    return mp.mpf(1) if u > 0 else (mp.mpf(0) if u < 0 else mp.mpf(0.5))


def _where(cond, a, b):
    cond = np.asarray(cond, dtype=object)
    mask = np.frompyfunc(bool, 1, 1)(cond).astype(bool) if cond.ndim else bool(cond)
    out = np.where(mask, np.asarray(a, dtype=object), np.asarray(b, dtype=object))
    return out.astype(object) if isinstance(out, np.ndarray) else out


class _Numeric(_Comparisons):
    """The same names over mpmath numbers (at whatever ``mp.dps`` the caller sets)."""

    label = "numeric"
    exp = staticmethod(_elementwise(mp.exp))
    log = staticmethod(_elementwise(mp.log))
    log1p = staticmethod(_elementwise(mp.log1p))
    expm1 = staticmethod(_elementwise(mp.expm1))
    sqrt = staticmethod(_elementwise(mp.sqrt))
    sin = staticmethod(_elementwise(mp.sin))
    cos = staticmethod(_elementwise(mp.cos))
    tanh = staticmethod(_elementwise(mp.tanh))
    sinh = staticmethod(_elementwise(mp.sinh))
    cosh = staticmethod(_elementwise(mp.cosh))
    erf = staticmethod(_elementwise(mp.erf))
    erfc = staticmethod(_elementwise(mp.erfc))
    abs = staticmethod(_elementwise(abs))
    sign = staticmethod(_elementwise(mp.sign))
    step = staticmethod(_elementwise(_num_step))
    sigmoid = staticmethod(_elementwise(lambda u: 1 / (1 + mp.exp(-u))))
    softplus = staticmethod(_elementwise(lambda u: mp.log(1 + mp.exp(u))))
    relu = staticmethod(_elementwise(lambda u: u if u > 0 else mp.mpf(0)))
    silu = staticmethod(_elementwise(lambda u: u / (1 + mp.exp(-u))))
    gelu_erf = staticmethod(_elementwise(lambda u: u * (1 + mp.erf(u / mp.sqrt(2))) / 2))
    gelu_tanh = staticmethod(_elementwise(
        lambda u: u * (1 + mp.tanh(mp.sqrt(2 / mp.pi) * (u + mpq("0.044715") * u**3))) / 2))
    maximum = staticmethod(_binary(lambda a, b: a if a >= b else b))
    minimum = staticmethod(_binary(lambda a, b: a if a <= b else b))
    where = staticmethod(_where)

    @staticmethod
    def clamp(x, lo, hi):
        if lo is not None:
            x = _Numeric.maximum(x, lo)
        if hi is not None:
            x = _Numeric.minimum(x, hi)
        return x

    @staticmethod
    def rational(p, q=1):
        return mpq(Fraction(p) / Fraction(q))

    @staticmethod
    def matmul(a, b):
        return np.asarray(a, dtype=object) @ np.asarray(b, dtype=object)

    @property
    def pi(self):
        return +mp.pi   # evaluated at the current precision


SYMBOLIC = _Symbolic()
NUMERIC = _Numeric()

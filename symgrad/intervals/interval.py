"""Outward-rounded intervals that the ops' own forward and VJP code can compute with.

An :class:`Interval` holds float64 endpoints ``lo ≤ hi``; every operation returns an interval
that contains every value of the operation over its operands' intervals (the inclusion
property), because

* ``+ − × ÷`` are IEEE-754 operations, correctly rounded, and each result endpoint is moved
  one ulp outward (``math.nextafter``), so it lies beyond the exact real result;
* elementwise functions (exp, tanh, erf, sqrt, …) are evaluated in python-flint ``arb`` ball
  arithmetic at the endpoints (each is monotone on the pieces used) and the ball's lower or
  upper end rounded outward to float64;
* a number the code meets (a float, a Fraction, a SymEngine constant such as √(2/π) or
  1/√d_k) enters as an interval around its exact value: floats exactly, exact rationals and
  SymEngine expressions through arb (:class:`symgrad.prove.witness.Evaluator`), so 1/√d_k is
  an enclosure one or two ulps wide, never [0, 1];
* matrix products (:meth:`Interval.symgrad_matmul`, the hook of :func:`symgrad.fn.matmul`)
  form the four endpoint products per term with NumPy, round them outward, and sum with a
  rigorous bound on the summation error (|fl(Σ t) − Σ t| ≤ γ_n Σ|t|, γ_n = nu/(1 − nu)).

Comparisons and truth values raise :class:`NotSupported`: a program that branches on a value
cannot be enclosed by running it once.

:class:`Num` is a plain float64 number with the same hooks: the numeric runs (sampling and
gradient ascent) of the graph's own forward and VJP code.
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import symengine as se
from flint import arb, ctx as flint_ctx

from ..errors import InputError

_INF = math.inf
U = 2.0 ** -53   # unit roundoff of float64


class NotSupported(InputError):
    """What a graph computes cannot be enclosed by these intervals (a branch on a value)."""


def down(x: float) -> float:
    return math.nextafter(x, -_INF)


def up(x: float) -> float:
    return math.nextafter(x, _INF)


def _ball_bounds(b: arb) -> tuple:
    """Float bounds of an arb ball: its lower end rounded down, its upper end up."""
    if not b.is_finite():
        return -_INF, _INF
    return down(float(b.lower())), up(float(b.upper()))


#: SymEngine constants (√(2/π), 1/√d_k, ε) met before: their enclosures
_CONSTANTS: dict = {}


def _exact_number(v):
    """An (lo, hi) float enclosure of a number the code meets, or None."""
    if isinstance(v, (bool, np.bool_)):
        raise NotSupported(f"a truth value ({v}) was used as a number")
    if isinstance(v, (int, np.integer)):
        f = float(v)
        return (f, f) if f == v else (down(f), up(f))
    if isinstance(v, (float, np.floating)):
        if not np.isfinite(v):
            raise NotSupported(f"the constant {v} is not finite")
        f = float(v)
        return (f, f) if f == v else (down(f), up(f))   # a long double: outward
    if isinstance(v, Fraction):
        return _ball_bounds(arb(v.numerator) / v.denominator)
    if isinstance(v, se.Basic):
        known = _CONSTANTS.get(v)
        if known is not None:
            return known
        if v.free_symbols:
            raise NotSupported(f"the symbolic constant {v} has no value; give numbers for "
                               f"every graph input")
        from ..prove.witness import Evaluator
        old = flint_ctx.prec
        flint_ctx.prec = 128
        try:
            found = _CONSTANTS[v] = _ball_bounds(Evaluator({}, 128)(v))
            return found
        finally:
            flint_ctx.prec = old
    return None


def as_interval(v) -> "Interval":
    if isinstance(v, Interval):
        return v
    if isinstance(v, Num):
        return Interval(v.v, v.v)
    b = _exact_number(v)
    if b is None:
        raise NotSupported(f"a value of type {type(v).__name__} met an interval")
    return Interval(*b)


def _operand(v):
    if isinstance(v, np.ndarray):
        return NotImplemented
    return as_interval(v)


# ----- elementwise functions -----------------------------------------------------------------

def _increasing(fun):
    def apply(a):
        lo = _ball_bounds(fun(arb(a.lo)))[0] if a.lo > -_INF else -_INF
        hi = _ball_bounds(fun(arb(a.hi)))[1] if a.hi < _INF else _INF
        return Interval(lo, hi)
    return apply


def _decreasing(fun):
    def apply(a):
        lo = _ball_bounds(fun(arb(a.hi)))[0] if a.hi < _INF else -_INF
        hi = _ball_bounds(fun(arb(a.lo)))[1] if a.lo > -_INF else _INF
        return Interval(lo, hi)
    return apply


def _positive_domain(name, apply):
    def checked(a):
        if not a.lo > 0:
            raise NotSupported(f"{name} of an interval reaching {a.lo:g} ≤ 0: the enclosure "
                               f"leaves the function's domain (try a smaller radius)")
        return apply(a)
    return checked


def _cosh(a):   # decreasing, then increasing: 1 at 0
    ends = [_ball_bounds(arb(x).cosh()) for x in (a.lo, a.hi)]
    lo = 1.0 if a.lo <= 0 <= a.hi else min(e[0] for e in ends)
    return Interval(lo, max(e[1] for e in ends))


def _step(a):
    return Interval(1.0 if a.lo > 0 else 0.0, 1.0 if a.hi > 0 else 0.0)


def _periodic(method):
    def apply(a):
        if not (math.isfinite(a.lo) and math.isfinite(a.hi)):
            return Interval(-1.0, 1.0)
        ball = arb((a.lo + a.hi) / 2, (a.hi - a.lo) / 2 * (1 + 4 * U))
        lo, hi = _ball_bounds(getattr(ball, method)())
        return Interval(max(lo, -1.0), min(hi, 1.0))
    return apply


FUNCTIONS = {
    "exp": _increasing(arb.exp),
    "log": _positive_domain("log", _increasing(arb.log)),
    "sqrt": _positive_domain("sqrt", _increasing(arb.sqrt)),
    "tanh": _increasing(arb.tanh),
    "sinh": _increasing(arb.sinh),
    "erf": _increasing(arb.erf),
    "atan": _increasing(arb.atan),
    "erfc": _decreasing(arb.erfc),
    "cosh": _cosh,
    "step": _step,
    "sin": _periodic("sin"),
    "cos": _periodic("cos"),
}


_SQRT_2_PI = se.sqrt(2 / se.pi)
_GELU_C = se.Rational(8943, 200000)   # 0.044715 exactly
_SQRT_2 = se.sqrt(2)


def _gelu_tanh(a):
    # x/2·(1 + tanh(√(2/π)(x + c·x³))), in interval arithmetic (the ops' tight rule joins
    # monotone pieces instead; this is the naive enclosure)
    k = as_interval(_SQRT_2_PI)
    c = as_interval(_GELU_C)
    return a * (1 + FUNCTIONS["tanh"](k * (a + c * a ** 3))) / 2


def _gelu_erf(a):
    return a * (1 + FUNCTIONS["erf"](a / as_interval(_SQRT_2))) / 2


FUNCTIONS["gelu_tanh"] = _gelu_tanh
FUNCTIONS["gelu_erf"] = _gelu_erf


class Interval:
    """[lo, hi] with float64 endpoints; arithmetic rounds outward (see the module)."""

    __slots__ = ("lo", "hi")

    def __init__(self, lo: float, hi: float):
        if math.isnan(lo) or math.isnan(hi):
            lo, hi = -_INF, _INF
        self.lo, self.hi = lo, hi

    def __repr__(self):
        return f"[{self.lo!r}, {self.hi!r}]"

    def intersect(self, other: "Interval") -> "Interval":
        return Interval(max(self.lo, other.lo), min(self.hi, other.hi))

    def hull(self, other: "Interval") -> "Interval":
        return Interval(min(self.lo, other.lo), max(self.hi, other.hi))

    # -- arithmetic
    def __add__(self, o):
        o = _operand(o)
        if o is NotImplemented:
            return NotImplemented
        return Interval(down(self.lo + o.lo), up(self.hi + o.hi))

    __radd__ = __add__

    def __sub__(self, o):
        o = _operand(o)
        if o is NotImplemented:
            return NotImplemented
        return Interval(down(self.lo - o.hi), up(self.hi - o.lo))

    def __rsub__(self, o):
        o = _operand(o)
        if o is NotImplemented:
            return NotImplemented
        return o - self

    def __neg__(self):
        return Interval(-self.hi, -self.lo)

    def __pos__(self):
        return self

    def __mul__(self, o):
        o = _operand(o)
        if o is NotImplemented:
            return NotImplemented
        if self.lo == self.hi == 0 or o.lo == o.hi == 0:
            return Interval(0.0, 0.0)
        ps = [self.lo * o.lo, self.lo * o.hi, self.hi * o.lo, self.hi * o.hi]
        if any(math.isnan(p) for p in ps):   # 0 · ∞
            return Interval(-_INF, _INF)
        return Interval(down(min(ps)), up(max(ps)))

    __rmul__ = __mul__

    def reciprocal(self) -> "Interval":
        if self.lo <= 0 <= self.hi:
            raise NotSupported(f"a division by an interval [{self.lo:g}, {self.hi:g}] that "
                               f"contains 0 (try a smaller radius)")
        return Interval(down(1 / self.hi), up(1 / self.lo))

    def __truediv__(self, o):
        o = _operand(o)
        if o is NotImplemented:
            return NotImplemented
        return self * o.reciprocal()

    def __rtruediv__(self, o):
        o = _operand(o)
        if o is NotImplemented:
            return NotImplemented
        return o * self.reciprocal()

    def __pow__(self, n):
        k = n if isinstance(n, (int, np.integer)) else None
        if k is None:
            b = _exact_number(n)
            if b is None or b[0] != b[1] or b[0] != int(b[0]):
                raise NotSupported(f"a power with exponent {n} (only whole exponents)")
            k = int(b[0])
        k = int(k)
        if k < 0:
            return (self ** -k).reciprocal()
        if k == 0:
            return Interval(1.0, 1.0)
        if k % 2 == 0:
            m_lo = 0.0 if self.lo <= 0 <= self.hi else min(abs(self.lo), abs(self.hi))
            m_hi = max(abs(self.lo), abs(self.hi))
            lo = _ball_bounds(arb(m_lo) ** k)[0] if m_lo else 0.0
            return Interval(max(lo, 0.0), _ball_bounds(arb(m_hi) ** k)[1])
        return Interval(_ball_bounds(arb(self.lo) ** k)[0], _ball_bounds(arb(self.hi) ** k)[1])

    def __abs__(self):
        if self.lo >= 0:
            return self
        if self.hi <= 0:
            return -self
        return Interval(0.0, max(-self.lo, self.hi))

    # -- what an interval cannot answer
    def _refuse(self, *_):
        raise NotSupported("the graph compares or branches on a value; an interval enclosure "
                           "cannot follow one branch")

    __bool__ = __lt__ = __le__ = __gt__ = __ge__ = __eq__ = __ne__ = _refuse
    __hash__ = None

    def symgrad_apply(self, name: str) -> "Interval":
        fun = FUNCTIONS.get(name)
        if fun is None:
            raise NotSupported(f"no interval enclosure for the function {name}")
        return fun(self)

    @staticmethod
    def symgrad_matmul(a, b):
        lo_a, hi_a = bounds_arrays(a)
        lo_b, hi_b = bounds_arrays(b)
        return interval_array(*matmul_bounds(lo_a, hi_a, lo_b, hi_b))


def bounds_arrays(a) -> tuple:
    """(lo, hi) float arrays of an array of intervals or numbers."""
    a = np.asarray(a, dtype=object)
    ivs = [as_interval(v) for v in a.flat]
    lo = np.array([v.lo for v in ivs], dtype=float).reshape(a.shape)
    hi = np.array([v.hi for v in ivs], dtype=float).reshape(a.shape)
    return lo, hi


def interval_array(lo, hi) -> np.ndarray:
    out = np.empty(lo.shape, dtype=object)
    out.flat[:] = [Interval(float(a), float(b)) for a, b in zip(lo.flat, hi.flat)]
    return out


def matmul_bounds(lo_a, hi_a, lo_b, hi_b) -> tuple:
    """Rigorous bounds of [A] @ [B] for 2-D interval matrices given by their endpoints."""
    with np.errstate(invalid="ignore", over="ignore"):
        ps = [lo_a[:, :, None] * lo_b[None, :, :], lo_a[:, :, None] * hi_b[None, :, :],
              hi_a[:, :, None] * lo_b[None, :, :], hi_a[:, :, None] * hi_b[None, :, :]]
        t_lo = np.nextafter(np.minimum.reduce(ps), -np.inf)
        t_hi = np.nextafter(np.maximum.reduce(ps), np.inf)
        n = lo_a.shape[1]
        gamma = 1.01 * n * U / (1 - n * U)
        s_lo, s_hi = t_lo.sum(axis=1), t_hi.sum(axis=1)
        e_lo = gamma * np.abs(t_lo).sum(axis=1)
        e_hi = gamma * np.abs(t_hi).sum(axis=1)
        lo = np.nextafter(np.nextafter(s_lo - e_lo, -np.inf), -np.inf)
        hi = np.nextafter(np.nextafter(s_hi + e_hi, np.inf), np.inf)
    lo = np.where(np.isnan(lo), -np.inf, lo)
    hi = np.where(np.isnan(hi), np.inf, hi)
    return lo, hi


# ----- plain float64 numbers for the numeric runs ---------------------------------------------

_MATH = {"exp": math.exp, "log": math.log, "sqrt": math.sqrt, "tanh": math.tanh,
         "sinh": math.sinh, "cosh": math.cosh, "erf": math.erf, "erfc": math.erfc,
         "atan": math.atan, "sin": math.sin, "cos": math.cos,
         "step": lambda x: 1.0 if x > 0 else 0.0,
         "gelu_tanh": lambda x: x * (1 + math.tanh(math.sqrt(2 / math.pi) *
                                                   (x + 0.044715 * x ** 3))) / 2,
         "gelu_erf": lambda x: x * (1 + math.erf(x / math.sqrt(2))) / 2}


def _num(v) -> float:
    if isinstance(v, Num):
        return v.v
    if isinstance(v, (int, float, np.integer, np.floating, Fraction)):
        return float(v)
    if isinstance(v, se.Basic):
        return float(v)
    raise NotSupported(f"a value of type {type(v).__name__} met a number")


class Num:
    """A float64 value the ops' code computes with in a numeric run (no rigor: sampling and
    gradient ascent only look for points)."""

    __slots__ = ("v",)

    def __init__(self, v: float):
        self.v = float(v)

    def __repr__(self):
        return repr(self.v)

    def _bin(self, o, f):
        if isinstance(o, np.ndarray):
            return NotImplemented
        return Num(f(self.v, _num(o)))

    def __add__(self, o): return self._bin(o, lambda a, b: a + b)
    def __radd__(self, o): return self._bin(o, lambda a, b: b + a)
    def __sub__(self, o): return self._bin(o, lambda a, b: a - b)
    def __rsub__(self, o): return self._bin(o, lambda a, b: b - a)
    def __mul__(self, o): return self._bin(o, lambda a, b: a * b)
    def __rmul__(self, o): return self._bin(o, lambda a, b: b * a)
    def __truediv__(self, o): return self._bin(o, lambda a, b: a / b)
    def __rtruediv__(self, o): return self._bin(o, lambda a, b: b / a)
    def __pow__(self, o): return self._bin(o, lambda a, b: a ** b)
    def __neg__(self): return Num(-self.v)
    def __pos__(self): return self
    def __float__(self): return self.v

    def symgrad_apply(self, name: str) -> "Num":
        return Num(_MATH[name](self.v))

    @staticmethod
    def symgrad_matmul(a, b):
        out = np.asarray([[_num(v) for v in row] for row in a], dtype=float) @ \
            np.asarray([[_num(v) for v in row] for row in b], dtype=float)
        return nums(out)


def nums(values) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    out = np.empty(values.shape, dtype=object)
    out.flat[:] = [Num(v) for v in values.flat]
    return out


def floats(arr) -> np.ndarray:
    arr = np.asarray(arr, dtype=object)
    return np.array([_num(v) for v in arr.flat], dtype=float).reshape(arr.shape)

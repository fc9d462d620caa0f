"""The values a user's forward and rule compute with: exact, and loud about misuse.

A user's ``forward`` and ``vjp`` receive NumPy object arrays of :class:`Scalar` — a thin
wrapper of one SymEngine (or SymPy) expression — never the checker's own arrays:

* every Python or NumPy float enters as the **exact rational of its double** at the point
  where it first meets a symbolic value (SymEngine itself would fold ``2.0 * x / 3`` into a
  rounded ``0.666…67·x``, and ``x ** 0.5`` into a float power);
* NaN and infinite constants, division by an exact zero, ``float(x)``/``math.exp(x)``,
  ``np.exp(x)`` on a symbolic array and Python control flow on a symbolic value
  (``if x > 0:``, ``max(x, 0)``) raise a :class:`~symgrad.errors.RuleError` naming the
  user's file and line — a traced program must not silently take one branch;
* comparisons give a :class:`Relation`, which ``symgrad.fn.where`` turns into a step.

Each call gets freshly wrapped arrays, so a rule that writes into its arguments (``g *= 2``)
changes nothing the reference side sees.

>>> import symengine as se
>>> x = Scalar(se.Symbol("x"))
>>> str(unwrap(2.0 * (x - 1) / 3))
'(2/3)*(-1 + x)'
>>> str(unwrap(x ** 0.5))
'sqrt(x)'
>>> bool(x > 0)
Traceback (most recent call last):
...
symgrad.errors.RuleError: Python control flow on a symbolic comparison (x > 0) cannot be traced: ...
"""
from __future__ import annotations

import math
import os
import sys
from fractions import Fraction

import numpy as np
import symengine as se
import sympy as sp

from .errors import RuleError

_HERE = os.path.dirname(os.path.abspath(__file__))
_SKIP = (_HERE, os.path.dirname(np.__file__), os.path.dirname(se.__file__),
         os.path.dirname(sp.__file__))


def user_line(tb=None) -> str:
    """``file:line (function)`` of the innermost frame that is the user's code — not
    symgrad's, NumPy's, SymEngine's or SymPy's — from a traceback, or the current stack."""
    frames = []
    if tb is not None:
        while tb is not None:
            frames.append((tb.tb_frame, tb.tb_lineno))
            tb = tb.tb_next
        frames.reverse()
    else:
        f = sys._getframe(1)
        while f is not None:
            frames.append((f, f.f_lineno))
            f = f.f_back
    for skip in (_SKIP, _SKIP[1:]):   # the user's code, else symgrad's own (its ops)
        for frame, line in frames:
            path = os.path.abspath(frame.f_code.co_filename)
            if not path.startswith(skip) or os.sep + "tests" + os.sep in path:
                return f"{_short(path)}:{line} in {frame.f_code.co_name}"
    return "an unknown line"


def _short(path: str) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


def _fail(message: str):
    raise RuleError(f"{message} (at {user_line()})")


def number(v, backend: str = "symengine"):
    """A Python/NumPy number as an exact symbolic number (floats by their exact value);
    NaN and infinities are a RuleError."""
    if isinstance(v, (bool, np.bool_)):
        _fail(f"a truth value ({v}) was used as a number")
    if isinstance(v, (int, np.integer)):
        return se.Integer(int(v)) if backend == "symengine" else sp.Integer(int(v))
    if isinstance(v, (float, np.floating)):
        if not np.isfinite(v):
            _fail(f"the constant {v} is not a finite number")
        v = Fraction(*v.as_integer_ratio())   # exact for float16 … long double
    if isinstance(v, Fraction):
        make = se.Rational if backend == "symengine" else sp.Rational
        return make(v.numerator, v.denominator)
    return None


def _operand(v, backend):
    """The expression behind an operand of an arithmetic operation with a Scalar."""
    if isinstance(v, Scalar):
        return v.e
    n = number(v, backend)
    if n is not None:
        return n
    if isinstance(v, Relation):
        _fail(f"the comparison {v} was used as a number; use symgrad.fn.where(cond, a, b) "
              f"or symgrad.fn.step")
    if isinstance(v, (se.Basic, sp.Basic)):
        return v
    return NotImplemented


def _backend(e) -> str:
    return "sympy" if isinstance(e, sp.Basic) else "symengine"


class Scalar:
    """One symbolic value handed to user code (see the module docstring)."""

    __slots__ = ("e",)

    def __init__(self, e):
        self.e = e

    # -- arithmetic: floats are made exact before SymEngine sees them
    def _binary(self, other, op):
        o = _operand(other, _backend(self.e))
        if o is NotImplemented:
            return NotImplemented
        return Scalar(op(self.e, o))

    def __add__(self, o): return self._binary(o, lambda a, b: a + b)
    def __radd__(self, o): return self._binary(o, lambda a, b: b + a)
    def __sub__(self, o): return self._binary(o, lambda a, b: a - b)
    def __rsub__(self, o): return self._binary(o, lambda a, b: b - a)
    def __mul__(self, o): return self._binary(o, lambda a, b: a * b)
    def __rmul__(self, o): return self._binary(o, lambda a, b: b * a)

    def __truediv__(self, o):
        return self._binary(o, lambda a, b: a * _reciprocal(b))

    def __rtruediv__(self, o):
        return self._binary(o, lambda a, b: b * _reciprocal(a))

    def __pow__(self, o):
        return self._binary(o, _power)

    def __rpow__(self, o):
        return self._binary(o, lambda a, b: _power(b, a))

    def __neg__(self): return Scalar(-self.e)
    def __pos__(self): return self

    def __abs__(self):
        return self * (2 * Scalar(heaviside(self.e)) - 1)   # as symgrad.fn.abs

    def __floordiv__(self, o):
        _fail("floor division (//) of a symbolic value is not differentiable; use /")

    __rfloordiv__ = __mod__ = __rmod__ = __floordiv__

    # -- comparisons give relations; their truth value is an error
    def __gt__(self, o): return Relation.make(self, o, ">")
    def __ge__(self, o): return Relation.make(self, o, ">=")
    def __lt__(self, o): return Relation.make(o, self, ">")
    def __le__(self, o): return Relation.make(o, self, ">=")
    def __eq__(self, o): return Relation.make(self, o, "==")
    def __ne__(self, o): return Relation.make(self, o, "!=")

    def __hash__(self):
        return hash(self.e)

    def __bool__(self):
        _fail(f"Python control flow on a symbolic value ({_brief(self.e)}) cannot be traced; "
              f"use symgrad.fn.where(cond, a, b) or symgrad.fn.step")

    def _to_number(self, *_):
        _fail(f"the symbolic value {_brief(self.e)} was converted to a Python number "
              f"(float(), int(), math.exp, math.sqrt, …); use symgrad.fn (sg.fn.exp, "
              f"sg.fn.sqrt, …) on symbolic values")

    __float__ = __int__ = __index__ = __complex__ = __round__ = __trunc__ = _to_number

    def conjugate(self):
        return self  # real values (np.vdot, np.conj)

    # a bare SymEngine/SymPy expression (a parameter such as eps) combined with a Scalar
    # asks for these; the result is then bare too, and its floats are made exact by
    # canonical() when the user's function returns
    def _symengine_(self):
        return se.sympify(self.e)

    def _sympy_(self):
        return self.e if isinstance(self.e, sp.Basic) else self.e._sympy_()

    def __repr__(self):
        return str(self.e)

    __str__ = __repr__


def heaviside(e):
    """The step H(e) of one expression: 1 where e > 0, else 0 (H(0) = 0). SymEngine has no
    Heaviside of its own: an undefined function of that name, which the normal form and the
    reference derivative know; SymPy's is given H(0) = 0 explicitly."""
    if isinstance(e, sp.Basic):
        return sp.Heaviside(e, 0)
    if isinstance(e, (float, np.floating, se.RealDouble)) and math.isfinite(float(e)):
        return 1.0 if float(e) > 0 else 0.0          # a float run: its value
    if _IEEE and isinstance(e, (se.Integer, se.Rational)):   # a point run: its value
        return se.Integer(1 if Fraction(str(e)) > 0 else 0)
    return se.function_symbol("Heaviside", e)


def _function_name(node) -> str:
    getter = getattr(node, "get_name", None)
    return getter() if callable(getter) else type(node).__name__


def _brief(e) -> str:
    s = str(e)
    return s if len(s) <= 60 else s[:57] + "…"


#: while set (``recording_divisors``): (kind, value) for every non-constant value user code
#: divides by ("zero": undefined where it is 0) or takes a root or logarithm of
#: ("negative": undefined where it is < 0; "nonpositive": where it is ≤ 0)
_DIVISORS: list | None = None
#: while set (``ieee_division``), a division by an exact 0 gives ∞ instead of an error
_IEEE = False


class recording_divisors:
    """Collects what user code divides by (``/`` or a negative power of a non-constant):
    SymEngine cancels ``(x·y)/x`` to ``y`` at once, so the rule's own expressions no longer
    show that the code is undefined at x = 0; the checker looks there (check.py)."""

    def __enter__(self):
        global _DIVISORS
        self.saved, _DIVISORS = _DIVISORS, []
        return _DIVISORS

    def __exit__(self, *exc):
        global _DIVISORS
        _DIVISORS = self.saved
        return False


class ieee_division:
    """Division by an exact 0 gives SymEngine's ∞ (and 0·∞ its NaN) instead of an error, as
    a float kernel's would: a branch that ``where`` then discards does not matter, one that
    reaches the result makes it undefined."""

    def __enter__(self):
        global _IEEE
        self.saved, _IEEE = _IEEE, True
        return self

    def __exit__(self, *exc):
        global _IEEE
        _IEEE = self.saved
        return False


def note_domain(kind: str, e) -> None:
    """Record that user code is undefined where ``e`` is 0 (kind "zero"), < 0
    ("negative") or ≤ 0 ("nonpositive"), while recording (``recording_divisors``)."""
    if _DIVISORS is not None and not isinstance(e, (se.Number, sp.Number)):
        _DIVISORS.append((kind, e))


def ieee_undefined(kind: str, e) -> bool:
    """Whether, at a point run with IEEE semantics, ``e`` (an exact number) is outside the
    domain: a float kernel's NaN."""
    if not _IEEE or not isinstance(e, (se.Integer, se.Rational)):
        return False
    v = Fraction(str(e))
    return v == 0 if kind == "zero" else (v < 0 if kind == "negative" else v <= 0)


def _reciprocal(b):
    if (isinstance(b, se.Number) or isinstance(b, sp.Number)) and b == 0:
        if _IEEE and isinstance(b, se.Number):
            return se.zoo
        _fail("division by zero")
    note_domain("zero", b)
    return b ** -1


def _power(a, b):
    if (isinstance(a, (se.Number, sp.Number))) and a == 0 and \
            isinstance(b, (se.Number, sp.Number)) and b < 0:
        if _IEEE and isinstance(a, se.Number):
            return se.zoo
        _fail("division by zero (a negative power of 0)")
    if isinstance(b, (se.Number, sp.Number)):
        if b < 0:
            note_domain("zero", a)
        if not _whole(b):   # a root: real only where the base is ≥ 0
            note_domain("negative", a)
            if ieee_undefined("negative", a):
                return se.nan
    return a ** b


def _whole(b) -> bool:
    if isinstance(b, (int, se.Integer, sp.Integer)):
        return True
    try:
        return Fraction(str(b)).denominator == 1
    except (ValueError, ZeroDivisionError):
        return False


def _ufunc_method(name):
    def method(self, *args, **kwargs):
        _fail(f"np.{name} was applied to a symbolic array; use symgrad.fn."
              f"{_FN_NAMES.get(name, name)} (NumPy calls a .{name}() method on object "
              f"arrays, which symbolic values do not have)")
    method.__name__ = name
    return method


_FN_NAMES = {"arctan": "atan", "absolute": "abs", "fabs": "abs", "maximum": "maximum",
             "clip": "clamp", "arcsinh": "asinh", "power": "** (Python's power)"}
for _name in ("exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "sqrt", "cbrt",
              "sin", "cos", "tan", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh",
              "arcsinh", "arccosh", "arctanh", "sign", "rint", "floor", "ceil", "fabs",
              "erf", "deg2rad", "rad2deg"):
    setattr(Scalar, _name, _ufunc_method(_name))


class Relation:
    """``u > 0``, ``u >= 0``, ``u == 0`` or ``u != 0`` for a symbolic u: what comparing
    symbolic values gives. Only :func:`symgrad.fn.where` reads it; its truth value is an
    error (Python control flow cannot be traced)."""

    __slots__ = ("u", "op")

    def __init__(self, u, op):
        self.u, self.op = u, op

    @staticmethod
    def make(a, b, op):
        ea = a.e if isinstance(a, Scalar) else None
        eb = b.e if isinstance(b, Scalar) else None
        backend = _backend(ea if ea is not None else eb)
        ea = ea if ea is not None else _operand(a, backend)
        eb = eb if eb is not None else _operand(b, backend)
        if ea is NotImplemented or eb is NotImplemented:
            return NotImplemented
        return Relation(ea - eb, op)

    def __invert__(self):
        flipped = {">": (-1, ">="), ">=": (-1, ">"), "==": (1, "!="), "!=": (1, "==")}
        s, op = flipped[self.op]
        return Relation(s * self.u, op)

    def __bool__(self):
        _fail(f"Python control flow on a symbolic comparison ({self}) cannot be traced: an "
              f"if/while, max()/min(), np.where or np.maximum asked for its truth value, "
              f"which would follow one branch for every input; use symgrad.fn.where(cond, "
              f"a, b), symgrad.fn.maximum/minimum/clamp or symgrad.fn.step")

    def __and__(self, other):
        _fail("combining symbolic comparisons with & or | is not supported; nest "
              "symgrad.fn.where calls instead")

    __or__ = __rand__ = __ror__ = __and__

    def __repr__(self):
        return f"{self.u} {self.op} 0"


class SymArray(np.ndarray):
    """The object arrays user code receives: a NumPy array of Scalars whose comparisons
    (``x > 0``) give arrays of :class:`Relation` for :func:`symgrad.fn.where` — NumPy's own
    comparison of object arrays would ask each relation for a truth value."""

    __array_priority__ = 1001

    def _compare(self, other, ufunc):
        out = ufunc(np.asarray(self), np.asarray(other, dtype=object), dtype=object)
        return out.view(SymArray) if isinstance(out, np.ndarray) else out   # 0-d: a Relation

    def __gt__(self, o): return self._compare(o, np.greater)
    def __ge__(self, o): return self._compare(o, np.greater_equal)
    def __lt__(self, o): return self._compare(o, np.less)
    def __le__(self, o): return self._compare(o, np.less_equal)
    def __eq__(self, o): return self._compare(o, np.equal)
    def __ne__(self, o): return self._compare(o, np.not_equal)

    def __invert__(self):
        return np.vectorize(lambda r: ~r, otypes=[object])(np.asarray(self)).view(SymArray)

    __hash__ = None


def wrap(arr) -> np.ndarray:
    """A fresh :class:`SymArray` of Scalars over the entries of ``arr`` (never a view of
    it, so user code that writes into it changes nothing of the caller's)."""
    a = np.asarray(arr, dtype=object)
    out = np.empty(a.shape, dtype=object)
    for index in np.ndindex(a.shape):
        v = a[index]
        out[index] = v if isinstance(v, Scalar) else Scalar(v)
    return out.view(SymArray)


def unwrap_value(v, what: str, backend: str = "symengine"):
    """One entry a user returned, as an expression (floats exact): Scalars, numbers and
    expressions; anything else is a RuleError naming ``what``."""
    if isinstance(v, Scalar):
        return v.e
    if isinstance(v, np.ndarray) and v.ndim == 0:   # a 0-d sum put into a list
        return unwrap_value(v[()], what, backend)
    n = None if isinstance(v, (bool, np.bool_)) else number(v, backend)
    if n is not None:
        return n
    if isinstance(v, (se.Basic, sp.Basic)):
        return v
    if isinstance(v, Relation):
        raise RuleError(f"{what} holds the comparison {v}, not a number; use "
                        f"symgrad.fn.where(cond, a, b) to choose between values")
    raise RuleError(f"{what} holds {type(v).__name__} {v!r:.60}, not a number or a symbolic "
                    f"expression")


def unwrap(v, what: str = "the result", backend: str = "symengine"):
    """:func:`unwrap_value` over a scalar or every entry of an array."""
    if isinstance(v, np.ndarray):
        out = np.empty(v.shape, dtype=object)
        for index in np.ndindex(v.shape):
            out[index] = unwrap_value(v[index], what, backend)
        return out
    return unwrap_value(v, what, backend)


# ----- expressions as the checker reads them ------------------------------------------------

_NOT_FINITE = tuple(type(v) for v in (se.nan, se.zoo, se.oo, -se.oo))


def _step_form(node):
    """The step-function form of a non-smooth node (|u|, sign u, max, min, Piecewise), or
    None: every jump becomes an explicit H(u), which the reference derivative treats as
    locally constant and the normal form as an atom with the side condition u ≠ 0."""
    name = node.get_name() if isinstance(node, se.FunctionSymbol) else type(node).__name__
    args = node.args
    if name == "Abs":
        return args[0] * (2 * heaviside(args[0]) - 1)
    if name == "sign":
        return heaviside(args[0]) - heaviside(-args[0])      # 0 at 0, as sign(0) = 0
    if name in ("Max", "Min"):
        out = args[0]
        for b in args[1:]:
            d = out - b
            out = b + d * heaviside(d) if name == "Max" else out - d * heaviside(d)
        return out
    if name == "Piecewise":
        pairs = list(zip(args[0::2], args[1::2]))
        if not pairs or pairs[-1][1] != se.true:
            raise RuleError(f"a Piecewise needs a last branch for every other case "
                            f"(condition True): {_brief(node)}")
        out = pairs[-1][0]
        for value, cond in reversed(pairs[:-1]):
            if isinstance(cond, se.StrictLessThan):
                h = heaviside(cond.args[1] - cond.args[0])      # a < b: H(b − a)
            elif isinstance(cond, se.LessThan):
                h = 1 - heaviside(cond.args[0] - cond.args[1])  # a ≤ b: 1 − H(a − b)
            else:
                raise RuleError(f"a Piecewise condition must be an inequality (<, <=, >, "
                                f">=), got {cond}")
            out = h * value + (1 - h) * out
        return out
    return None


_NONSMOOTH = {"Abs", "sign", "Max", "Min", "Piecewise"}
_PLAIN_LEAVES = {se.Symbol, se.Dummy, se.Integer, se.Rational}
_PLAIN_INNER = {se.Add, se.Mul, se.Pow}


def canonical(exprs, what: str):
    """``exprs`` (SymEngine expressions a user's code produced) as the checker reads them:
    floats by their exact value, non-smooth functions in step form (see ``_step_form``);
    NaN, infinities and complex values are a RuleError naming ``what``. Returns the list
    and the set of step nodes H(u) they hold. One walk over the shared DAG per round; a
    round's replacements may hold nodes the next round rewrites (nested |·|)."""
    exprs = list(exprs)
    steps: set = set()
    for _ in range(64):
        seen, repl, stack = set(), {}, list(exprs)
        while stack:
            node = stack.pop()
            kind = type(node)
            if kind in _PLAIN_LEAVES:      # the bulk of a DAG: no lookup, no bookkeeping
                continue
            if node in seen:
                continue
            seen.add(node)
            if kind in _PLAIN_INNER:
                stack.extend(node.args)
                continue
            if isinstance(node, se.Number):
                if isinstance(node, _NOT_FINITE):
                    raise RuleError(f"{what} holds the value {node} (a division by zero, or "
                                    f"an infinite or NaN constant)")
                if isinstance(node, se.RealNumber):
                    repl[node] = _exact_real(node)
                elif not isinstance(node, (se.Integer, se.Rational)):
                    raise RuleError(f"{what} holds the complex number {node}; symgrad "
                                    f"checks real functions")
                continue
            if _function_name(node) == "Heaviside" and len(node.args) == 2:
                u, at_zero = node.args    # SymPy's Heaviside(u, H0): H(u) + H0·[u = 0]
                repl[node] = heaviside(u) + at_zero * (1 - heaviside(u) - heaviside(-u))
                continue
            if isinstance(node, se.FunctionSymbol) and node.get_name() == "Heaviside":
                steps.add(node)
            elif type(node).__name__ in _NONSMOOTH:
                repl[node] = _step_form(node)
                continue
            stack.extend(node.args)
        if not repl:
            return exprs, steps
        exprs = [e.xreplace(repl) for e in exprs]
        steps = set()
    raise RuleError(f"{what}: non-smooth functions nested more than 64 deep")


def _exact_real(f) -> se.Basic:
    if isinstance(f, se.RealDouble):
        fr = Fraction(float(f))
    else:  # an arbitrary-precision float: through SymPy's exact conversion
        fr = Fraction(str(sp.Rational(f._sympy_())))
    return se.Rational(fr.numerator, fr.denominator)

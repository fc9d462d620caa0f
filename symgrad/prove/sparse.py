"""Polynomial obligations at large shapes: every entry compared as a sparse polynomial.

A linear or bilinear node at GPT width — ``affine`` of a 16×256 by a 256×64 — holds about
800,000 monomials across its forward and its rule. The general path walks SymEngine trees in
Python several times over (exact floats, verified symmetry, the soundness alarm), seconds
per walk. When the forward and the rule compute polynomials — only ``+``, ``−``, ``·``,
whole powers and division by a non-zero number — this path runs both over :class:`Poly`, a
sparse polynomial with exact rational coefficients over numbered variables (one per input
entry, per entry of ḡ, per symbolic constant), and compares **every** input entry e exactly:

    (Jᵀḡ)_e = Σ_k ḡ_k ∂f_k/∂x_e      (differentiated from the forward's polynomials)
    vjp(ḡ, f(x), x)_e                 (the rule's polynomial).

Both are polynomials in canonical form (a dict from sorted variable tuples to non-zero exact
coefficients), so equal dicts are the same polynomial: a zero difference at every entry is
the proof, and no symmetry argument is needed.

Anything this path does not model — a function (exp, a step), a comparison, Python control
flow on a value, a division by a non-constant, a NaN, a mismatch, a polynomial past
:data:`MAX_PRODUCT` terms — returns None, and the obligation takes the general path, which
explains, refutes with a certified witness, or proves it its own way.

Defence in depth (like the general path's soundness alarm): after a zero difference the
forward and the rule run again on exact rationals (python-flint ``fmpq``) at a random point,
and ⟨ḡ, Df(x)[ẋ]⟩ — exact, from the forward at x + tẋ for t = −m … m, with the weights of
the derivative at 0 of the interpolating polynomial (exact for degree ≤ 2m, and m is chosen
from the forward's degree) — must equal ⟨vjp(ḡ), ẋ⟩ exactly, for a direction ẋ on every
input entry. This evaluation shares no arithmetic with :class:`Poly`; on a disagreement (a
forward that changes between calls, or a bug here) the general path decides, never this one.

The rule never sees the forward's objects: the forward's polynomials are copied the moment
it returns, the rule gets fresh inputs (one array per argument, an input read twice
included), fresh ḡ and a fresh copy of the output, as SymArrays like the general path's.
"""
from __future__ import annotations

import math
import random
import time
from fractions import Fraction

import numpy as np
import symengine as se
from flint import fmpq, fmpq_mat

from ..scalar import Scalar, SymArray
from .flint_poly import to_fraction
from .result import Result, Verdict

#: obligations with at least this many input entries try this path first (smaller ones are
#: quick on the general path, whose reports show orbits and normal forms)
SPARSE_FROM = 512
#: a product of polynomials with more term pairs than this is left to the general path
MAX_PRODUCT = 4_000_000
#: forwards of higher degree than this are left to the general path (the check evaluates
#: the forward at degree + 1 points)
MAX_DEGREE = 8


class NotPolynomial(Exception):
    """What the forward or the rule computed is not modelled by :class:`Poly`."""


class _Context:
    """The variables of one check: SymEngine symbols met in constants (a symbolic scale c)
    are numbered on first sight, from ``first``."""

    def __init__(self, first: int):
        self.next = first
        self.constants: dict = {}

    def constant(self, sym) -> int:
        v = self.constants.get(sym)
        if v is None:
            v = self.constants[sym] = self.next
            self.next += 1
        return v


_CONTEXT: _Context | None = None
#: what this path handed to user code in the last check, kept alive while the general path
#: runs after it: a user's memo keyed by id() must not meet a reused id
_HELD: list = []


def _number(v):
    """An exact rational (int or Fraction) from a Python/NumPy/SymEngine number, or None."""
    if isinstance(v, (bool, np.bool_)):
        raise NotPolynomial("a truth value used as a number")
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        if not np.isfinite(v):
            raise NotPolynomial("a non-finite constant")
        return _coef(Fraction(*v.as_integer_ratio()))   # exact for float16 … long double
    if isinstance(v, Fraction):
        return _coef(v)
    if isinstance(v, se.Number):   # exactly, floats too; NaN, ∞, complex raise: declined
        return _coef(to_fraction(v))
    return None


def _coef(c):
    return c.numerator if isinstance(c, Fraction) and c.denominator == 1 else c


def _merge(a: tuple, b: tuple) -> tuple:
    if not a:
        return b
    if not b:
        return a
    if a[-1] <= b[0]:
        return a + b
    if b[-1] <= a[0]:
        return b + a
    return tuple(sorted(a + b))


def _add(a: dict, b: dict, sign: int = 1) -> dict:
    out = dict(a)
    for m, c in b.items():
        v = out.get(m, 0) + (c if sign == 1 else -c)
        if v:
            out[m] = v
        else:
            out.pop(m, None)
    return out


def _mul(a: dict, b: dict) -> dict:
    if len(a) * len(b) > MAX_PRODUCT:
        raise NotPolynomial("a product past the term budget")
    out: dict = {}
    for ma, ca in a.items():
        for mb, cb in b.items():
            m = _merge(ma, mb)
            out[m] = out.get(m, 0) + ca * cb
    return {m: c for m, c in out.items() if c}


def _scaled(a: dict, c) -> dict:
    return {m: _coef(v * c) for m, v in a.items()} if c else {}


def _divided(a: dict, b: dict) -> dict:
    """a / b for a constant, non-zero b; anything else is not a polynomial."""
    c = _constant_of(b)
    if c is None or c == 0:
        raise NotPolynomial("a division by a non-constant or by zero")
    return _scaled(a, Fraction(1) / c)


def _constant_of(terms: dict):
    """The value of a constant polynomial, or None."""
    if not terms:
        return 0
    if len(terms) == 1 and () in terms:
        return terms[()]
    return None


class Poly:
    """A sparse polynomial: ``terms`` maps a sorted tuple of variable numbers (with
    repetition: x·y² is (x, y, y)) to its non-zero exact coefficient (int or Fraction).
    Arithmetic builds new objects; comparisons, truth values and anything else raise
    :class:`NotPolynomial` (the general path handles them).

    ``bare``: a SymEngine value stood on the left of an operation that built this one. On
    the general path that result is a bare SymEngine expression, not a Scalar, and SymEngine
    folds the floats that meet it afterwards (c·x·0.1·10 becomes 1.0·c·x); a float meeting a
    bare Poly therefore sends the obligation to the general path, so both paths read the
    program alike."""

    __slots__ = ("terms", "bare")

    def __init__(self, terms: dict, bare: bool = False):
        self.terms = terms
        self.bare = bare

    def _with(self, other, reflected: bool):
        """(other's terms, whether the result is bare), or (NotImplemented, _)."""
        bare = self.bare or (isinstance(other, Poly) and other.bare) or (
            reflected and isinstance(other, se.Basic))
        if bare and isinstance(other, (float, np.floating)):
            raise NotPolynomial("a float meeting a bare SymEngine value")
        return _terms_of(other), bare

    def _binary(self, other, reflected: bool, combine):
        """Poly(combine(own terms, other's terms)), bare as :meth:`_with` says."""
        o, bare = self._with(other, reflected)
        return NotImplemented if o is NotImplemented else Poly(combine(self.terms, o), bare)

    # -- arithmetic --------------------------------------------------------------------
    def __add__(self, o): return self._binary(o, False, _add)
    def __radd__(self, o): return self._binary(o, True, _add)
    def __sub__(self, o): return self._binary(o, False, lambda a, b: _add(a, b, -1))
    def __rsub__(self, o): return self._binary(o, True, lambda a, b: _add(b, a, -1))
    def __mul__(self, o): return self._binary(o, False, _mul)
    def __rmul__(self, o): return self._binary(o, True, _mul)
    def __truediv__(self, o): return self._binary(o, False, lambda a, b: _divided(a, b))
    def __rtruediv__(self, o): return self._binary(o, True, lambda a, b: _divided(b, a))

    def __neg__(self):
        return Poly({m: -c for m, c in self.terms.items()}, self.bare)

    def __pos__(self):
        return self

    def __pow__(self, n):
        if self.bare and isinstance(n, (float, np.floating)):
            raise NotPolynomial("a float meeting a bare SymEngine value")
        k = _number(n) if not isinstance(n, Poly) else _constant_of(n.terms)
        if k is None or k != int(k) or k < 0:
            raise NotPolynomial("a power that is not a whole number ≥ 0")
        result, base, k = {(): 1}, self.terms, int(k)
        while k:
            if k & 1:
                result = _mul(result, base)
            k >>= 1
            if k:
                base = _mul(base, base)
        return Poly(result, self.bare)

    def __rpow__(self, other):
        raise NotPolynomial("a power with a variable exponent")

    # -- what a polynomial is not --------------------------------------------------------
    def _refuse(self, *_):
        raise NotPolynomial("a comparison or a truth value")

    __bool__ = __lt__ = __le__ = __gt__ = __ge__ = __eq__ = __ne__ = _refuse
    __hash__ = None

    @staticmethod
    def symgrad_matmul(a, b):
        """``a @ b`` for 2-D arrays (:func:`symgrad.fn.matmul`'s hook): each entry's terms
        accumulated in one dict; when every entry of a row and a column is one variable
        times a number (a node's inputs), the entry is one comprehension, kept when no two
        products are the same monomial."""
        if any(isinstance(v, Poly) and v.bare for v in list(a.flat) + list(b.flat)):
            raise NotPolynomial("a product with a bare SymEngine value")
        A = [[_terms_of(v, strict=True) for v in row] for row in a]
        B = [[_terms_of(v, strict=True) for v in col] for col in b.T]
        linear_a = [_single_variables(row) for row in A]
        linear_b = [_single_variables(col) for col in B]
        out = np.empty((len(A), len(B)), dtype=object)
        for i, row in enumerate(A):
            la = linear_a[i]
            for j, col in enumerate(B):
                lb = linear_b[j]
                if la is not None and lb is not None:
                    acc = {(p, q) if p <= q else (q, p): ca * cb
                           for (p, ca), (q, cb) in zip(la, lb)}
                    if len(acc) == len(la):
                        out[i, j] = Poly(acc)
                        continue
                out[i, j] = Poly(_dot(row, col))
        return out


def _single_variables(terms_list):
    """[(variable, coefficient)] when every entry is one variable times a number, else None."""
    out = []
    for t in terms_list:
        if len(t) != 1:
            return None
        (m, c), = t.items()
        if len(m) != 1:
            return None
        out.append((m[0], c))
    return out


def _dot(row, col) -> dict:
    acc: dict = {}
    for ta, tb in zip(row, col):
        if len(ta) * len(tb) > MAX_PRODUCT:
            raise NotPolynomial("a product past the term budget")
        for ma, ca in ta.items():
            for mb, cb in tb.items():
                m = _merge(ma, mb)
                acc[m] = acc.get(m, 0) + ca * cb
    return {m: c for m, c in acc.items() if c}


def _terms_of(v, strict: bool = False):
    """The terms of an operand: a Poly's own, a number's, a SymEngine polynomial's (its
    symbols numbered as constants); NotImplemented for an array (NumPy broadcasts)."""
    if isinstance(v, Poly):
        return v.terms
    if isinstance(v, np.ndarray) and not strict:
        return NotImplemented
    n = _number(v)
    if n is not None:
        return {(): n} if n else {}
    if isinstance(v, Scalar):
        v = v.e
    if isinstance(v, se.Basic):
        return _from_symengine(v)
    raise NotPolynomial(f"an operand of type {type(v).__name__}")


def _from_symengine(e) -> dict:
    n = _number(e)
    if n is not None:
        return {(): n} if n else {}
    if isinstance(e, se.Symbol):
        return {(_CONTEXT.constant(e),): 1}
    if isinstance(e, se.Add):
        out: dict = {}
        for a in e.args:
            out = _add(out, _from_symengine(a))
        return out
    if isinstance(e, se.Mul):
        out = {(): 1}
        for a in e.args:
            out = _mul(out, _from_symengine(a))
        return out
    if isinstance(e, se.Pow):
        return (Poly(_from_symengine(e.args[0])) ** e.args[1]).terms
    raise NotPolynomial(f"the expression {str(e)[:60]}")


def _degree(terms: dict) -> int:
    """A bound on the degree in the inputs: the longest monomial (constants counted)."""
    return max(map(len, terms), default=0)


# ----- the check ---------------------------------------------------------------------------

def eligible(spec) -> bool:
    """Whether :func:`prove` is tried: SymEngine backend, no declared assumptions (an
    identity under them is the general path's), not a whole-tape obligation, and large."""
    return (spec.backend == "symengine" and spec.assumptions is None
            and spec.layered is None and not spec.abstract_sums
            and sum(math.prod(s) for _, s in spec.inputs) >= SPARSE_FROM)


def prove(spec) -> Result | None:
    """PROVED with every entry compared, or None: the general path decides."""
    global _CONTEXT
    t0 = time.perf_counter()
    sizes = [math.prod(s) for _, s in spec.inputs]
    n_inputs = sum(sizes)
    _CONTEXT = _Context(first=1 << 40)
    _HELD.clear()
    try:
        sides = _sides(spec, sizes)
        if sides is None:
            return None
        out_terms, reference, rule, terms = sides
        t_compare = time.perf_counter()
        if any(r != ref for r, ref in zip(rule, reference)):
            return None     # a wrong entry: the general path finds a certified witness
        compared = time.perf_counter() - t_compare
        degree = max(map(_degree, out_terms), default=0)
        if degree > MAX_DEGREE:
            return None
        t_alarm = time.perf_counter()
        agreed = _exact_alarm(spec, sizes, len(out_terms), degree)
    except Exception:     # noqa: BLE001 — anything not modelled: the general path decides
        return None
    finally:
        _CONTEXT = None
    if not agreed:
        # None: the code does not run on rationals. False: exact evaluation contradicts the
        # polynomials — a forward that changes between calls (a fresh random mask, a memo
        # by id()), or a bug here; either way the general path decides, on its own
        return None
    seconds = time.perf_counter() - t0
    return Result(name=spec.name, verdict=Verdict.PROVED, backend=spec.backend,
                  shapes=[list(s) for _, s in spec.inputs],
                  params={k: str(v) for k, v in spec.params.items()},
                  entries=n_inputs, checked=n_inputs, terms=terms, seconds=seconds,
                  method="sparse polynomial identity at every entry",
                  phases={"build": round(t_compare - t0 - 0, 4),
                          "normal form": round(compared, 4),
                          "alarm": round(time.perf_counter() - t_alarm, 4)})


def _variables(shape, first: int) -> np.ndarray:
    out = np.empty(shape, dtype=object)
    out.flat[:] = [Poly({(first + k,): 1}) for k in range(out.size)]
    return out.view(SymArray)   # the array type user code gets on the general path


def _as_terms_array(value, shape=None):
    arr = np.asarray(value, dtype=object)
    if shape is not None and arr.shape != tuple(shape):
        raise NotPolynomial("a shape the general path reports")
    return [dict(_terms_of(v, strict=True)) for v in arr.flat], arr.shape


def _sides(spec, sizes):
    starts = np.cumsum([0] + sizes[:-1]).tolist()
    n_inputs = sum(sizes)
    reads = spec.reads if spec.reads is not None else tuple(range(len(sizes)))

    def fresh():   # one array per argument, even for an input read twice (as wrap() does)
        arrays = [_variables(spec.inputs[r][1], starts[r]) for r in reads]
        _HELD.extend(arrays)
        return arrays

    out_terms, out_shape = _as_terms_array(spec.forward(*fresh()))   # copied at once
    if not out_terms or len(out_terms) > spec.max_entries * 16:
        return None
    g_first = n_inputs
    # (Jᵀḡ)_v = Σ_k ḡ_k ∂f_k/∂v, from the forward's polynomials
    reference = [dict() for _ in range(n_inputs)]
    for k, f in enumerate(out_terms):
        gk = g_first + k
        for m, c in f.items():
            if len(m) == 2 and m[0] != m[1]:     # the bulk: a product of two variables
                a, b = m
                if a < n_inputs:
                    key = (b, gk) if b < gk else (gk, b)
                    d = reference[a]
                    d[key] = d.get(key, 0) + c
                if b < n_inputs:
                    key = (a, gk) if a < gk else (gk, a)
                    d = reference[b]
                    d[key] = d.get(key, 0) + c
                continue
            previous = None
            for idx, v in enumerate(m):
                if v >= n_inputs or v == previous:
                    continue
                previous = v
                e = m.count(v)
                key = _merge(m[:idx] + m[idx + 1:], (gk,))
                d = reference[v]
                d[key] = d.get(key, 0) + c * e
    reference = [{m: c for m, c in d.items() if c} for d in reference]

    g = _variables(out_shape, g_first)
    _HELD.append(g)
    out_copy = np.empty(out_shape, dtype=object)
    out_copy.flat[:] = [Poly(dict(t)) for t in out_terms]
    out_copy = out_copy.view(SymArray)
    _HELD.append(out_copy)
    cots = spec.vjp(g, out_copy, *fresh())
    if isinstance(cots, np.ndarray) or not isinstance(cots, (tuple, list)) or \
            len(cots) != len(reads):
        return None
    rule = [dict() for _ in range(n_inputs)]
    for c, r in zip(cots, reads):
        if c is None:
            continue
        entries, _ = _as_terms_array(c, spec.inputs[r][1])
        for k, t in enumerate(entries):
            v = starts[r] + k
            rule[v] = _add(rule[v], t) if rule[v] else t
    terms = sum(map(len, rule)) + sum(map(len, reference))
    return out_terms, reference, rule, terms


# ----- the exact alarm -----------------------------------------------------------------------

class _Q:
    """An exact rational (python-flint ``fmpq``) for the alarm's evaluation: the same
    operand rules as :class:`Poly` (floats exactly, SymEngine numbers, symbolic constants
    at their random values), and no comparisons."""

    __slots__ = ("v",)

    def __init__(self, v):
        self.v = v

    def _binary(self, o, combine):
        o = _q_of(o)
        return NotImplemented if o is NotImplemented else _Q(combine(self.v, o))

    def __add__(self, o): return self._binary(o, lambda a, b: a + b)
    def __radd__(self, o): return self._binary(o, lambda a, b: b + a)
    def __sub__(self, o): return self._binary(o, lambda a, b: a - b)
    def __rsub__(self, o): return self._binary(o, lambda a, b: b - a)
    def __mul__(self, o): return self._binary(o, lambda a, b: a * b)
    def __rmul__(self, o): return self._binary(o, lambda a, b: b * a)
    def __truediv__(self, o): return self._binary(o, lambda a, b: a / b)
    def __rtruediv__(self, o): return self._binary(o, lambda a, b: b / a)

    def __neg__(self):
        return _Q(-self.v)

    def __pos__(self):
        return self

    def __pow__(self, n):
        k = _number(n)
        if k is None or k != int(k):
            raise NotPolynomial("a power that is not a whole number")
        return _Q(self.v ** int(k))

    def _refuse(self, *_):
        raise NotPolynomial("a comparison or a truth value")

    __bool__ = __lt__ = __le__ = __gt__ = __ge__ = __eq__ = __ne__ = _refuse
    __hash__ = None

    @staticmethod
    def symgrad_matmul(a, b):
        A = fmpq_mat(a.shape[0], a.shape[1], [_q_of(v, True) for v in a.flat])
        B = fmpq_mat(b.shape[0], b.shape[1], [_q_of(v, True) for v in b.flat])
        C = A * B
        out = np.empty((a.shape[0], b.shape[1]), dtype=object)
        out.flat[:] = [_Q(v) for v in C.entries()]
        return out


_ALARM_VALUES: dict = {}


def _q_of(v, strict: bool = False):
    if isinstance(v, _Q):
        return v.v
    if isinstance(v, np.ndarray) and not strict:
        return NotImplemented
    n = _number(v)
    if n is not None:
        return fmpq(n.numerator, n.denominator) if isinstance(n, Fraction) else fmpq(n)
    if isinstance(v, Scalar):
        v = v.e
    if isinstance(v, se.Basic):
        return _q_symengine(v)
    raise NotPolynomial(f"an operand of type {type(v).__name__}")


def _q_symengine(e):
    n = _number(e)
    if n is not None:
        return _q_of(n)
    if isinstance(e, se.Symbol):
        if e not in _ALARM_VALUES:
            _ALARM_VALUES[e] = fmpq(_ALARM_RNG.randint(-2 ** 20, 2 ** 20), 2 ** 10)
        return _ALARM_VALUES[e]
    if isinstance(e, se.Add):
        return sum((_q_symengine(a) for a in e.args), fmpq(0))
    if isinstance(e, se.Mul):
        p = fmpq(1)
        for a in e.args:
            p *= _q_symengine(a)
        return p
    if isinstance(e, se.Pow):
        k = _number(e.args[1])
        if k is None or k != int(k):
            raise NotPolynomial("a power that is not a whole number")
        return _q_symengine(e.args[0]) ** int(k)
    raise NotPolynomial(f"the expression {str(e)[:60]}")


_ALARM_RNG = random.Random(0)


def _derivative_weights(m: int) -> list:
    """w_t (t = −m … m) with Σ w_t p(t) = p′(0) for every polynomial p of degree ≤ 2m:
    the derivative at 0 of the Lagrange basis polynomials."""
    nodes = list(range(-m, m + 1))
    weights = []
    for t in nodes:
        others = [s for s in nodes if s != t]
        denominator = math.prod(t - s for s in others)
        # d/dx ∏_{s≠t} (x − s) at 0 = Σ_{r≠t} ∏_{s≠t,r} (−s)
        numerator = sum(math.prod(-s for s in others if s != r) for r in others)
        weights.append(Fraction(numerator, denominator))
    return weights


def _exact_alarm(spec, sizes, n_out: int, degree: int):
    """True when ⟨ḡ, Df(x)[ẋ]⟩ = ⟨vjp(ḡ), ẋ⟩ exactly at a random rational point; None when
    the code cannot be evaluated on exact rationals (the general path decides)."""
    global _ALARM_RNG
    rng = _ALARM_RNG = random.Random(spec.seed + 48611)
    _ALARM_VALUES.clear()
    reads = spec.reads if spec.reads is not None else tuple(range(len(sizes)))
    m = max(1, (degree + 1) // 2)
    weights = _derivative_weights(m)

    def draw(n):
        return [fmpq(rng.randint(-2 ** 20, 2 ** 20), 2 ** 10) for _ in range(n)]

    point = [draw(n) for n in sizes]
    direction = [[fmpq(rng.choice([-3, -2, -1, 1, 2, 3])) for _ in range(n)] for n in sizes]
    g_values = draw(n_out)

    def args_at(t):   # one fresh array per argument
        arrays = []
        for r in reads:
            a = np.empty(spec.inputs[r][1], dtype=object)
            a.flat[:] = [_Q(x + t * d) for x, d in zip(point[r], direction[r])]
            arrays.append(a.view(SymArray))
        _HELD.extend(arrays)
        return arrays

    def values(arr, n):
        arr = np.asarray(arr, dtype=object)
        if arr.size != n:
            raise NotPolynomial("a size the general path reports")
        return [_q_of(v, True) for v in arr.flat]

    try:
        lhs = fmpq(0)
        for t, w in zip(range(-m, m + 1), weights):
            if w == 0:
                continue
            f = values(spec.forward(*args_at(t)), n_out)
            lhs += fmpq(w.numerator, w.denominator) * sum(
                (gk * fk for gk, fk in zip(g_values, f)), fmpq(0))
        out = np.asarray(spec.forward(*args_at(0)), dtype=object)
        g = np.empty(out.shape, dtype=object)
        g.flat[:] = [_Q(v) for v in g_values]
        out_q = np.empty(out.shape, dtype=object)
        out_q.flat[:] = [_Q(_q_of(v, True)) for v in out.flat]
        g, out_q = g.view(SymArray), out_q.view(SymArray)
        _HELD.extend([g, out_q])
        cots = spec.vjp(g, out_q, *args_at(0))
        rhs = fmpq(0)
        for c, r in zip(cots, reads):
            if c is not None:
                rhs += sum((ck * dk for ck, dk in zip(values(c, sizes[r]), direction[r])),
                           fmpq(0))
    except Exception:     # noqa: BLE001 — not evaluable on rationals: no alarm, no fast proof
        return None
    return lhs == rhs

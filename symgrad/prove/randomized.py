"""Randomized evidence for an end-to-end identity too large to expand: a polynomial identity
test (Schwartz–Zippel) over a 127-bit prime field, and certified counterexamples in ball
arithmetic when it fails.

The identity of a tape is, for every input entry e,

    Σ_v ⟨s_v, ∂v/∂x_e⟩ = backprop(x, s)_e          (s: a seed for every tape value)

Both sides are run as straight-line programs on numbers, never expanded:

* the **engine** side runs the engine's backprop (the very rules) on the numbers;
* the **reference** side runs the forward on numbers that record how each was computed,
  and differentiates that record in reverse mode from the primitive derivatives only
  (d(a·b) = b·da + a·db, d exp(u) = exp(u)·du, …) — never from a rule under test.

**The model.** Mod p, every transcendental value is an *atom*: a fresh variable standing
for exp(u), tanh(u), erf(u), log(u), H(u), u^(1/q) or π, with the derivative it really has
written in atoms (d exp(u) = E·du, d u^(1/q) = (1/q)·W^(1−q)·du, …). An atom's value is
drawn at random, keyed by the value of its argument, so one function reads the same atom
wherever it is computed. Division by a value known to be positive wherever it is defined
(exp, positive constants, roots of positive values, and sums, products, powers and
inverses of them:
1 + e^(−x), Σ e^x, √(mean(x²) + ε)) is the field's: 1/u is u's inverse mod p (d(1/u) =
−(1/u)²·du), so (1/u)·u = 1 holds as it does in the reals — sigmoid's 1/(1 + e^(−x)) and
its derivative σ(1 − σ) agree. Any other 1/u is an atom (1/(uv) = (1/u)(1/v), 1/u^k =
(1/u)^k): u may be 0 on a whole region (a step's relu(x), √(x²) − x), where (1/u)·u = 1
fails. Both sides are then rational functions N/(L^e·D) in
independent variables (inputs, seeds, atoms): N and D integer polynomials whose degrees and
heights are tracked along the program (D the product of what was inverted exactly, L the
lcm of the rational constants' denominators). If the difference of the sides is 0 as a
rational function, substituting the true functions for the atoms gives the true identity
(every derivative above is the true one, and every value inverted exactly is positive, so
nowhere 0), so the identity holds wherever the side conditions do.
Independence only loses relations (exp(a)·exp(b) = exp(a+b), (√u)² = u): an identity that
needs one fails the test, and the verdict is then UNKNOWN, never VERIFIED. A value inverted
that is 0 at the point (mod p) makes the trial draw another prime and point.

**The error bound.** If the difference N/(L^e·D) is not 0, its numerator N ≢ 0, and the
test passes only if (i) p divides every coefficient of N — at most h/126 of the primes in
[2^126, 2^127) do, h a bound on N's log₂ L1 norm, and p is drawn at random among ~2^119.5
of them; (ii) N vanishes at the uniform random point: probability ≤ d/p (Schwartz–Zippel,
d a bound on N's degree); or (iii) two different atom arguments take the same value, ≤
A²·d'/p for A atoms (d' a bound on the degree of the numerator of their difference). The
sum is the result's ``error_bound``; trials repeat until it is ≤ 2^-64.

**Refutation.** A non-zero value mod p is not a refutation: the entries where it occurs are
evaluated again in ball arithmetic (python-flint's arb) at dyadic points, atoms by their
true values; a ball of reference − engine that excludes 0 is a certified counterexample.
"""
from __future__ import annotations

import contextlib
import gc
import math
import random
import time
from fractions import Fraction

import numpy as np
import symengine as se
from flint import arb, arb_mat, ctx as flint_ctx

from ..errors import InternalError, RuleError
from ..scalar import Relation, Scalar
from .result import Result, Verdict, Witness
from .witness import ball_power

#: the error bound a randomized verdict must reach
TARGET_LOG2_ERROR = -64
#: log₂ of the number of primes in [2^126, 2^127): 2^126 / (127·ln 2), rounded down
LOG2_PRIMES = 119.5
PRIME_BITS = 127


#: what a number of the mod-p run is known to be wherever it is defined (its sign, kept
#: through +, ×, powers and inverses; exp, even roots and positive constants start it)
UNSIGNED, NONNEGATIVE, POSITIVE = 0, 1, 2


class ModelError(Exception):
    """The program cannot be run in the model (an unsupported operation, a comparison,
    a value turned into a float): the randomized check gives UNKNOWN with this reason."""


class NoRoot(Exception):
    """A constant without a root mod this prime, or a value inverted that is 0 at this
    point: the trial draws another prime and point."""


class _Run:
    """The state of one evaluation: the field (or ball precision), the atoms, the record
    of the forward for reverse mode."""

    def __init__(self, p=None, rng=None, prec=None):
        self.p, self.rng, self.prec = p, rng, prec
        self.atoms: dict = {}
        self.consts: dict = {}
        self.record: list | None = None
        self.max_arg_degree = 0
        self.parameters: list = []      # (name, number): symbolic parameters as met

    def power(self, a, k: int):
        """a^k for an integer k (negative: through 1/a)."""
        if k == 0:
            return _lift(1)
        if k < 0:
            return self.power(self.inverse(a), -k)
        if k == 1:
            return a
        if k > 4096:
            raise ModelError(f"the power {k} (too large to run)")
        return self._power(a, k)

    def matmul(self, a, b):
        """a @ b for 2-D arrays: each entry one number whose parents are the n products'
        factors (recorded in the forward), its value from :meth:`_products`."""
        a = np.vectorize(_lift, otypes=[object])(a)
        b = np.vectorize(_lift, otypes=[object])(b)
        n = a.shape[1]
        if n == 0:
            return np.full((a.shape[0], b.shape[1]), self.zero, dtype=object)
        values, bounds = self._products(a, b)
        out = np.empty((a.shape[0], b.shape[1]), dtype=object)
        recording = self.record is not None
        for i in range(a.shape[0]):
            ar = a[i]
            for j in range(b.shape[1]):
                bc = b[:, j]
                up = tuple((ar[k], bc[k]) for k in range(n)) + \
                    tuple((bc[k], ar[k]) for k in range(n)) if recording else None
                out[i, j] = self._new(values[i][j], *bounds, up=up)
        return out

    def reverse(self, vals, seeds, forward, inputs):
        """Reverse mode over the recorded forward, from the seed on every tape value: the
        adjoint of every input entry, as numbers of the run. Adjoints are kept in the run's
        own form (:meth:`_adjoint`, :meth:`_plus`, :meth:`_backward`, :meth:`_number`)."""
        for value, seed in zip(vals, seeds):
            for n, s in zip(np.asarray(value, dtype=object).flat, seed.flat):
                if isinstance(n, Num):
                    n.adj = self._plus(n.adj, self._adjoint(s))
        self._backward(forward)
        out = []
        for leaf in inputs:
            ref = np.empty(leaf.shape, dtype=object)
            for index in np.ndindex(*leaf.shape):
                a = leaf[index].adj
                ref[index] = self.zero if a is None else self._number(a)
            out.append(ref)
        return out


_RUN: _Run | None = None


@contextlib.contextmanager
def _running(run: _Run):
    """The arithmetic of ``run`` for the numbers' operators while inside."""
    global _RUN
    _RUN = run
    try:
        yield run
    finally:
        _RUN = None


def _lift(x):
    """A number of the current run from an int, Fraction, float or SymEngine constant."""
    if isinstance(x, Num):
        return x
    if isinstance(x, Scalar):   # a symbolic parameter's entry, as user code gets it
        x = x.e
    cache = _RUN.consts
    key = (type(x), x) if not isinstance(x, np.ndarray) else None
    hit = cache.get(key)
    if hit is not None:
        return hit
    if isinstance(x, (bool, np.bool_)):
        out = _RUN.num_const(Fraction(int(x)))
    elif isinstance(x, (int, np.integer)):
        out = _RUN.num_const(Fraction(int(x)))
    elif isinstance(x, (float, np.floating)):
        if not math.isfinite(float(x)):
            raise ModelError(f"the non-finite constant {x!r}")
        out = _RUN.num_const(Fraction(float(x)))
    elif isinstance(x, Fraction):
        out = _RUN.num_const(x)
    elif isinstance(x, se.Basic):
        out = _from_symengine(x)
    else:
        raise ModelError(f"a value of type {type(x).__name__} met a number")
    cache[key] = out
    return out


def _drawn(key):
    """The run's number for a symbolic parameter or a transcendental constant ``key[1]``:
    drawn once per run, listed among the witness's parameters."""
    hit = _RUN.atoms.get(key)
    if hit is None:
        hit = _RUN.atoms[key] = _RUN.parameter()
        _RUN.parameters.append((str(key[1]), hit))
    return hit


def _from_symengine(e):
    """A SymEngine constant (2/π, √2, 0.044715) or a parameter's symbol (a fixed weight
    Wo[0,0], a symbolic scale c: one variable each, not an input) as a number of the run."""
    if isinstance(e, se.Symbol):
        return _drawn(("symbol", e))
    if isinstance(e, se.Integer):
        return _RUN.num_const(Fraction(int(e)))
    if isinstance(e, se.Rational):
        return _RUN.num_const(Fraction(int(e.get_num_den()[0]), int(e.get_num_den()[1])))
    if isinstance(e, se.RealDouble):
        return _RUN.num_const(Fraction(float(e)))
    if e == se.pi:
        return _RUN.pi()
    if e == se.E:
        return _RUN.num_const(Fraction(1)).exp()
    if isinstance(e, se.Add):
        out = _lift(0)
        for a in e.args:
            out = out + _from_symengine(a)
        return out
    if isinstance(e, se.Mul):
        out = _lift(1)
        for a in e.args:
            out = out * _from_symengine(a)
        return out
    if isinstance(e, se.Pow):
        base, expo = e.args
        if base == se.E:
            return _from_symengine(expo).exp()
        b = _from_symengine(base)
        if isinstance(expo, (se.Integer, se.Rational)):
            n, d = (int(v) for v in expo.get_num_den()) if isinstance(expo, se.Rational) \
                else (int(expo), 1)
            return b ** Fraction(n, d)
    if isinstance(e, se.Function) and not e.free_symbols:
        # a transcendental constant (RoPE's cos(1), sin(1)): an atom of its own, one random
        # value per run as for a symbolic parameter — an identity that holds for every value
        # of it holds for the real one; one that needs a relation between such constants
        # (cos² + sin² = 1) is not VERIFIED, and a REFUTED still needs an exact witness
        return _drawn(("constant", e))
    raise ModelError(f"the constant {e} is not supported in the numeric run")


class Num:
    """A number that records how it was computed (for reverse mode), and what the
    elementwise functions of :mod:`symgrad.fn` do to it (``symgrad_apply``)."""

    __slots__ = ("v", "up", "adj", "d", "h", "c", "e", "q", "sg", "base")

    # arithmetic dispatches to the run's field; subclasses implement _make and the atoms.
    # An array operand is NumPy's to broadcast (number · array is an array)
    def __add__(self, other):
        if isinstance(other, np.ndarray):
            return NotImplemented
        return _RUN.add(self, _lift(other))

    __radd__ = __add__

    def __sub__(self, other):
        if isinstance(other, np.ndarray):
            return NotImplemented
        return _RUN.add(self, -_lift(other))

    def __rsub__(self, other):
        return _RUN.add(_lift(other), -self)

    def __neg__(self):
        return _RUN.mul(self, _RUN.minus_one)

    def __pos__(self):
        return self

    def __mul__(self, other):
        if isinstance(other, np.ndarray):
            return NotImplemented
        return _RUN.mul(self, _lift(other))

    __rmul__ = __mul__

    def __truediv__(self, other):
        if isinstance(other, np.ndarray):
            return NotImplemented
        return _RUN.mul(self, _RUN.inverse(_lift(other)))

    def __rtruediv__(self, other):
        return _RUN.mul(_lift(other), _RUN.inverse(self))

    def __pow__(self, k):
        if isinstance(k, Num):
            raise ModelError("a power with a computed exponent")
        if isinstance(k, se.Basic):
            if not isinstance(k, (se.Integer, se.Rational)):
                raise ModelError(f"the exponent {k}")
            n, d = (int(v) for v in k.get_num_den()) if isinstance(k, se.Rational) \
                else (int(k), 1)
            k = Fraction(n, d)
        elif isinstance(k, (float, np.floating)):
            k = Fraction(float(k))
        k = Fraction(k)
        if k.denominator == 1:
            return _RUN.power(self, int(k))
        return _RUN.power(_RUN.root(self, k.denominator), k.numerator)

    def __rpow__(self, base):
        if isinstance(base, se.Basic) and base == se.E:
            return self.exp()
        raise ModelError("a power with a computed exponent")

    def _no(self, *args):
        raise ModelError("float() or a truth value of a computed value (control flow on "
                         "values cannot be run in the model)")

    __float__ = __bool__ = __int__ = _no

    # comparisons give what they give on symbols: a Relation, for symbolic.fn.where and
    # indicator (its truth value is an error, as in the exact checks)
    def __gt__(self, other):
        # x > 0 compares x itself: H(x), not H(x − 0), so that H(u·H(u)) = H(u) is seen
        return Relation(self if _zero_literal(other) else self - other, ">")

    def __ge__(self, other):
        return Relation(self if _zero_literal(other) else self - other, ">=")

    def __lt__(self, other):
        return Relation(_lift(other) - self, ">")

    def __le__(self, other):
        return Relation(_lift(other) - self, ">=")

    def __eq__(self, other):
        if self is other:
            return True
        raise ModelError("an equality test on computed values (control flow on values "
                         "cannot be run in the model)")

    def __ne__(self, other):
        return not self.__eq__(other)

    __hash__ = object.__hash__

    @staticmethod
    def symgrad_matmul(a, b):
        """a @ b for 2-D arrays holding numbers of a run: one recorded number per entry."""
        return _RUN.matmul(a, b)

    # the elementwise functions
    def exp(self):
        return _RUN.atom("exp", self)

    def symgrad_apply(self, name: str):
        fun = _FUNCTIONS.get(name)
        if fun is None:
            raise ModelError(f"the function {name} is not supported in the numeric run")
        return fun(self)


def _zero_literal(x) -> bool:
    """Whether ``x`` is a literal zero (not a computed value)."""
    if isinstance(x, Num) or isinstance(x, np.ndarray):
        return False
    try:
        return x == 0
    except (TypeError, ValueError):
        return False


def _gelu_tanh(x):
    from ..fn import GELU_TANH_C
    c = _lift(GELU_TANH_C)
    k = _lift(se.sqrt(2 / se.pi))     # as symgrad.fn writes it
    return x * (1 + _RUN.atom("tanh", k * (x + c * x ** 3))) / 2


def _gelu_erf(x):
    return x * (1 + _RUN.atom("erf", x / _lift(se.sqrt(2)))) / 2


_FUNCTIONS = {
    "exp": lambda x: _RUN.atom("exp", x),
    "log": lambda x: _RUN.atom("log", x),
    "tanh": lambda x: _RUN.atom("tanh", x),
    "erf": lambda x: _RUN.atom("erf", x),
    "erfc": lambda x: 1 - _RUN.atom("erf", x),
    "sqrt": lambda x: x ** Fraction(1, 2),
    "step": lambda x: _RUN.atom("H", x),
    "sinh": lambda x: (_RUN.atom("exp", x) - _RUN.atom("exp", -x)) / 2,
    "cosh": lambda x: (_RUN.atom("exp", x) + _RUN.atom("exp", -x)) / 2,
    "sin": lambda x: _RUN.atom("sin", x),
    "cos": lambda x: _RUN.atom("cos", x),
    "atan": lambda x: _RUN.atom("atan", x),
    "gelu_tanh": _gelu_tanh,
    "gelu_erf": _gelu_erf,
}


def _record(n: Num, up):
    n.up = up
    n.adj = None
    n.base = None
    if up is not None and _RUN.record is not None:
        _RUN.record.append(n)
    return n


# ----- mod p -----------------------------------------------------------------------------------

class Denominators:
    """The denominators D of a run's numbers, interned: a key stands for a product Π f^m of
    factors f — each the numerator of a value that was inverted, with bounds (degree, h, c)
    of it (log₂ L1 ≤ h + c·log₂ L) — and key 0 for D = 1. A sum's denominator is the lcm of
    its terms' (softmax's entries share one 1/Σ), a product's the product."""

    def __init__(self):
        self.factors: list = []          # factor → (degree, h, c)
        self.keys: list = [()]           # key → ((factor, multiplicity), …), sorted
        self.stats: list = [(0, 0.0, 0)]   # key → (degree, h, c) of its D
        self._index = {(): 0}
        self._memo: dict = {}

    def _key(self, items: dict) -> int:
        t = tuple(sorted((f, m) for f, m in items.items() if m))
        k = self._index.get(t)
        if k is None:
            k = self._index[t] = len(self.keys)
            self.keys.append(t)
            self.stats.append(self._of(t))
        return k

    def _of(self, t) -> tuple:
        d, h, c = 0, 0.0, 0
        for f, m in t:
            fd, fh, fc = self.factors[f]
            d, h, c = d + m * fd, h + m * fh, c + m * fc
        return d, h, c

    def factor(self, d, h, c) -> int:
        """The key of a new factor alone (a value just inverted)."""
        self.factors.append((d, h, c))
        return self._key({len(self.factors) - 1: 1})

    def lcm(self, a: int, b: int) -> int:
        if a == b or b == 0:
            return a
        if a == 0:
            return b
        memo = ("lcm", a, b) if a < b else ("lcm", b, a)
        k = self._memo.get(memo)
        if k is None:
            items = dict(self.keys[a])
            for f, m in self.keys[b]:
                items[f] = max(items.get(f, 0), m)
            k = self._memo[memo] = self._key(items)
        return k

    def times(self, a: int, b: int, k: int = 1) -> int:
        """The key of D_a·D_b^k."""
        if b == 0 or k == 0:
            return a
        memo = ("times", a, b, k)
        out = self._memo.get(memo)
        if out is None:
            items = dict(self.keys[a])
            for f, m in self.keys[b]:
                items[f] = items.get(f, 0) + k * m
            out = self._memo[memo] = self._key(items)
        return out

    def over(self, a: int, b: int) -> tuple:
        """(degree, h, c) of D_a / D_b, D_b a divisor of D_a."""
        if a == b:
            return 0, 0.0, 0
        if b == 0:
            return self.stats[a]
        memo = ("over", a, b)
        out = self._memo.get(memo)
        if out is None:
            items = dict(self.keys[a])
            for f, m in self.keys[b]:
                items[f] -= m
            out = self._memo[memo] = self._of(tuple(items.items()))
        return out


class ModRun(_Run):
    """Arithmetic mod p, with bounds for every number n = N/(L^e·D) (L the lcm of the
    denominators of the run's rational constants, known at the end; N an integer polynomial
    and D one of :class:`Denominators`, key ``q``): a degree bound ``d`` of N, the exponent
    ``e``, and log₂ L1(N) ≤ h + c·log₂ L."""

    def __init__(self, p: int, rng: random.Random):
        super().__init__(p=p, rng=rng)
        # keyed by id(), each value holds its number: an id is never reused during the run
        self.recorded: dict = {}     # id → a number recorded in the forward
        self.roots: dict = {}        # id → (number, its radicand Fraction, q) of a constant root
        self.fractions: dict = {}    # id → (number, Fraction) of a rational constant
        self.prime_roots: dict = {}  # prime → its chosen square root mod p
        self.dens = Denominators()
        self.inverted: dict = {}     # id → (the value, its factor key, its inverse mod p)
        # the atom arguments' largest h, c + e, and their denominators' degree, h and c
        # (their largest d: max_arg_degree)
        self.max_arg = [0.0, 0, 0, 0.0, 0]
        self.steps: dict = {}           # id → a step atom H(u)
        self.denominators: set = set()
        self.field_degree = 1        # [K:Q] of the constant roots' field, bounded
        self.minus_one = self.num_const(Fraction(-1))
        self.zero = self.num_const(Fraction(0))

    def _new(self, v, d, h, c, e, q=0, up=None):
        n = Num.__new__(Num)
        n.v, n.d, n.h, n.c, n.e, n.q, n.sg = v, d, h, c, e, q, UNSIGNED
        return _record(n, up)

    def num_const(self, f: Fraction):
        if f.denominator % self.p == 0:
            raise ModelError("a constant's denominator is divisible by the prime")
        v = f.numerator * pow(f.denominator, -1, self.p) % self.p
        whole = f.denominator == 1
        if not whole:
            self.denominators.add(f.denominator)
        n = self._new(v, 0, math.log2(abs(f.numerator) + 1), 0 if whole else 1,
                      0 if whole else 1)
        n.sg = POSITIVE if f > 0 else NONNEGATIVE if f == 0 else UNSIGNED
        self.fractions[id(n)] = (n, f)
        return n

    def variable(self):
        return self._new(self.rng.randrange(self.p), 1, 0.0, 0, 0)

    parameter = variable

    def _sum(self, a, b) -> tuple:
        """The bounds (d, h, c, e, q) of x + y from x's and y's: N_x·(D/D_x)·L^(e−e_x) +
        N_y·(D/D_y)·L^(e−e_y) over L^e·D, e = max(e_x, e_y), D = lcm(D_x, D_y)."""
        ad, ah, ac, ae, aq = a
        bd, bh, bc, be, bq = b
        e = max(ae, be)
        if aq == bq:
            return max(ad, bd), max(ah, bh) + 1, max(ac + e - ae, bc + e - be), e, aq
        q = self.dens.lcm(aq, bq)
        (xd, xh, xc), (yd, yh, yc) = self.dens.over(q, aq), self.dens.over(q, bq)
        return (max(ad + xd, bd + yd), max(ah + xh, bh + yh) + 1,
                max(ac + xc + e - ae, bc + yc + e - be), e, q)

    def add(self, a, b):
        n = self._new((a.v + b.v) % self.p, *self._sum((a.d, a.h, a.c, a.e, a.q),
                                                       (b.d, b.h, b.c, b.e, b.q)),
                      up=((a, None), (b, None)))
        n.sg = UNSIGNED if UNSIGNED in (a.sg, b.sg) else max(a.sg, b.sg)
        return n

    def mul(self, a, b):
        n = self._new(a.v * b.v % self.p, a.d + b.d, a.h + b.h, a.c + b.c, a.e + b.e,
                      self.dens.times(a.q, b.q), up=((a, b), (b, a)))
        n.base = ("mul", a, b)
        n.sg = NONNEGATIVE if a is b and a.sg < POSITIVE else min(a.sg, b.sg)
        return n

    # adjoints as lists [v, d, h, c, e, q]: no number objects for millions of edges
    def _adjoint(self, s):
        return [s.v, s.d, s.h, s.c, s.e, s.q]

    def _plus(self, old, new):
        if old is None:
            return list(new)
        return [(old[0] + new[0]) % self.p, *self._sum(old[1:], new[1:])]

    def _number(self, a):
        return self._new(*a)

    def _backward(self, forward):
        p, plus, times = self.p, self._plus, self.dens.times
        for n in reversed(forward):
            adj = n.adj
            if adj is None:
                continue
            av, ad, ah, ac, ae, aq = adj
            for parent, q in n.up:
                if q is None:
                    parent.adj = plus(parent.adj, adj)
                else:
                    parent.adj = plus(parent.adj, [av * q.v % p, ad + q.d, ah + q.h, ac + q.c,
                                                   ae + q.e, times(aq, q.q)])

    def log2_height(self, n) -> float:
        """log₂ of an upper bound of the L1 norm of ``n``'s integer numerator."""
        ell = sum(math.log2(b) for b in self.denominators)
        return n.h + n.c * ell

    def _products(self, a, b):
        """The entries of a @ b mod p, and bounds for all of them from the largest of the
        operands' (each a sum of n products N_k/(L^(e_k)·D_k) over L^e·D, D the lcm of
        every entry's of a times that of b's: each N_k times D/D_k, of degree ≤ D's)."""
        n = a.shape[1]
        d = max(x.d for x in a.flat) + max(x.d for x in b.flat)
        ea, eb = max(x.e for x in a.flat), max(x.e for x in b.flat)
        c = max(x.c + ea - x.e for x in a.flat) + max(x.c + eb - x.e for x in b.flat)
        h = max(x.h for x in a.flat) + max(x.h for x in b.flat) + math.log2(n)
        dens, qa, qb = self.dens, 0, 0
        for x in a.flat:
            qa = dens.lcm(qa, x.q)
        for x in b.flat:
            qb = dens.lcm(qb, x.q)
        q = dens.times(qa, qb)
        qd, qh, qc = dens.stats[q]
        p = self.p
        rows = [[x.v for x in row] for row in a]
        cols = [[x.v for x in col] for col in b.T]
        values = [[sum(map(int.__mul__, row, col)) % p for col in cols] for row in rows]
        return values, (d + qd, h + qh, c + qc, ea + eb, q)

    def _power(self, a, k: int):
        p = self.p
        partial = None
        if self.record is not None:   # k·a^(k−1), its bounds those of k·a^(k-1)
            k_ = _lift(k)
            partial = self._new(k % p * pow(a.v, k - 1, p) % p, (k - 1) * a.d,
                                (k - 1) * a.h + k_.h, (k - 1) * a.c, (k - 1) * a.e,
                                self.dens.times(0, a.q, k - 1))
        n = self._new(pow(a.v, k, p), k * a.d, k * a.h, k * a.c, k * a.e,
                      self.dens.times(0, a.q, k),
                      up=((a, partial),) if partial is not None else None)
        n.sg = POSITIVE if a.sg == POSITIVE else NONNEGATIVE if k % 2 == 0 else a.sg
        n.base = ("pow", a, k)
        return n

    def inverse(self, a):
        f = self.fractions.get(id(a))
        if f is not None:   # a rational constant: its exact inverse
            if f[1] == 0:
                raise ModelError("a division by the constant 0")
            return self.num_const(1 / f[1])
        if id(a) in self.roots:   # an algebraic constant: its inverse mod p
            if a.v == 0:
                raise ModelError("a constant root that is 0 mod p")
            return self._new(pow(a.v, -1, self.p), 0, a.h + 1, a.c, a.e)
        if a.sg != POSITIVE:
            # not known to be positive: it may be 0 on a whole region (a step's, √(x²) − x),
            # where (1/u)·u = 1 fails — an independent atom, as every transcendental value.
            # 1/u^k = (1/u)^k and 1/(u·v) = (1/u)·(1/v): one atom per factor, however a
            # rule groups them (g/(2·out), −g·out² for 1/x)
            if a.base is not None and a.base[0] == "pow":
                return self.power(self.inverse(a.base[1]), a.base[2])
            if a.base is not None:
                return self.mul(self.inverse(a.base[1]), self.inverse(a.base[2]))
            return self.atom("inv", a)
        if a.v == 0:
            raise NoRoot("a value inverted is 0 at this point")
        # positive wherever it is defined: 1/(N/(L^e·D)) = L^e·D/N, the numerator and the
        # denominator change places (one factor per value, however often it is inverted)
        known = self.inverted.get(id(a))
        if known is None:
            known = self.inverted[id(a)] = (a, self.dens.factor(a.d, a.h, a.c),
                                            pow(a.v, -1, self.p))
        recording, self.record = self.record, None
        qd, qh, qc = self.dens.stats[a.q]
        n = self._new(known[2], qd, qh, qc + a.e, 0, known[1])
        n.sg = POSITIVE
        partial = -(n * n) if recording is not None else None
        self.record = recording
        return _record(n, ((a, partial),) if partial is not None else None)

    def root(self, a, q: int):
        return self.atom(("root", q), a)

    def pi(self):
        """π is a variable, drawn as a square r² with √π = r, so the roots of the
        constants a rule writes (√(2/π), √(2π)) keep their relations (1/π = 1/r², exactly,
        and √(1/π) = 1/r)."""
        key = ("pi",)
        hit = self.atoms.get(key)
        if hit is None:
            r = self.variable()
            if r.v == 0:
                raise NoRoot("π drawn as 0")
            hit = self.atoms[key] = self._new(r.v * r.v % self.p, 2, 0.0, 0, 0)
            r.sg = hit.sg = POSITIVE    # r stands for √π
            f = self.dens.factor(1, 0.0, 0)   # 1/r: the numerator 1 over the factor r
            w = self._new(pow(r.v, -1, self.p), 0, 0.0, 0, 0, f)
            w2 = self._new(pow(hit.v, -1, self.p), 0, 0.0, 0, 0, self.dens.times(f, f))
            w.sg = w2.sg = POSITIVE
            self.atoms[(("root", 2), hit.v)] = r
            self.atoms[(("root", 2), w2.v)] = w
            for n in (hit, r, w, w2):
                self.recorded[id(n)] = n
        return hit

    def _constant_root(self, u, q: int):
        """√c of a positive rational constant c, from one chosen square root per prime
        (√8 = 2√2, √6 = √2·√3 hold exactly mod p: a ring homomorphism from Q(√p₁, …)); a
        prime p where some √pᵢ does not exist is not used (the trial draws another). Other
        roots, and roots of negative constants (complex), are not modelled."""
        from sympy import factorint
        from sympy.ntheory.residue_ntheory import sqrt_mod
        f = self.fractions[id(u)][1]
        if q != 2 or f <= 0:
            raise ModelError(f"the constant {f}^(1/{q}) (only square roots of positive "
                             f"rationals are modelled)")
        whole = f.numerator * f.denominator          # √(a/b) = √(a·b)/b
        value, outside, size = 1, Fraction(1, f.denominator), 0.0
        for prime, power in factorint(whole).items():
            outside *= prime ** (power // 2)
            if power % 2:
                r = self.prime_roots.get(prime)
                if r is None:
                    r = sqrt_mod(prime % self.p, self.p)
                    if r is None:
                        raise NoRoot(f"{prime} has no square root mod p")
                    self.prime_roots[prime] = r
                    self.field_degree *= 2
                value = value * r % self.p
                size += math.log2(prime) / 2
        value = value * outside.numerator * pow(outside.denominator, -1, self.p) % self.p
        if outside.denominator > 1:
            self.denominators.add(outside.denominator)
        n = self._new(value, 0, math.log2(outside.numerator + 1) + size + 1,
                      1 if outside.denominator > 1 else 0, 1 if outside.denominator > 1 else 0)
        self.roots[id(n)] = (n, f, q)
        n.sg = POSITIVE
        return n

    def atom(self, kind, u):
        """The atom ``kind`` of ``u``: one variable per argument value. Met again while the
        forward is recorded, an atom first made elsewhere (in a rule, in a partial) is
        recorded anew over this argument, so reverse mode reaches the inputs through it."""
        if kind == "H" and u.base is not None and u.base[0] == "mul":
            # H(a·H(b)) = H(a)·H(b) exactly (H(0) = 0): ReLU's backward masked by its output
            a, b = u.base[1], u.base[2]
            if id(b) in self.steps or id(a) in self.steps:
                a, b = (a, b) if id(b) in self.steps else (b, a)
                h = self.atom("H", a)
                return b if h is b else self.mul(h, b)    # H(u·H(u)) = H(u)
        key = (kind, u.v)
        if isinstance(kind, tuple) and kind[0] == "root" and key not in self.atoms and \
                id(u) in self.fractions:
            self.atoms[key] = self._constant_root(u, kind[1])
        hit = self.atoms.get(key)
        if hit is not None and (self.record is None or kind == "H" or hit.d == 0 or
                                id(hit) in self.recorded):
            return hit
        if isinstance(kind, tuple) and kind[1] > 64:
            raise ModelError(f"a root of order {kind[1]} (an exponent such as 0.3 is the "
                             f"rational of its double)")
        # every argument, met first or again: two that collide are any two of them
        self.max_arg_degree = max(self.max_arg_degree, u.d)
        m, (qd, qh, qc) = self.max_arg, self.dens.stats[u.q]
        self.max_arg = [max(m[0], u.h), max(m[1], u.c + u.e), max(m[2], qd),
                        max(m[3], qh), max(m[4], qc)]
        recording, self.record = self.record, None
        n = self.variable() if hit is None else self._new(hit.v, 1, 0.0, 0, 0)
        # exp is positive, and a root of a positive radicand (√(var + ε)); a root of one
        # that may be 0 on a region (√relu(x)) is not; a step is 0 or 1
        n.sg = POSITIVE if kind == "exp" or (isinstance(kind, tuple) and u.sg == POSITIVE) \
            else NONNEGATIVE if kind == "H" else UNSIGNED
        if hit is None:
            self.atoms[key] = n     # before the partial: exp's partial is the atom itself
        partial = None if kind == "H" else _partial(kind, n, u)
        self.record = recording
        if recording is not None:
            self.atoms[key] = n
            self.recorded[id(n)] = n
        if kind == "H":
            self.steps[id(n)] = n
        return _record(n, ((u, partial),) if partial is not None else None)


def _partial(kind, n, u):
    """d atom / d u, in atoms (the true derivative once atoms are the true functions)."""
    if kind == "exp":
        return n
    if kind == "inv":
        return -(n * n)
    if kind == "log":
        return _RUN.inverse(u)
    if kind == "tanh":
        return 1 - n * n
    if kind == "erf":
        return 2 * _RUN.inverse(_RUN.root(_RUN.pi(), 2)) * _RUN.atom("exp", -(u * u))
    if kind == "sin":
        return _RUN.atom("cos", u)
    if kind == "cos":
        return -_RUN.atom("sin", u)
    if kind == "atan":
        return _RUN.inverse(1 + u * u)
    if isinstance(kind, tuple) and kind[0] == "root":
        q = kind[1]
        return _lift(Fraction(1, q)) * _RUN.power(_RUN.inverse(n), q - 1)
    raise InternalError(f"no derivative for the atom {kind}")


# ----- balls -----------------------------------------------------------------------------------

class BallRun(_Run):
    """Ball arithmetic (arb): every atom its true value; a ball that cannot be decided
    (a denominator or radicand whose ball holds 0, a step at its jump) stops the run."""

    def __init__(self, prec: int, rng: random.Random):
        super().__init__(prec=prec, rng=rng)
        self.minus_one = self._new(arb(-1))
        self.zero = self._new(arb(0))

    def _new(self, v, *bounds, up=None):   # balls carry no bounds
        n = Num.__new__(Num)
        n.v, n.d, n.h, n.c, n.e, n.q, n.sg = v, 0, 0.0, 0, 0, 0, UNSIGNED
        return _record(n, up)

    def num_const(self, f: Fraction):
        return self._new(arb(f.numerator) / f.denominator)

    def parameter(self):
        return self._new(arb(self.rng.randrange(-24, 25)) / 16)

    def add(self, a, b):
        return self._new(a.v + b.v, up=((a, None), (b, None)))

    def mul(self, a, b):
        return self._new(a.v * b.v, up=((a, b), (b, a)))

    def _power(self, a, k: int):
        partial = self._new(k * ball_power(a.v, k - 1)) if self.record is not None else None
        return self._new(ball_power(a.v, k), up=((a, partial),) if partial is not None else None)

    def _products(self, a, b):
        """The entries of a @ b by python-flint's ball matrix product."""
        product = arb_mat([[x.v for x in row] for row in a]) * \
            arb_mat([[x.v for x in row] for row in b])
        return [[product[i, j] for j in range(b.shape[1])] for i in range(a.shape[0])], ()

    # adjoints as arb balls
    def _adjoint(self, s):
        return s.v

    def _plus(self, old, new):
        return new if old is None else old + new

    def _number(self, a):
        return self._new(a)

    def _backward(self, forward):
        for n in reversed(forward):
            adj = n.adj
            if adj is None:
                continue
            for parent, q in n.up:
                contrib = adj if q is None else adj * q.v
                parent.adj = contrib if parent.adj is None else parent.adj + contrib

    def inverse(self, a):
        if 0 in a.v:
            raise ModelError("a denominator whose ball holds 0")
        n = self._new(1 / a.v)
        recording, self.record = self.record, None
        partial = -(n * n)
        self.record = recording
        return _record(n, ((a, partial),))

    def root(self, a, q: int):
        if not a.v > 0:
            raise ModelError("a radicand whose ball is not positive")
        return self.atom(("root", q), a)

    def pi(self):
        return self._new(arb.pi())

    def atom(self, kind, u):
        v = u.v
        if kind == "exp":
            value = v.exp()
        elif kind == "log":
            if not v > 0:
                raise ModelError("a logarithm of a ball that is not positive")
            value = v.log()
        elif kind == "tanh":
            value = v.tanh()
        elif kind == "erf":
            value = v.erf()
        elif kind == "inv":
            return self.inverse(u)
        elif kind == "H":
            if v.is_exact() and v == 0 and self.record is None:
                value = arb(0)    # the engine's own H(0) = 0, as symgrad.fn defines it
            elif 0 in v:
                raise ModelError("a step at its jump")   # the forward must not sit there
            else:
                value = arb(1) if v > 0 else arb(0)
        elif kind == "sin":
            value = v.sin()
        elif kind == "cos":
            value = v.cos()
        elif kind == "atan":
            value = v.atan()
        elif isinstance(kind, tuple) and kind[0] == "root":
            value = v.root(kind[1])
        else:
            raise InternalError(f"no value for the atom {kind}")
        n = self._new(value)
        if kind == "H" or self.record is None:
            # not recorded (a partial's own atoms, the engine's): no partial is needed —
            # computing one would recurse (sin's partial is cos, whose partial is sin)
            return _record(n, None)
        recording, self.record = self.record, None
        partial = _partial(kind, n, u)
        self.record = recording
        return _record(n, ((u, partial),))


# ----- one run of both sides -----------------------------------------------------------------

def _leaves(run, shape, values=None):
    out = np.empty(shape, dtype=object)
    for k, index in enumerate(np.ndindex(*shape)):
        out[index] = run.variable() if values is None else run._new(values[k])
    return out


def run_sides(graph, backprop, run: _Run, inputs, seeds):
    """(reference, engine, tape values): the cotangents of every input as object arrays of
    numbers, both computed in ``run`` from input leaves ``inputs`` and seed leaves
    ``seeds``. The engine gets copies of the tape values and seeds (what it writes into
    them is not what the reference reads); its cotangents must be one per input, each of
    the input's shape (None: zero)."""
    from ..graph import Graph
    collecting = gc.isenabled()
    gc.disable()   # millions of small acyclic objects: the cycle collector only slows it
    try:
        with _running(run):
            return _sides(graph, backprop or Graph.backprop, run, inputs, seeds)
    except (NoRoot, RuleError):
        raise
    except (ArithmeticError, TypeError, ValueError, IndexError) as exc:
        raise ModelError(f"{type(exc).__name__}: {exc}") from None
    finally:
        run.record = None
        if collecting:
            gc.enable()


def _sides(graph, backprop, run, inputs, seeds):
    run.record = []
    vals = graph.eval([np.array(x, dtype=object) for x in inputs])
    forward = run.record
    run.record = None
    copies = [np.array(v, dtype=object) for v in vals]
    engine = backprop(graph, copies, {i: np.array(s, dtype=object)
                                      for i, s in enumerate(seeds)})
    engine = _cotangents(graph, engine)
    reference = run.reverse(vals, seeds, forward, inputs)
    return reference, engine, vals


def _cotangents(graph, engine) -> list:
    """The engine's cotangents of the inputs, checked: one per input, of its shape."""
    try:
        engine = list(engine)
    except TypeError:
        raise RuleError(f"the backprop returned {type(engine).__name__}, not a list of "
                        f"cotangents") from None
    if len(engine) < len(graph.inputs):
        raise RuleError(f"the backprop returned {len(engine)} cotangent(s); the graph has "
                        f"{len(graph.inputs)} input(s) "
                        f"({', '.join(n for n, _ in graph.inputs)})")
    out = []
    for (name, shape), c in zip(graph.inputs, engine):
        if c is None:
            c = np.zeros(shape, dtype=object)
        c = np.asarray(c, dtype=object)
        if c.shape != tuple(shape):
            raise RuleError(f"the backprop's cotangent of {name} has shape {c.shape}, "
                            f"the input has {tuple(shape)}")
        out.append(c)
    return out


def _as_num(run, x):
    with _running(run):
        return _lift(x)


# ----- the test --------------------------------------------------------------------------------

def _prime(rng: random.Random) -> int:
    from sympy import isprime
    while True:
        p = rng.randrange(1 << (PRIME_BITS - 1), 1 << PRIME_BITS) | 1
        if isprime(p):
            return p


def _log2_sum(*logs) -> float:
    top = max(logs)
    return top + math.log2(sum(2 ** (v - top) for v in logs))


def identity_test(graph, backprop=None, seed: int | None = None):
    """One trial of the test: (failing entries [(input index, index)], log₂ error bound,
    degree bound, seconds). Raises ModelError when the program cannot run in the model."""
    rng = random.Random(seed)
    for _ in range(64):
        run = ModRun(_prime(rng), rng)
        inputs = [_leaves(run, s) for _, s in graph.inputs]
        seeds = [_leaves(run, graph.shape(i)) for i in range(len(graph.values))]
        try:
            reference, engine, _ = run_sides(graph, backprop, run, inputs, seeds)
            pairs = [(i, index, reference[i][index], _as_num(run, eng[index]))
                     for i, eng in enumerate(engine) for index in np.ndindex(*eng.shape)]
            break
        except NoRoot:
            continue
    else:
        raise ModelError("no prime and point among 64 give every constant root and a "
                         "non-zero value to every division")
    p = run.p
    failing, degree, height = [], 0, 0.0
    ell = sum(math.log2(v) for v in run.denominators)
    for i, index, a, b in pairs:
        # the numerator of a − b: N_a·D_b·L^(e−e_a) − N_b·D_a·L^(e−e_b)
        d, h, c, _, _ = run._sum((a.d, a.h, a.c, a.e, a.q), (b.d, b.h, b.c, b.e, b.q))
        degree = max(degree, d)
        height = max(height, h + c * ell)
        if (a.v - b.v) % p:
            failing.append((i, index))
    atoms = len(run.atoms)
    log2_p = math.log2(p)
    # constant roots: the coefficients lie in K = Q(√p₁, …) of degree [K:Q] = 2^k; a prime
    # that kills a coefficient divides its norm, ≤ [K:Q] times the height in bits; only
    # primes where every √pᵢ exists are drawn — a 2^-k share of them by Chebotarev's
    # density theorem, used here as their count in [2^126, 2^127)
    k = math.log2(run.field_degree)
    bad_prime = k + math.log2(height / (PRIME_BITS - 1) + 1) - (LOG2_PRIMES - k)
    # two different atom arguments u ≠ v equal at the point: u − v vanishes there (≤ d/p)
    # or p kills its coefficients (the bad-prime bound at the arguments' height)
    # the numerator of u − v for two atom arguments: N_u·D_v·L^(…) − N_v·D_u·L^(…)
    arg_height = run.max_arg[0] + run.max_arg[3] + (run.max_arg[1] + run.max_arg[4]) * ell + 1
    arg_degree = run.max_arg_degree + run.max_arg[2]
    arg_bad = k + math.log2(arg_height / (PRIME_BITS - 1) + 1) - (LOG2_PRIMES - k)
    pair = 2 * math.log2(atoms + 1)
    terms = [math.log2(max(degree, 1)) - log2_p,                      # Schwartz–Zippel
             bad_prime,
             pair + _log2_sum(math.log2(max(arg_degree, 1)) - log2_p, arg_bad)]
    return failing, _log2_sum(*terms), degree, atoms


#: the witness search's points: (denominator, numerators drawn from this range); the
#: later attempts stay positive, inside declared domains such as log's x > 0
_POINTS = [(16, (-24, 24)), (64, (-96, 96)), (16, (1, 24)), (64, (1, 96)),
           (256, (-384, 384)), (256, (1, 384))]


def _dyadic(rng, n, den, span):
    return [Fraction(rng.randint(*span), den) for _ in range(n)]


def certified_witness(graph, backprop, failing, prec: int = 128):
    """A certified counterexample among the ``failing`` entries: inputs and seeds at dyadic
    points (several draws, see _POINTS), both sides in ball arithmetic, every declared
    assumption of the tape's nodes holding at the point; None when no ball excludes 0."""
    old = flint_ctx.prec
    try:
        for attempt, (den, span) in enumerate(_POINTS):
            seed = 7919 * (attempt + 1)
            rng = random.Random(seed)
            flint_ctx.prec = prec
            run = BallRun(prec, random.Random(seed + 1))
            points = [_dyadic(rng, int(np.prod(s)), den, span) for _, s in graph.inputs]
            seed_points = [_dyadic(rng, int(np.prod(graph.shape(i))), den, span)
                           for i in range(len(graph.values))]
            inputs = [_leaves(run, s, [arb(f.numerator) / f.denominator for f in pt])
                      for (_, s), pt in zip(graph.inputs, points)]
            seeds = [_leaves(run, graph.shape(i), [arb(f.numerator) / f.denominator
                                                   for f in pt])
                     for i, pt in enumerate(seed_points)]
            try:
                reference, engine, vals = run_sides(graph, backprop, run, inputs, seeds)
                if not _assumptions_hold(graph, run, vals):
                    continue
            except ModelError:
                continue
            for i, index in failing:
                a, b = reference[i][index].v, _as_num(run, engine[i][index]).v
                diff = a - b
                if 0 not in diff:
                    return _witness(graph, i, index, a, b, diff, points, seed_points, seed,
                                    prec, den, span, [(name, _exact(v.v))
                                                      for name, v in run.parameters])
        return None
    finally:
        flint_ctx.prec = old


def _assumptions_hold(graph, run, vals) -> bool:
    """Every declared assumption of the tape's nodes (log's x > 0, …) holds, certainly,
    at the ball point."""
    from ..ops import get_op
    with _running(run):
        for node in graph.nodes:
            op = get_op(node.op)
            if op.assumptions is None:
                continue
            for expr, relation in op.assumptions(*[vals[r] for r in node.reads],
                                                 **node.params):
                v = _lift(expr).v
                if relation == "> 0" and not v > 0:
                    return False
                if relation != "> 0" and 0 in v:
                    return False
        return True


def _exact(ball) -> Fraction:
    """The value of an exact ball (a dyadic number)."""
    man, exp = ball.mid().man_exp()
    return Fraction(int(man)) * Fraction(2) ** int(exp)


def _witness(graph, i, index, a, b, diff, points, seed_points, seed, prec, den,
             span, parameters=()) -> Witness:
    names = []
    for (name, shape), pt in zip(graph.inputs, points):
        names += [(f"{name}[{','.join(map(str, ix))}]", v)
                  for ix, v in zip(np.ndindex(*shape), pt)]
    names += list(parameters)     # symbolic parameters (fixed weights), as the run drew them
    for k, pt in enumerate(seed_points):
        names += [(f"s_{graph.values[k]}[{','.join(map(str, ix))}]", v)
                  for ix, v in zip(np.ndindex(*graph.shape(k)), pt)]
    shown = {n: str(v) for n, v in names[:12]}
    if len(names) > 12:
        shown["…"] = (f"{len(names) - 12} more: every input entry, then every seed entry, "
                      f"is k/{den} with k uniform in [{span[0]}, {span[1]}], drawn in this "
                      f"order by random.Random({seed}); symbolic parameters (fixed "
                      f"weights) k/16, k in [-24, 24], by random.Random({seed + 1}) in "
                      f"the order the forward meets them")
    lo, hi = diff.lower(), diff.upper()
    return Witness(input=graph.inputs[i][0], entry=tuple(int(v) for v in index),
                   point=shown, tangent=f"unit vector at {graph.inputs[i][0]}"
                   f"[{','.join(map(str, index))}]; seed s on every tape value",
                   expected=a.str(20, radius=False), got=b.str(20, radius=False),
                   residual=(lo.str(15, radius=False), hi.str(15, radius=False)),
                   precision=prec, note="reference from reverse mode over the forward's "
                   "primitives and the engine's backprop, both in ball arithmetic")


def randomized_end_to_end(graph, backprop=None, name: str | None = None,
                          seed: int | None = None) -> Result:
    """The end-to-end identity of ``graph`` by the randomized test: VERIFIED with an
    error bound ≤ 2^-64, REFUTED with a certified witness, or UNKNOWN."""
    t0 = time.perf_counter()
    rng = random.SystemRandom() if seed is None else random.Random(seed)
    result = Result(name=name or f"{graph.name}: end to end", verdict=Verdict.UNKNOWN,
                    method="randomized identity test mod a random 127-bit prime",
                    evidence="randomized")
    result.entries = sum(int(np.prod(s)) for _, s in graph.inputs)
    log2_error, trials, degree = 0.0, 0, 0
    try:
        while log2_error > TARGET_LOG2_ERROR and trials < 4:
            trial_seed = rng.getrandbits(256)
            failing, log2_trial, d, atoms = identity_test(graph, backprop, trial_seed)
            trials += 1
            degree = max(degree, d)
            if failing:
                break
            log2_error += log2_trial
    except ModelError as exc:
        result.reason = f"the randomized test cannot run this tape: {exc}"
        result.advice = ("use exact evidence (--evidence exact; evidence = \"exact\" in an "
                         "obligation file) at shapes small enough to expand")
        result.seconds = time.perf_counter() - t0
        return result
    result.phases = {"identity test": round(time.perf_counter() - t0, 4)}
    if not failing and log2_error > TARGET_LOG2_ERROR:
        result.reason = (f"{trials} trials passed, but their error bound 2^"
                         f"{math.floor(log2_error)} is above 2^{TARGET_LOG2_ERROR}")
        result.advice = ("use exact evidence (--evidence exact; evidence = \"exact\" in an "
                         "obligation file) at shapes small enough to expand")
    elif not failing:
        result.verdict = Verdict.VERIFIED
        result.error_bound = f"2^{math.floor(log2_error)}"
        result.method += (f" ({trials} trial{'s' if trials > 1 else ''}, degree ≤ {degree}, "
                          f"{atoms} atoms; error ≤ 2^{math.floor(log2_error)})")
    else:
        t1 = time.perf_counter()
        witness = certified_witness(graph, backprop, failing)
        result.phases["witness"] = round(time.perf_counter() - t1, 4)
        if witness is not None:
            result.verdict = Verdict.REFUTED
            result.witness = witness
            result.method = "randomized identity test ≠ 0; certified witness (ball arithmetic)"
        else:
            i, index = failing[0]
            result.reason = (f"the identity fails at {len(failing)} input entr"
                             f"{'y' if len(failing) == 1 else 'ies'} (first: "
                             f"{graph.inputs[i][0]}[{','.join(map(str, index))}]) in the "
                             f"model where atoms are independent, and no certified "
                             f"counterexample was found")
            result.advice = ("the engine may be right through a relation between atoms the "
                             "model drops (exp(a)·exp(b) = exp(a+b), (√u)² = u); check it "
                             "with exact evidence (--evidence exact) at small shapes")
    result.seconds = time.perf_counter() - t0
    return result


class RuleTape:
    """A forward and a VJP rule (:func:`symgrad.check_vjp`'s pair) as a tape the test can
    run: the inputs, then the forward's output ``out``. The whole-tape identity seeds the
    inputs too (⟨s_x, ∂x/∂x_e⟩ = s_x[e] on the reference side), so the engine is the rule
    fed the output's seed, plus each input's own seed. Every call gets fresh arrays: what
    the rule writes into them is not what the reference reads."""

    nodes = ()

    def __init__(self, name: str, inputs: list, forward, vjp, out_shape: tuple,
                 reads: tuple | None = None):
        self.name, self.inputs = name, [(n, tuple(s)) for n, s in inputs]
        self.forward, self.vjp, self.reads = forward, vjp, reads
        self.out_shape = tuple(out_shape)
        self.values = [n for n, _ in self.inputs] + ["out"]

    def shape(self, i: int) -> tuple:
        return self.inputs[i][1] if i < len(self.inputs) else self.out_shape

    def _args(self, xs) -> list:
        from ..scalar import SymArray
        reads = self.reads if self.reads is not None else range(len(self.inputs))
        return [np.array(xs[r], dtype=object).view(SymArray) for r in reads]

    def _user(self, fun, args, what):
        """``fun(*args)``: what the model cannot run stays the model's (UNKNOWN); any other
        exception of the user's code is a RuleError naming it, as in the exact check."""
        try:
            return fun(*args)
        except (ModelError, NoRoot, RuleError, ArithmeticError, TypeError, ValueError,
                IndexError):
            raise
        except Exception as exc:   # noqa: BLE001 - the user's, reported as the exact check does
            from .check import user_error
            raise user_error(exc, what, self.inputs) from None

    def eval(self, xs) -> list:
        from .check import _as_object_array
        out = _as_object_array(self._user(self.forward, self._args(xs), "forward rule"),
                               "the forward rule's result")
        if out is None:
            raise RuleError("the forward rule returned None; it must return an array")
        for v in out.flat:
            if isinstance(v, (bool, np.bool_, Relation)) or not isinstance(
                    v, (Num, int, float, Fraction, np.integer, np.floating, se.Number)):
                raise RuleError(f"the forward rule's result holds {type(v).__name__} "
                                f"{str(v):.40}, not a number")
        if out.shape != self.out_shape:
            raise RuleError(f"the forward rule's result has shape {out.shape}, not "
                            f"{self.out_shape}")
        return list(xs) + [out]

    @staticmethod
    def engine(tape, vals, seeds) -> list:
        from ..scalar import SymArray
        n = len(tape.inputs)
        g = np.array(seeds[n], dtype=object).view(SymArray)
        out = np.array(vals[n], dtype=object).view(SymArray)
        cots = tape._user(tape.vjp, [g, out] + tape._args(vals), "vjp rule")
        if isinstance(cots, np.ndarray) or not isinstance(cots, (tuple, list)):
            raise RuleError(f"the vjp rule must return a tuple of cotangents, got "
                            f"{type(cots).__name__}")
        reads = tape.reads if tape.reads is not None else range(n)
        if len(cots) != len(reads):
            raise RuleError(f"the vjp rule returned {len(cots)} cotangent(s), expected "
                            f"{len(reads)}")
        total = [np.array(seeds[i], dtype=object) for i in range(n)]
        for c, r in zip(cots, reads):
            if c is not None:
                c = np.asarray(c, dtype=object)
                if c.shape != tape.inputs[r][1]:
                    raise RuleError(f"the vjp rule's cotangent for {tape.inputs[r][0]} has "
                                    f"shape {c.shape}, the input has {tape.inputs[r][1]}")
                total[r] = total[r] + c
        return total


def randomized_rule(spec, out_shape: tuple | None = None) -> Result:
    """A rule pair (a :class:`symgrad.prove.check.Spec`) by the randomized test:
    VERIFIED with an error bound ≤ 2^-64, REFUTED with a certified witness, or UNKNOWN.
    ``out_shape``: the forward's output shape (else one symbolic run of the forward)."""
    if out_shape is None:   # one symbolic run, its result checked as the exact check does
        from ..scalar import wrap
        from ..tensor import symbols
        from .check import _call, _user_array
        arrays = [symbols(n, s, unique=True) for n, s in spec.inputs]
        reads = spec.reads if spec.reads is not None else range(len(arrays))
        out = _user_array(_call(spec.forward, [wrap(arrays[r]) for r in reads],
                                "forward rule", spec.inputs), "the forward rule's result",
                          "symengine")
        if out is None:
            raise RuleError("the forward rule returned None; it must return an array")
        out_shape = out.shape
    tape = RuleTape(spec.name, spec.inputs, spec.forward, spec.vjp, out_shape, spec.reads)
    result = randomized_end_to_end(tape, RuleTape.engine, name=spec.name)
    if result.witness is not None:
        result.witness.tangent = result.witness.tangent.replace(
            "seed s on every tape value", "seed s_out on the output (s_<input> on the "
            "inputs adds to both sides alike)")
    return result

"""Certified evaluation at rational points (python-flint's arb balls) and witness search.

A counterexample counts only when it lies in the domain — every side condition is checked
at the point with ball arithmetic and must hold for certain — and the residual's ball
excludes 0 there. Balls are rigorous enclosures (arb), so "excludes 0" is a proof that the
rule is wrong at that point.
"""
from __future__ import annotations

import random
from fractions import Fraction

import symengine as se
from flint import arb, ctx as flint_ctx, fmpq
from symengine.lib.symengine_wrapper import Constant as _Constant

from .atoms import Condition
from .budget import function_name
from .flint_poly import to_fraction


class CannotEvaluate(Exception):
    """The expression has a piece ball arithmetic cannot enclose at this point."""


def to_arb(f: Fraction) -> arb:
    """The exact rational ``f`` as a ball (exact where the working precision allows)."""
    return arb(fmpq(f.numerator, f.denominator))



_UNARY = {
    "exp": arb.exp, "log": arb.log, "tanh": arb.tanh, "erf": arb.erf, "erfc": arb.erfc,
    "sinh": arb.sinh, "cosh": arb.cosh, "sin": arb.sin, "cos": arb.cos, "tan": arb.tan,
    "atan": arb.atan, "asinh": arb.asinh, "sqrt": arb.sqrt,
}


def ball_power(base: arb, k: int) -> arb:
    """``base ** k`` for an integer k: python-flint's ``arb ** int`` is NaN for a ball that
    contains 0 (a centred deviation evaluated to [0 ± 1e-38], squared), so such a ball is
    raised by repeated multiplication — a valid, slightly wider enclosure."""
    if k < 0:
        return 1 / ball_power(base, -k)
    if not base.contains(0):
        return base ** k
    out, square = arb(1), base
    while k:
        if k & 1:
            out *= square
        k >>= 1
        if k:
            square *= square
    return out


class Evaluator:
    """Evaluates SymEngine expressions at a rational point with balls of ``prec`` bits."""

    def __init__(self, point: dict, prec: int = 64):
        self.prec = prec
        self.point = point    # rationals, made balls when first read (at the working
        self.memo: dict = {}  # precision, which __call__ sets)

    def __call__(self, node) -> arb:
        old = flint_ctx.prec
        flint_ctx.prec = self.prec
        try:
            return self._eval(node)
        finally:
            flint_ctx.prec = old

    def _eval(self, node) -> arb:
        v = self.memo.get(node)
        if v is not None:
            return v
        v = self._compute(node)
        self.memo[node] = v
        return v

    def _compute(self, node) -> arb:
        if isinstance(node, se.Symbol):
            try:
                return to_arb(self.point[node])
            except KeyError:
                raise CannotEvaluate(f"no value for {node}") from None
        if isinstance(node, se.Number):
            return to_arb(to_fraction(node))
        if isinstance(node, se.Add):
            total = arb(0)
            for a in node.args:
                total += self._eval(a)
            return total
        if isinstance(node, se.Mul):
            prod = arb(1)
            for a in node.args:
                prod *= self._eval(a)
            return prod
        if isinstance(node, se.Pow):
            b, e = node.args
            if b == se.E:
                return self._eval(e).exp()
            if isinstance(e, se.Integer):
                base = self._eval(b)
                k = int(e)
                if k < 0 and base.contains(0):
                    raise CannotEvaluate(f"{b} may be 0")
                return ball_power(base, k)
            base = self._eval(b)
            if not base > 0:
                raise CannotEvaluate(f"{b} is not certainly positive")
            if isinstance(e, se.Rational) and to_fraction(e).denominator == 2:
                k = to_fraction(e).numerator     # exact where the root is: sqrt(x²) = |x|
                return base.sqrt() ** k if k > 0 else 1 / base.sqrt() ** (-k)
            return (self._eval(e) * base.log()).exp()
        if node == se.pi:
            return arb.pi()
        if node == se.E:
            return arb(1).exp()
        if isinstance(node, _Constant):
            raise CannotEvaluate(f"the constant {node}")
        if isinstance(node, se.Derivative):
            fun = node.args[0]
            if function_name(fun) == "Heaviside":
                if self._eval(fun.args[0]).contains(0):
                    raise CannotEvaluate("a step function at its jump")
                return arb(0)
            raise CannotEvaluate(f"the derivative {node}")
        name = function_name(node)
        args = [self._eval(a) for a in node.args]
        if name in ("Heaviside", "sign"):
            u = args[0]
            if u > 0:
                return arb(1)
            if u < 0:
                return arb(0) if name == "Heaviside" else arb(-1)
            if name == "Heaviside" and u.is_zero():
                return arb(0)   # exactly 0 (relu of a negative value): H(0) = 0, as "> 0"
            raise CannotEvaluate(f"{name} at a point where its argument may be 0")
        if name == "DiracDelta":
            if args[0].contains(0):
                raise CannotEvaluate("DiracDelta at 0")
            return arb(0)
        if name == "Abs":
            return abs(args[0])
        if name == "log" and not args[0] > 0:
            raise CannotEvaluate("log of a value that may be ≤ 0")
        fun = _UNARY.get(name)
        if fun is None or len(args) != 1:
            raise CannotEvaluate(f"the function {name}")
        return fun(args[0])


def condition_holds(cond: Condition, ev: Evaluator) -> bool:
    """Whether ``cond`` holds for certain at the evaluator's point."""
    try:
        v = ev(cond.expr)
    except CannotEvaluate:
        return False
    if cond.relation == "> 0":
        return bool(v > 0)
    return not v.contains(0)


def ball_bounds(v: arb) -> tuple[str, str]:
    return (v.lower().str(12, radius=False), v.upper().str(12, radius=False))


def ball_text(v: arb, digits: int = 12) -> str:
    return v.str(digits)


def distinct_texts(a: arb, b: arb) -> tuple[str, str, int]:
    """``a`` and ``b`` printed with the fewest digits (12 at least) at which the two texts
    differ — a float constant one ulp off prints the same at 12 digits — and the digits
    used."""
    for digits in (12, 20, 30, 45, 60):
        sa, sb = a.str(digits), b.str(digits)
        if sa != sb:
            return sa, sb, digits
    return sa, sb, digits


#: the magnitudes points are drawn at, in turn: near the origin first, then far from it
#: (a rule wrong only for |x| > 2) and close to it (a boundary at 0)
SCALES = (Fraction(2), Fraction(2), Fraction(8), Fraction(1, 2), Fraction(64), Fraction(2),
          Fraction(16), Fraction(1, 8), Fraction(512), Fraction(4))


def scale_of(attempt: int) -> Fraction:
    return SCALES[attempt % len(SCALES)]


def sample_value(rng: random.Random, scale: Fraction, positive: bool = False) -> Fraction:
    """A random dyadic rational of magnitude up to ``scale`` (a multiple of scale/4096: its
    ball is exact, so a value that is exactly 0 — relu of a negative number inside a step —
    evaluates to exactly 0; a kink at a simple value such as 1/2 is hit with probability
    1/8192 per symbol, and the side conditions reject such a point)."""
    k = rng.randint(1, 4096) if positive else (rng.randint(-4096, 4096) or 1)
    return scale * Fraction(k, 4096)


def sample_point(symbols, rng: random.Random, positive=frozenset(), cotangents=frozenset(),
                 scale=Fraction(2)) -> dict:
    """Random rationals of magnitude up to ``scale`` (positive where assumed), and small
    nonzero integers for cotangent symbols."""
    point = {}
    for s in symbols:
        if s in cotangents:
            point[s] = Fraction(rng.choice([-3, -2, -1, 1, 2, 3]))
        else:
            point[s] = sample_value(rng, scale, s in positive)
    return point

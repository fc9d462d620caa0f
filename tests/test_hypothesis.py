"""Random rational points: the residual of every PROVED library rule evaluates to 0 there
(exactly, in ball arithmetic: the ball contains 0 and is tiny), and a refuted mutant's does
not at its witness."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from symgrad.api import op_params
from symgrad.ops import OPS
from symgrad.prove.check import Spec, build_sides, reference
from symgrad.prove.witness import Evaluator

SMALL = {"softmax": [(2, 3)], "layer_norm": [(2, 3), (3,), (3,)], "gelu_tanh": [(2, 2)],
         "gelu_erf": [(2,)], "sigmoid": [(3,)], "log_softmax": [(1, 3)], "matmul": [(2, 2), (2, 2)],
         "silu": [(2,)], "masked_softmax": [(2, 2)], "tanh": [(2,)]}
_SIDES = {}


def _sides(name):
    if name not in _SIDES:
        op, shapes = OPS[name], SMALL[name]
        values = op_params(op, shapes)
        spec = Spec(name, lambda *a: op.forward(*a, **values),
                    lambda g, o, *a: op.vjp(g, o, *a, **values), list(zip(op.args, shapes)))
        sides = build_sides(spec)
        wanted = [(i, ix) for i, a in enumerate(sides["arrays"]) for ix in np.ndindex(a.shape)]
        _SIDES[name] = (sides, reference(sides, wanted))
    return _SIDES[name]


rationals = st.fractions(min_value=-3, max_value=3, max_denominator=16)


@settings(max_examples=25, deadline=None)
@given(name=st.sampled_from(sorted(SMALL)), data=st.data())
def test_proved_rules_vanish_at_random_rational_points(name, data):
    sides, lhs = _sides(name)
    symbols = set()
    for key, e in lhs.items():
        symbols |= e.free_symbols | sides["rhs"][key[0]][key[1]].free_symbols
    point = {s: data.draw(rationals, label=str(s)) for s in sorted(symbols, key=str)}
    ev = Evaluator(point, prec=128)
    for (i, ix), e in lhs.items():
        r = ev(e) - ev(sides["rhs"][i][ix])
        assert r.contains(0) and float(r.rad()) < 1e-20, (name, ix, r)


def test_a_ball_around_zero_raised_to_a_power_is_a_ball_not_nan():
    """The LayerNorm radicand at x = (0, 7/3, −7/3): the first deviation evaluates to a ball
    around 0, and python-flint's ``arb ** 2`` of such a ball is NaN — the radicand must
    still come out certainly positive (found by the property test above)."""
    from fractions import Fraction
    import symengine as se
    a, b, c = se.symbols("a b c")
    mean = (a + b + c) / 3
    radicand = se.Rational(1, 100000) + ((a - mean) ** 2 + (b - mean) ** 2 + (c - mean) ** 2) / 3
    ev = Evaluator({a: Fraction(0), b: Fraction(7, 3), c: Fraction(-7, 3)}, prec=128)
    v = ev(radicand)
    assert v > 0 and float(v.mid()) == pytest.approx(1e-5 + 2 * 49 / 27)
    tiny = ev(a - mean)
    assert tiny.contains(0) and ev((a - mean) ** 3).contains(0)

"""Seeded wrong rules: every one must be REFUTED with a certified witness."""
from fractions import Fraction

import pytest

import symgrad as sg
from symgrad.mutants import MUTANTS, verify_mutant


def test_at_least_25_mutants_across_ops():
    assert len(MUTANTS) >= 25
    assert len({m.op for m in MUTANTS.values()}) >= 20


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_mutant_refuted(name):
    r = verify_mutant(name)
    assert r.verdict is sg.Verdict.REFUTED, (name, r.reason)
    w = r.witness
    lo, hi = float(w.residual[0]), float(w.residual[1])
    assert (lo > 0 and hi > 0) or (lo < 0 and hi < 0), w.residual   # excludes 0
    assert w.input in sg.get_op(MUTANTS[name].op).args
    # the point is rational and covers x and the cotangent
    assert all(Fraction(v) is not None for v in w.point.values())
    assert any(k.startswith("g[") for k in w.point)


@pytest.mark.parametrize("name", ["softmax_no_subtraction", "layer_norm_unbiased_variance",
                                  "mul_square_no_doubling"])
def test_mutant_refuted_without_symmetry(name):
    assert verify_mutant(name, symmetry=False).verdict is sg.Verdict.REFUTED


def test_a_rule_wrong_at_one_entry_only_is_refuted_despite_symmetry():
    """A bug in one entry breaks the rule's equivariance, so the symmetry reduction must not
    hide it."""
    def softmax(x):
        e = sg.fn.exp(x)
        return e / e.sum(axis=-1, keepdims=True)

    def almost(g, y, x):
        dx = y * (g - (g * y).sum(axis=-1, keepdims=True))
        dx[1, 2] = dx[1, 2] + g[1, 2] / 1000
        return (dx,)

    r = sg.check_vjp(softmax, almost, shapes=[(3, 4)])
    assert r.verdict is sg.Verdict.REFUTED
    assert r.witness.entry == (1, 2)


def test_a_forward_with_a_position_dependent_constant_is_checked_entrywise():
    import numpy as np
    w = np.array([[1, 2], [3, 5]], dtype=object)

    def f(x):
        return w * x * x

    def vjp_ignoring_weights(g, y, x):
        return (2 * g * x,)

    r = sg.check_vjp(f, vjp_ignoring_weights, shapes=[(2, 2)])
    assert r.verdict is sg.Verdict.REFUTED and r.witness.entry != (0, 0)


def test_floats_one_ulp_apart_break_symmetry():
    """Constants that print alike but differ in the last bit must not count as equal."""
    import math
    import numpy as np
    c = np.array([0.1, math.nextafter(0.1, 1), 0.1], dtype=object)

    def f(x):
        return c * x * x

    def rule(g, y, x):
        return (2 * g * x * 0.1,)

    r = sg.check_vjp(f, rule, shapes=[(3,)])
    assert r.verdict is sg.Verdict.REFUTED and r.witness.entry == (1,)

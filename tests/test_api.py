"""User-written rules through check_vjp: verdicts, floats, limits and bad input."""
import time

import numpy as np
import pytest

import symgrad as sg


def square(x):
    return x * x


def test_user_rule_proved_and_refuted():
    assert sg.check_vjp(square, lambda g, y, x: (2 * g * x,), [(2, 2)]).proved
    r = sg.check_vjp(square, lambda g, y, x: (g * x,), [(2, 2)])
    assert r.verdict is sg.Verdict.REFUTED and r.witness is not None


def test_floats_are_exact_on_both_sides():
    f = lambda x: 0.1 * x * x                           # noqa: E731
    assert sg.check_vjp(f, lambda g, y, x: (0.2 * g * x,), [(3,)]).verdict is sg.Verdict.PROVED
    # 0.3 is not 3·0.1 in binary: the rule below is wrong by one rounding, and that is found
    g3 = lambda x: 0.1 * x * x * x                      # noqa: E731
    r = sg.check_vjp(g3, lambda g, y, x: (0.30000000000000004 * g * x * x,), [(1,)])
    assert r.verdict is not sg.Verdict.PROVED


def test_assumptions_are_declared_and_used():
    f = lambda x: sg.fn.sqrt(x)                         # noqa: E731
    rule = lambda g, y, x: (g / (2 * y),)               # noqa: E731
    r = sg.check_vjp(f, rule, [(2,)], assumptions=lambda x: [e > 0 for e in x.flat])
    assert r.proved
    assert [c.text for c in r.side_conditions if c.reason == "declared"] == ["x[0] > 0", "x[1] > 0"]


def test_identity_the_atoms_miss_is_never_refuted():
    """1 − tanh² = 1/cosh²: true, but beyond the atoms' relations → PROVED or UNKNOWN."""
    r = sg.check_vjp(sg.fn.tanh, lambda g, y, x: (g / sg.fn.cosh(x) ** 2,), [(2,)])
    assert r.verdict in (sg.Verdict.PROVED, sg.Verdict.UNKNOWN)
    r = sg.check_vjp(lambda x: sg.fn.log(x * x), lambda g, y, x: (2 * g / x,), [(2,)])
    assert r.verdict is sg.Verdict.PROVED   # d/dx log(x²) = 2x/x², by the reciprocal relation


def test_exp_squared_is_exp_of_double():
    r = sg.check_vjp(lambda x: sg.fn.exp(2 * x), lambda g, y, x: (2 * g * sg.fn.exp(x) ** 2,), [(2,)])
    assert r.verdict is sg.Verdict.PROVED


def test_wrong_arity():
    with pytest.raises(sg.RuleError, match="returned 1 cotangent.*expected 2"):
        sg.check_vjp(lambda a, b: a * b, lambda g, y, a, b: (g * b,), [(2,), (2,)])


def test_wrong_cotangent_shape_names_input_and_shapes():
    with pytest.raises(sg.RuleError, match=r"input W has shape \(3,2\) but W has shape \(2,3\)"):
        sg.check_vjp(lambda x, W: x @ W, lambda g, y, x, W: (g @ W.T, (x.T @ g).T),
                     [(2, 2), (2, 3)], names=["x", "W"])


def test_shape_mismatch_inside_a_rule():
    with pytest.raises(sg.RuleError, match=r"forward rule raised ValueError.*x \(2,3\), W \(4,5\)"):
        sg.check_vjp(lambda x, W: x @ W, lambda g, y, x, W: (None, None), [(2, 3), (4, 5)],
                     names=["x", "W"])


def test_bad_dimensions_and_limit():
    with pytest.raises(sg.ShapeError, match="positive integer"):
        sg.check_vjp(square, lambda g, y, x: (2 * g * x,), [(2, 0)])
    with pytest.raises(sg.ShapeError, match="more than the limit of 10"):
        sg.check_vjp(square, lambda g, y, x: (2 * g * x,), [(4, 4)], max_entries=10)


def test_timeout_gives_unknown():
    def slow(x):
        time.sleep(30)
        return x
    t0 = time.perf_counter()
    r = sg.check_vjp(slow, lambda g, y, x: (g,), [(1,)], timeout=1)
    assert r.verdict is sg.Verdict.UNKNOWN and r.reason.startswith("timeout")
    assert time.perf_counter() - t0 < 10


def test_unknown_op_lists_valid_ones():
    with pytest.raises(sg.InputError, match="unknown op 'softmx'; valid ops are: add"):
        sg.verify_node("softmx", [(2, 3)])


def test_wrong_number_of_shapes_for_an_op():
    with pytest.raises(sg.InputError, match="matmul takes 2 input shape"):
        sg.verify_node("matmul", [(2, 3)])


def test_sum_over_rows_of_a_rule_returning_lists():
    r = sg.check_vjp(lambda x: x.sum(axis=1), lambda g, y, x: (np.repeat(g[:, None], 3, axis=1),),
                     [(2, 3)])
    assert r.proved


def test_floats_are_made_exact_before_differentiation_with_symmetry():
    """0.044715·x³ differentiates to 3·(exact 0.044715)·x², not to the float 3*0.044715
    (which rounds); the rule below spells the exact constant with fn.rational."""
    from fractions import Fraction
    c = 0.044715
    assert Fraction(3 * c) != 3 * Fraction(c)   # the float product rounds
    f = lambda x: c * x * x * x                         # noqa: E731
    exact_rule = lambda g, y, x: (g * x * x * sg.fn.rational(3 * Fraction(c)),)  # noqa: E731
    rounded = lambda g, y, x: (g * x * x * (3 * c),)    # noqa: E731
    r = sg.check_vjp(f, exact_rule, [(4,)])
    assert r.verdict is sg.Verdict.PROVED and "symmetry" in r.method
    assert sg.check_vjp(f, rounded, [(4,)]).verdict is sg.Verdict.REFUTED


def test_bad_reads_pattern():
    with pytest.raises(sg.InputError, match="reads must give one input index per argument"):
        sg.verify_node("mul", [(2, 2), (2, 2)], reads=[0, 2])

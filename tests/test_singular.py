"""A rule whose code divides by a value that is 0 where the forward is defined: SymEngine
cancels ``(x·y)/x`` to ``y`` before the normal form looks, so only a point shows it. The
checker records what the rule divides by and runs it at zeros of each divisor
(check.singular_witness). Real cases: the division form of prod's backward (tinygrad#17404,
autograd's grad_np_prod) and cumprod's (tensorflow#3862, tensorflow#119430, burn#5141)."""
import numpy as np
import pytest

import symgrad as sg
from tests.battery.registry import nonzero


def prod(x):
    return x.prod(axis=-1, keepdims=True)


def prod_by_division(g, y, x):
    return (g * y / x,)


def prod_without_division(g, y, x):
    n = x.shape[-1]
    return (np.stack([g[..., 0] * np.prod(np.delete(x, i, axis=-1), axis=-1)
                      for i in range(n)], axis=-1),)


def prod_guarded_right(g, y, x):   # the division, and at a zero the product of the others
    return (sg.fn.where(x == 0, prod_without_division(g, y, x)[0], g * y / x),)


def prod_guarded_wrong(g, y, x):   # at a zero: 0 (the "NaN to 0" patch)
    return (sg.fn.where(x == 0, 0 * x, g * y / x),)


def cumprod(x):
    return np.cumprod(x, axis=-1)


def cumprod_by_division(g, y, x):  # reverse_cumsum(g·y) / x
    return (np.cumsum((g * y)[..., ::-1], axis=-1)[..., ::-1] / x,)


def cumprod_without_division(g, y, x):
    n = x.shape[-1]
    out = []
    for i in range(n):
        total = 0
        for k in range(i, n):
            term = g[..., k]
            for j in range(k + 1):
                if j != i:
                    term = term * x[..., j]
            total = total + term
        out.append(total)
    return (np.stack(out, axis=-1),)


@pytest.mark.parametrize("forward, rule, verdict", [
    (prod, prod_by_division, sg.Verdict.REFUTED),
    (prod, prod_without_division, sg.Verdict.PROVED),
    (prod, prod_guarded_right, sg.Verdict.PROVED),
    (prod, prod_guarded_wrong, sg.Verdict.REFUTED),
    (cumprod, cumprod_by_division, sg.Verdict.REFUTED),
    (cumprod, cumprod_without_division, sg.Verdict.PROVED),
])
def test_a_rule_that_divides_by_zero_where_the_forward_is_defined(forward, rule, verdict):
    r = sg.check_vjp(forward, rule, shapes=[(3,)])
    assert r.verdict is verdict, (rule.__name__, r.verdict, r.reason)
    if verdict is sg.Verdict.REFUTED:
        w = r.witness
        assert any(v == "0" for k, v in w.point.items() if k.startswith("x")), w.point
        if rule is not prod_guarded_wrong:
            assert w.got.startswith("undefined: the rule divides by zero"), w.got


def test_on_a_domain_without_zeros_the_division_is_proved():
    r = sg.check_vjp(prod, prod_by_division, shapes=[(3,)], assumptions=nonzero)
    assert r.verdict is sg.Verdict.PROVED


@pytest.mark.parametrize("forward, rule, verdict", [
    # the forward has the pole too: its domain excludes 0, nothing to refute
    (lambda x: 1 / x, lambda g, y, x: (-g / (x * x),), sg.Verdict.PROVED),
    # a division by a sum of exponentials: no zero to land on
    (lambda x: sg.fn.exp(x) / sg.fn.exp(x).sum(),
     lambda g, y, x: (g * y - y * (g * y).sum() * sg.fn.exp(x).sum() / sg.fn.exp(x).sum(),),
     sg.Verdict.PROVED),
    # x·x/x is 0/0 at x = 0, where x² is smooth
    (lambda x: x * x, lambda g, y, x: (2 * g * x * x / x,), sg.Verdict.REFUTED),
])
def test_divisions_the_forward_shares_cannot_vanish_or_do(forward, rule, verdict):
    assert sg.check_vjp(forward, rule, shapes=[(2,)]).verdict is verdict


# ----- red-team regressions ---------------------------------------------------------------

def half_square(x):
    return x * x / 2


@pytest.mark.parametrize("forward, rule, verdict", [
    # √x·√x cancels to x, but the code takes the root of a negative x (NaN in floats)
    (half_square, lambda g, y, x: (g * sg.fn.sqrt(x) * sg.fn.sqrt(x),), sg.Verdict.REFUTED),
    (half_square, lambda g, y, x: (g * x ** 0.5 * x ** 0.5,), sg.Verdict.REFUTED),
    (half_square, lambda g, y, x: (g * sg.fn.exp(sg.fn.log(x)),), sg.Verdict.REFUTED),
    # a divisor that is not linear in any input: tanh(0) = 0, relu(x) = 0 for x < 0
    (sg.fn.tanh, lambda g, y, x: (g * (1 - y * y) * y / y,), sg.Verdict.REFUTED),
    (lambda x: x, lambda g, y, x: (g * sg.fn.relu(x) / sg.fn.relu(x),), sg.Verdict.REFUTED),
    # 0/0 where the incoming gradient is 0
    (half_square, lambda g, y, x: (x * g * g / g,), sg.Verdict.REFUTED),
    # the guard is a constant not decided exactly at the zero (x > √2 at x = 1): the branch
    # taken there is the right one
    (lambda x: x * x * x / 3 - x * x / 2,
     lambda g, y, x: (sg.fn.where(x > sg.fn.sqrt(2), g * x * (x - 1) * (x - 1) / (x - 1),
                                  g * (x * x - x)),), sg.Verdict.PROVED),
])
def test_code_undefined_where_its_expression_is_not(forward, rule, verdict):
    r = sg.check_vjp(forward, rule, shapes=[(1,)])
    assert r.verdict is verdict, (r.verdict, r.reason, r.witness)


def test_many_harmless_divisions_do_not_hide_one_at_zero():
    def rule(g, y, x):
        out = g * x * x / x
        for k in range(1, 9):
            out = out * (sg.fn.exp(x) + k) / (sg.fn.exp(x) + k)
        return (out,)
    assert sg.check_vjp(half_square, rule, shapes=[(1,)]).verdict is sg.Verdict.REFUTED


def test_the_sympy_backend_records_divisions_too():
    r = sg.check_vjp(prod, prod_by_division, shapes=[(3,)], backend="sympy")
    assert r.verdict is sg.Verdict.REFUTED


def test_an_undefined_witness_reads_as_one():
    r = sg.check_vjp(prod, prod_by_division, shapes=[(3,)])
    text = "\n".join(r.witness.lines())
    assert "residual undefined" in text and "nan" not in text


def test_a_guard_on_a_parameter_the_point_leaves_free_is_not_a_witness():
    # the guard c² + 1 > 0 always holds: the division in the other branch never runs
    c = sg.tensor.symbol("c")

    def rule(g, y, x):
        return (sg.fn.where(x * 0 + c * c + 1 > 0, 2 * g * x, 2 * g * x * x / x),)
    assert sg.check_vjp(lambda x: x * x, rule, shapes=[(2,)]).verdict is sg.Verdict.PROVED

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

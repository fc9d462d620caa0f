"""symgrad.check_jvp: forward-mode rules proved as the VJP of s ↦ f(x + s·ẋ) — so the
tangent's linearity is part of the proof — and wrong ones refuted."""
import numpy as np
import pytest

import symgrad as sg


def matmul(a, b):
    return a @ b


@pytest.mark.parametrize("forward, jvp, shapes, verdict", [
    (sg.fn.exp, lambda x, dx: sg.fn.exp(x) * dx, [(2, 2)], sg.Verdict.PROVED),
    (sg.fn.exp, lambda x, dx: sg.fn.exp(x), [(2, 2)], sg.Verdict.REFUTED),       # no tangent
    (matmul, lambda a, b, da, db: da @ b + a @ db, [(2, 3), (3, 2)], sg.Verdict.PROVED),
    (matmul, lambda a, b, da, db: da @ b, [(2, 3), (3, 2)], sg.Verdict.REFUTED),
    (matmul, lambda a, b, da, db: da @ b + a @ db + 0 * da @ db, [(2, 2), (2, 2)],
     sg.Verdict.PROVED),
    (matmul, lambda a, b, da, db: da @ b + a @ db + da @ db, [(2, 2), (2, 2)],
     sg.Verdict.REFUTED),                                  # second order in the tangent
    (lambda x: x / x.sum(), lambda x, dx: dx / x.sum() - x * dx.sum() / x.sum() ** 2,
     [(3,)], sg.Verdict.PROVED),
])
def test_forward_mode_rules(forward, jvp, shapes, verdict):
    r = sg.check_jvp(forward, jvp, shapes=shapes)
    assert r.verdict is verdict, (r.verdict, r.reason)


def test_a_jvp_of_the_wrong_shape_is_one_sentence():
    with pytest.raises(sg.RuleError, match="shape"):
        sg.check_jvp(sg.fn.exp, lambda x, dx: dx.sum(), shapes=[(2,)])


def test_a_jvp_rule_of_the_wrong_arity_is_refused():
    with pytest.raises(sg.RuleError, match="cannot be called"):
        sg.check_jvp(sg.fn.exp, lambda x: x, shapes=[(2,)])
    assert np   # (numpy imported for the rules' arrays)

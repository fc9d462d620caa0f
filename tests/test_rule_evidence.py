"""check_vjp's evidence: exact (a normal form, PROVED), randomized (the identity test of
symgrad.prove.randomized over the rule pair: VERIFIED with an error bound ≤ 2^-64, never
PROVED) and auto (exact within 10 s, else randomized).

* correct rules VERIFIED, their wrong twins REFUTED with a certified witness;
* bad rules and shapes give the exact check's clear errors, not a verdict;
* the model sees ReLU's mask read from its output (H(x·H(x)) = H(x)).
"""
import numpy as np
import pytest

import symgrad as sg
from symgrad import fn

VERIFIED, REFUTED, PROVED = sg.Verdict.VERIFIED, sg.Verdict.REFUTED, sg.Verdict.PROVED


def _softmax(x):
    e = fn.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def _relu(x):
    return fn.relu(x - 1)


#: id → (forward, right rule, wrong twin, shapes)
PAIRS = {
    "tanh": (fn.tanh, lambda g, y, x: (g * (1 - y * y),),
             lambda g, y, x: (g * (1 + y * y),), [(2, 3)]),
    "softmax": (_softmax, lambda g, y, x: (y * (g - (g * y).sum(axis=-1, keepdims=True)),),
                lambda g, y, x: (y * g,), [(2, 3)]),
    "relu-from-output": (_relu, lambda g, y, x: (fn.where(y > 0, g, 0 * g),),
                         lambda g, y, x: (fn.where(y >= 0, g, 0 * g),), [(4,)]),
    "sin": (fn.sin, lambda g, y, x: (g * fn.cos(x),),
            lambda g, y, x: (-g * fn.cos(x),), [(3,)]),
    "matmul": (lambda a, b: a @ b, lambda g, y, a, b: (g @ b.T, a.T @ g),
               lambda g, y, a, b: (g @ b.T, a.T @ g.T.T * 2), [(2, 3), (3, 2)]),
}


@pytest.mark.parametrize("case", PAIRS, ids=list(PAIRS))
def test_randomized_verifies_the_right_rule_and_refutes_its_twin(case):
    f, right, wrong, shapes = PAIRS[case]
    r = sg.check_vjp(f, right, shapes, evidence="randomized")
    assert r.verdict is VERIFIED, r
    assert r.evidence == "randomized" and int(r.error_bound[2:]) <= -64
    r = sg.check_vjp(f, wrong, shapes, evidence="randomized")
    assert r.verdict is REFUTED, r
    lo, hi = (float(v) for v in r.witness.residual)
    assert lo > 0 or hi < 0, r.witness.residual


def test_auto_is_exact_where_that_is_quick():
    f, right, _, shapes = PAIRS["tanh"]
    assert sg.check_vjp(f, right, shapes, evidence="auto").verdict is PROVED
    assert sg.check_vjp(f, right, shapes).verdict is PROVED      # exact is the default


def test_check_jvp_takes_evidence():
    right = sg.check_jvp(fn.tanh, lambda x, dx: dx * (1 - fn.tanh(x) ** 2), [(3,)],
                         evidence="randomized")
    wrong = sg.check_jvp(fn.tanh, lambda x, dx: dx * (1 + fn.tanh(x) ** 2), [(3,)],
                         evidence="randomized")
    assert (right.verdict, wrong.verdict) == (VERIFIED, REFUTED)


STUB = lambda g, y, x: (None,)   # noqa: E731 - a rule that must never pass


@pytest.mark.parametrize("forward, match", [
    (lambda x: (fn.tanh(x), (x * x).sum(axis=1)[:3]), "not a number"),
    (lambda x: None, "returned None"),
    (lambda x: {"y": x * x}, "not a number"),
    (lambda x: x > 0, "comparison"),
    (lambda x: x.nope(), "raised AttributeError"),
])
@pytest.mark.parametrize("evidence", ["randomized", "auto"])
def test_a_forward_that_is_not_an_array_of_numbers_is_an_error(forward, match, evidence):
    with pytest.raises(sg.RuleError, match=match):
        sg.check_vjp(forward, STUB, [(4, 4)], evidence=evidence)


@pytest.mark.parametrize("shape", [(2.5,), ("a",), (0, 3)])
def test_bad_shapes_are_shape_errors(shape):
    with pytest.raises(sg.ShapeError):
        sg.check_vjp(fn.tanh, STUB, [shape], evidence="randomized")


def test_unknown_evidence_and_assumptions_are_input_errors():
    f, right, _, shapes = PAIRS["tanh"]
    with pytest.raises(sg.InputError, match="unknown evidence"):
        sg.check_vjp(f, right, shapes, evidence="proof")
    with pytest.raises(sg.InputError, match="assumptions"):
        sg.check_vjp(fn.log, lambda g, y, x: (g / x,), [(2,)], evidence="randomized",
                     assumptions=lambda x: [x > 0])


def test_a_rule_that_writes_into_its_arrays_does_not_reach_the_reference():
    def vandal(g, y, x):
        grad = g * (1 - y * y)
        y[...] = 0      # the rule's copy of the output
        x[...] = 0
        return (grad,)
    assert sg.check_vjp(fn.tanh, vandal, [(3,)], evidence="randomized").verdict is VERIFIED


def test_a_randomized_witness_names_the_symbolic_parameters_it_drew():
    from fractions import Fraction
    from symgrad.tensor import symbols
    w = symbols("w", (2,))
    r = sg.check_vjp(lambda x: x * w, lambda g, y, x: (g,), [(2,)], params={"w": w},
                     evidence="randomized")
    assert r.verdict is REFUTED
    point = {k: Fraction(v) for k, v in r.witness.point.items()}
    assert {"x[0]", "w[0]", "w[1]", "s_out[0]"} <= set(point)
    # the witness is the point: at it, the rule's g·1 and the true g·w differ in entry 0
    i = r.witness.entry[0]
    got = point[f"s_out[{i}]"] + point[f"s_x[{i}]"]
    want = point[f"s_out[{i}]"] * point[f"w[{i}]"] + point[f"s_x[{i}]"]
    assert got != want
    assert abs(float(r.witness.expected) - float(want)) < 1e-12
    assert abs(float(r.witness.got) - float(got)) < 1e-12

"""Polynomial obligations at large shapes: every entry compared as a sparse polynomial
(symgrad/prove/sparse.py), wrong twins still refuted, nothing shared with the rule."""
import numpy as np
import pytest

import symgrad as sg
from symgrad import fn
from symgrad.api import verify_node
from symgrad.mutants import MUTANTS
from symgrad.prove import sparse

SPARSE = "sparse polynomial identity at every entry"
AFFINE = [(8, 64), (64, 16), (16,)]


def affine(x, W, b):
    return fn.matmul(x, W) + b[None, :]


def affine_right(g, out, x, W, b):
    return fn.matmul(g, W.T), fn.matmul(x.T, g), g.sum(axis=0)


@pytest.mark.parametrize("op, shapes", [
    ("affine", [(16, 64), (64, 32), (32,)]),
    ("matmul", [(16, 64), (64, 16)]),
    ("batched_matmul", [(4, 16, 16), (4, 16, 16)]),
    ("mul", [(32, 32), (32, 32)]),
    ("swap_first_two", [(16, 4, 16)]),
    ("row_mean", [(32, 48)]),
])
def test_polynomial_nodes_at_large_shapes_are_proved_at_every_entry(op, shapes):
    r = verify_node(op, shapes)
    assert r.verdict is sg.Verdict.PROVED and r.method == SPARSE
    assert r.checked == r.entries == sum(int(np.prod(s)) for s in shapes)
    assert r.terms > 0


@pytest.mark.parametrize("name, shapes", [
    ("matmul_missing_transpose", [(32, 32), (32, 32)]),
    ("matmul_swapped_dW", [(32, 32), (32, 32)]),
    ("affine_db_first_row", [(16, 32), (32, 16), (16,)]),
    ("batched_matmul_dB_no_transpose", [(4, 16, 16), (4, 16, 16)]),
    ("mul_square_no_doubling", [(32, 32)]),
    ("sub_sign", [(32, 32), (32, 32)]),
])
def test_their_wrong_twins_at_large_shapes_are_refuted(name, shapes):
    m = MUTANTS[name]
    r = verify_node(m.op, shapes, params=m.params, reads=m.reads, vjp=m.vjp)
    assert r.verdict is sg.Verdict.REFUTED and r.witness is not None


def test_a_wrong_entry_anywhere_is_found():
    def one_wrong(g, out, x, W, b):
        gx, gW, gb = affine_right(g, out, x, W, b)
        gW[63, 15] = gW[63, 15] + g[7, 15] * x[7, 63]      # doubled at the last entry only
        return gx, gW, gb
    r = sg.check_vjp(affine, one_wrong, AFFINE, names=["x", "W", "b"])
    assert r.verdict is sg.Verdict.REFUTED
    assert (r.witness.input, tuple(r.witness.entry)) == ("W", (63, 15))


def test_floats_enter_as_the_exact_rationals_of_their_doubles():
    half_twice = lambda g, out, x, W, b: (fn.matmul(g, W.T) * 0.5 * 2.0,   # noqa: E731
                                          fn.matmul(x.T, g), g.sum(axis=0))
    assert sg.check_vjp(affine, half_twice, AFFINE).method == SPARSE
    # the double nearest 0.1, times 10, is not 1
    tenth = lambda g, out, x, W, b: (fn.matmul(g, W.T) * 0.1 * 10,   # noqa: E731
                                     fn.matmul(x.T, g), g.sum(axis=0))
    assert sg.check_vjp(affine, tenth, AFFINE).verdict is sg.Verdict.REFUTED


def test_a_rule_that_writes_into_what_it_is_given_changes_nothing_the_reference_reads():
    def vandal(g, out, x, W, b):
        right = affine_right(g, out, x, W, b)
        out *= 0                          # the forward's output, in place
        for v in out.flat:
            v.terms.clear() if hasattr(v, "terms") else None
        x[...] = 0
        return right
    r = sg.check_vjp(affine, vandal, AFFINE)
    assert r.verdict is sg.Verdict.PROVED and r.method == SPARSE

    kept = []

    def keeping(x, W, b):
        y = affine(x, W, b)
        kept.append(y)
        return y

    def rewrites_the_kept_output(g, out, x, W, b):
        for v in kept[-1].flat:           # the forward's own objects, through a global
            if hasattr(v, "terms"):
                v.terms.clear()
        return None, None, None           # zero: right only if the forward were now 0
    r = sg.check_vjp(keeping, rewrites_the_kept_output, AFFINE)
    assert r.verdict is sg.Verdict.REFUTED


def test_what_is_not_a_polynomial_takes_the_general_path():
    soft = lambda x: fn.exp(x) / fn.exp(x).sum(axis=-1, keepdims=True)   # noqa: E731
    right = lambda g, y, x: (y * (g - (g * y).sum(axis=-1, keepdims=True)),)   # noqa: E731
    r = sg.check_vjp(soft, right, [(16, 32)])
    assert r.verdict is sg.Verdict.PROVED and r.method.startswith("normal form")
    # a comparison in the rule (a relu written with where) — the general path's steps
    relu = lambda x: fn.relu(x)   # noqa: E731
    relu_rule = lambda g, y, x: (fn.where(x > 0, g, 0 * g),)   # noqa: E731
    r = sg.check_vjp(relu, relu_rule, [(32, 32)])
    assert r.verdict is sg.Verdict.PROVED and r.method != SPARSE
    # small obligations keep the general path's orbits and normal forms
    assert verify_node("affine", [(2, 3), (3, 2), (2,)]).method.startswith("normal form")


def test_the_exact_alarm_catches_a_reference_that_agrees_with_a_wrong_rule(monkeypatch):
    """A bug that made the reference agree with a wrong rule is caught by the exact
    evaluation, and the general path refutes the rule on its own."""
    real = sparse._sides

    def buggy(spec, sizes):     # a bug in symgrad: the reference read off the rule
        out_terms, reference, rule, terms = real(spec, sizes)
        return out_terms, rule, rule, terms
    monkeypatch.setattr(sparse, "_sides", buggy)
    doubled = lambda g, out, x, W, b: (fn.matmul(g, W.T), 2 * fn.matmul(x.T, g),  # noqa: E731
                                       g.sum(axis=0))
    r = sg.check_vjp(affine, doubled, AFFINE)
    assert r.verdict is sg.Verdict.REFUTED and r.witness.input == "W"


def test_derivative_weights_are_exact_for_the_degrees_they_claim():
    for m in (1, 2, 3):
        w = sparse._derivative_weights(m)
        for degree in range(2 * m + 1):       # p(t) = t^degree: p'(0) is 1 for degree 1
            got = sum(wt * t ** degree for wt, t in zip(w, range(-m, m + 1)))
            assert got == (1 if degree == 1 else 0)


def test_long_doubles_are_read_exactly():
    tiny = np.longdouble(1) + np.longdouble(2) ** -60    # 1 in float64, not in long double
    if tiny == 1:
        pytest.skip("this platform's long double is float64")
    r = sg.check_vjp(lambda x: x * tiny, lambda g, out, x: (g * 1,), [(32, 32)])
    assert r.verdict is sg.Verdict.REFUTED


def test_an_input_read_twice_is_two_arrays_as_on_the_general_path():
    def doubles_first(a, b):           # writes into its first argument, then reads the second
        a *= 2
        return a * b
    # f(x) = 2x·x, f′ = 4x; this rule claims 8x, right only if a and b were one array
    claimed = lambda g, out, a, b: (4 * g * a, 4 * g * b)   # noqa: E731
    for shape in [(4, 4), (32, 32)]:
        r = sg.check_vjp(doubles_first, claimed, [shape], reads=[0, 0])
        assert r.verdict is sg.Verdict.REFUTED, shape


def test_a_forward_memoised_by_id_is_not_fooled_by_a_reused_id():
    memo = {}

    def forward(x):
        if id(x) not in memo:
            memo[id(x)] = x * x
        return memo[id(x)]
    r = sg.check_vjp(forward, lambda g, out, x: (2 * g * x,), [(32, 32)])
    assert r.verdict is sg.Verdict.PROVED


def test_both_paths_read_a_bare_symengine_constant_the_same_way():
    import symengine as se
    c = se.Symbol("c")
    forward = lambda x: c * x * 0.1 * 10   # noqa: E731
    verdicts = {shape: sg.check_vjp(forward, lambda g, out, x: (g * c * 0.1 * 10,),
                                    [shape]).verdict for shape in [(4, 4), (32, 32)]}
    assert verdicts[(4, 4)] is verdicts[(32, 32)]

"""The third-order Taylor form (symgrad/intervals/cubic.py): each step's remainder bounds what
it drops, at sampled points of random forms; the cumulant tensors are the derivatives of
log Σ exp; the whole pass contains every value the graph takes at sampled, corner and ascent
points (tests/test_taylor.py runs that for both forms); and the samplers catch a pass
that drops a term (the checks have teeth)."""
import numpy as np
import pytest
import symengine as se

import symgrad as sg
from symgrad.intervals import cubic as K, default_values
from symgrad.intervals.chains import Univariate
from symgrad.intervals.enclose import Box
from symgrad.intervals.sample import inner_range
from symgrad.intervals.taylor import SMOOTH, Symbols
from symgrad.ops import get_op

from test_bounds import _outside
from test_taylor import _found, _points


def _random_form(rng, N, sym, scale, fresh=2):
    """A form over sym's n input symbols and ``fresh`` symbols of its own, radius ``scale``."""
    n = sym.n
    c = rng.standard_normal(N)
    a = rng.standard_normal((N, n)) * scale
    a = sym.fresh(a, rng.random(N) * scale * scale * fresh / 2)
    B = rng.standard_normal((N, n, n)) * scale ** 2
    C = rng.standard_normal((N, n, n, n)) * scale ** 3
    return K.Form3(c, a, B, C, np.zeros(N))


def _value(form, eps, eta):
    """c + a·(ε, η) + εᵀBε + C[ε³] at one point (η over the columns beyond ε)."""
    point = np.concatenate([eps, eta])[:form.a.shape[1]]
    return (form.c + form.a @ point + np.einsum("kij,i,j->k", form.B, eps, eps) +
            np.einsum("kijl,i,j,l->k", form.C, eps, eps, eps))


def _check_remainder(out, cols_before, true_value, eps, eta):
    """|true − (the part of ``out`` over the symbols that existed)| ≤ Σ|new coefficients| + r."""
    kept = K.Form3(out.c, out.a[:, :cols_before], out.B, out.C, out.r)
    gap = np.abs(true_value - _value(kept, eps, eta))
    allowed = np.abs(out.a[:, cols_before:]).sum(axis=1) + out.r
    assert np.all(gap <= allowed * (1 + 1e-9) + 1e-12), (gap - allowed).max()


def test_the_range_of_a_form_contains_every_sampled_value():
    rng = np.random.default_rng(0)
    sym = Symbols(4)
    form = _random_form(rng, 6, sym, 0.4)
    lo, hi = form.poly_range()
    for eps, eta in _points(rng, sym, 500):
        v = _value(form, eps, eta) - form.c
        assert np.all(lo <= v) and np.all(v <= hi)


def test_symmetrizing_keeps_the_polynomial_and_bounds_its_rounding():
    rng = np.random.default_rng(5)
    sym = Symbols(3)
    form = _random_form(rng, 4, sym, 0.7)
    B, C, moved = K._symmetric(form.B, form.C)
    assert np.allclose(B, B.transpose(0, 2, 1)) and np.allclose(C, C.transpose(0, 2, 1, 3))
    assert np.abs(B).sum() <= np.abs(form.B).sum() and np.abs(C).sum() <= np.abs(form.C).sum()
    same = K.Form3(form.c, form.a, B, C, form.r)
    for eps, eta in _points(rng, sym, 100):
        gap = np.abs(_value(same, eps, eta) - _value(form, eps, eta))
        assert np.all(gap <= moved + 1e-15)
    assert np.all(moved > 0) and np.all(moved < 1e-12)


@pytest.mark.parametrize("scale", [0.05, 0.3])
def test_a_product_bounds_what_it_drops(scale):
    rng = np.random.default_rng(1)
    sym = Symbols(3)
    x, y = _random_form(rng, 6, sym, scale), _random_form(rng, 6, sym, scale)
    P = np.array([[0, 1], [2, 3], [4, 5]])
    Q = np.array([[1, 0], [3, 2], [5, 4]])
    cols = sym.columns
    out = K.product(x, y, P, Q, sym)
    for eps, eta in _points(rng, sym):
        xv, yv = _value(x, eps, eta), _value(y, eps, eta)
        _check_remainder(out, cols, (xv[P] * yv[Q]).sum(axis=1), eps, eta)


@pytest.mark.parametrize("name", sorted(SMOOTH))
def test_a_univariate_step_bounds_what_it_drops(name, scale=0.2, linear=False):
    rng = np.random.default_rng(2)
    sym = Symbols(3)
    form = _random_form(rng, 5, sym, scale)
    if linear:   # a form linear in ε: only the step's own terms cover the curvature
        form = K.Form3(form.c, form.a[:, :3], np.zeros_like(form.B), np.zeros_like(form.C),
                       form.r)
    if name in ("log", "sqrt", "inv"):
        form = form.moved(np.abs(form.c) + 2.0, form.r)
    fn = Univariate.of_op(get_op(name), {})
    cols = sym.columns
    out = K.univariate(form, fn, sym)
    f = np.vectorize(lambda v: float(fn.derivatives[0].subs({se.Symbol("t"): v})))
    for eps, eta in _points(rng, sym, 60):
        _check_remainder(out, cols, f(_value(form, eps, eta)), eps, eta)


def test_the_cumulant_tensors_are_the_derivatives_of_log_sum_exp():
    from scipy.special import logsumexp
    z = np.array([0.3, -0.2, 0.5, 0.1])
    H, T = K._cumulants(np.exp(z - logsumexp(z)))
    h, L = 1e-3, 4
    for j, k, m in np.ndindex(L, L, L):
        def f(a, b, c):
            e = np.zeros(L)
            e[j] += a
            e[k] += b
            e[m] += c
            return logsumexp(z + e)
        third = sum(s1 * s2 * s3 * f(s1 * h, s2 * h, s3 * h) for s1 in (1, -1)
                    for s2 in (1, -1) for s3 in (1, -1)) / (8 * h ** 3)
        assert third == pytest.approx(T[j, k, m], abs=1e-6)
    e = np.eye(L)
    second = [[(logsumexp(z + h * (e[j] + e[k])) - logsumexp(z + h * (e[j] - e[k])) -
                logsumexp(z - h * (e[j] - e[k])) + logsumexp(z - h * (e[j] + e[k]))) / (4 * h * h)
               for k in range(L)] for j in range(L)]
    assert np.allclose(second, H, atol=1e-6)


@pytest.mark.parametrize("scale", [0.1, 0.4])
def test_the_log_sum_exp_softmax_bounds_what_it_drops(scale, linear=False):
    rng = np.random.default_rng(3)
    sym = Symbols(3)
    form = _random_form(rng, 8, sym, scale)
    if linear:   # only the log-sum-exp's and exp's own terms cover the curvature
        form = K.Form3(form.c, form.a[:, :3], np.zeros_like(form.B), np.zeros_like(form.C),
                       form.r)
    cols = sym.columns
    out = K.softmax_lse(form, (2, 4), sym)
    for eps, eta in _points(rng, sym):
        z = _value(form, eps, eta).reshape(2, 4)
        y = np.exp(z - z.max(axis=1, keepdims=True))
        _check_remainder(out, cols, (y / y.sum(axis=1, keepdims=True)).ravel(), eps, eta)


def _drop_sum(monkeypatch, spec):
    real = K._sum

    def dropping(given, *ops):
        out = real(given, *ops)
        return np.zeros_like(out) if given == spec else out
    monkeypatch.setattr(K, "_sum", dropping)


def test_a_pass_that_drops_a_term_is_caught_by_the_sampler(monkeypatch):
    """A product without its quadratic term."""
    graph = sg.models.mha(4, 8, 2, 4)
    box = Box(graph, default_values(graph, seed=0), 0.1, [0])
    _drop_sum(monkeypatch, "oki,okj->oij")
    inner = inner_range(graph, box, samples=64, corners=64, ascent=4, seed=0)
    bad = _outside(graph, _found(graph, box, "cubic"), inner)
    assert bad, "the sampler did not catch a product without its quadratic term"


def _only(form, *parts):
    """``form`` with only the named parts of its polynomial ("a", "B", "C"; no remainder
    symbols): the terms a step keeps are then all it has to get right."""
    n = form.B.shape[1]
    return K.Form3(form.c, form.a[:, :n] if "a" in parts else np.zeros_like(form.a[:, :n]),
                   form.B if "B" in parts else np.zeros_like(form.B),
                   form.C if "C" in parts else np.zeros_like(form.C), form.r)


@pytest.mark.parametrize("mutant", ["no remainder symbols", "oki,okjl->oijl",
                                    "okij,okl->oijl"])
def test_a_product_that_drops_a_term_is_caught(monkeypatch, mutant):
    """Without its remainder symbols, or without one of its two cubic terms A·Q."""
    rng = np.random.default_rng(4)
    sym = Symbols(3)
    x, y = _random_form(rng, 4, sym, 0.3), _random_form(rng, 4, sym, 0.3)
    if mutant != "no remainder symbols":   # linear times quadratic: the cubic term is exact
        x, y = _only(x, "a"), _only(y, "a", "B")
        if mutant == "okij,okl->oijl":
            x, y = y, x
        _drop_sum(monkeypatch, mutant)
    else:
        monkeypatch.setattr(Symbols, "fresh", lambda self, a, rem: K._padded(a, self.columns))
    P = Q = np.array([[0, 1], [2, 3]])
    cols = sym.columns
    out = K.product(x, y, P, Q, sym)
    with pytest.raises(AssertionError):
        for eps, eta in _points(rng, sym):
            xv, yv = _value(x, eps, eta), _value(y, eps, eta)
            _check_remainder(out, cols, (xv[P] * yv[Q]).sum(axis=1), eps, eta)


@pytest.mark.parametrize("mutant", ["no fourth-order remainder", "no cubic term"])
def test_a_univariate_step_that_drops_a_term_is_caught(monkeypatch, mutant):
    if mutant == "no fourth-order remainder":
        monkeypatch.setattr(K, "WEIGHTS", [0.0] * K.PIECES)
    else:
        _drop_sum(monkeypatch, "ki,kj,kl->kijl")
    with pytest.raises(AssertionError):
        test_a_univariate_step_bounds_what_it_drops("exp", scale=0.5, linear=True)


def _log_sum_exp_check(scale):
    """The log-sum-exp step alone, on a form linear in ε, against log Σ exp."""
    from scipy.special import logsumexp
    rng = np.random.default_rng(6)
    sym = Symbols(3)
    form = _only(_random_form(rng, 8, sym, scale), "a")
    cols = sym.columns
    out = K._logsumexp(form, 2, 4, np.ones(8, bool), np.zeros(8), sym)
    for eps, eta in _points(rng, sym):
        z = _value(form, eps, eta).reshape(2, 4)
        _check_remainder(out, cols, logsumexp(z, axis=1), eps, eta)


@pytest.mark.parametrize("scale", [0.1, 0.5])
def test_the_log_sum_exp_bounds_what_it_drops(scale):
    _log_sum_exp_check(scale)


@pytest.mark.parametrize("mutant", ["no fourth-order remainder", "no cubic term"])
def test_a_log_sum_exp_that_drops_a_term_is_caught(monkeypatch, mutant):
    if mutant == "no fourth-order remainder":
        monkeypatch.setattr(K, "_spreads", lambda *a: np.zeros(2))
    else:
        _drop_sum(monkeypatch, "jkl,ja,kb,lc->abc")
    with pytest.raises(AssertionError):
        _log_sum_exp_check(0.5)


def test_an_overflowed_bound_is_infinite_not_dropped():
    """A remainder of ∞·0 (an overflowed range times a zero remainder) is NaN: it must widen
    the row to everything, never vanish (red-team finding)."""
    sym = Symbols(1)
    z3 = np.zeros((1, 1, 1, 1))
    x = K.Form3(np.zeros(1), np.array([[2e154]]), np.array([[[-2e154]]]), z3, np.zeros(1))
    y = K.Form3(np.zeros(1), np.array([[0.0]]), np.array([[[1.0]]]), z3, np.zeros(1))
    with np.errstate(over="ignore", invalid="ignore"):
        lo, hi = K.product(x, y, np.array([[0]]), np.array([[0]]), sym).enclosure()
    true = (2e154 * -1.0 - 2e154) * 1.0     # ε = −1
    assert lo[0] <= true <= hi[0]
    nan = K.Form3(np.zeros(1), np.array([[np.nan]]), np.zeros((1, 1, 1)), z3, np.zeros(1))
    assert nan.varying and np.isinf(nan.enclosure()[1][0])

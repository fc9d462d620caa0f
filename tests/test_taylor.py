"""The second-order Taylor form (symgrad/intervals/taylor.py) — and, for the whole pass, the
third-order one (cubic.py): each step's remainder bounds
what it drops, at sampled points of random forms; the whole pass contains every value the
graph takes at sampled, corner and ascent points; and the samplers catch a pass that drops
a remainder (the checks have teeth)."""
import numpy as np
import pytest
import symengine as se

import symgrad as sg
from symgrad.intervals import default_values, taylor as T
from symgrad.intervals.chains import Univariate, interval_of
from symgrad.intervals.cubic import cubic_form
from symgrad.intervals.enclose import Box
from symgrad.intervals.interval import Interval, bounds_arrays
from symgrad.intervals.sample import inner_range
from symgrad.ops import get_op

from test_bounds import GRAPHS, _outside


def _random_form(rng, N, sym, scale, fresh=2):
    """A form over sym's n input symbols and ``fresh`` symbols of its own, radius ``scale``."""
    n = sym.n
    c = rng.standard_normal(N)
    a = rng.standard_normal((N, n)) * scale
    a = sym.fresh(a, rng.random(N) * scale * scale * fresh / 2)
    B = rng.standard_normal((N, n, n)) * scale * scale
    return T.Form(c, a, B, np.zeros(N))


def _value(form, eps, eta):
    """c + a·(ε, η) + εᵀBε at one point (η over the columns beyond ε, zero-padded)."""
    cols = form.a.shape[1]
    point = np.concatenate([eps, eta])[:cols]
    return form.c + form.a @ point + np.einsum("kij,i,j->k", form.B, eps, eps)


def _check_remainder(out, cols_before, true_value, eps, eta):
    """|true − (the part of ``out`` over the symbols that existed)| ≤ Σ|new coefficients| + r."""
    kept = T.Form(out.c, out.a[:, :cols_before], out.B, out.r)
    gap = np.abs(true_value - _value(kept, eps, eta))
    allowed = np.abs(out.a[:, cols_before:]).sum(axis=1) + out.r
    assert np.all(gap <= allowed * (1 + 1e-9) + 1e-12), (gap - allowed).max()


def _points(rng, sym, count=200):
    for _ in range(count):
        eps = rng.choice([-1.0, 1.0], sym.n) if rng.random() < 0.5 else rng.uniform(-1, 1, sym.n)
        yield eps, rng.uniform(-1, 1, sym.columns - sym.n + 64)


def test_the_range_of_a_form_contains_every_sampled_value_and_is_sharp_for_diagonal_b():
    rng = np.random.default_rng(0)
    sym = T.Symbols(4)
    form = _random_form(rng, 6, sym, 0.3)
    lo, hi = form.poly_range()
    for eps, eta in _points(rng, sym, 500):
        v = _value(form, eps, eta) - form.c
        assert np.all(lo <= v) and np.all(v <= hi)
    diag = T.Form(np.zeros(1), np.array([[0.3, -0.2]]), np.diag([0.5, -0.4])[None], np.zeros(1))
    lo, hi = diag.poly_range()
    # 0.3ε + 0.5ε²: max 0.8 (ε = 1), min −0.045 (ε = −0.3); −0.2ε − 0.4ε²: max 0.025
    # (ε = −1/4), min −0.6 (ε = 1) — exact, up to the rounding slack
    assert hi[0] == pytest.approx(0.825, rel=1e-12)
    assert lo[0] == pytest.approx(-0.645, rel=1e-12)


@pytest.mark.parametrize("scale", [0.05, 0.3])
def test_a_product_bounds_what_it_drops(scale):
    rng = np.random.default_rng(1)
    sym = T.Symbols(3)
    x, y = _random_form(rng, 6, sym, scale), _random_form(rng, 6, sym, scale)
    P = np.array([[0, 1], [2, 3], [4, 5]])
    Q = np.array([[1, 0], [3, 2], [5, 4]])
    cols = sym.columns
    out = T.product(x, y, P, Q, sym)
    for eps, eta in _points(rng, sym):
        xv, yv = _value(x, eps, eta), _value(y, eps, eta)
        _check_remainder(out, cols, (xv[P] * yv[Q]).sum(axis=1), eps, eta)


@pytest.mark.parametrize("name", sorted(T.SMOOTH))
def test_a_univariate_step_bounds_what_it_drops(name, scale=0.2, linear=False):
    rng = np.random.default_rng(2)
    sym = T.Symbols(3)
    form = _random_form(rng, 5, sym, scale)
    if linear:   # a form linear in ε: only the step's own terms cover the curvature
        form = T.Form(form.c, form.a[:, :3], np.zeros_like(form.B), form.r)
    if name in ("log", "sqrt", "inv"):
        form.c = np.abs(form.c) + 2.0
    fn = Univariate.of_op(get_op(name), {})
    cols = sym.columns
    out = T.univariate(form, fn, sym)
    f = np.vectorize(lambda v: float(fn.derivatives[0].subs({se.Symbol("t"): v})))
    for eps, eta in _points(rng, sym, 60):
        _check_remainder(out, cols, f(_value(form, eps, eta)), eps, eta)


def test_the_log_sum_exp_softmax_bounds_what_it_drops():
    rng = np.random.default_rng(3)
    sym = T.Symbols(3)
    form = _random_form(rng, 8, sym, 0.4)
    cols = sym.columns
    out = T.softmax_lse(form, (2, 4), sym)
    for eps, eta in _points(rng, sym):
        z = _value(form, eps, eta).reshape(2, 4)
        y = np.exp(z - z.max(axis=1, keepdims=True))
        _check_remainder(out, cols, (y / y.sum(axis=1, keepdims=True)).ravel(), eps, eta)


@pytest.mark.parametrize("name", sorted(T.SMOOTH))
def test_derivative_enclosures_contain_the_derivatives(name):
    fn = Univariate.of_op(get_op(name), {})
    lo, hi = (0.3, 2.5) if name in ("log", "sqrt", "inv") else (-2.0, 1.5)
    X = Interval(lo, hi)
    t = se.Symbol("t")
    for k in range(4):
        enclosure = fn.at(X, k)
        for v in np.linspace(lo, hi, 9):
            value = float(fn.derivatives[k].subs({t: v}))
            assert enclosure.lo <= value <= enclosure.hi, (name, k, v)


def test_an_expression_outside_the_walker_is_refused():
    with pytest.raises(sg.InputError):
        interval_of(se.Abs(se.Symbol("t")), {se.Symbol("t"): Interval(-1.0, 1.0)})


FORMS = {"taylor": T.taylor_form, "cubic": cubic_form}


def _found(graph, box, form="taylor"):
    vals = FORMS[form](graph, box, None, {})
    return sg.Bounds(graph.name, form, 0.0, ["x"], 0.0,
                     {v: bounds_arrays(e) for v, e in zip(graph.values, vals)})


@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize("name", sorted(GRAPHS))
@pytest.mark.parametrize("radius", [0.02, 0.1])
def test_the_form_alone_contains_every_found_value(name, radius, form):
    """The second- and third-order forms without the other methods' enclosures: their
    own forms must hold."""
    graph = GRAPHS[name]()
    box = Box(graph, default_values(graph, seed=5), radius, [0])
    inner = inner_range(graph, box, samples=16, corners=16, ascent=3, seed=2)
    bad = _outside(graph, _found(graph, box, form), inner)
    assert not bad, f"{len(bad)} values outside; first: {bad[0]}"


@pytest.mark.parametrize("mutant", ["no remainder symbols", "no quadratic term of a product"])
def test_a_pass_that_drops_a_term_is_caught_by_the_sampler(monkeypatch, mutant):
    graph = sg.models.mha(4, 8, 2, 4)
    box = Box(graph, default_values(graph, seed=0), 0.1, [0])
    if mutant == "no remainder symbols":
        monkeypatch.setattr(T.Symbols, "fresh", lambda self, a, rem: T._padded(a, self.columns))
    else:
        _drop_einsum(monkeypatch, "oki,okj->oij")
    inner = inner_range(graph, box, samples=64, corners=64, ascent=4, seed=0)
    bad = _outside(graph, _found(graph, box), inner)
    assert bad, f"the sampler did not catch a pass with {mutant}"


def _drop_einsum(monkeypatch, spec):
    real = np.einsum

    def einsum(given, *ops, **kw):
        out = real(given, *ops, **kw)
        return np.zeros_like(out) if given == spec else out
    monkeypatch.setattr(T.np, "einsum", einsum)


@pytest.mark.parametrize("mutant", ["no third-order remainder", "no quadratic term"])
def test_a_univariate_step_that_drops_a_term_is_caught(monkeypatch, mutant):
    if mutant == "no third-order remainder":
        monkeypatch.setattr(T, "WEIGHTS", [0.0] * T.PIECES)
    else:
        _drop_einsum(monkeypatch, "ki,kj->kij")
    with pytest.raises(AssertionError):
        test_a_univariate_step_bounds_what_it_drops("exp", scale=0.5, linear=True)

"""Fitted polynomials and the variance floor (symgrad/intervals/chains.py, taylor.series):
a fit's enclosure of f − p holds at every point of a dense grid of its interval and is
not much wider than what the grid finds; a univariate step on a wide form takes fits and
still bounds what it drops; LayerNorm's variance floor lies below the least variance
sampled; and each check catches a mutant that forgets a term (the checks have teeth)."""
from fractions import Fraction

import mpmath
import numpy as np
import pytest
from flint import arb

import symgrad as sg
from symgrad.intervals import chains, cubic as K, default_values, taylor as T
from symgrad.intervals.chains import Univariate, variance_floor
from symgrad.ops import get_op

from test_taylor import _check_remainder as _check_taylor, _points, _random_form, \
    _value as _value_taylor
from test_cubic import _check_remainder, _value

CASES = [
    ("rsqrt", -1, 0.15, 0.9, 3),
    ("rsqrt", -1, 0.003, 0.5, 1),
    ("gelu_tanh", 0, -1.5, 1.7, 3),
    ("gelu_tanh", 0, -2.0, 0.4, 2),
    ("exp", -1, -2.0, 0.5, 3),
    ("recip", -1, 0.5, 3.0, 2),
    ("tanh", 0, -2.0, 2.0, 1),
]


def _function(name):
    if name == "rsqrt":
        return Univariate.kind("rsqrt", eps=1e-5)
    if name in ("exp", "recip"):
        return Univariate.kind(name)
    return Univariate.of_op(get_op(name), {})


def _fit_holds(fn, lo, hi, degree, c):
    """The fit at centre c: every grid point's f(t) − p(t) (f in arb, p exactly) inside
    [g_lo, g_hi]; returns the enclosure's width over the grid's range of f − p."""
    p, g_lo, g_hi = fn.fit(c, lo, hi, degree)
    grid = np.concatenate([np.linspace(lo, hi, 2001), [lo, hi, c if lo <= c <= hi else lo]])
    gaps = []
    for t in grid:
        value = fn.at(chains.Interval(t, t), 0)
        exact_p = sum(Fraction(float(q)) * (Fraction(float(t)) - Fraction(float(c))) ** k
                      for k, q in enumerate(p))
        low = arb(value.lo) - arb(exact_p.numerator) / exact_p.denominator
        high = arb(value.hi) - arb(exact_p.numerator) / exact_p.denominator
        assert float(low.lower()) >= g_lo and float(high.upper()) <= g_hi, \
            f"f − p at t = {t!r} is outside [{g_lo}, {g_hi}]"
        gaps.append(float(low.mid()))
    return (g_hi - g_lo) / max(max(gaps) - min(gaps), 1e-300)


@pytest.mark.parametrize("name,shift,lo,hi,degree", CASES)
def test_a_fit_encloses_f_minus_p_at_every_point_and_is_not_loose(name, shift, lo, hi, degree):
    fn = _function(name)
    c = (lo + hi) / 2 + shift * (hi - lo) / 8     # a centre off the middle, as forms have
    ratio = _fit_holds(fn, lo, hi, degree, c)
    assert ratio < 3, f"the enclosure is {ratio:.2f}× the range of f − p on the grid"


def test_a_fit_that_only_samples_its_pieces_is_caught(monkeypatch):
    """The grid check has teeth: f − p taken at the pieces' midpoints only misses its
    extremes."""
    real = Univariate.fit

    def sampled(self, c, lo, hi, degree):
        p, _, _ = real(self, c, lo, hi, degree)
        mids = (np.linspace(lo, hi, chains.FIT_PIECES + 1)[:-1] + (hi - lo) / chains.FIT_PIECES / 2)
        gaps = [(self.at(chains.Interval(m, m), 0).lo - sum(q * (m - c) ** k for k, q in
                                                            enumerate(p))) for m in mids]
        return p, min(gaps), max(gaps)
    monkeypatch.setattr(Univariate, "fit", sampled)
    with pytest.raises(AssertionError, match="outside"):
        _fit_holds(_function("gelu_tanh"), -1.5, 1.7, 3, 0.3)


def test_no_fit_outside_a_finite_interval_or_on_one_a_few_ulps_wide():
    fn = _function("exp")
    assert fn.fit(0.0, -np.inf, 1.0, 2) is None and fn.fit(0.0, 1.0, 1.0, 2) is None
    c = -800.0   # the Chebyshev nodes coincide in floats (a singular system, once)
    assert fn.fit(c, np.nextafter(c, -np.inf), np.nextafter(c, np.inf), 3) is None


@pytest.mark.parametrize("op,x,radius", [("exp", -800.0, 1e-14), ("sigmoid", 800.0, 1e-14)])
def test_a_radius_below_an_ulp_where_the_derivatives_underflow_is_enclosed(op, x, radius):
    """Taylor's rest is all of the change there, so fits are tried on a range of a few
    ulps (red-team finding: a LinAlgError escaped)."""
    g = sg.Graph([("x", (1, 1))], name="g")
    g.add(op, 0, name="out")
    f = {"exp": mpmath.exp, "sigmoid": lambda t: 1 / (1 + mpmath.exp(-t))}[op]
    with mpmath.workdps(60):
        ends = [f(mpmath.mpf(x) + s * mpmath.mpf(radius)) for s in (-1, 0, 1)]
        for method in ("taylor", "cubic"):
            lo, hi = sg.bounds(g, {"x": np.array([[x]])}, radius, method=method).values["out"]
            assert all(mpmath.mpf(lo[0, 0]) <= v <= mpmath.mpf(hi[0, 0]) for v in ends)


def _wide_step(module, name, monkeypatch=None, forget=False, narrow=False):
    """A univariate step on a form of radius ~1 (fits are taken there), checked at sampled
    points; returns (widths with fits, widths by Taylor alone)."""
    rng = np.random.default_rng(4)
    sym = T.Symbols(3)
    if module is K:
        form = K.Form3(*(lambda f: (f.c, f.a, f.B, np.zeros((6, 3, 3, 3)), f.r))(
            _random_form(rng, 6, sym, 0.45)))
        value, check = _value, _check_remainder
    else:
        form = _random_form(rng, 6, sym, 0.45)
        value, check = _value_taylor, _check_taylor
    fn = _function(name)
    if name == "rsqrt":
        form = form.moved(np.abs(form.c) * 0.3 + 4.0, form.r)
    cols = sym.columns
    if forget:   # the mutant: a fit whose f − p is taken to be 0
        real = Univariate.fit
        monkeypatch.setattr(Univariate, "fit", lambda self, *a: (lambda f: f and (
            f[0], 0.0, 0.0))(real(self, *a)))
    lo, hi = form.enclosure()
    known = (lo, hi)
    if narrow:   # the mutant: a "known" range that leaves out a third of the true one
        known = (lo + (hi - lo) / 3, hi - (hi - lo) / 3)
    domain = (0.0, np.inf) if name == "rsqrt" else (-np.inf, np.inf)
    out = module.univariate(form, fn, sym, domain=domain, known=known)
    f = np.vectorize(lambda v: (lambda i: (i.lo + i.hi) / 2)(fn.at(chains.Interval(v, v), 0)))
    for eps, eta in _points(rng, sym, 80):
        check(out, cols, f(value(form, eps, eta)), eps, eta)
    plain_sym = T.Symbols(3)
    plain_sym.columns = cols
    saved = T.FIT_FROM
    T.FIT_FROM = np.inf
    try:
        plain = module.univariate(form, fn, plain_sym, domain=domain, known=(lo, hi))
    finally:
        T.FIT_FROM = saved
    o_lo, o_hi = out.enclosure()
    p_lo, p_hi = plain.enclosure()
    return o_hi - o_lo, p_hi - p_lo


@pytest.mark.parametrize("module", [T, K], ids=["taylor", "cubic"])
@pytest.mark.parametrize("name", ["gelu_tanh", "rsqrt", "tanh"])
def test_a_univariate_step_on_a_wide_form_takes_fits_and_bounds_what_it_drops(module, name):
    fitted, plain = _wide_step(module, name)
    assert np.all(fitted <= plain * (1 + 1e-12)), "a fit made an entry wider"
    assert np.any(fitted < 0.9 * plain), "no entry gained from a fit on a wide form"


@pytest.mark.parametrize("module", [T, K], ids=["taylor", "cubic"])
def test_a_fit_that_forgets_its_error_is_caught(module, monkeypatch):
    with pytest.raises(AssertionError):
        _wide_step(module, "gelu_tanh", monkeypatch, forget=True)


@pytest.mark.parametrize("module", [T, K], ids=["taylor", "cubic"])
def test_fits_rest_on_the_known_range_so_a_wrong_one_is_caught(module):
    """The step trusts ``known``: given a range that leaves out true arguments, its fits
    (and Taylor's remainder) are wrong there, and the sampler sees it."""
    with pytest.raises(AssertionError):
        _wide_step(module, "gelu_tanh", narrow=True)


def _floor_case(seed=5, rows=2, d=8):
    rng = np.random.default_rng(seed)
    sym = T.Symbols(4)
    form = _random_form(rng, rows * d, sym, 0.3)
    form = K.Form3(form.c * 0.6, form.a, form.B, np.zeros((rows * d, 4, 4, 4)), form.r)
    return rng, sym, form


def _least_sampled_variance(rng, sym, form, rows, d, count=3000):
    least = np.full(rows, np.inf)
    for eps, eta in _points(rng, sym, count):
        u = _value(form, eps, eta).reshape(rows, d)
        least = np.minimum(least, (u * u).mean(axis=1))
    return least


def test_the_variance_floor_is_below_every_sampled_variance_and_above_the_forms_own():
    rng, sym, form = _floor_case()
    alg = T.Algebra(sym, K.KIT)
    floor = variance_floor(alg, form, 2, 8)
    least = _least_sampled_variance(rng, sym, form, 2, 8)
    assert np.all(floor <= least), (floor, least)
    square = alg.product(form, form)
    own, _ = alg.bounds(alg.linear([(np.kron(np.eye(2), np.full((1, 8), 1 / 8)), square)]))
    assert np.all(floor > own) and np.all(floor > 0), (floor, own, least)


def test_a_variance_floor_without_its_offset_is_caught(monkeypatch):
    monkeypatch.setattr(chains, "_ball_bounds", lambda b: (0.0, 0.0))
    rng, sym, form = _floor_case()
    floor = variance_floor(T.Algebra(sym, K.KIT), form, 2, 8)
    assert np.any(floor > _least_sampled_variance(rng, sym, form, 2, 8))


def test_the_encoder_block_at_radius_0_1_is_narrower_than_layer_norm_as_a_whole():
    """The issue's hard case: the third-order form, with fits and the variance floor, is
    narrower than LayerNorm's whole-op bound (which it used to stay at)."""
    graph = sg.models.encoder_block(4, 8, 2, 4, 16)
    values = default_values(graph, seed=0)
    found = sg.bounds(graph, values, 0.1, method="cubic")
    lo, hi = found.per_method["cubic"]
    o_lo, o_hi = found.per_method["ops"]
    assert np.mean(hi - lo) < 0.95 * np.mean(o_hi - o_lo)


def _check_condensed(scale=1.0):
    """A form with symbols of its own from column ``since`` on, condensed into spare
    symbols (with ``scale`` < 1 the mutant that understates the folded mass); every
    sampled value of the form lies within the condensed form's reach."""
    rng = np.random.default_rng(8)
    sym = T.Symbols(3, spare=4)
    form = _random_form(rng, 4, sym, 0.3, fresh=2)
    a, B = form.a.copy(), form.B.copy()
    a[:, 3:7], B[:, 3:, :], B[:, :, 3:] = 0.0, 0.0, 0.0     # the spare symbols unused
    since = sym.columns
    form = K.Form3(form.c, sym.fresh(a, rng.random(4) * 0.2), B,
                   np.zeros((4, sym.n, sym.n, sym.n)), rng.random(4) * 0.01)
    alg = T.Algebra(sym, K.KIT)
    real = T._up
    if scale != 1.0:
        T._up = lambda x: real(x) * scale
    try:
        out = alg.condense(form, since)
    finally:
        T._up = real
    spare = [3, 4, 5, 6]
    assert not out.a[:, since:].any() and not out.r.any()
    assert np.count_nonzero(out.a[:, spare]) == 4      # one spare symbol per entry
    assert sym.take(1) is None                          # all four are used now
    for eps, eta in _points(rng, sym, 200):
        eps[3:7] = 0.0
        point = np.concatenate([eps, eta])
        # the true value: the form's own symbols anywhere, ρ at its ends
        true = form.c + form.a @ point[:form.a.shape[1]] + \
            np.einsum("kij,i,j->k", form.B, eps, eps) + form.r * rng.choice([-1, 1], 4)
        kept = out.c + out.a[:, :since] @ point[:since] + \
            np.einsum("kij,i,j->k", out.B, eps, eps)
        assert np.all(np.abs(true - kept) <= np.abs(out.a[:, spare]).sum(axis=1) + 1e-12)


def test_condensing_folds_a_rows_own_symbols_into_one_spare_symbol_soundly():
    _check_condensed()


def test_condensing_with_its_mass_understated_is_caught():
    with pytest.raises(AssertionError):
        _check_condensed(scale=0.5)


def test_condensing_without_spare_symbols_changes_nothing():
    rng = np.random.default_rng(9)
    sym = T.Symbols(3)
    form = _random_form(rng, 4, sym, 0.3)
    assert T.Algebra(sym).condense(form, 3) is form

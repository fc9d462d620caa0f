"""Joint bounds of a LayerNorm's output and of an affine map of it (symgrad/intervals/joint.py):
every sampled value of a random input form lies inside them, they are narrower than the
op's rule on the input's box, the staircase bound is never below the largest value found
and close to it, and a mutant that forgets a term is caught (the checks have teeth)."""
import math

import numpy as np
import pytest

import symgrad as sg
from symgrad.intervals import chains, cubic as K, default_values, joint, taylor as T
from symgrad.intervals.chains import centred
from symgrad.intervals.interval import Interval, bounds_arrays, interval_array
from symgrad.intervals.rules import layer_norm_stats

from test_cubic import _value
from test_taylor import _points

ROWS, D, EPS = 2, 8, 1e-5


def _case(seed=7, scale=0.12, rest=0.3):
    """A random input form of ROWS rows of D over 6 input symbols and a few of its own (a
    row's spread about 1, each entry's reach about 0.6, its polynomial part beyond the
    linear one ``rest`` of that), γ and β, and the algebra."""
    rng = np.random.default_rng(seed)
    sym = T.Symbols(6)
    N, n = ROWS * D, sym.n
    a = sym.fresh(rng.standard_normal((N, n)) * scale, rng.random(N) * scale * 0.5)
    B = rng.standard_normal((N, n, n)) * scale * rest / n
    C = rng.standard_normal((N, n, n, n)) * scale * rest / n ** 2
    x = K.Form3(rng.standard_normal(N), a, B, C, np.zeros(N))
    gamma = 1 + 0.1 * rng.standard_normal(D)
    beta = 0.1 * rng.standard_normal(D)
    return rng, sym, x, gamma, beta, T.Algebra(sym, K.KIT)


def _layer_norm(x, gamma, beta):
    u = x.reshape(ROWS, D) - x.reshape(ROWS, D).mean(axis=1, keepdims=True)
    return (u / np.sqrt((u * u).mean(axis=1, keepdims=True) + EPS) * gamma + beta).ravel()


def _samples(rng, sym, x, count=4000):
    return [_value(x, eps, eta) for eps, eta in _points(rng, sym, count)]


def _ln_bounds(alg, x, gamma, beta):
    lo, hi, _ = joint.layer_norm_bounds(alg, x, interval_array(gamma, gamma),
                                        interval_array(beta, beta), EPS, (ROWS, D))
    return lo, hi


def _outside(lo, hi, values):
    values = np.array(values)
    return int(np.sum((values < lo - 1e-12) | (values > hi + 1e-12)))


def test_layer_norm_bounds_hold_at_every_sampled_point_and_beat_the_box_rule():
    rng, sym, x, gamma, beta, alg = _case()
    lo, hi = _ln_bounds(alg, x, gamma, beta)
    values = [_layer_norm(v, gamma, beta) for v in _samples(rng, sym, x)]
    assert _outside(lo, hi, values) == 0
    x_lo, x_hi = x.enclosure()
    xhat, _ = layer_norm_stats(interval_array(x_lo.reshape(ROWS, D), x_hi.reshape(ROWS, D)), EPS)
    b_lo, b_hi = bounds_arrays(xhat * gamma + beta)
    assert np.mean(hi - lo) < 0.8 * np.mean(b_hi - b_lo), (np.mean(hi - lo), np.mean(b_hi - b_lo))
    found = np.array(values)
    assert np.all(hi - lo < 3 * (found.max(axis=0) - found.min(axis=0)))


def test_affine_bounds_after_a_layer_norm_hold_and_beat_the_map_of_its_bounds():
    rng, sym, x, gamma, beta, alg = _case(seed=11)
    W = rng.standard_normal((D, 5)) / math.sqrt(D)
    b = 0.1 * rng.standard_normal(5)
    M = np.kron(np.eye(ROWS), W.T)                     # out (row, j) = Σ_k W_kj y_(row, k)
    base = np.tile(beta @ W + b, ROWS)
    u = centred(alg, x, ROWS, D)
    lo, hi = joint.affine_bounds(alg, u, EPS, gamma, M, M, base - 1e-12, base + 1e-12, D)
    values = [(_layer_norm(v, gamma, beta).reshape(ROWS, D) @ W + b).ravel()
              for v in _samples(rng, sym, x)]
    assert _outside(lo, hi, values) == 0
    y_lo, y_hi = _ln_bounds(alg, x, gamma, beta)       # the map of the output's own bounds
    width = np.abs(M) @ (y_hi - y_lo)
    assert np.mean(hi - lo) < 0.8 * np.mean(width)


def test_a_map_that_reads_two_rows_pays_for_the_other_row():
    rng, sym, x, gamma, beta, alg = _case(seed=12)
    M = np.zeros((1, ROWS * D))
    M[0, :D] = rng.standard_normal(D)
    M[0, D] = 0.3                                       # one entry of the other row
    u = centred(alg, x, ROWS, D)
    lo, hi = joint.affine_bounds(alg, u, EPS, gamma, M, M, np.zeros(1), np.zeros(1), D)
    values = [M @ (_layer_norm(v, gamma, beta) - np.tile(beta, ROWS))
              for v in _samples(rng, sym, x)]
    assert _outside(lo, hi, values) == 0


def _chain_max(p, q, s, d, eps):
    """The largest φ on the joint set's boundary where φ is largest — the chain of support
    points for normals (cos θ, sin θ), θ from 0 to −π/2 — sampled densely along each
    edge: the true largest value, to within the sampling."""
    cp, ap, _, hp = p
    cq, aq, lq, _ = q
    best = []
    for k in range(len(cp)):
        thetas = np.linspace(0, -np.pi / 2, 4001)
        signs = np.sign(np.cos(thetas)[:, None] * ap[k] + np.sin(thetas)[:, None] * aq[k])
        P = cp[k] + signs @ ap[k] + hp[k]
        Q = cq[k] + signs @ aq[k] + lq[k]
        t = np.linspace(0, 1, 50)[:, None]
        P = (P[:-1] + t * (P[1:] - P[:-1])).ravel()
        Q = np.maximum((Q[:-1] + t * (Q[1:] - Q[:-1])).ravel(), 0.0)
        best.append((P / np.sqrt((s * P * P + Q) / d + eps.lo)).max())
    return np.array(best)


@pytest.mark.parametrize("s", [0.0, 1.0])
def test_the_staircase_is_above_every_point_and_close_to_the_largest(s):
    rng = np.random.default_rng(3)
    K_, m = 6, 12
    ap, aq = rng.standard_normal((K_, m)), rng.standard_normal((K_, m))
    aq[:3] = ap[:3] + 0.2 * aq[:3]                     # spread rising with the numerator
    p = (rng.standard_normal(K_), ap, np.full(K_, -0.05), np.full(K_, 0.05))
    q = (np.abs(aq).sum(axis=1) + 2.0, aq, np.full(K_, -0.1), np.full(K_, 0.1))   # q > 1
    eps = Interval(1e-5, 1e-5)
    bound = joint.largest(p, q, s, D, eps, np.full(K_, 1e3))
    found = _chain_max(p, q, s, D, eps)
    assert np.all(bound >= found)
    scale = np.abs(found) + 0.1
    assert np.all(bound - found < 0.02 * scale), (bound, found)


def test_layer_norm_bounds_without_the_tangents_offset_are_caught(monkeypatch):
    monkeypatch.setattr(chains, "_ball_bounds", lambda b: (0.0, 0.0))
    rng, sym, x, gamma, beta, alg = _case()
    lo, hi = _ln_bounds(alg, x, gamma, beta)
    values = [_layer_norm(v, gamma, beta) for v in _samples(rng, sym, x)]
    assert _outside(lo, hi, values) > 0


def test_bounds_that_forget_the_polynomial_rest_are_caught(monkeypatch):
    real = joint.parts

    def linear_only(form, columns):
        c, a, lo, hi = real(form, columns)
        return c, a, np.zeros_like(lo), np.zeros_like(hi)
    monkeypatch.setattr(joint, "parts", linear_only)
    rng, sym, x, gamma, beta, alg = _case(rest=3.0)
    lo, hi = _ln_bounds(alg, x, gamma, beta)
    values = [_layer_norm(v, gamma, beta) for v in _samples(rng, sym, x)]
    assert _outside(lo, hi, values) > 0


def test_an_affine_map_taken_at_zero_not_at_beta_is_caught_in_a_graph(monkeypatch):
    """Through the pipeline: the encoder's FFN input at radius 0.1, with the map's value at
    x̂ = 0 taken without β, leaves sampled values outside; with β, none."""
    from symgrad.intervals.enclose import Box
    from symgrad.intervals.sample import inner_range
    graph = sg.models.encoder_block(3, 4, 2, 2, 6)
    values = default_values(graph, seed=2)
    values["beta1"] = values["beta1"] + 0.5
    box = Box(graph, values, 0.1, [0])
    inner = inner_range(graph, box, samples=64, corners=64, ascent=2, seed=1)
    k = graph.values.index("ffn.hidden")
    lo, hi = sg.bounds(graph, values, 0.1, method="cubic").values["ffn.hidden"]
    assert np.all(lo <= inner.lo[k]) and np.all(inner.hi[k] <= hi)
    real = T._map_at
    monkeypatch.setattr(T, "_map_at", lambda node, args, p, row: real(
        node, args, p, np.zeros(np.shape(row))))
    lo, hi = sg.bounds(graph, values, 0.1, method="cubic").values["ffn.hidden"]
    assert np.any(lo > inner.lo[k]) or np.any(inner.hi[k] > hi)


def test_the_encoder_at_radius_0_1_is_narrower_with_the_joint_bounds(monkeypatch):
    graph = sg.models.encoder_block(4, 8, 2, 4, 16)
    values = default_values(graph, seed=0)
    lo, hi = sg.bounds(graph, values, 0.1, method="cubic").values["out"]
    monkeypatch.setattr(T, "_joint", lambda *args: None)
    o_lo, o_hi = sg.bounds(graph, values, 0.1, method="cubic").values["out"]
    assert np.mean(hi - lo) < 0.85 * np.mean(o_hi - o_lo)


def _plane(rows, d, seed):
    """A form of rows × d over two symbols, linear (no polynomial part, no remainder), and
    a dense grid of its values over z ∈ [−1, 1]²: the true extremes of anything of it."""
    rng = np.random.default_rng(seed)
    sym = T.Symbols(2)
    N = rows * d
    x = K.Form3(rng.standard_normal(N), rng.standard_normal((N, 2)) * 0.4,
                np.zeros((N, 2, 2)), np.zeros((N, 2, 2, 2)), np.zeros(N))
    z = np.stack(np.meshgrid(np.linspace(-1, 1, 301), np.linspace(-1, 1, 301)), -1).reshape(-1, 2)
    return sym, x, x.c[None, :] + z @ x.a.T, T.Algebra(sym, K.KIT), rng


def _ln_rows(X, rows, d, gamma, beta):
    u = X.reshape(len(X), rows, d)
    u = u - u.mean(axis=2, keepdims=True)
    return (u / np.sqrt((u * u).mean(axis=2, keepdims=True) + EPS) * gamma + beta).reshape(len(X), -1)


@pytest.mark.parametrize("d", [3, 5, 8])
def test_layer_norm_bounds_contain_a_dense_grid(d):
    """Sharp: with two symbols and no polynomial part, the grid finds the true extremes, so
    a rule that dropped a term (the entry's own u_k² in its spread, say) would cut them."""
    sym, x, X, alg, rng = _plane(2, d, seed=d)
    gamma, beta = 1 + 0.2 * rng.standard_normal(d), 0.1 * rng.standard_normal(d)
    lo, hi, _ = joint.layer_norm_bounds(alg, x, interval_array(gamma, gamma),
                                        interval_array(beta, beta), EPS, (2, d))
    Y = _ln_rows(X, 2, d, gamma, beta)
    assert np.all(lo <= Y.min(axis=0)) and np.all(Y.max(axis=0) <= hi)


def _two_rows_case(seed=5, d=4):
    sym, x, X, alg, rng = _plane(2, d, seed)
    gamma, beta = 1 + 0.2 * rng.standard_normal(d), 0.1 * rng.standard_normal(d)
    M = np.zeros((3, 2 * d))
    M[:, :d] = 2 * rng.standard_normal((3, d))
    M[:, d:] = rng.standard_normal((3, d)) * np.array([[1.0], [0.0], [0.2]])   # other row
    Y = _ln_rows(X, 2, d, gamma, beta) @ M.T
    base = np.tile(beta, 2) @ M.T
    return alg, centred(alg, x, 2, d), gamma, M, Y, base, d


def test_affine_bounds_contain_a_dense_grid_when_a_map_reads_two_rows_and_m_is_an_interval():
    alg, u, gamma, M, Y, base, d = _two_rows_case()
    lo, hi = joint.affine_bounds(alg, u, EPS, gamma, M, M, base - 1e-12, base + 1e-12, d)
    assert np.all(lo <= Y.min(axis=0)) and np.all(Y.max(axis=0) <= hi)
    w_lo, w_hi = joint.affine_bounds(alg, u, EPS, gamma, M - 1e-3, M + 1e-3, base - 1e-12,
                                     base + 1e-12, d)
    assert np.all(w_lo < lo) and np.all(hi < w_hi)   # M's width is paid for


def test_affine_bounds_that_forget_the_other_rows_are_caught(monkeypatch):
    monkeypatch.setattr(joint, "_other_rows", lambda *args: np.zeros(len(args[0])))
    alg, u, gamma, M, Y, base, d = _two_rows_case()
    lo, hi = joint.affine_bounds(alg, u, EPS, gamma, M, M, base - 1e-12, base + 1e-12, d)
    assert np.any(lo > Y.min(axis=0)) or np.any(Y.max(axis=0) > hi)


def test_a_numerator_whose_square_overflows_bounds_nothing_rather_than_zero():
    """P² overflowing once made the bound of P/√((P² + q)/d + ε) about 0 (its value here
    is near 2): it must be ≥ the value (∞ is sound)."""
    zero = np.zeros((1, 1))
    p = (np.array([2e154]), zero, np.zeros(1), np.zeros(1))
    q = (np.array([1.0]), zero, np.zeros(1), np.zeros(1))
    bound = joint.largest(p, q, 1.0, 4, Interval(1e-5, 1e-5), np.array([1e300]))
    assert bound[0] >= 1.99


def test_a_row_of_one_entry_is_left_to_the_ops_rule():
    sym, x, X, alg, rng = _plane(4, 1, seed=1)
    one = interval_array(np.ones(1), np.ones(1))
    assert joint.layer_norm_bounds(alg, x, one, one, EPS, (4, 1)) is None


def test_perturbed_gamma_and_beta_stay_sound_where_the_joint_rule_stands_aside():
    from symgrad.intervals.enclose import Box
    from symgrad.intervals.sample import inner_range
    graph = sg.models.encoder_block(3, 4, 2, 2, 6)
    values = default_values(graph, seed=4)
    perturb = ("x", "gamma1", "beta2")
    found = sg.bounds(graph, values, 0.05, perturb=perturb, method="cubic")
    index = [[name for name, _ in graph.inputs].index(n) for n in perturb]
    inner = inner_range(graph, Box(graph, values, 0.05, index), samples=32, corners=32,
                        ascent=2, seed=2)
    for i, name in enumerate(graph.values):
        lo, hi = found.values[name]
        assert np.all(lo <= inner.lo[i]) and np.all(inner.hi[i] <= hi), name


def test_a_subnormal_spread_and_epsilon_do_not_round_the_bound_below_the_value():
    """Found by a red team: with ε and the spread a few subnormal units, the denominator's
    rounding is absolute, not relative (the bound was 7 % below φ at z = 1)."""
    p = (np.array([1.571742558966898]), np.array([[0.0010152716646482012]]), np.zeros(1),
         np.zeros(1))
    q = (np.array([6.4e-323]), np.array([[-4e-323]]), np.zeros(1), np.zeros(1))
    bound = joint.largest(p, q, 0.0, 7, Interval(5e-324, 5e-324), np.ones(1))
    import mpmath
    with mpmath.workdps(40):
        value = (mpmath.mpf(1.571742558966898) + mpmath.mpf(0.0010152716646482012)) / \
            mpmath.sqrt((mpmath.mpf(6.4e-323) - mpmath.mpf(4e-323)) / 7 + mpmath.mpf(5e-324))
    assert bound[0] >= value

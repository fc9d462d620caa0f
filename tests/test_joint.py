"""Joint bounds of a LayerNorm's output and of an affine map of it (symgrad/intervals/joint.py):
every sampled value of a random input form lies inside them, they are narrower than the
op's rule on the input's box, the staircase bound is never below the largest value found
and close to it, and a mutant that forgets a term is caught (the checks have teeth)."""
import math

import numpy as np
import pytest

import symgrad as sg
from symgrad.intervals import cubic as K, default_values, joint, taylor as T
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
    monkeypatch.setattr(joint, "_ball_bounds", lambda b: (0.0, 0.0))
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

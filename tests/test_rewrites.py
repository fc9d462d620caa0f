"""Equivalent rewrites of correct rules are PROVED too: the check is about the function a
rule computes, not the way it is written."""
import numpy as np
import pytest

import symgrad as sg
from symgrad import fn


def softmax_jacobian_form(g, y, x):
    """(diag(y) − y yᵀ) g, row by row."""
    out = np.empty(x.shape, dtype=object)
    for r in range(x.shape[0]):
        J = np.diag(y[r]) - np.outer(y[r], y[r])
        out[r] = J @ g[r]
    return (out,)


def sigmoid_exp_form(g, y, x):
    return (g * fn.exp(-x) / (1 + fn.exp(-x)) ** 2,)


def layer_norm_textbook(g, out, x, gamma, beta, *, eps):
    """dx = (1/n)·inv_std·(n·dxhat − Σdxhat − xhat·Σ(dxhat·xhat)), written with the variance
    recomputed and the sums in another order."""
    n = x.shape[-1]
    mu = x.sum(axis=-1, keepdims=True) / n
    var = ((x - mu) * (x - mu)).sum(axis=-1, keepdims=True) / n
    inv_std = (var + eps) ** fn.rational(-1, 2)
    xhat = (x - mu) * inv_std
    dxhat = gamma * g
    dx = inv_std / n * (n * dxhat - dxhat.sum(axis=-1, keepdims=True)
                        - xhat * (xhat * dxhat).sum(axis=-1, keepdims=True))
    return dx, (xhat * g).sum(axis=0), g.sum(axis=0)


def log_softmax_recomputed(g, out, x):
    p = fn.exp(x) / fn.exp(x).sum(axis=-1, keepdims=True)
    return (g - p * g.sum(axis=-1, keepdims=True),)


def matmul_einsum(g, out, x, W):
    return np.einsum("ik,jk->ij", g, W), np.einsum("ij,ik->jk", x, g)


def tanh_via_square(g, out, x):
    return (g - g * out ** 2,)


def exp_recomputed(g, out, x):
    return (g * fn.exp(x),)


REWRITES = [
    ("softmax", [(2, 3)], softmax_jacobian_form, None),
    ("sigmoid", [(3,)], sigmoid_exp_form, None),
    ("layer_norm", [(2, 3), (3,), (3,)], layer_norm_textbook, None),
    ("log_softmax", [(2, 3)], log_softmax_recomputed, None),
    ("matmul", [(2, 3), (3, 2)], matmul_einsum, None),
    ("tanh", [(2, 2)], tanh_via_square, None),
    ("exp", [(2, 2)], exp_recomputed, None),
]


@pytest.mark.parametrize("op,shapes,rule,reads", REWRITES, ids=[r[2].__name__ for r in REWRITES])
def test_rewrite_proved(op, shapes, rule, reads):
    r = sg.verify_node(op, shapes, vjp=rule, reads=reads)
    assert r.verdict is sg.Verdict.PROVED, (r.reason, r.residual)


def test_square_as_one_cotangent():
    r = sg.check_vjp(lambda a, b: a * b, lambda g, y, a, b: (2 * g * a, None), [(2, 2)],
                     reads=[0, 0])
    assert r.verdict is sg.Verdict.PROVED

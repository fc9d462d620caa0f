"""LayerNorm: ``layer_norm`` (catalog ``layernorm``, form ``whole`` — one node — or
``decomposed`` — TorchLean's 14 nodes) and the in-graph LayerNorm the blocks use."""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from ..errors import InputError
from ..graph import Graph
from ..tensor import constant
from ._common import _check_dims, _labelled

DEFAULT_EPS = Fraction(1, 100000)


def _ln_whole(g, x, gamma, beta, eps, name):
    return g.add("layer_norm", x, gamma, beta, eps=eps, name=name)


def _ln_decomposed(g, x, gamma, beta, eps, m, n, name):
    """TorchLean's 14-node LayerNorm."""
    mu = g.add("row_mean", x, name=f"{name}.mean")
    mub = g.add("broadcast_row", mu, n=n, name=f"{name}.mean_b")
    xc = g.add("sub", x, mub, name=f"{name}.centered")
    sq = g.add("mul", xc, xc, name=f"{name}.sq")
    var = g.add("row_mean", sq, name=f"{name}.var")
    ve = g.add("add_bias", var, bias=np.full((m,), eps, dtype=object), name=f"{name}.var_eps")
    std = g.add("sqrt", ve, name=f"{name}.std")
    inv = g.add("inv", std, name=f"{name}.inv_std")
    invb = g.add("broadcast_row", inv, n=n, name=f"{name}.inv_std_b")
    xhat = g.add("mul", xc, invb, name=f"{name}.xhat")
    gb = g.add("broadcast_col", gamma, m=m, name=f"{name}.gamma_b")
    scaled = g.add("mul", xhat, gb, name=f"{name}.scaled")
    bb = g.add("broadcast_col", beta, m=m, name=f"{name}.beta_b")
    return g.add("add", scaled, bb, name=name)


def layer_norm(m, n, eps=None, form="whole") -> Graph:
    """LayerNorm of x (m×n) with γ, β (n,): ``form="whole"`` (one node, closed-form VJP) or
    ``"decomposed"`` (TorchLean's 14 nodes)."""
    _check_dims(m=m, n=n)
    eps = constant(DEFAULT_EPS) if eps is None else eps
    g = Graph([("x", (m, n)), ("gamma", (n,)), ("beta", (n,))], name="layernorm",
              info=dict(form=form, m=m, n=n, eps=str(eps)))
    if form == "whole":
        _ln_whole(g, 0, 1, 2, eps, "out")
    elif form == "decomposed":
        _ln_decomposed(g, 0, 1, 2, eps, m, n, "out")
    else:
        raise InputError(f"unknown LayerNorm form {form!r}; use whole or decomposed")
    return _labelled(g)

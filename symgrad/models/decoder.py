"""The GPT decoder: ``gpt_decoder_block`` (catalog ``decoder``), causal post-norm, with
learned weights or (``fixed_weights=True``, TorchLean's form) Wo and the FFN weights fixed."""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..graph import Graph
from ..tensor import constant
from ._common import _check_dims, _labelled
from .attention import _core, _heads, _mask_args, _scale
from .blocks import _post_norm_block
from .norm import DEFAULT_EPS, _ln_whole


def gpt_decoder_block(n, d_model, heads, head_dim, d_ff, bias=None, mask=None, causal=True,
                      layout="pytorch", c=None, eps=None, fixed_weights=False,
                      weights=None) -> Graph:
    """Post-norm GPT block: h = LN₁(x + MaskedMHA(x)); out = LN₂(h + FFN(h)); causal by
    default (hard mask, PyTorch's semantics). ``fixed_weights=True`` makes Wo, W1, b1, W2,
    b2 fixed parameters as in TorchLean (``weights`` may give them as arrays; by default
    they are symbolic constants), so only x, Wq, Wk, Wv, γ, β are inputs."""
    _check_dims(n=n, d_model=d_model, heads=heads, head_dim=head_dim, d_ff=d_ff)
    bias, mask = _mask_args(n, heads, bias, mask, causal)
    eps = constant(DEFAULT_EPS) if eps is None else eps
    if fixed_weights:
        return _fixed_decoder(n, d_model, heads, head_dim, d_ff, bias, mask, layout,
                              _scale(c, head_dim), eps, dict(weights or {}))
    return _post_norm_block("decoder", n, d_model, heads, head_dim, d_ff, layout, c, eps,
                            bias=bias, mask=mask)


def _fixed_decoder(n, d_model, heads, head_dim, d_ff, bias, mask, layout, c, eps, weights):
    from ..tensor import symbols
    hh = heads * head_dim
    shapes = {"Wo": (hh, d_model), "W1": (d_model, d_ff), "b1": (d_ff,),
              "W2": (d_ff, d_model), "b2": (d_model,)}
    unknown = set(weights) - set(shapes)
    if unknown:
        raise InputError(f"unknown fixed weights {sorted(unknown)}; the fixed weights are "
                         f"{', '.join(shapes)}")
    w = {}
    for k, s in shapes.items():
        w[k] = np.asarray(weights[k], dtype=object) if k in weights else symbols(k, s)
        if w[k].shape != s:
            raise InputError(f"fixed weight {k} has shape {w[k].shape}, expected {s}")
    g = Graph([("x", (n, d_model)), ("Wq", (d_model, hh)), ("Wk", (d_model, hh)),
               ("Wv", (d_model, hh)), ("gamma1", (d_model,)), ("beta1", (d_model,)),
               ("gamma2", (d_model,)), ("beta2", (d_model,))], name="decoder",
              info=dict(layout=layout, n=n, d_model=d_model, heads=heads,
                        head_dim=head_dim, d_ff=d_ff, norm="post", weights="fixed"))
    qb = g.add("matmul", 0, 1, name="Qbig")
    qh = _heads(g, qb, n, heads, head_dim, layout, "Q")
    kb = g.add("matmul", 0, 2, name="Kbig")
    kh = _heads(g, kb, n, heads, head_dim, layout, "K")
    kt = g.add("transpose_last_two", kh, name="Kt")
    vb = g.add("matmul", 0, 3, name="Vbig")
    vh = _heads(g, vb, n, heads, head_dim, layout, "V")
    probs = _core(g, qh, kt, c, bias=bias, mask=mask)
    ho = g.add("batched_matmul", probs, vh, name="headOut")
    sw = g.add("swap_first_two", ho, name="swapped")
    cat = g.add("reshape", sw, shape=(n, hh), name="concat")
    att = g.add("matmul_const", cat, W=w["Wo"], name="attn")
    r1 = g.add("add", 0, att, name="residual1")
    h = _ln_whole(g, r1, 4, 5, eps, "ln1")
    f1 = g.add("matmul_const", h, W=w["W1"], name="ffn.hidden0")
    f1 = g.add("add_bias", f1, bias=np.repeat(w["b1"][None, :], n, axis=0), name="ffn.hidden")
    a = g.add("gelu_tanh", f1, name="ffn.gelu")
    f2 = g.add("matmul_const", a, W=w["W2"], name="ffn.out0")
    f2 = g.add("add_bias", f2, bias=np.repeat(w["b2"][None, :], n, axis=0), name="ffn.out")
    r2 = g.add("add", h, f2, name="residual2")
    _ln_whole(g, r2, 6, 7, eps, "out")
    return _labelled(g)

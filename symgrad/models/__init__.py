"""The composer: Transformer graphs built from tape nodes (DESIGN.md §4 layouts).

Weights multiply on the right (``x @ W``, W: d_in × d_out); no projection bias in MHA; the
score scale c defaults to 1/√head_dim, exact.

>>> g = mha(n=2, d_model=2, heads=1, head_dim=2)
>>> g.values[:5], g.values[-1]
(['x', 'Wq', 'Wk', 'Wv', 'Wo'], 'out')
>>> len(mha(2, 2, 1, 2, layout="torchlean").nodes)
14
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import symengine as se

from ..errors import InputError
from ..graph import Graph
from ..ops.softmax import causal_mask
from ..tensor import constant

LAYOUTS = ("pytorch", "torchlean")
DEFAULT_EPS = Fraction(1, 100000)


def _scale(c, head_dim):
    return se.Integer(1) / se.sqrt(head_dim) if c is None else c


def _check_dims(**dims):
    for k, v in dims.items():
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v <= 0:
            raise InputError(f"{k} must be a positive integer, got {v!r}")


def _heads(g, big, n, heads, head_dim, layout, name):
    """Split n×(H·hd) into H×n×hd heads."""
    if layout == "torchlean":   # TorchLean: reshape n×(H·hd) directly to H×n×hd
        return g.add("reshape", big, shape=(heads, n, head_dim), name=f"{name}heads")
    split = g.add("reshape", big, shape=(n, heads, head_dim), name=f"{name}split")
    return g.add("swap_first_two", split, name=f"{name}heads")   # PyTorch: view + transpose


def _attention(g, x, wq, wk, wv, wo, n, heads, head_dim, layout, c, *, bias=None, mask=None,
               out="attn"):
    """Projections, head split, scores, softmax, merge, output projection; returns out."""
    if layout not in LAYOUTS:
        raise InputError(f"unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    qb = g.add("matmul", x, wq, name="Qbig")
    qh = _heads(g, qb, n, heads, head_dim, layout, "Q")
    kb = g.add("matmul", x, wk, name="Kbig")
    kh = _heads(g, kb, n, heads, head_dim, layout, "K")
    kt = g.add("transpose_last_two", kh, name="Kt")
    vb = g.add("matmul", x, wv, name="Vbig")
    vh = _heads(g, vb, n, heads, head_dim, layout, "V")
    probs = _core(g, qh, kt, c, bias=bias, mask=mask)
    ho = g.add("batched_matmul", probs, vh, name="headOut")
    sw = g.add("swap_first_two", ho, name="swapped")
    cat = g.add("reshape", sw, shape=(n, heads * head_dim), name="concat")
    return g.add("matmul", cat, wo, name=out)


def _core(g, q, kt, c, *, bias=None, mask=None):
    scores = g.add("batched_matmul", q, kt, name="scores")
    scaled = g.add("scale", scores, c=c, name="scaled")
    if mask is not None:
        return g.add("hard_masked_softmax", scaled, mask=mask, name="probs")
    if bias is not None:
        scaled = g.add("add_bias", scaled, bias=bias, name="biased")
    return g.add("softmax", scaled, name="probs")


#: the role of each axis of the builders' inputs (n positions, d model width, hh the
#: concatenated heads, ff the FFN width, h heads, hd head width)
_AXES = {"x": ("n", "d"), "Wq": ("d", "hh"), "Wk": ("d", "hh"), "Wv": ("d", "hh"),
         "Wo": ("hh", "d"), "gamma": ("d",), "beta": ("d",), "gamma1": ("d",),
         "beta1": ("d",), "gamma2": ("d",), "beta2": ("d",), "W1": ("d", "ff"),
         "b1": ("ff",), "W2": ("ff", "d"), "b2": ("d",), "Q": ("h", "n", "hd"),
         "Kt": ("h", "hd", "n"), "V": ("h", "n", "hd")}


def _labelled(g: Graph) -> Graph:
    g.axis_labels = {name: _AXES[name] for name, shape in g.inputs
                     if name in _AXES and len(_AXES[name]) == len(shape)}
    return g


def _mha_inputs(n, d_model, heads, head_dim):
    hh = heads * head_dim
    return [("x", (n, d_model)), ("Wq", (d_model, hh)), ("Wk", (d_model, hh)),
            ("Wv", (d_model, hh)), ("Wo", (hh, d_model))]


def mha(n, d_model, heads, head_dim, layout="pytorch", c=None) -> Graph:
    """Multi-head self-attention; inputs x, Wq, Wk, Wv, Wo; output ``out`` (n×d_model).
    ``layout="torchlean"`` has exactly TorchLean's 14 saved tensors."""
    _check_dims(n=n, d_model=d_model, heads=heads, head_dim=head_dim)
    g = Graph(_mha_inputs(n, d_model, heads, head_dim), name="mha",
              info=dict(layout=layout, n=n, d_model=d_model, heads=heads, head_dim=head_dim))
    _attention(g, 0, 1, 2, 3, 4, n, heads, head_dim, layout, _scale(c, head_dim), out="out")
    return _labelled(g)


def mha_residual(n, d_model, heads, head_dim, layout="pytorch", c=None) -> Graph:
    """x + MHA(x) (TorchLean appends one ``add`` of value 0 and the MHA output)."""
    _check_dims(n=n, d_model=d_model, heads=heads, head_dim=head_dim)
    g = Graph(_mha_inputs(n, d_model, heads, head_dim), name="residual",
              info=dict(layout=layout, n=n, d_model=d_model, heads=heads, head_dim=head_dim))
    att = _attention(g, 0, 1, 2, 3, 4, n, heads, head_dim, layout, _scale(c, head_dim))
    g.add("add", 0, att, name="out")
    return _labelled(g)


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


def mha_postnorm(n, d_model, heads, head_dim, layout="pytorch", c=None, eps=None) -> Graph:
    """LN(x + MHA(x)); inputs x, Wq, Wk, Wv, Wo, gamma, beta."""
    _check_dims(n=n, d_model=d_model, heads=heads, head_dim=head_dim)
    eps = constant(DEFAULT_EPS) if eps is None else eps
    g = Graph(_mha_inputs(n, d_model, heads, head_dim)
              + [("gamma", (d_model,)), ("beta", (d_model,))], name="postnorm",
              info=dict(layout=layout, n=n, d_model=d_model, heads=heads, head_dim=head_dim))
    att = _attention(g, 0, 1, 2, 3, 4, n, heads, head_dim, layout, _scale(c, head_dim))
    r = g.add("add", 0, att, name="residual")
    _ln_whole(g, r, 5, 6, eps, "out")
    return _labelled(g)


def _ffn(g, x, w1, b1, w2, b2, out="ffn.out"):
    h = g.add("affine", x, w1, b1, name="ffn.hidden")
    a = g.add("gelu_tanh", h, name="ffn.gelu")
    return g.add("affine", a, w2, b2, name=out)


def _ffn_inputs(d_model, d_ff):
    return [("W1", (d_model, d_ff)), ("b1", (d_ff,)), ("W2", (d_ff, d_model)),
            ("b2", (d_model,))]


def ffn(n, d_model, d_ff) -> Graph:
    """affine(W1, b1) → GELU (tanh) → affine(W2, b2); inputs x, W1, b1, W2, b2."""
    _check_dims(n=n, d_model=d_model, d_ff=d_ff)
    g = Graph([("x", (n, d_model))] + _ffn_inputs(d_model, d_ff), name="ffn",
              info=dict(n=n, d_model=d_model, d_ff=d_ff))
    _ffn(g, 0, 1, 2, 3, 4, out="out")
    return _labelled(g)


def _block_inputs(n, d_model, heads, head_dim, d_ff):
    return (_mha_inputs(n, d_model, heads, head_dim) + [("gamma1", (d_model,)),
            ("beta1", (d_model,))] + _ffn_inputs(d_model, d_ff)
            + [("gamma2", (d_model,)), ("beta2", (d_model,))])


def _post_norm_block(name, n, d_model, heads, head_dim, d_ff, layout, c, eps, *,
                     bias=None, mask=None) -> Graph:
    """h = LN₁(x + Attention(x)); out = LN₂(h + FFN(h)) — encoder and GPT decoder alike."""
    eps = constant(DEFAULT_EPS) if eps is None else eps
    g = Graph(_block_inputs(n, d_model, heads, head_dim, d_ff), name=name,
              info=dict(layout=layout, n=n, d_model=d_model, heads=heads,
                        head_dim=head_dim, d_ff=d_ff, norm="post"))
    att = _attention(g, 0, 1, 2, 3, 4, n, heads, head_dim, layout, _scale(c, head_dim),
                     bias=bias, mask=mask)
    r1 = g.add("add", 0, att, name="residual1")
    h = _ln_whole(g, r1, 5, 6, eps, "ln1")
    f = _ffn(g, h, 7, 8, 9, 10)
    r2 = g.add("add", h, f, name="residual2")
    _ln_whole(g, r2, 11, 12, eps, "out")
    return _labelled(g)


def encoder_block(n, d_model, heads, head_dim, d_ff, layout="pytorch", c=None,
                  eps=None) -> Graph:
    """Post-norm: h = LN₁(x + MHA(x)); out = LN₂(h + FFN(h))."""
    _check_dims(n=n, d_model=d_model, heads=heads, head_dim=head_dim, d_ff=d_ff)
    return _post_norm_block("encoder", n, d_model, heads, head_dim, d_ff, layout, c, eps)


def prenorm_encoder_block(n, d_model, heads, head_dim, d_ff, layout="pytorch", c=None,
                          eps=None) -> Graph:
    """Pre-norm: h = x + MHA(LN₁(x)); out = h + FFN(LN₂(h))."""
    _check_dims(n=n, d_model=d_model, heads=heads, head_dim=head_dim, d_ff=d_ff)
    eps = constant(DEFAULT_EPS) if eps is None else eps
    g = Graph(_block_inputs(n, d_model, heads, head_dim, d_ff), name="prenorm",
              info=dict(layout=layout, n=n, d_model=d_model, heads=heads,
                        head_dim=head_dim, d_ff=d_ff, norm="pre"))
    a = _ln_whole(g, 0, 5, 6, eps, "ln1")
    att = _attention(g, a, 1, 2, 3, 4, n, heads, head_dim, layout, _scale(c, head_dim))
    h = g.add("add", 0, att, name="residual1")
    b = _ln_whole(g, h, 11, 12, eps, "ln2")
    f = _ffn(g, b, 7, 8, 9, 10)
    g.add("add", h, f, name="out")
    return _labelled(g)


def _mask_args(n, heads, bias, mask, causal):
    if bias is not None and mask is not None:
        raise InputError("give either a finite bias or a boolean mask, not both")
    if causal and bias is None and mask is None:
        mask = causal_mask((heads, n, n))
    if mask is not None:
        mask = np.broadcast_to(np.asarray(mask, dtype=bool), (heads, n, n)).copy()
    if bias is not None:
        bias = np.broadcast_to(np.asarray(bias, dtype=object), (heads, n, n)).copy()
    return bias, mask


def masked_core(n, heads, head_dim, bias=None, mask=None, causal=False, c=None) -> Graph:
    """Inputs Q (H×n×hd), Kt (H×hd×n), V (H×n×hd): QKᵀ → c·QKᵀ → (+bias | hard mask) →
    softmax → ·V. ``causal=True`` is the hard mask unless a finite bias is given."""
    _check_dims(n=n, heads=heads, head_dim=head_dim)
    bias, mask = _mask_args(n, heads, bias, mask, causal)
    g = Graph([("Q", (heads, n, head_dim)), ("Kt", (heads, head_dim, n)),
               ("V", (heads, n, head_dim))], name="masked",
              info=dict(n=n, heads=heads, head_dim=head_dim,
                        mask="hard" if mask is not None else "bias" if bias is not None
                        else "none"))
    probs = _core(g, 0, 1, _scale(c, head_dim), bias=bias, mask=mask)
    g.add("batched_matmul", probs, 2, name="out")
    return _labelled(g)


def masked_mha(n, d_model, heads, head_dim, bias=None, mask=None, causal=True,
               layout="pytorch", c=None) -> Graph:
    """Projected masked attention with residual: x + Wo·merge(core(split(xW)))."""
    _check_dims(n=n, d_model=d_model, heads=heads, head_dim=head_dim)
    bias, mask = _mask_args(n, heads, bias, mask, causal)
    g = Graph(_mha_inputs(n, d_model, heads, head_dim), name="masked-mha",
              info=dict(layout=layout, n=n, d_model=d_model, heads=heads, head_dim=head_dim))
    att = _attention(g, 0, 1, 2, 3, 4, n, heads, head_dim, layout, _scale(c, head_dim),
                     bias=bias, mask=mask)
    g.add("add", 0, att, name="out")
    return _labelled(g)


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

"""Attention graphs: ``mha`` (catalog ``mha``, layout ``pytorch`` or ``torchlean``),
``mha_residual`` (``residual``), ``masked_core`` (``masked``) and ``masked_mha``
(``masked-mha``), with the head split, the attention core and the bias/mask arguments the
blocks and the decoder reuse."""
from __future__ import annotations

import numpy as np
import symengine as se

from ..errors import InputError
from ..graph import Graph
from ..ops.softmax import causal_mask
from ._common import _check_dims, _labelled

LAYOUTS = ("pytorch", "torchlean")


def _scale(c, head_dim):
    return se.Integer(1) / se.sqrt(head_dim) if c is None else c


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

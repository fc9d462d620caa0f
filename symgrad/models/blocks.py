"""Blocks of attention, LayerNorm and FFN: ``mha_postnorm`` (catalog ``postnorm``), ``ffn``
(``ffn``), ``encoder_block`` (``encoder``, post-norm) and ``prenorm_encoder_block``
(``prenorm``); the post-norm block is also the GPT decoder's."""
from __future__ import annotations

from ..graph import Graph
from ..tensor import constant
from ._common import _check_dims, _labelled
from .attention import _attention, _mha_inputs, _scale
from .norm import DEFAULT_EPS, _ln_whole


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


def encoder_stack(n, d_model, heads, head_dim, d_ff, layers=2, layout="pytorch", c=None,
                  eps=None) -> Graph:
    """``layers`` post-norm encoder blocks in sequence (LeanCert's encoder stack): layer k
    reads the previous layer's output and has its own weights, named with the suffix ``.k``
    (``Wq.1``, ``gamma2.2``, …); tape values are prefixed ``layerk.``; the last is ``out``."""
    _check_dims(n=n, d_model=d_model, heads=heads, head_dim=head_dim, d_ff=d_ff)
    if not isinstance(layers, int) or layers < 1:
        from ..errors import InputError
        raise InputError(f"an encoder stack needs layers ≥ 1, got {layers!r}")
    block = encoder_block(n, d_model, heads, head_dim, d_ff, layout, c, eps)
    weights = block.inputs[1:]
    g = Graph([block.inputs[0]] + [(f"{name}.{k}", shape) for k in range(1, layers + 1)
                                   for name, shape in weights],
              name="encoder_stack", info=dict(block.info, layers=layers))
    previous = 0
    for k in range(1, layers + 1):
        where = {0: previous}
        where.update({j: 1 + (k - 1) * len(weights) + (j - 1)
                      for j in range(1, len(block.inputs))})
        for node in block.nodes:
            last = k == layers and node.name == "out"
            index = g.add(node.op, *[where[r] for r in node.reads],
                          name="out" if last else f"layer{k}.{node.name}", **node.params)
            where[len(where)] = index
        previous = index
    g.axis_labels = {name: block.axis_labels[name.rsplit(".", 1)[0]]
                     for name, _ in g.inputs
                     if name.rsplit(".", 1)[0] in block.axis_labels}
    if "x" in block.axis_labels:
        g.axis_labels["x"] = block.axis_labels["x"]
    return g

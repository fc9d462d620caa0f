"""The LLaMA-style decoder block: pre-norm with RMSNorm, rotary embeddings on Q and K,
grouped-query attention (each key/value head serves heads/kv_heads query heads), a causal
mask and a SwiGLU feed-forward."""
from __future__ import annotations

from fractions import Fraction

from ..errors import InputError
from ..graph import Graph
from ..tensor import constant
from ._common import _check_dims
from .attention import _core, _heads, _mask_args, _scale

#: LLaMA's ε, entering as the exact rational of the double 1e-6
LLAMA_EPS = 1e-6


def llama_block(n, d_model, heads, kv_heads, head_dim, d_ff, eps=LLAMA_EPS,
                base=10000) -> Graph:
    """h = x + Attn(RMSNorm₁(x)); out = h + W_down(silu(RMSNorm₂(h) W_gate) ⊙ RMSNorm₂(h)
    W_up). Attention: Q = heads(x̃ Wq), K, V = kv_heads(x̃ Wk), kv_heads(x̃ Wv), heads split
    PyTorch's way (view + transpose), RoPE (base ``base``, positions 0 … n−1) on Q and K,
    K and V repeated to ``heads`` heads, scores scaled by 1/√head_dim, causal. Inputs x,
    Wq, Wk, Wv, Wo, g_attn, g_ffn, W_gate, W_up, W_down (weights on the right); ``eps`` a
    float is taken as the exact rational of its double."""
    _check_dims(n=n, d_model=d_model, heads=heads, kv_heads=kv_heads, head_dim=head_dim,
                d_ff=d_ff)
    if heads % kv_heads:
        raise InputError(f"heads ({heads}) must be a multiple of kv_heads ({kv_heads}): each "
                         f"key/value head serves heads/kv_heads query heads")
    if head_dim % 2:
        raise InputError(f"head_dim must be even for the rotary embedding, got {head_dim}")
    eps = constant(Fraction(eps)) if isinstance(eps, (float, int)) else eps
    hh, kh = heads * head_dim, kv_heads * head_dim
    g = Graph([("x", (n, d_model)), ("Wq", (d_model, hh)), ("Wk", (d_model, kh)),
               ("Wv", (d_model, kh)), ("Wo", (hh, d_model)), ("g_attn", (d_model,)),
               ("g_ffn", (d_model,)), ("W_gate", (d_model, d_ff)), ("W_up", (d_model, d_ff)),
               ("W_down", (d_ff, d_model))], name="llama",
              info=dict(n=n, d_model=d_model, heads=heads, kv_heads=kv_heads,
                        head_dim=head_dim, d_ff=d_ff, norm="pre (RMSNorm)", rope_base=base))
    _, mask = _mask_args(n, heads, None, None, True)
    x1 = g.add("rms_norm", 0, 5, eps=eps, name="rms1")
    q = _heads(g, g.add("matmul", x1, 1, name="Qbig"), n, heads, head_dim, "pytorch", "Q")
    k = _heads(g, g.add("matmul", x1, 2, name="Kbig"), n, kv_heads, head_dim, "pytorch", "K")
    v = _heads(g, g.add("matmul", x1, 3, name="Vbig"), n, kv_heads, head_dim, "pytorch", "V")
    q = g.add("rope", q, base=base, name="Qrope")
    k = g.add("rope", k, base=base, name="Krope")
    rep = heads // kv_heads
    if rep > 1:
        k = g.add("repeat_kv", k, rep=rep, name="Krep")
        v = g.add("repeat_kv", v, rep=rep, name="Vrep")
    kt = g.add("transpose_last_two", k, name="Kt")
    probs = _core(g, q, kt, _scale(None, head_dim), mask=mask)
    ho = g.add("batched_matmul", probs, v, name="headOut")
    sw = g.add("swap_first_two", ho, name="swapped")
    cat = g.add("reshape", sw, shape=(n, hh), name="concat")
    att = g.add("matmul", cat, 4, name="attn")
    h = g.add("add", 0, att, name="residual1")
    x2 = g.add("rms_norm", h, 6, eps=eps, name="rms2")
    gate = g.add("matmul", x2, 7, name="ffn.gate")
    up = g.add("matmul", x2, 8, name="ffn.up")
    act = g.add("swiglu", gate, up, name="ffn.swiglu")
    down = g.add("matmul", act, 9, name="ffn.down")
    g.add("add", h, down, name="out")
    # the role of each input axis, for the proof by verified symmetry (a permutation of
    # the positions is no symmetry here — the mask and RoPE break it — and is dropped)
    g.axis_labels = {"x": ("n", "d"), "Wq": ("d", "hh"), "Wk": ("d", "kh"),
                     "Wv": ("d", "kh"), "Wo": ("hh", "d"), "g_attn": ("d",),
                     "g_ffn": ("d",), "W_gate": ("d", "ff"), "W_up": ("d", "ff"),
                     "W_down": ("ff", "d")}
    return g

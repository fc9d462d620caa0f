"""Rotary position embeddings (RoPE), LLaMA's rotate-half convention.

For x (h,n,d), d even, at positions p = 0 … n−1 and base b:
out = x ⊙ cos + rotate_half(x) ⊙ sin, rotate_half(x) = (−x[…, d/2:], x[…, :d/2]),
cos[p, i] = cos(p·θ_i), sin[p, i] = sin(p·θ_i), θ_i = b^(−2(i mod d/2)/d).

The tables are exact constants — SymEngine's cos and sin of p·b^(−2i/d), a rational power —
so the forward and the rule are the very functions of x that the real tables give. RoPE is
linear in x, its VJP g ⊙ cos + rotate_halfᵀ(g ⊙ sin) is the transpose of that linear map,
and the identity the checker proves is a polynomial identity in x, g and the table entries
taken as atoms: it holds whatever values the tables take (cos² + sin² = 1 is never used),
so it holds for the float tables a runtime computes too.
"""
from fractions import Fraction

import numpy as np

from .. import fn
from ..errors import ShapeError
from . import Param, defop, fmt, need_rank


def rope_tables(n: int, d: int, base=10000):
    """(cos, sin), each (n, d): the tables above as exact constants."""
    half = d // 2
    cos = np.empty((n, d), dtype=object)
    sin = np.empty((n, d), dtype=object)
    for p in range(n):
        for i in range(half):
            angle = fn.rational(p) * fn.rational(base) ** fn.rational(-2 * i, d)
            cos[p, i] = cos[p, i + half] = fn.cos(angle)
            sin[p, i] = sin[p, i + half] = fn.sin(angle)
    return cos, sin


def _rotate_half(x):
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def _rotate_half_transposed(y):
    half = y.shape[-1] // 2
    return np.concatenate([y[..., half:], -y[..., :half]], axis=-1)


def _rope(x, *, base):
    """x ⊙ cos + rotate_half(x) ⊙ sin at positions 0 … n−1 (x (h,n,d), d even)."""
    cos, sin = rope_tables(x.shape[1], x.shape[2], base)
    return x * cos + _rotate_half(x) * sin


def _rope_vjp(g, out, x, *, base):
    cos, sin = rope_tables(x.shape[1], x.shape[2], base)
    return (g * cos + _rotate_half_transposed(g * sin),)


def _rope_shape(s, *, base):
    need_rank("rope", "x", s, (3,))
    if s[2] % 2:
        raise ShapeError(f"rope: the head width (last axis of {fmt(s)}) must be even")
    if not isinstance(base, (int, Fraction)) or base <= 0:
        raise ShapeError(f"rope: base must be a positive integer or fraction, got {base!r}")
    return s


defop("rope", _rope, _rope_vjp, args=("x",), signature="x (h,n,d) -> (h,n,d)",
      linearity="linear", out_shape=_rope_shape, examples=[[(1, 2, 2)], [(2, 3, 4)]],
      params=[Param("base", lambda shapes, backend: 10000,
                    "the frequency base b (default 10000, LLaMA's)")])

"""Shape ops (linear, pure data movement): transposes, reshape, broadcasts."""
import math

import numpy as np

from ..errors import ShapeError
from . import Param, defop, fmt, need_rank


def _transpose(x):
    """xᵀ for 2-D x."""
    return x.T


def _transpose_vjp(g, out, x):
    return (g.T,)


def _transpose_last_two(x):
    """Swap the last two axes of 3-D x: (h,m,n) -> (h,n,m) (Kᵀ per head)."""
    return x.transpose(0, 2, 1)


def _transpose_last_two_vjp(g, out, x):
    return (g.transpose(0, 2, 1),)


def _swap_first_two(x):
    """Swap the first two axes of 3-D x: (h,n,d) -> (n,h,d) (merging heads)."""
    return x.transpose(1, 0, 2)


def _swap_first_two_vjp(g, out, x):
    return (g.transpose(1, 0, 2),)


def _reshape(x, *, shape):
    """Row-major reshape to ``shape`` (same number of entries)."""
    return x.reshape(shape)


def _reshape_vjp(g, out, x, *, shape):
    return (g.reshape(x.shape),)


def _reshape_shape(s, *, shape):
    if math.prod(shape) != math.prod(s):
        raise ShapeError(f"reshape: cannot reshape {fmt(s)} ({math.prod(s)} entries) "
                         f"to {fmt(shape)} ({math.prod(shape)} entries)")
    return tuple(shape)


def _broadcast_row(v, *, n):
    """v (m,) -> (m,n): row i is v[i] repeated (a per-row statistic spread over its row)."""
    return np.repeat(v[:, None], n, axis=1)


def _broadcast_row_vjp(g, out, v, *, n):
    return (g.sum(axis=1),)


def _broadcast_col(v, *, m):
    """v (n,) -> (m,n): every row is v (a per-feature parameter such as γ)."""
    return np.repeat(v[None, :], m, axis=0)


def _broadcast_col_vjp(g, out, v, *, m):
    return (g.sum(axis=0),)


def _permuted(op, perm):
    def rule(s, **_):
        need_rank(op, "x", s, (len(perm),))
        return tuple(s[i] for i in perm)
    return rule


def _vector(op, arg):
    def rule(s, **params):
        need_rank(op, arg, s, (1,))
        k = params["n"] if "n" in params else params["m"]
        if not isinstance(k, int) or k < 1:
            raise ShapeError(f"{op}: the broadcast size must be a positive integer, got {k!r}")
        return (s[0], k) if "n" in params else (k, s[0])
    return rule


defop("transpose", _transpose, _transpose_vjp, args=("x",), signature="x (m,n) -> (n,m)",
      linearity="linear", out_shape=_permuted("transpose", (1, 0)), examples=[[(2, 3)], [(3, 3)]])
defop("transpose_last_two", _transpose_last_two, _transpose_last_two_vjp, args=("x",),
      signature="x (h,m,n) -> (h,n,m)", linearity="linear",
      out_shape=_permuted("transpose_last_two", (0, 2, 1)), examples=[[(2, 2, 3)], [(1, 3, 3)]])
defop("swap_first_two", _swap_first_two, _swap_first_two_vjp, args=("x",),
      signature="x (h,n,d) -> (n,h,d)", linearity="linear",
      out_shape=_permuted("swap_first_two", (1, 0, 2)), examples=[[(2, 3, 2)], [(2, 2, 2)]])
defop("reshape", _reshape, _reshape_vjp, args=("x",), signature="x (...) -> shape",
      linearity="linear", out_shape=_reshape_shape, examples=[[(2, 3)], [(2, 2, 2)]],
      params=[Param("shape", lambda shapes, backend: tuple(reversed(shapes[0])),
                    "the target shape, row-major (default: the input shape reversed)")])
defop("broadcast_row", _broadcast_row, _broadcast_row_vjp, args=("v",),
      signature="v (m,) -> (m,n)", linearity="linear", out_shape=_vector("broadcast_row", "v"),
      examples=[[(2,)], [(3,)]],
      params=[Param("n", lambda shapes, backend: 3, "the number of columns (default 3)")])
defop("broadcast_col", _broadcast_col, _broadcast_col_vjp, args=("v",),
      signature="v (n,) -> (m,n)", linearity="linear", out_shape=_vector("broadcast_col", "v"),
      examples=[[(3,)], [(2,)]],
      params=[Param("m", lambda shapes, backend: 2, "the number of rows (default 2)")])


def _repeat_kv(x, *, rep):
    """Grouped-query attention's key/value heads: x (kv,n,d) -> (kv·rep,n,d), head h a copy
    of head h // rep (PyTorch's repeat_interleave over the head axis)."""
    return np.repeat(x, rep, axis=0)


def _repeat_kv_vjp(g, out, x, *, rep):
    kv, n, d = x.shape
    return (g.reshape(kv, rep, n, d).sum(axis=1),)


def _repeat_kv_shape(s, *, rep):
    need_rank("repeat_kv", "x", s, (3,))
    if not isinstance(rep, int) or rep < 1:
        raise ShapeError(f"repeat_kv: rep (query heads per key/value head) must be a positive "
                         f"integer, got {rep!r}")
    return (s[0] * rep,) + tuple(s[1:])


defop("repeat_kv", _repeat_kv, _repeat_kv_vjp, args=("x",),
      signature="x (kv,n,d) -> (kv·rep,n,d)", linearity="linear", out_shape=_repeat_kv_shape,
      examples=[[(1, 2, 2)], [(2, 3, 2)]],
      params=[Param("rep", lambda shapes, backend: 2,
                    "query heads served by each key/value head (default 2)")])

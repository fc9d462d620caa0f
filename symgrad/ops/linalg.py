"""Linear and bilinear ops: add, sub, mul, scale, add_bias, matmul, batched_matmul, affine."""
import numpy as np

from .. import fn
from ..errors import ShapeError
from ..tensor import symbol, symbols
from . import Param, defop, fmt, need_rank, same_shape

# ----- elementwise arithmetic -----------------------------------------------------------

def _add(a, b):
    """a + b, entrywise."""
    return a + b


def _add_vjp(g, out, a, b):
    return g, g


def _sub(a, b):
    """a − b, entrywise."""
    return a - b


def _sub_vjp(g, out, a, b):
    return g, -g


def _mul(a, b):
    """a ⊙ b (Hadamard product); reading the same value twice gives x ⊙ x."""
    return a * b


def _mul_vjp(g, out, a, b):
    return g * b, g * a


def _scale(x, *, c):
    """c·x for a constant c (a number or a symbol)."""
    return c * x


def _scale_vjp(g, out, x, *, c):
    return (c * g,)


def _add_bias(x, *, bias):
    """x + bias for a fixed tensor ``bias`` of x's shape (an additive attention mask)."""
    return x + bias


def _add_bias_vjp(g, out, x, *, bias):
    return (g,)


_binary = dict(args=("a", "b"), signature="a (...), b (same) -> (same)")
defop("add", _add, _add_vjp, linearity="linear", out_shape=same_shape("add", ("a", "b")),
      examples=[[(2, 3), (2, 3)], [(2, 2, 2), (2, 2, 2)]], **_binary)
defop("sub", _sub, _sub_vjp, linearity="linear", out_shape=same_shape("sub", ("a", "b")),
      examples=[[(2, 3), (2, 3)], [(4,), (4,)]], **_binary)
defop("mul", _mul, _mul_vjp, linearity="bilinear", out_shape=same_shape("mul", ("a", "b")),
      examples=[[(2, 3), (2, 3)], [(3, 2), (3, 2)]], **_binary)
defop("scale", _scale, _scale_vjp, args=("x",), signature="x (...) -> (same)",
      linearity="linear", out_shape=lambda s, **_: s, examples=[[(2, 3)], [(2, 2, 3)]],
      params=[Param("c", lambda shapes, backend: symbol("c", backend),
                    "the scale, a number or a symbol (default: the symbol c)")])
defop("add_bias", _add_bias, _add_bias_vjp, args=("x",), signature="x (...) -> (same)",
      linearity="linear", out_shape=lambda s, **_: s, examples=[[(2, 3)], [(2, 2, 2)]],
      params=[Param("bias", lambda shapes, backend: symbols("bias", shapes[0], backend),
                    "a fixed tensor of x's shape (default: symbolic constants bias[i,j])")])


# ----- products ----------------------------------------------------------------------

def _matmul(x, W):
    """x @ W for 2-D x (m,n) and W (n,p)."""
    return fn.matmul(x, W)


def _matmul_vjp(g, out, x, W):
    return fn.matmul(g, W.T), fn.matmul(x.T, g)


def _matmul_shape(sx, sW, **_):
    need_rank("matmul", "x", sx, (2,))
    need_rank("matmul", "W", sW, (2,))
    if sx[1] != sW[0]:
        raise ShapeError(f"matmul: x has shape {fmt(sx)} and W has shape {fmt(sW)}; "
                         f"the inner dimensions {sx[1]} and {sW[0]} differ")
    return (sx[0], sW[1])


def _batched_matmul(A, B):
    """A @ B per batch: A (b,m,n), B (b,n,p) -> (b,m,p)."""
    return np.matmul(A, B)


def _batched_matmul_vjp(g, out, A, B):
    return np.matmul(g, B.transpose(0, 2, 1)), np.matmul(A.transpose(0, 2, 1), g)


def _batched_matmul_shape(sA, sB, **_):
    need_rank("batched_matmul", "A", sA, (3,))
    need_rank("batched_matmul", "B", sB, (3,))
    if sA[0] != sB[0] or sA[2] != sB[1]:
        raise ShapeError(f"batched_matmul: A has shape {fmt(sA)} and B has shape "
                         f"{fmt(sB)}; need A (b,m,n) and B (b,n,p)")
    return (sA[0], sA[1], sB[2])


def _affine(x, W, b):
    """x @ W + b: x (m,n), W (n,p), b (p,) added to every row."""
    return fn.matmul(x, W) + b[None, :]


def _affine_vjp(g, out, x, W, b):
    return fn.matmul(g, W.T), fn.matmul(x.T, g), g.sum(axis=0)


def _affine_shape(sx, sW, sb, **_):
    out = _matmul_shape(sx, sW)
    if sb != (sW[1],):
        raise ShapeError(f"affine: b has shape {fmt(sb)} but W has shape {fmt(sW)}; "
                         f"b must have shape ({sW[1]},)")
    return out


defop("matmul", _matmul, _matmul_vjp, args=("x", "W"),
      signature="x (m,n), W (n,p) -> (m,p)", linearity="bilinear", out_shape=_matmul_shape,
      examples=[[(2, 3), (3, 4)], [(3, 3), (3, 2)]])
defop("batched_matmul", _batched_matmul, _batched_matmul_vjp, args=("A", "B"),
      signature="A (b,m,n), B (b,n,p) -> (b,m,p)", linearity="bilinear",
      out_shape=_batched_matmul_shape, examples=[[(2, 2, 3), (2, 3, 2)], [(1, 3, 2), (1, 2, 2)]])
defop("affine", _affine, _affine_vjp, args=("x", "W", "b"),
      signature="x (m,n), W (n,p), b (p,) -> (m,p)", linearity="nonlinear",
      out_shape=_affine_shape, examples=[[(2, 3), (3, 2), (2,)], [(3, 2), (2, 2), (2,)]],
      doc="x @ W + b (affine: bilinear in (x, W) plus a linear term in b).")


def _matmul_const(x, *, W):
    """x @ W for a fixed matrix W (a parameter, not differentiated): TorchLean's fixed
    merge and FFN weights."""
    return fn.matmul(x, W)


def _matmul_const_vjp(g, out, x, *, W):
    return (fn.matmul(g, np.asarray(W, dtype=object).T),)


def _matmul_const_shape(sx, *, W):
    need_rank("matmul_const", "x", sx, (2,))
    sW = np.shape(W)
    if len(sW) != 2 or sW[0] != sx[1]:
        raise ShapeError(f"matmul_const: x has shape {fmt(sx)} but the fixed W has shape "
                         f"{fmt(sW)}; W must have {sx[1]} rows")
    return (sx[0], sW[1])


defop("matmul_const", _matmul_const, _matmul_const_vjp, args=("x",),
      signature="x (m,n), fixed W (n,p) -> (m,p)", linearity="linear",
      out_shape=_matmul_const_shape, examples=[[(2, 3)], [(3, 2)]],
      params=[Param("W", lambda shapes, backend: symbols("W", (shapes[0][1],) * 2, backend),
                    "the fixed matrix (default: symbolic constants W[i,j], square)")])

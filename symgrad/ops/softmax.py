"""Softmax family over the last axis (any rank): plain, finite additive bias, hard
(boolean, −∞) mask, and log-softmax."""
import numpy as np

from .. import fn
from ..errors import ShapeError
from ..tensor import symbols
from . import Param, defop, fmt


def _softmax(x):
    """exp(x_j) / Σ_k exp(x_k) along the last axis."""
    e = fn.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def _softmax_vjp(g, y, x):
    return (y * (g - (g * y).sum(axis=-1, keepdims=True)),)


def _masked_softmax(x, *, bias):
    """softmax(x + bias) with a fixed finite bias (large negative entries mask softly)."""
    return _softmax(x + bias)


def _masked_softmax_vjp(g, y, x, *, bias):
    return (y * (g - (g * y).sum(axis=-1, keepdims=True)),)


def _hard_masked_softmax(x, *, mask):
    """Softmax where mask is False: masked entries get no numerator (−∞ semantics) and
    output 0; a fully masked row gives zeros, as PyTorch's SDPA does."""
    e = np.where(mask, fn.exp(x), 0)
    out = np.empty(x.shape, dtype=object)
    for row in np.ndindex(x.shape[:-1]):
        total = e[row].sum()
        out[row] = e[row] / total if mask[row].any() else e[row]
    return out


def _hard_masked_softmax_vjp(g, y, x, *, mask):
    # y is 0 where masked, so the usual closed form gives those entries a zero gradient
    return (y * (g - (g * y).sum(axis=-1, keepdims=True)),)


def _log_softmax(x):
    """x_j − log Σ_k exp(x_k) along the last axis."""
    e = fn.exp(x)
    return x - fn.log(e.sum(axis=-1, keepdims=True))


def _log_softmax_vjp(g, out, x):
    return (g - fn.exp(out) * g.sum(axis=-1, keepdims=True),)


def causal_mask(shape) -> np.ndarray:
    """mask[..., i, j] = j ≤ i (a 1-D shape: nothing masked)."""
    if len(shape) < 2:
        return np.ones(shape, dtype=bool)
    i = np.arange(shape[-2])[:, None]
    j = np.arange(shape[-1])[None, :]
    return np.broadcast_to(j <= i, shape).copy()


def _mask_shape(s, *, mask):
    m = np.asarray(mask)
    if m.shape != tuple(s) or m.dtype != bool:
        raise ShapeError(f"hard_masked_softmax: the mask must be a boolean array of x's "
                         f"shape {fmt(s)}, got {m.dtype} {fmt(m.shape)}")
    return s


def _any_rank(s, **_):
    if len(s) < 1:
        raise ShapeError("softmax: x must have at least one axis")
    return s


_common = dict(args=("x",), signature="x (..., n) -> (same)", linearity="nonlinear",
               examples=[[(2, 3)], [(2, 2, 3)]])
defop("softmax", _softmax, _softmax_vjp, out_shape=_any_rank, **_common)
defop("masked_softmax", _masked_softmax, _masked_softmax_vjp, out_shape=_any_rank,
      params=[Param("bias", lambda shapes, backend: symbols("bias", shapes[0], backend),
                    "a fixed finite additive bias of x's shape (default: symbolic constants)")],
      **_common)
defop("hard_masked_softmax", _hard_masked_softmax, _hard_masked_softmax_vjp,
      out_shape=_mask_shape,
      params=[Param("mask", lambda shapes, backend: causal_mask(shapes[0]),
                    "a boolean array of x's shape, True = attend (default: causal, j ≤ i)")],
      **_common)
defop("log_softmax", _log_softmax, _log_softmax_vjp, out_shape=_any_rank, **_common)

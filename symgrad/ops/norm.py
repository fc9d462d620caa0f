"""LayerNorm and RMSNorm as one node each: ε inside the root, gains (and LayerNorm's β) per
feature."""
from fractions import Fraction

from .. import fn
from ..errors import ShapeError
from ..tensor import constant
from . import Param, defop, fmt, need_rank


def _stats(x, eps):
    n = x.shape[-1]
    mu = x.sum(axis=-1, keepdims=True) / n
    var = ((x - mu) ** 2).sum(axis=-1, keepdims=True) / n     # biased (1/n), as PyTorch
    inv_std = 1 / fn.sqrt(var + eps)                          # ε inside the root
    return (x - mu) * inv_std, inv_std


def _layer_norm(x, gamma, beta, *, eps):
    """y = (x − μ)/√(var + ε)·γ + β per row of x (m,n); γ, β of shape (n,)."""
    xhat, _ = _stats(x, eps)
    return xhat * gamma + beta


def _layer_norm_vjp(g, out, x, gamma, beta, *, eps):
    return layer_norm_backward(g, gamma, *_stats(x, eps))


def layer_norm_backward(g, gamma, xhat, inv_std):
    """The VJP's closed form from the normalised rows x̂ and 1/√(var + ε) (interval bounds
    pass their own enclosures of both)."""
    n = xhat.shape[-1]
    dxhat = g * gamma
    dx = inv_std * (dxhat - dxhat.sum(axis=-1, keepdims=True) / n
                    - xhat * (dxhat * xhat).sum(axis=-1, keepdims=True) / n)
    rows = tuple(range(xhat.ndim - 1))
    return dx, (g * xhat).sum(axis=rows), g.sum(axis=rows)


def _layer_norm_shape(sx, sg, sb, **_):
    need_rank("layer_norm", "x", sx, (1, 2, 3))
    n = sx[-1]
    for name, s in (("gamma", sg), ("beta", sb)):
        if s != (n,):
            raise ShapeError(f"layer_norm: {name} has shape {fmt(s)} but x has shape "
                             f"{fmt(sx)}; {name} must have shape ({n},)")
    return sx


def _layer_norm_assumptions(x, gamma, beta, *, eps):
    # declared for numbers too: a negative ε is an input error, not a proof under a false
    # condition (a true constant condition is dropped from the listing)
    return [(eps, "> 0")]


defop("layer_norm", _layer_norm, _layer_norm_vjp, args=("x", "gamma", "beta"),
      signature="x (m,n), gamma (n,), beta (n,) -> (m,n)", linearity="nonlinear",
      out_shape=_layer_norm_shape, examples=[[(2, 3), (3,), (3,)], [(1, 4), (4,), (4,)]],
      conditions="eps > 0", assumptions=_layer_norm_assumptions,
      params=[Param("eps", lambda shapes, backend: constant(Fraction(1, 100000), backend),
                    "ε inside the root: a positive number or symbol (default 1/100000)")])


def _rms(x, eps):
    n = x.shape[-1]
    mean_square = (x * x).sum(axis=-1, keepdims=True) / n
    inv_rms = 1 / fn.sqrt(mean_square + eps)                  # ε inside the root
    return x * inv_rms, inv_rms


def _rms_norm(x, gain, *, eps):
    """y = x/√(mean(x²) + ε)·g per row of x (m,n); g of shape (n,) (LLaMA's RMSNorm)."""
    xhat, _ = _rms(x, eps)
    return xhat * gain


def _rms_norm_vjp(g, out, x, gain, *, eps):
    xhat, inv_rms = _rms(x, eps)
    n = x.shape[-1]
    dxhat = g * gain
    dx = inv_rms * (dxhat - xhat * (dxhat * xhat).sum(axis=-1, keepdims=True) / n)
    rows = tuple(range(x.ndim - 1))
    return dx, (g * xhat).sum(axis=rows)


def _rms_norm_shape(sx, sg, **_):
    need_rank("rms_norm", "x", sx, (1, 2, 3))
    if sg != (sx[-1],):
        raise ShapeError(f"rms_norm: gain has shape {fmt(sg)} but x has shape {fmt(sx)}; "
                         f"gain must have shape ({sx[-1]},)")
    return sx


def _rms_norm_assumptions(x, gain, *, eps):
    return [(eps, "> 0")]


defop("rms_norm", _rms_norm, _rms_norm_vjp, args=("x", "gain"),
      signature="x (m,n), gain (n,) -> (m,n)", linearity="nonlinear",
      out_shape=_rms_norm_shape, examples=[[(2, 3), (3,)], [(1, 4), (4,)]],
      conditions="eps > 0", assumptions=_rms_norm_assumptions,
      params=[Param("eps", lambda shapes, backend: constant(Fraction(1e-6), backend),
                    "ε inside the root: a positive number or symbol (default 1e-6, as the "
                    "exact rational of that double)")])

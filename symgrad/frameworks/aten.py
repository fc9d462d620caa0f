"""ATen ops over symbolic tensors: the one table of what symgrad can read in a traced PyTorch
graph, and the interpreter that runs such a graph on NumPy object arrays.

Each entry gives an op's **mathematical** meaning on real numbers — the function the kernel
computes up to rounding — written with symgrad's own functions (``symgrad.fn``), so a graph
interpreted here is the expression symgrad proves things about. ``tests/test_frameworks.py``
runs every entry on random float64 inputs beside the real kernel: the table says what the
kernels compute. Keys are the overloads' names (``"mm.default"``), so this module needs no
PyTorch; :mod:`symgrad.frameworks.torch` traces graphs with it.

Floats in a graph (scalars, constant tensors) enter as the exact rationals of their doubles.
dtype and device arguments are ignored: the proof is about the real-number function (a
float32 cast changes rounding, not the function).
"""
from __future__ import annotations

import math

import numpy as np
import symengine as se

from .. import fn
from ..errors import InputError
from ..scalar import SymArray
from ..tensor import constant


def _arr(x) -> np.ndarray:
    return x if isinstance(x, np.ndarray) else np.asarray(x, dtype=object)


def _sym(x):
    """A writable object array (views from reshape/broadcast copied)."""
    a = np.array(_arr(x), dtype=object, copy=True)
    return a.view(SymArray) if a.ndim else a


def _num(v):
    """A scalar argument as an exact value (a float as the rational of its double)."""
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise InputError(f"the traced graph holds the non-finite constant {v}")
        return constant(v)
    return v


def _dims(dims, ndim):
    if dims is None or dims == []:
        return tuple(range(ndim))
    if isinstance(dims, int):
        dims = [dims]
    return tuple(d % ndim for d in dims)


def _sum(x, dims=None, keepdim=False, dtype=None):
    a = _arr(x)
    if a.ndim == 0:
        return a
    return _sym(a.sum(axis=_dims(dims, a.ndim), keepdims=bool(keepdim)))


def _mean(x, dims=None, keepdim=False, dtype=None):
    a = _arr(x)
    axes = _dims(dims, a.ndim)
    count = int(np.prod([a.shape[d] for d in axes]))
    return _sym(a.sum(axis=axes, keepdims=bool(keepdim)) * constant(1) / count)


def _matmul(a, b):
    a, b = _arr(a), _arr(b)
    if a.ndim == 2 and b.ndim == 2:
        return _sym(fn.matmul(a, b))
    return _sym(np.matmul(a, b))


def _expand(x, sizes, implicit=False):
    a = _arr(x)
    lead = len(sizes) - a.ndim
    shape = tuple(a.shape[k - lead] if s == -1 else s for k, s in enumerate(sizes))
    return _sym(np.broadcast_to(a, shape))


def _squeeze(x, dims=None):
    a = _arr(x)
    axes = [d % a.ndim for d in ([dims] if isinstance(dims, int) else
                                 (dims if dims is not None else range(a.ndim)))]
    axes = tuple(d for d in axes if a.shape[d] == 1)
    return _sym(np.squeeze(a, axis=axes) if axes else a)


def _slice(x, dim=0, start=None, end=None, step=1):
    a = _arr(x)
    index = [slice(None)] * a.ndim
    index[dim % a.ndim] = slice(start, end, step)
    return _sym(a[tuple(index)])


def _split(x, size, dim):
    """Chunks of ``size`` along dim (the last one shorter), or of the listed sizes."""
    a = _arr(x)
    n = a.shape[dim % a.ndim]
    sizes = size if isinstance(size, list) else [size] * (n // size) + ([n % size] if n % size
                                                                        else [])
    cuts = np.cumsum([0] + sizes)
    return [_slice(a, dim, int(lo), int(hi)) for lo, hi in zip(cuts[:-1], cuts[1:])]


def _select(x, dim, i):
    return _sym(np.take(_arr(x), i, axis=dim % _arr(x).ndim))


def _softmax(x, dim, half_to_float=False):
    e = fn.exp(_arr(x))
    return _sym(e / e.sum(axis=dim % e.ndim, keepdims=True))


def _log_softmax(x, dim, half_to_float=False):
    a = _arr(x)
    return _sym(a - fn.log(fn.exp(a).sum(axis=dim % a.ndim, keepdims=True)))


def _softmax_backward(grad, out, dim, input_dtype=None):
    g, y = _arr(grad), _arr(out)
    return _sym(y * (g - (g * y).sum(axis=dim % g.ndim, keepdims=True)))


def _log_softmax_backward(grad, out, dim, input_dtype=None):
    g, y = _arr(grad), _arr(out)
    return _sym(g - fn.exp(y) * g.sum(axis=dim % g.ndim, keepdims=True))


def _norm_axes(x, normalized_shape):
    a = _arr(x)
    return tuple(range(a.ndim - len(normalized_shape), a.ndim))


def _native_layer_norm(x, normalized_shape, weight, bias, eps):
    """(y, mean, rstd): mean and 1/√(biased var + ε) over the last dims, kept as size-1."""
    a = _arr(x)
    axes = _norm_axes(a, normalized_shape)
    count = int(np.prod([a.shape[d] for d in axes]))
    mean = a.sum(axis=axes, keepdims=True) / count
    u = a - mean
    var = (u * u).sum(axis=axes, keepdims=True) / count
    rstd = fn.rsqrt(var + _num(eps))
    y = u * rstd
    if weight is not None:
        y = y * _arr(weight)
    if bias is not None:
        y = y + _arr(bias)
    return _sym(y), _sym(mean), _sym(rstd)


def _native_layer_norm_backward(grad, x, normalized_shape, mean, rstd, weight, bias, mask):
    """PyTorch's layer-norm backward kernel, in its closed form: with x̂ = (x − mean)·rstd
    and ĝ = grad·weight, dx = rstd·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)) over the normalized dims;
    dweight = Σ grad·x̂ and dbias = Σ grad over the leading dims."""
    g, a = _arr(grad), _arr(x)
    axes = _norm_axes(a, normalized_shape)
    lead = tuple(range(a.ndim - len(axes)))
    count = int(np.prod([a.shape[d] for d in axes]))
    xhat = (a - _arr(mean)) * _arr(rstd)
    gh = g * _arr(weight) if weight is not None else g
    dx = _arr(rstd) * (gh - gh.sum(axis=axes, keepdims=True) / count -
                       xhat * (gh * xhat).sum(axis=axes, keepdims=True) / count)
    out = [_sym(dx) if mask[0] else None]
    out.append(_sym((g * xhat).sum(axis=lead)) if mask[1] and weight is not None else None)
    out.append(_sym(g.sum(axis=lead)) if mask[2] and bias is not None else None)
    return tuple(out)


def _gelu(x, approximate="none"):
    a = _arr(x)
    return _sym(fn.gelu_tanh(a) if approximate == "tanh" else fn.gelu_erf(a))


def _gelu_backward(grad, x, approximate="none"):
    """GELU's derivative times grad, the kernel's closed form: for "tanh",
    ½(1 + t) + ½x(1 − t²)·√(2/π)(1 + 3κx²), t = tanh(√(2/π)(x + κx³)), κ = 0.044715; else
    Φ(x) + x·φ(x)."""
    g, a = _arr(grad), _arr(x)
    if approximate == "tanh":
        k, c = se.sqrt(2 / se.pi), fn.rational("0.044715")
        t = fn.tanh(k * (a + c * a * a * a))
        return _sym(g * ((1 + t) / 2 + a / 2 * (1 - t * t) * k * (1 + 3 * c * a * a)))
    phi = fn.exp(-a * a / 2) / se.sqrt(2 * se.pi)
    return _sym(g * ((1 + fn.erf(a / se.sqrt(2))) / 2 + a * phi))


def _where(cond, a, b):
    return _sym(fn.where(_arr(cond), _arr(a), _arr(b)))


def _against_infinity(op, a, b):
    """A comparison with a literal ±∞ (JAX's masked softmax tests for it): every symbolic
    value is finite, so the answer is known — found by comparing 0 with the infinity."""
    return op(0.0 if not isinstance(a, float) else a, 0.0 if not isinstance(b, float) else b)


def _compare(op):
    def apply(a, b):
        if any(isinstance(v, float) and math.isinf(v) for v in (a, b)):
            shape = np.shape(a) if isinstance(a, np.ndarray) else np.shape(b)
            return np.full(shape, bool(_against_infinity(op, a, b)), dtype=object)
        a, b = _arr(a), _arr(_num(b) if not isinstance(b, np.ndarray) else b)
        a, b = np.broadcast_arrays(a, b)
        out = np.empty(a.shape, dtype=object)
        for index in np.ndindex(a.shape):
            r = op(a[index], b[index])
            # two numbers compare to a truth value (SymEngine's, or Python's)
            out[index] = bool(r) if type(r).__name__ in ("BooleanTrue", "BooleanFalse",
                                                         "bool", "bool_") else r
        return out
    return apply


def _full(size, value, **kw):
    # ±∞ stays a float (an attention mask's −∞, which the attention rules drop)
    infinite = isinstance(value, float) and math.isinf(value)
    return _sym(np.full(tuple(size), value if infinite else _num(value), dtype=object))


def _arange(*args, **kw):
    """arange(end), arange(start, end[, step]): exact numbers (float bounds as the
    rationals of their doubles) — a RoPE frequency table built in the forward."""
    start, end, step = (0, args[0], 1) if len(args) == 1 else \
        (args[0], args[1], args[2] if len(args) > 2 else 1)
    start, end, step = _num(start), _num(end), _num(step)
    count = max(0, math.ceil((end - start) / step))
    return _sym(np.array([start + k * step for k in range(count)], dtype=object))


def _silu_backward(grad, x):
    """PyTorch's SiluBackward: g·σ(x)·(1 + x·(1 − σ(x)))."""
    a = _arr(x)
    s = np.asarray(fn.sigmoid(a), dtype=object)
    return _sym(_arr(grad) * s * (1 + a * (1 - s)))


def _full_like(x, value, **kw):
    return _sym(np.full(_arr(x).shape, _num(value), dtype=object))


def _triangle(upper: bool):
    """triu/tril: entries (i, j) of the last two axes with j − i ≥ diagonal (triu) or
    ≤ diagonal (tril) kept, the others 0 (a causal mask is triu of a −∞ matrix)."""
    def apply(x, diagonal=0):
        a = np.array(_arr(x), dtype=object)
        for i, j in np.ndindex(a.shape[-2:]):
            if ((j - i >= diagonal) if upper else (j - i <= diagonal)) is False:
                a[..., i, j] = 0
        return _sym(a)
    return apply


def _threshold_backward(grad, x, threshold):
    a = _arr(x)
    return _where(_compare(lambda u, v: u > v)(a, threshold), grad, np.zeros(a.shape, dtype=object))


def _cat(tensors, dim=0):
    arrays = [_arr(t) for t in tensors if _arr(t).size or _arr(t).ndim > 1]
    return _sym(np.concatenate(arrays, axis=dim % arrays[0].ndim))


def _binary(f):
    def apply(a, b, alpha=1):
        return _sym(f(_arr(a) if isinstance(a, np.ndarray) else _num(a),
                      _arr(b) if isinstance(b, np.ndarray) else _num(b), _num(alpha)))
    return apply


def _unary(f):
    return lambda x: _sym(f(_arr(x)))


def _identity(x, *args, **kwargs):
    return _sym(x)


def _masked_fill(x, mask, value):
    return _where(_arr(mask), np.full(_arr(x).shape, _num(value), dtype=object), x)


def _select_backward(grad, sizes, dim, index):
    out = np.zeros(tuple(sizes), dtype=object)
    idx = [slice(None)] * len(sizes)
    idx[dim % len(sizes)] = index
    out[tuple(idx)] = _arr(grad)
    return _sym(out)


def _slice_backward(grad, sizes, dim, start, end, step):
    out = np.zeros(tuple(sizes), dtype=object)
    idx = [slice(None)] * len(sizes)
    idx[dim % len(sizes)] = slice(start, end, step)
    out[tuple(idx)] = _arr(grad)
    return _sym(out)


def _attention_weights(q, k, is_causal, attn_mask, scale):
    """Per leading index, the softmax weights P of q kᵀ·scale (+ mask) and the kept entries:
    an entry with mask −∞, or above the diagonal when causal, is left out (weight 0); a row
    with none kept has all weights 0 (PyTorch's convention for a fully masked row)."""
    q, k = _arr(q), _arr(k)
    L, E = q.shape[-2:]
    S = k.shape[-2]
    s = se.Integer(1) / se.sqrt(E) if scale is None else _num(scale)
    lead = np.broadcast_shapes(q.shape[:-2], k.shape[:-2])
    mask = None if attn_mask is None else np.broadcast_to(_arr(attn_mask), lead + (L, S))
    q, k = np.broadcast_to(q, lead + (L, E)), np.broadcast_to(k, lead + (S, E))
    P = np.zeros(lead + (L, S), dtype=object)
    Z = np.empty(lead + (L, S), dtype=object)        # the scaled, masked scores
    lse = np.full(lead + (L,), -math.inf, dtype=object)
    for b in np.ndindex(lead):
        scores = fn.matmul(np.asarray(q[b]), np.asarray(k[b]).T)
        for i in range(L):
            keep = [j for j in range(S) if not (is_causal and j > i) and
                    not (mask is not None and _minus_infinity(mask[b][i, j]))]
            if not keep:
                continue
            z = [scores[i, j] * s + (mask[b][i, j] if mask is not None else 0) for j in keep]
            e = [fn.exp(v) for v in z]
            total = sum(e[1:], e[0])
            # a sum of exponentials: positive, no domain condition to record
            lse[b][i] = se.log(total) if isinstance(total, se.Basic) else fn.log(total)
            for j, ej, zj in zip(keep, e, z):
                P[b][i, j] = ej / total
                Z[b][i, j] = zj
    return P, s, lead, Z, lse


def _same(a, b) -> bool:
    """Whether two values are certainly the same: one object (a randomized run's number),
    or equal expressions (SymEngine's structural equality), or equal floats."""
    if a is b:
        return True
    if isinstance(a, (se.Basic, float)) and isinstance(b, (se.Basic, float)):
        return bool(a == b)
    return False


def _weights_from_lse(P, Z, lse, given) -> np.ndarray:
    """The weights the kernel's backward uses: exp(z − L) with L the log-sum-exp it was
    given. Where L is the forward's own (:func:`_same`), that is P itself, written so;
    elsewhere exp(z − L) as the kernel computes it — a wrong L gives wrong weights."""
    given = np.broadcast_to(_arr(given), lse.shape)
    out = np.array(P, dtype=object)
    for index in np.ndindex(lse.shape):
        if isinstance(lse[index], float) or _same(lse[index], given[index]):   # −∞: no row
            continue
        row = out[index]
        for j in range(row.shape[-1]):
            if Z[index + (j,)] is not None:
                row[j] = fn.exp(Z[index + (j,)] - given[index])
    return out


def _minus_infinity(v) -> bool:
    if isinstance(v, float):
        if v == -math.inf:
            return True
        raise InputError(f"an attention mask entry {v} is not finite and not −∞")
    return False


def _sdpa(q, k, v, dropout_p=0.0, is_causal=False, attn_mask=None, scale=None):
    """(softmax(q kᵀ·scale + mask) v, logsumexp of the scores)."""
    if dropout_p:
        raise InputError("scaled_dot_product_attention with dropout_p > 0 is random; trace "
                         "it in eval mode or with dropout_p = 0")
    P, s, lead, _, lse = _attention_weights(q, k, is_causal, attn_mask, scale)
    v = np.broadcast_to(_arr(v), lead + _arr(v).shape[-2:])
    out = np.empty(lead + (P.shape[-2], v.shape[-1]), dtype=object)
    for b in np.ndindex(lead):
        out[b] = fn.matmul(P[b], np.asarray(v[b]))
    return _sym(out), _sym(lse)


def _sdpa_backward(grad_out, q, k, v, out, logsumexp, dropout_p, is_causal, attn_mask=None,
                   scale=None):
    """The attention backward in closed form: dV = Pᵀ dO, dS = P ⊙ (dO Vᵀ − rowsum(dO ⊙ O)),
    dQ = dS K·scale, dK = dSᵀ Q·scale (P recomputed from q and k, as the kernel does from
    the saved log-sum-exp, as exp(z − L): a wrong L is seen; O the forward's output)."""
    P, s, lead, Z, lse = _attention_weights(q, k, is_causal, attn_mask, scale)
    P = _weights_from_lse(P, Z, lse, logsumexp)
    g, o = _arr(grad_out), _arr(out)
    qa, ka, va = (np.broadcast_to(_arr(t), lead + _arr(t).shape[-2:]) for t in (q, k, v))
    dq, dk, dv = (np.empty(t.shape, dtype=object) for t in (qa, ka, va))
    for b in np.ndindex(lead):
        Pb, gb = P[b], np.asarray(g[b])
        dv[b] = fn.matmul(Pb.T, gb)
        dP = fn.matmul(gb, np.asarray(va[b]).T)
        D = (gb * np.asarray(o[b])).sum(axis=-1, keepdims=True)
        dS = Pb * (dP - D)
        dq[b] = fn.matmul(dS, np.asarray(ka[b])) * s
        dk[b] = fn.matmul(dS.T, np.asarray(qa[b])) * s
    return tuple(_sym(_reduce_to(t, _arr(x).shape)) for t, x in ((dq, q), (dk, k), (dv, v)))


def _reduce_to(grad, shape):
    """A gradient of a broadcast input, summed back to the input's shape."""
    g = np.asarray(grad, dtype=object)
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    for d, n in enumerate(shape):
        if n == 1 and g.shape[d] != 1:
            g = g.sum(axis=d, keepdims=True)
    return g


#: ATen overload name → its meaning on symbolic arrays (one table; see the module docstring)
ATEN = {
    # no-ops on values
    "detach.default": _identity, "alias.default": _identity, "clone.default": _identity,
    "lift_fresh_copy.default": _identity, "_to_copy.default": _identity,
    "contiguous.default": _identity,
    # shapes
    "t.default": lambda x: _sym(_arr(x).T),
    "permute.default": lambda x, dims: _sym(np.transpose(_arr(x), dims)),
    "transpose.int": lambda x, a, b: _sym(np.swapaxes(_arr(x), a, b)),
    "view.default": lambda x, shape: _sym(_arr(x).reshape(shape)),
    "_unsafe_view.default": lambda x, shape: _sym(_arr(x).reshape(shape)),
    "reshape.default": lambda x, shape: _sym(_arr(x).reshape(shape)),
    "expand.default": _expand,
    "unsqueeze.default": lambda x, d: _sym(np.expand_dims(_arr(x), d % (_arr(x).ndim + 1))),
    "squeeze.dim": _squeeze, "squeeze.dims": _squeeze, "squeeze.default": _squeeze,
    "select.int": _select, "slice.Tensor": _slice, "cat.default": _cat,
    "stack.default": lambda ts, dim=0: _sym(np.stack([_arr(t) for t in ts], axis=dim)),
    "select_backward.default": _select_backward, "slice_backward.default": _slice_backward,
    "split.Tensor": lambda x, size, dim=0: _split(x, size, dim),
    "split_with_sizes.default": lambda x, sizes, dim=0: _split(x, list(sizes), dim),
    "unbind.int": lambda x, dim=0: [_select(x, dim, i) for i in range(_arr(x).shape[dim])],
    # linear algebra
    "mm.default": _matmul, "bmm.default": _matmul, "matmul.default": _matmul,
    "addmm.default": lambda bias, a, b, beta=1, alpha=1: _sym(
        _num(beta) * _arr(bias) + _num(alpha) * _matmul(a, b)),
    "dot.default": lambda a, b: _sym((_arr(a) * _arr(b)).sum()),
    # arithmetic
    "add.Tensor": _binary(lambda a, b, alpha: a + alpha * b),
    "add.Scalar": _binary(lambda a, b, alpha: a + alpha * b),
    "sub.Tensor": _binary(lambda a, b, alpha: a - alpha * b),
    "sub.Scalar": _binary(lambda a, b, alpha: a - alpha * b),
    "rsub.Scalar": _binary(lambda a, b, alpha: b - alpha * a),
    "rsub.Tensor": _binary(lambda a, b, alpha: b - alpha * a),
    "mul.Tensor": _binary(lambda a, b, alpha: a * b),
    "mul.Scalar": _binary(lambda a, b, alpha: a * b),
    "div.Tensor": _binary(lambda a, b, alpha: a / b),
    "div.Scalar": _binary(lambda a, b, alpha: a / b),
    "neg.default": _unary(lambda a: -a),
    "reciprocal.default": _unary(lambda a: 1 / a),
    "pow.Tensor_Scalar": lambda x, e: _sym(_arr(x) ** _num(e)),
    "pow.Scalar": lambda base, e: _sym(se.sympify(_num(base)) ** _arr(e)),
    "square.default": _unary(lambda a: a * a),
    "exp.default": _unary(fn.exp), "log.default": _unary(fn.log),
    "tanh.default": _unary(fn.tanh), "sigmoid.default": _unary(fn.sigmoid),
    "sqrt.default": _unary(fn.sqrt), "rsqrt.default": _unary(fn.rsqrt),
    "erf.default": _unary(fn.erf), "sin.default": _unary(fn.sin), "cos.default": _unary(fn.cos),
    "abs.default": _unary(fn.abs), "relu.default": _unary(fn.relu),
    "silu.default": _unary(fn.silu),
    "gelu.default": _gelu, "gelu_backward.default": _gelu_backward,
    "tanh_backward.default": lambda g, y: _sym(_arr(g) * (1 - _arr(y) * _arr(y))),
    "sigmoid_backward.default": lambda g, y: _sym(_arr(g) * _arr(y) * (1 - _arr(y))),
    "silu_backward.default": _silu_backward,
    "threshold_backward.default": _threshold_backward,
    # reductions
    "sum.dim_IntList": _sum, "sum.default": _sum, "mean.dim": _mean, "mean.default": _mean,
    "prod.dim_int": lambda x, dim, keepdim=False, dtype=None: _sym(
        np.prod(_arr(x), axis=dim % _arr(x).ndim, keepdims=bool(keepdim))),
    "prod.default": lambda x, dtype=None: _sym(np.prod(_arr(x))),
    "cumprod.default": lambda x, dim, dtype=None: _sym(np.cumprod(_arr(x), axis=dim % _arr(x).ndim)),
    "cumsum.default": lambda x, dim, dtype=None: _sym(np.cumsum(_arr(x), axis=dim % _arr(x).ndim)),
    "flip.default": lambda x, dims: _sym(np.flip(_arr(x), axis=tuple(dims))),
    # softmax and LayerNorm kernels
    "_softmax.default": _softmax, "_log_softmax.default": _log_softmax,
    "_softmax_backward_data.default": _softmax_backward,
    "_log_softmax_backward_data.default": _log_softmax_backward,
    "native_layer_norm.default": _native_layer_norm,
    "native_layer_norm_backward.default": _native_layer_norm_backward,
    "_scaled_dot_product_flash_attention_for_cpu.default": _sdpa,
    "_scaled_dot_product_flash_attention_for_cpu_backward.default": _sdpa_backward,
    # comparisons and selection
    "gt.Scalar": _compare(lambda a, b: a > b), "gt.Tensor": _compare(lambda a, b: a > b),
    "lt.Scalar": _compare(lambda a, b: a < b), "lt.Tensor": _compare(lambda a, b: a < b),
    "ge.Scalar": _compare(lambda a, b: a >= b), "le.Scalar": _compare(lambda a, b: a <= b),
    "eq.Scalar": _compare(lambda a, b: a == b), "ne.Scalar": _compare(lambda a, b: a != b),
    "where.self": _where, "masked_fill.Scalar": _masked_fill,
    # constants
    "zeros_like.default": lambda x, **kw: _full_like(x, 0),
    "ones_like.default": lambda x, **kw: _full_like(x, 1),
    "full_like.default": lambda x, v, **kw: _full_like(x, v),
    "full.default": _full, "zeros.default": lambda size, **kw: _full(size, 0),
    "arange.default": _arange, "arange.start": _arange, "arange.start_step": _arange,
    "triu.default": _triangle(True), "tril.default": _triangle(False),
    "ones.default": lambda size, **kw: _full(size, 1),
    "scalar_tensor.default": lambda v, **kw: _sym(np.array(_num(v), dtype=object)),
    "new_zeros.default": lambda x, size, **kw: _full(size, 0),
    "new_ones.default": lambda x, size, **kw: _full(size, 1),
}

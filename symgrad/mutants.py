"""Named wrong VJP rules ("mutants") for the library ops.

Each mutant is a plausible bug — a dropped term, a wrong constant, a missing transpose, the
unbiased variance, a missing fan-in doubling, a wrong permutation — that symgrad must
REFUTE with a certified witness. They exist to show the checker can fail (the test suite and
the obligations gate run them) and for demonstrations:

>>> from symgrad.mutants import MUTANTS, verify_mutant
>>> r = verify_mutant("softmax_no_subtraction")
>>> r.verdict.value, r.witness.input
('refuted', 'x')
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import fn
from .api import verify_node
from .graph import Graph


@dataclass(frozen=True)
class Mutant:
    name: str
    op: str
    shapes: tuple
    vjp: Callable
    bug: str
    reads: tuple | None = None
    params: dict | None = None


MUTANTS: dict[str, Mutant] = {}


def _mutant(name, op, shapes, bug, reads=None, params=None):
    def register(vjp):
        MUTANTS[name] = Mutant(name, op, tuple(tuple(s) for s in shapes), vjp, bug,
                               None if reads is None else tuple(reads), params)
        return vjp
    return register


def _rowsum(a):
    return a.sum(axis=-1, keepdims=True)


# ----- softmax family -------------------------------------------------------------------

@_mutant("softmax_no_subtraction", "softmax", [(2, 3)], "drops the −Σ g·y term")
def _(g, y, x):
    return (y * g,)


@_mutant("softmax_wrong_axis", "softmax", [(3, 3)], "sums g·y over the wrong axis")
def _(g, y, x):
    return (y * (g - (g * y).sum(axis=0, keepdims=True)),)


@_mutant("softmax_sign", "softmax", [(2, 3)], "adds the Σ g·y term instead of subtracting")
def _(g, y, x):
    return (y * (g + _rowsum(g * y)),)


@_mutant("log_softmax_no_probs", "log_softmax", [(2, 3)], "g − Σg, missing the softmax factor")
def _(g, out, x):
    return (g - _rowsum(g),)


@_mutant("masked_softmax_ignores_bias", "masked_softmax", [(2, 3)],
         "recomputes the probabilities without the bias")
def _(g, y, x, *, bias):
    p = fn.exp(x) / _rowsum(fn.exp(x))
    return (p * (g - _rowsum(g * p)),)


@_mutant("hard_mask_leaks_gradient", "hard_masked_softmax", [(3, 3)],
         "uses the unmasked softmax, so masked entries get gradient")
def _(g, y, x, *, mask):
    p = fn.exp(x) / _rowsum(fn.exp(x))
    return (p * (g - _rowsum(g * p)),)


# ----- layer norm -------------------------------------------------------------------------

def _ln_backward(g, x, gamma, eps, *, unbiased=False, mean_term=True, eps_outside=False):
    """The LayerNorm closed form with one switchable bug; returns (dx, dγ = Σ g·x̂, dβ = Σ g)."""
    n = x.shape[-1]
    mu = _rowsum(x) / n
    var = _rowsum((x - mu) ** 2) / (n - 1 if unbiased else n)
    inv = 1 / (fn.sqrt(var) + eps) if eps_outside else 1 / fn.sqrt(var + eps)
    xhat = (x - mu) * inv
    d = g * gamma
    dx = inv * (d - (_rowsum(d) / n if mean_term else 0) - xhat * _rowsum(d * xhat) / n)
    return dx, (g * xhat).sum(axis=0), g.sum(axis=0)


@_mutant("layer_norm_unbiased_variance", "layer_norm", [(2, 3), (3,), (3,)],
         "uses the unbiased variance 1/(n−1) in the backward pass")
def _(g, out, x, gamma, beta, *, eps):
    return _ln_backward(g, x, gamma, eps, unbiased=True)


@_mutant("layer_norm_no_mean_term", "layer_norm", [(2, 3), (3,), (3,)],
         "drops the −mean(dy·γ) term of dx")
def _(g, out, x, gamma, beta, *, eps):
    return _ln_backward(g, x, gamma, eps, mean_term=False)


@_mutant("layer_norm_dgamma_no_xhat", "layer_norm", [(2, 3), (3,), (3,)],
         "dγ = Σ dy, missing the x̂ factor")
def _(g, out, x, gamma, beta, *, eps):
    dx, _, dbeta = _ln_backward(g, x, gamma, eps)
    return dx, dbeta, dbeta


@_mutant("layer_norm_eps_outside_root", "layer_norm", [(2, 3), (3,), (3,)],
         "uses 1/(√var + ε) in the backward pass (ε outside the root)")
def _(g, out, x, gamma, beta, *, eps):
    return _ln_backward(g, x, gamma, eps, eps_outside=True)


@_mutant("layer_norm_dbeta_times_xhat", "layer_norm", [(2, 3), (3,), (3,)],
         "dβ = Σ dy·x̂ (dγ's formula)")
def _(g, out, x, gamma, beta, *, eps):
    dx, dgamma, _ = _ln_backward(g, x, gamma, eps)
    return dx, dgamma, dgamma


def _rms_backward(g, x, gain, eps, projection=True, layer_norm_mean=False):
    n = x.shape[-1]
    inv = 1 / fn.sqrt((x * x).sum(axis=-1, keepdims=True) / n + eps)
    xhat = x * inv
    dxhat = g * gain
    inner = dxhat - (xhat * _rowsum(dxhat * xhat) / n if projection else 0)
    if layer_norm_mean:
        inner = inner - _rowsum(dxhat) / n
    return inv * inner, (g * xhat).sum(axis=tuple(range(x.ndim - 1)))


@_mutant("rms_norm_no_projection", "rms_norm", [(2, 3), (3,)],
         "dx = g·gain/rms, dropping the −x̂·mean(g·gain·x̂) term")
def _(g, out, x, gain, *, eps):
    return _rms_backward(g, x, gain, eps, projection=False)


@_mutant("rms_norm_layer_norm_mean", "rms_norm", [(2, 3), (3,)],
         "also subtracts mean(g·gain), as LayerNorm's backward does")
def _(g, out, x, gain, *, eps):
    return _rms_backward(g, x, gain, eps, layer_norm_mean=True)


@_mutant("rms_norm_dgain_unnormalised", "rms_norm", [(2, 3), (3,)],
         "dgain = Σ g·x, missing the 1/rms")
def _(g, out, x, gain, *, eps):
    dx, _ = _rms_backward(g, x, gain, eps)
    return dx, (g * x).sum(axis=tuple(range(x.ndim - 1)))


# ----- rotary embeddings and grouped-query attention -----------------------------------

@_mutant("rope_rotation_not_transposed", "rope", [(1, 3, 4)],
         "g·cos + rotate_half(g·sin): the forward's rotation, not its transpose",
         params={"base": 10000})
def _(g, out, x, *, base):
    from .ops.rotary import _rotate_half, rope_tables
    cos, sin = rope_tables(x.shape[1], x.shape[2], base)
    return (g * cos + _rotate_half(g * sin),)


@_mutant("rope_cos_only", "rope", [(1, 3, 4)], "g·cos, dropping the rotated sin term",
         params={"base": 10000})
def _(g, out, x, *, base):
    from .ops.rotary import rope_tables
    cos, _ = rope_tables(x.shape[1], x.shape[2], base)
    return (g * cos,)


@_mutant("repeat_kv_tiled", "repeat_kv", [(2, 2, 2)],
         "sums the copies as if the heads were tiled (h ↦ h mod kv), not interleaved",
         params={"rep": 2})
def _(g, out, x, *, rep):
    kv, n, d = x.shape
    return (g.reshape(rep, kv, n, d).sum(axis=0),)


@_mutant("repeat_kv_first_copy", "repeat_kv", [(1, 2, 2)],
         "keeps the cotangent of the first copy only", params={"rep": 2})
def _(g, out, x, *, rep):
    kv, n, d = x.shape
    return (g.reshape(kv, rep, n, d)[:, 0],)


@_mutant("swiglu_gate_sigmoid_only", "swiglu", [(2, 2), (2, 2)],
         "da = g·b·σ(a), dropping a·σ(1−σ)")
def _(g, out, a, b):
    return g * b * fn.sigmoid(a), g * fn.silu(a)


@_mutant("swiglu_up_grad_ungated", "swiglu", [(2, 2), (2, 2)], "db = g·a, missing the sigmoid")
def _(g, out, a, b):
    s = fn.sigmoid(a)
    return g * b * s * (1 + a * (1 - s)), g * a


# ----- linear algebra -----------------------------------------------------------------

@_mutant("matmul_missing_transpose", "matmul", [(3, 3), (3, 3)], "dx = g @ W (no transpose)")
def _(g, out, x, W):
    return g @ W, x.T @ g


@_mutant("matmul_swapped_dW", "matmul", [(3, 3), (3, 3)], "dW = gᵀ @ x instead of xᵀ @ g")
def _(g, out, x, W):
    return g @ W.T, g.T @ x


@_mutant("batched_matmul_dB_no_transpose", "batched_matmul", [(2, 2, 2), (2, 2, 2)],
         "dB = A @ g (A not transposed)")
def _(g, out, A, B):
    return np.matmul(g, B.transpose(0, 2, 1)), np.matmul(A, g)


@_mutant("affine_db_first_row", "affine", [(2, 3), (3, 2), (2,)],
         "db takes only the first row of g")
def _(g, out, x, W, b):
    return g @ W.T, x.T @ g, g[0]


@_mutant("mul_square_no_doubling", "mul", [(2, 2)],
         "x⊙x: returns a cotangent for one argument only (missing fan-in doubling)",
         reads=(0, 0))
def _(g, out, a, b):
    return g * b, None


@_mutant("matmul_const_no_transpose", "matmul_const", [(3, 3)], "dx = g @ W (no transpose)")
def _(g, out, x, *, W):
    return (g @ W,)


@_mutant("sub_sign", "sub", [(2, 2), (2, 2)], "returns +g for the subtrahend")
def _(g, out, a, b):
    return g, g


@_mutant("scale_missing_c", "scale", [(2, 3)], "returns g, forgetting the factor c")
def _(g, out, x, *, c):
    return (g,)


# ----- shapes and reductions ------------------------------------------------------------

@_mutant("transpose_last_two_identity", "transpose_last_two", [(2, 2, 2)],
         "passes g through untransposed")
def _(g, out, x):
    return (g,)


@_mutant("swap_first_two_wrong_axes", "swap_first_two", [(2, 2, 2)],
         "swaps the last two axes back instead of the first two")
def _(g, out, x):
    return (g.transpose(0, 2, 1),)


@_mutant("reshape_column_major", "reshape", [(2, 3)], "reshapes g back in column-major order",
         params={"shape": (3, 2)})
def _(g, out, x, *, shape):
    return (g.reshape(x.shape, order="F"),)


@_mutant("row_mean_no_division", "row_mean", [(2, 3)], "broadcasts g without the 1/n")
def _(g, out, x):
    return (np.repeat(g[:, None], x.shape[1], axis=1),)


@_mutant("broadcast_row_wrong_axis", "broadcast_row", [(3,)], "sums g over rows, not columns",
         params={"n": 3})
def _(g, out, v, *, n):
    return (g.sum(axis=0),)


# ----- elementwise ------------------------------------------------------------------------

@_mutant("exp_times_x", "exp", [(2, 2)], "g·x instead of g·eˣ")
def _(g, out, x):
    return (g * x,)


@_mutant("log_times_x", "log", [(2, 2)], "g·x instead of g/x")
def _(g, out, x):
    return (g * x,)


@_mutant("tanh_plus", "tanh", [(2, 2)], "g·(1 + tanh²) instead of g·(1 − tanh²)")
def _(g, out, x):
    return (g * (1 + out * out),)


@_mutant("sigmoid_no_complement", "sigmoid", [(2, 2)], "g·σ instead of g·σ(1−σ)")
def _(g, out, x):
    return (g * out,)


@_mutant("silu_sigmoid_only", "silu", [(2, 2)], "g·σ(x), dropping x·σ(1−σ)")
def _(g, out, x):
    return (g * fn.sigmoid(x),)


@_mutant("gelu_tanh_no_inner_derivative", "gelu_tanh", [(2, 2)],
         "½(1 + tanh u), dropping the derivative of the tanh term")
def _(g, out, x):
    k = fn.sqrt(2 / fn.pi)
    c = fn.rational(fn.GELU_TANH_C)
    return (g * (1 + fn.tanh(k * (x + c * x**3))) / 2,)


@_mutant("gelu_erf_cdf_only", "gelu_erf", [(2, 2)], "Φ(x) only, dropping x·φ(x)")
def _(g, out, x):
    return (g * (1 + fn.erf(x / fn.sqrt(2))) / 2,)


@_mutant("relu_identity", "relu", [(2, 2)], "passes g through, ignoring the step")
def _(g, out, x):
    return (g,)


@_mutant("sqrt_missing_half", "sqrt", [(2, 2)], "g/√x instead of g/(2√x)")
def _(g, out, x):
    return (g / out,)


@_mutant("inv_wrong_sign", "inv", [(2, 2)], "g/x² instead of −g/x²")
def _(g, out, x):
    return (g * out * out,)


def verify_mutant(name, **kwargs):
    """Check a mutant against its op's forward (it should come out REFUTED)."""
    m = MUTANTS[name]
    return verify_node(m.op, list(m.shapes), params=m.params, reads=m.reads, vjp=m.vjp,
                       **kwargs)


# ----- engine mutants: wrong backprop wiring, every node rule right ------------------------

def _overwrite(graph, cot, node, grads):
    """Drops fan-out accumulation: a value read several times keeps only the last
    cotangent (x, read by the Q, K and V projections and the residual, is hit)."""
    n_in = len(graph.inputs)
    for r, gr in zip(node.reads, grads):
        if gr is not None:
            cot[r] = gr if r >= n_in or r == 0 else cot[r] + gr


def _miswired(graph, cot, node, grads):
    """Sends a two-input node's cotangents to its reads in reverse order (where the two
    reads have one shape, so the wiring error is not a shape error)."""
    reads = node.reads
    if len(reads) == 2 and graph.shape(reads[0]) == graph.shape(reads[1]):
        reads = reads[::-1]
    for r, gr in zip(reads, grads):
        if gr is not None and np.shape(gr) == graph.shape(r):
            cot[r] = cot[r] + gr


def _backprop_overwrite(graph, vals, seed):
    return Graph.backprop(graph, vals, seed, deliver=_overwrite)


def _backprop_miswired(graph, vals, seed):
    return Graph.backprop(graph, vals, seed, deliver=_miswired)


def _backprop_wrong_seed(graph, vals, seed):
    """Seeds each saved tensor's cotangent onto the value before it (when shapes allow)."""
    shifted = {}
    for i, s in seed.items():
        j = i - 1 if i > 0 and graph.shape(i - 1) == graph.shape(i) else i
        shifted[j] = shifted.get(j, 0) + s
    return Graph.backprop(graph, vals, shifted)


ENGINE_MUTANTS = {
    "backprop_drops_fanout_accumulation": _backprop_overwrite,
    "backprop_miswires_reads": _backprop_miswired,
    "backprop_seeds_wrong_tensor": _backprop_wrong_seed,
}

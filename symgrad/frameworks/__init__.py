"""Real frameworks' code, traced into what symgrad proves: PyTorch (custom autograd
Functions, PyTorch's own backward of modules) through ATen graphs (:mod:`.torch`, the op
table :mod:`.aten`), and JAX (custom_vjp/custom_jvp rules, JAX's own derivatives) through
jaxprs (:mod:`.jax`). Both are optional extras: ``pip install 'symgrad[torch]'``,
``'symgrad[jax]'``."""
from __future__ import annotations

import numpy as np

from ..api import check_vjp
from ..scalar import SymArray


def side_by_side(values):
    """Several outputs as one array: the one itself, or all flattened and concatenated."""
    if len(values) == 1:
        return values[0]
    return np.concatenate([np.asarray(v, dtype=object).ravel() for v in values]).view(SymArray)


def rule_pair(run_forward, run_vjp, out_shapes):
    """``forward(*inputs)`` and ``vjp(g, out, *inputs)`` for :func:`symgrad.check_vjp` from
    a traced forward (``run_forward(inputs)`` → its outputs) and VJP (``run_vjp(inputs +
    cotangents)`` → one cotangent per input): several outputs side by side, flattened, and
    the seed cut back into one cotangent per output."""
    sizes = [int(np.prod(s)) for s in out_shapes]

    def forward(*inputs):
        return side_by_side(run_forward(list(inputs)))

    def vjp(g, out, *inputs):
        if len(out_shapes) == 1:
            gs = [g]
        else:
            flat = np.asarray(g, dtype=object).ravel()
            cuts = np.cumsum([0] + sizes)
            gs = [flat[a:b].reshape(s).view(SymArray)
                  for a, b, s in zip(cuts[:-1], cuts[1:], out_shapes)]
        return tuple(run_vjp(list(inputs) + gs))
    return forward, vjp


def prove_traced(run_forward, run_vjp, shapes, out_shapes, *, names, name, options):
    """:func:`symgrad.check_vjp` of a traced forward and VJP (see :func:`rule_pair`), with
    ``evidence="auto"`` unless the options say otherwise: exact (PROVED) where the normal
    form fits in 10 s, the randomized identity test (VERIFIED, error ≤ 2^-64)
    where it does not — as ``symgrad verify`` does for a graph."""
    forward, vjp = rule_pair(run_forward, run_vjp, out_shapes)
    options = {"evidence": "auto", **options}
    flat = tuple(out_shapes[0]) if len(out_shapes) == 1 else \
        (sum(int(np.prod(s)) for s in out_shapes),)
    return check_vjp(forward, vjp, shapes, names=names, name=name, output_shape=flat,
                     **options)

"""The op registry: one entry per tape node, forward and hand-written VJP side by side.

An op's ``forward(*inputs, **params)`` returns an object array; its
``vjp(g, out, *inputs, **params)`` returns one cotangent per input (``None`` = zero), in the
closed form a runtime uses — never "the adjoint of the derivative". The families live in
one module each (linalg, shape, reduce, elementwise, softmax, norm).

>>> sorted(OPS)[:4]
['add', 'add_bias', 'affine', 'batched_matmul']
>>> OPS["matmul"].signature
'x (m,n), W (n,p) -> (m,p)'
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..errors import InputError, ShapeError
from ..tensor import shape_tuple as fmt

OPS: dict[str, "Op"] = {}

LINEARITIES = ("linear", "bilinear", "nonlinear")


@dataclass(frozen=True)
class Param:
    """An op parameter: not differentiated; ``default(shapes, backend)`` gives its value."""

    name: str
    default: Callable
    doc: str


@dataclass(frozen=True)
class Op:
    name: str
    forward: Callable
    vjp: Callable
    args: tuple                 #: input names, in order
    signature: str              #: human-readable shapes, e.g. "x (m,n), W (n,p) -> (m,p)"
    linearity: str              #: linear / bilinear / nonlinear
    out_shape: Callable         #: (*shapes, **params) -> output shape; raises ShapeError
    examples: tuple             #: shape lists it is proved at in the test table
    params: tuple = ()          #: Param entries
    conditions: str = ""        #: declared side conditions, human-readable
    assumptions: Callable | None = None  #: (*inputs, **params) -> list of relationals
    doc: str = ""

    def param(self, name) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise InputError(
            f"op {self.name!r} has no parameter {name!r}"
            + (f"; its parameters are: {', '.join(p.name for p in self.params)}"
               if self.params else "; it takes no parameters"))


def defop(name, forward, vjp, *, args, signature, linearity, out_shape, examples,
          params=(), conditions="", assumptions=None, doc="", user=False):
    """Register an op (one statement per op in the family modules; users' ops come through
    :func:`symgrad.define_op`, which checks what they give)."""
    assert linearity in LINEARITIES, linearity
    assert user or len(examples) >= 2, f"{name}: give at least two example shapes"
    OPS[name] = Op(name, forward, vjp, tuple(args), signature, linearity, out_shape,
                   tuple(tuple(tuple(s) for s in ex) for ex in examples), tuple(params),
                   conditions, assumptions, doc or (forward.__doc__ or "").strip())
    return OPS[name]


def get_op(name: str) -> Op:
    try:
        return OPS[name]
    except KeyError:
        raise InputError(
            f"unknown op {name!r}; valid ops are: {', '.join(sorted(OPS))}") from None


# ----- shape rules shared by the families -----------------------------------------------

def need_rank(op, arg, shape, ranks):
    if len(shape) not in ranks:
        want = " or ".join(f"{r}-D" for r in ranks)
        raise ShapeError(f"{op}: input {arg} must be {want}, got shape {fmt(shape)}")


def same_shape(op, names):
    def rule(*shapes, **_):
        for n, s in zip(names[1:], shapes[1:]):
            if s != shapes[0]:
                raise ShapeError(f"{op}: input {n} has shape {fmt(s)} but {names[0]} "
                                 f"has shape {fmt(shapes[0])}; they must be equal")
        return shapes[0]
    return rule


def elementwise_shape(*shapes, **_):
    return shapes[0]


from . import elementwise, linalg, norm, reduce, rotary, shape, softmax  # noqa: E402,F401  (register)

"""The tape: a context of named, shaped inputs and nodes that read earlier values by index.

Values are numbered inputs first (0 … len(inputs)−1), then one per node in order; a value may
be read by any later node (fan-out). ``eval`` gives every tape value ("saved tensors");
``backprop`` runs the nodes' VJP rules in reverse and *adds* each cotangent into the values
the node read, starting from a seed that may cover the whole tape or only the output.

>>> g = Graph([("x", (2, 3)), ("W", (3, 2))], name="demo")
>>> h = g.add("matmul", 0, 1)
>>> y = g.add("tanh", h)
>>> [g.shape(i) for i in range(len(g.values))]
[(2, 3), (3, 2), (2, 2), (2, 2)]
>>> g.values[y]
'tanh_3'
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import symengine as se

from .errors import InputError, ShapeError
from .ops import get_op
from .tensor import shape_tuple, symbols


@dataclass(frozen=True)
class Node:
    op: str
    reads: tuple          #: value indices, one per op argument
    params: dict          #: op parameters (numbers, symbols, fixed arrays)
    name: str             #: the saved tensor's name
    shape: tuple


@dataclass
class Graph:
    """A tape over a context of named inputs."""

    inputs: list                       #: [(name, shape)]
    name: str = "graph"
    nodes: list = field(default_factory=list)
    info: dict = field(default_factory=dict)   #: layout, parameters, for reports
    #: input name → a label per axis ("n", "d", …; None for none): inputs whose axes share a
    #: label may be shifted together when the end-to-end check looks for symmetries
    axis_labels: dict = field(default_factory=dict)

    def __post_init__(self):
        self.inputs = [(str(n), tuple(int(d) for d in s)) for n, s in self.inputs]
        names = [n for n, _ in self.inputs]
        if len(set(names)) != len(names):
            raise InputError(f"graph {self.name}: input names must be distinct, got {names}")
        for n, s in self.inputs:
            if any(d <= 0 for d in s):
                raise ShapeError(f"graph {self.name}: input {n} has shape {shape_tuple(s)}; "
                                 f"every dimension must be a positive integer")

    # -- structure
    @property
    def values(self) -> list:
        """Names of all tape values: inputs, then node outputs."""
        return [n for n, _ in self.inputs] + [node.name for node in self.nodes]

    def shape(self, index: int) -> tuple:
        if index < len(self.inputs):
            return self.inputs[index][1]
        return self.nodes[index - len(self.inputs)].shape

    def add(self, op_name: str, *reads: int, name: str | None = None, **params) -> int:
        """Append a node reading the given values; returns the new value's index."""
        op = get_op(op_name)
        count = len(self.values)
        for r in reads:
            if not isinstance(r, (int, np.integer)) or not 0 <= r < count:
                raise InputError(f"graph {self.name}: node {count} ({op_name}) reads value "
                                 f"{r!r}, but only values 0…{count - 1} exist before it")
        if len(reads) != len(op.args):
            raise InputError(f"graph {self.name}: {op_name} takes {len(op.args)} input(s) "
                             f"({', '.join(op.args)}), node {count} reads {len(reads)}")
        full = {p.name: p.default([self.shape(r) for r in reads], "symengine")
                for p in op.params}
        for k in params:
            op.param(k)
        full.update(params)
        name = name or f"{op_name}_{count}"
        if name in self.values:
            raise InputError(f"graph {self.name}: a value named {name!r} exists already; "
                             f"tape values need distinct names")
        try:
            shape = tuple(op.out_shape(*[self.shape(r) for r in reads], **full))
        except ShapeError as exc:
            raise ShapeError(f"graph {self.name}, node {count} ({name or op_name}): "
                             f"{exc}") from None
        self.nodes.append(Node(op_name, tuple(int(r) for r in reads), full, name, shape))
        return count

    @property
    def output(self) -> int:
        return len(self.values) - 1

    # -- evaluation and backprop (symbolic, or float64 through the very same rules)
    def symbols(self) -> list:
        return [symbols(n, s) for n, s in self.inputs]

    def eval(self, inputs: list, numeric: bool = False) -> list:
        """Every tape value (inputs included) from input arrays. ``numeric``: entries are
        floats, rounded to float64 after every node (the forward code is the proved one)."""
        vals = [_floats(v) if numeric else v for v in inputs]
        for node in self.nodes:
            op = get_op(node.op)
            out = np.asarray(op.forward(*[vals[r] for r in node.reads], **node.params),
                             dtype=object)
            vals.append(_floats(out) if numeric else out)
        return vals

    def backprop(self, vals: list, seed: dict, numeric: bool = False, deliver=None) -> list:
        """Cotangents of every value: start from ``seed`` {value index: array}, walk the
        nodes in reverse, and add each node's cotangents into the values it read.
        ``deliver(graph, cot, node, grads)`` replaces that last step (the engine mutants
        use it to mis-wire backprop on purpose)."""
        cot = [np.zeros(self.shape(i), dtype=object) for i in range(len(vals))]
        for i, s in seed.items():
            cot[i] = cot[i] + s
        n_in = len(self.inputs)
        for k in range(len(self.nodes) - 1, -1, -1):
            node = self.nodes[k]
            op = get_op(node.op)
            grads = op.vjp(cot[n_in + k], vals[n_in + k], *[vals[r] for r in node.reads],
                           **node.params)
            if numeric:
                grads = [None if gr is None else _floats(gr) for gr in grads]
            (deliver or add_into)(self, cot, node, grads)
        return cot

    def _numeric_inputs(self, values: dict) -> list:
        out = []
        for n, s in self.inputs:
            if n not in values:
                raise InputError(f"graph {self.name}: no value given for input {n}")
            a = np.asarray(values[n], dtype=float)
            if a.shape != s:
                raise ShapeError(f"graph {self.name}: input {n} has shape "
                                 f"{shape_tuple(a.shape)}, expected {shape_tuple(s)}")
            out.append(a)
        return out

    def evaluate(self, values: dict) -> dict:
        """float64 values of every tape entry: {value name: ndarray}."""
        vals = self.eval(self._numeric_inputs(values), numeric=True)
        return {name: _to_float(v) for name, v in zip(self.values, vals)}

    def vjp(self, values: dict, seed) -> dict:
        """float64 cotangents of the inputs for a seed: an array for the output, or
        {value name: array} for any tape values (the rest zero)."""
        if not isinstance(seed, dict):
            seed = {self.values[self.output]: seed}
        unknown = set(seed) - set(self.values)
        if unknown:
            raise InputError(f"graph {self.name}: the seed names unknown values "
                             f"{sorted(unknown)}; the tape has {self.values}")
        seeds = {}
        for i, name in enumerate(self.values):
            if name in seed:
                sd = np.asarray(seed[name], dtype=float)
                if sd.shape != self.shape(i):
                    raise ShapeError(f"graph {self.name}: the seed for {name} has shape "
                                     f"{shape_tuple(sd.shape)}, expected "
                                     f"{shape_tuple(self.shape(i))}")
                seeds[i] = _floats(sd)
        vals = self.eval(self._numeric_inputs(values), numeric=True)
        cot = self.backprop(vals, seeds, numeric=True)
        return {n: _to_float(c) for (n, _), c in zip(self.inputs, cot)}


def add_into(graph, cot, node, grads):
    """Add each cotangent into the value it belongs to (fan-out accumulates)."""
    for r, gr in zip(node.reads, grads):
        if gr is not None:
            cot[r] = cot[r] + gr


def _floats(a) -> np.ndarray:
    """An object array of SymEngine floats (rounded to float64) from numbers or numeric
    expressions."""
    a = np.asarray(a, dtype=object)
    out = np.empty(a.shape, dtype=object)
    for index in np.ndindex(a.shape):
        out[index] = se.RealDouble(float(a[index]))
    return out


def _to_float(a) -> np.ndarray:
    a = np.asarray(a, dtype=object)
    return np.array([float(v) for v in a.flat], dtype=float).reshape(a.shape)

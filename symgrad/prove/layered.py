"""The end-to-end identity with tape values as indeterminates (docs/method.md, "Layered").

Expanding the fully composed forward of a Transformer block is what does not scale: a
LayerNorm's 1/√(var + ε) over the FFN's GELU of the first LayerNorm's output multiplies out
into tens of millions of terms. Here every tape value k in a set S is a fresh symbol V_k
(printed as the value's name, ``ffn.hidden[0,1]``), and every other one is its node's
forward of the representations of what it reads — one level, never the whole composition.
On both sides of one seed block's identity, for an input entry x_e:

* the **reference** is forward mode through the tape: dV_k/dx_e = Σ_p ∂f_k/∂p · dV_p/dx_e,
  each local Jacobian ∂f_k/∂p from SymEngine's derivative of the node's forward (never a
  VJP rule), evaluated at the representations of what node k reads; paired with the
  block's seed ḡ;
* the **engine under test** gets the representations as its saved values (copies) and the
  block's seed, and its input cotangent at x_e is the other side.

If the difference is zero as a normal form with every V_k a free indeterminate, it is zero
at the tape's actual values: the chain rule makes the reference the true derivative there
(the relation V_k = f_k(…) is never needed by it), and the engine's cotangent is what it
computes from those values. Sound as any abstraction; incomplete where the engine's
correctness needs a relation V_k = f_k(…) — softmax's backward reads its output, so a value
whose node's rule reads its own output is not put in S (it is its forward of its reads). An
entry this pass does not settle goes to the composed check.

The identity is split by seed block when the engine is linear in the seed (degree ≤ 1 in
the seed symbols and 0 at the zero seed, checked on these same values): one block's pieces
do not meet another's sums.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import symengine as se

from ..graph import Graph
from ..ops import get_op
from ..tensor import symbols
from .check import _canonical_arrays, step_frozen_diff
from .grid import degree_in


def is_linear_in(cot, seeds: frozenset, zero) -> tuple:
    """(linear?, worst degree): every cotangent entry has degree ≤ 1 in ``seeds`` and the
    cotangents at the zero seed (``zero``) are exactly 0."""
    memo: dict = {}
    worst = max((degree_in(se.sympify(e), seeds, memo) for c in cot
                 for e in np.asarray(c, dtype=object).flat), default=0)
    at_zero = all(se.sympify(e) == 0 for c in zero for e in np.asarray(c, dtype=object).flat)
    return worst <= 1 and at_zero, worst


def _placeholders(graph: Graph, node) -> list:
    return [symbols(f"_p{j}", graph.shape(r), unique=True) for j, r in enumerate(node.reads)]


def reads_own_output(op, node, args, out) -> bool:
    """Whether the op's VJP rule reads the node's output (softmax's, exp's do): the rule at
    the placeholders ``args`` with a fresh mark for the output ``out``."""
    mark = symbols("_out", out.shape, unique=True)
    try:
        grads = op.vjp(symbols("_g", out.shape, unique=True), mark, *args, **node.params)
    except Exception:   # noqa: BLE001 — a rule that cannot run here: keep the value composed
        return True
    marks = frozenset(mark.flat)
    return any(not marks.isdisjoint(se.sympify(e).free_symbols)
               for gr in grads if gr is not None for e in np.asarray(gr, dtype=object).flat)


def block_seeds(graph: Graph, blocks: list, g) -> dict:
    """{tape value: its seed array} from the flat seed ``g`` of ``blocks``, in order."""
    seeds, pos = {}, 0
    for b in blocks:
        shape = graph.shape(b)
        size = math.prod(shape)
        seeds[b] = np.array(g[pos:pos + size].reshape(shape), dtype=object)
        pos += size
    return seeds


def run_engine(backprop, graph: Graph, values: list, seeds: dict) -> list:
    """The engine's input cotangents with ``seeds`` {value: array} (zeros elsewhere). The
    engine gets copies of the graph, the values and the seeds: what it writes into them is
    not what the reference reads."""
    full = {i: np.zeros(graph.shape(i), dtype=object) for i in range(len(graph.values))}
    for b, s in seeds.items():
        full[b] = np.array(s, dtype=object)
    copies = [np.array(v, dtype=object) for v in values]
    return list((backprop or Graph.backprop)(copy.deepcopy(graph), copies, full)
                [:len(graph.inputs)])


class Layered:
    """The tape with the values of ``kept`` as indeterminates: representations, local
    Jacobians, and each seed block's two sides at an input entry."""

    def __init__(self, graph: Graph, backprop, blocks: list, arrays: list, g, composed: list):
        self.graph, self.backprop, self.blocks = graph, backprop, blocks
        n_in = len(graph.inputs)
        self.kept: list = []           # the values that are indeterminates
        self.meaning: dict = {}        # V symbol -> the composed value it stands for
        rep = list(arrays)
        self.jacobians: list = []      # per node: {output index: [(read, index, ∂)]}
        self.steps: list = []          # the forward's steps, over the representations
        self.forwards: list = []       # every node's forward, over the representations
        for k, node in enumerate(graph.nodes):
            v = n_in + k
            args = _placeholders(graph, node)
            op = get_op(node.op)
            out = np.asarray(op.forward(*args, **node.params), dtype=object)
            composed_here = reads_own_output(op, node, args, out)
            out = np.vectorize(se.sympify, otypes=[object])(out) if out.size else out
            (out,), steps = _canonical_arrays([out], f"the forward of {graph.values[v]}")
            at = {}
            for a, r in zip(args, node.reads):
                for index in np.ndindex(a.shape):
                    at[a[index]] = rep[r][index]
            jac: dict = {}
            for oi in np.ndindex(out.shape):
                free = out[oi].free_symbols
                for a, r in zip(args, node.reads):
                    for index in np.ndindex(a.shape):
                        if a[index] in free:
                            d = step_frozen_diff(out[oi], a[index], steps)
                            if d != 0:
                                jac.setdefault(oi, []).append((r, index, d.xreplace(at)))
            self.jacobians.append(jac)
            self.steps.extend(h.xreplace(at) for h in steps)
            here = np.vectorize(lambda e: e.xreplace(at), otypes=[object])(out) \
                if out.size else out
            self.forwards.extend(here.flat)
            if not composed_here:
                self.kept.append(v)
                # dummies: printed as the value's entries, equal to no symbol of the
                # graph's (a parameter named like a tape value is another symbol)
                V = symbols(graph.values[v], graph.shape(v), unique=True)
                for index in np.ndindex(V.shape):
                    self.meaning[V[index]] = se.sympify(composed[v][index])
                rep.append(V)
            else:
                rep.append(here)
        self.rep = rep
        self.n_in = n_in
        self.cot = self._engine(g)

    def _engine(self, g) -> list:
        """The engine's input cotangents from one run with every block seeded, canonical;
        per block (the other blocks' seeds set to 0 in that one result — never a second
        run, whose result need not add up to it) when the engine is linear in the seed."""
        graph = self.graph
        self.seeds = seeds = block_seeds(graph, self.blocks, g)

        def run(seeded):
            cot = run_engine(self.backprop, graph, self.rep, {b: seeds[b] for b in seeded})
            arrays = [np.vectorize(se.sympify, otypes=[object])(np.asarray(c, dtype=object))
                      for c in cot]
            return _canonical_arrays(arrays, "the engine's cotangents")[0]

        self.whole = run(self.blocks)
        self.split = len(self.blocks) > 1
        if self.split:
            self.split, _ = is_linear_in(self.whole, frozenset(g.flat), run([]))
        if not self.split:
            return [(list(self.blocks), self.whole)]
        out = []
        for b in self.blocks:
            zero = {s: se.Integer(0) for c in self.blocks if c != b for s in seeds[c].flat}
            out.append(([b], [np.vectorize(lambda e: e.xreplace(zero), otypes=[object])(c)
                              if c.size else c for c in self.whole]))
        return out

    def restate(self, expr):
        """``expr`` with every tape value's indeterminates replaced by what they stand for:
        over the inputs only."""
        return expr.xreplace(self.meaning)

    def restated(self, i: int, index: tuple):
        """The engine's cotangent at (i, index) from these values, restated — what the
        engine gives on the composed values, if it computes the same function on both."""
        return self.restate(self.whole[i][index])

    def derivatives(self, i: int, index: tuple) -> dict:
        """Forward mode from input entry (i, index): {value: {entry: dV/dx}} (zeros left
        out)."""
        D = {i: {index: se.Integer(1)}}
        for k, jac in enumerate(self.jacobians):
            out = {}
            for oi, parts in jac.items():
                acc = []
                for r, idx, d in parts:
                    dp = D.get(r)
                    if dp is not None and idx in dp:
                        acc.append(d * dp[idx])
                if acc:
                    out[oi] = se.Add(*acc)
            if out:
                D[self.n_in + k] = out
        return D

    def sides(self, i: int, index: tuple) -> list:
        """[(reference, engine)] at input entry (i, index): one pair per seed group."""
        D = self.derivatives(i, index)
        out = []
        for group, cot in self.cot:
            ref = [self.seeds[b][oi] * d for b in group for oi, d in D.get(b, {}).items()]
            out.append((se.Add(*ref) if ref else se.Integer(0), se.sympify(cot[i][index])))
        return out

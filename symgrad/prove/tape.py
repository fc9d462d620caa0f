"""Graph obligations: the node obligations, the DAG corollary, and the end-to-end check.

1. Every distinct (op, shapes, parameters) in the tape is a node obligation, checked as
   :func:`symgrad.verify_node` checks a library op — at the exact shapes and parameters it
   has in the graph, a node reading one value twice included.
2. The DAG corollary (docs/dag-theorem.md): if every node obligation holds, backprop with any
   whole-tape seed equals (D eval)ᵀ seed. Recorded as PROVED exactly when all of 1 are.
3. End to end: the fully composed forward (inputs → every tape value, as one expression per
   entry) differentiated directly, against the engine's backprop with a symbolic seed for
   every tape value — an independent check that catches wiring bugs in the engine itself.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..api import verify_node
from ..graph import Graph
from .check import Spec, check
from .isolate import run_isolated
from .result import Result, Verdict

DAG_THEOREM = "docs/dag-theorem.md"


@dataclass
class GraphResult:
    """Everything symgrad established about one graph."""

    graph: str
    verdict: Verdict
    obligations: list = field(default_factory=list)   #: Results: nodes, corollary, e2e
    info: dict = field(default_factory=dict)

    @property
    def proved(self) -> bool:
        return self.verdict is Verdict.PROVED


def _param_key(v):
    if isinstance(v, np.ndarray):
        return ("array", v.shape, tuple(str(e) for e in v.flat))
    return str(v)


def node_obligations(graph: Graph) -> list:
    """Distinct (op, shapes, reads pattern, params) of the tape, in tape order."""
    seen, out = set(), []
    for node in graph.nodes:
        distinct = list(dict.fromkeys(node.reads))
        shapes = [graph.shape(r) for r in distinct]
        reads = None if len(distinct) == len(node.reads) else \
            tuple(distinct.index(r) for r in node.reads)
        key = (node.op, tuple(shapes), reads,
               tuple(sorted((k, _param_key(v)) for k, v in node.params.items())))
        if key not in seen:
            seen.add(key)
            out.append((node, shapes, reads))
    return out


def end_to_end_spec(graph: Graph, backprop=None) -> Spec:
    """The whole tape as one obligation: forward = every tape value (flattened), rule =
    the engine's backprop from a whole-tape seed."""
    sizes = [int(np.prod(graph.shape(i))) for i in range(len(graph.values))]
    run_backprop = backprop or Graph.backprop

    def forward(*xs):
        vals = graph.eval(list(xs))
        return np.concatenate([np.asarray(v, dtype=object).ravel() for v in vals])

    def rule(g, out, *xs):
        # the tape values are the forward's own (not a second evaluation): shared
        # subexpressions stay shared between the two sides
        vals, seeds, pos = [], {}, 0
        for i, size in enumerate(sizes):
            vals.append(out[pos:pos + size].reshape(graph.shape(i)))
            seeds[i] = g[pos:pos + size].reshape(graph.shape(i))
            pos += size
        cot = run_backprop(graph, vals, seeds)
        return tuple(cot[:len(graph.inputs)])

    return Spec(name=f"{graph.name}: end to end", forward=forward, vjp=rule,
                inputs=list(graph.inputs), symmetry=False)


def verify(graph: Graph, *, end_to_end: bool = True, timeout=None, memory_mb=None,
           progress=None, backprop=None) -> GraphResult:
    """Node obligations, the DAG corollary and (unless ``end_to_end=False``) the
    end-to-end obligation of ``graph``.

    >>> import symgrad as sg
    >>> r = sg.verify(sg.models.mha(n=2, d_model=2, heads=1, head_dim=2))
    >>> r.verdict, [o.verdict.value for o in r.obligations][-2:]
    (<Verdict.PROVED: 'proved'>, ['proved', 'proved'])
    """
    results = []
    todo = node_obligations(graph)
    for k, (node, shapes, reads) in enumerate(todo):
        if progress:
            progress(f"node {k + 1}/{len(todo)}: {node.op}")
        r = verify_node(node.op, shapes, params=node.params, reads=reads, timeout=timeout,
                        memory_mb=memory_mb)
        r.name = f"node {r.name}"
        results.append(r)
    nodes_ok = all(r.verdict is Verdict.PROVED for r in results)
    corollary = Result(
        name=f"{graph.name}: DAG corollary",
        verdict=Verdict.PROVED if nodes_ok else Verdict.UNKNOWN,
        method=f"DAG theorem ({DAG_THEOREM}) over {len(results)} node obligations",
        reason="" if nodes_ok else "it rests on node obligations that are not all proved",
        entries=len(graph.nodes))
    results.append(corollary)
    if end_to_end:
        if progress:
            progress("end to end")
        spec = end_to_end_spec(graph, backprop)
        results.append(run_isolated(lambda: check(spec), spec.name, timeout, memory_mb))
    verdicts = {r.verdict for r in results}
    verdict = Verdict.REFUTED if Verdict.REFUTED in verdicts else \
        Verdict.UNKNOWN if Verdict.UNKNOWN in verdicts else Verdict.PROVED
    return GraphResult(graph.name, verdict, results, dict(graph.info))

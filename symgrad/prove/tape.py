"""Graph obligations: the node obligations, the DAG corollary, and the end-to-end check.

1. Every distinct (op, shapes, parameters) in the tape is a node obligation
   (:func:`node_obligations`), checked as :func:`symgrad.verify_node` checks a library op — at the exact shapes and parameters it
   has in the graph, a node reading one value twice included.
2. The DAG corollary (docs/dag-theorem.md): if every node obligation holds, backprop with any
   whole-tape seed equals (D eval)ᵀ seed. Recorded as PROVED exactly when all of 1 are.
3. End to end: the fully composed forward (inputs → every tape value, as one expression per
   entry) differentiated directly, against the engine's backprop with a symbolic seed for
   every tape value — an independent check that catches wiring bugs in the engine itself;
   exactly (split by seed block when too large), or by the randomized identity test of
   :mod:`symgrad.prove.randomized` (``evidence``, see :func:`end_to_end`).
"""
from __future__ import annotations

import math
import re
import time
from functools import partial

import numpy as np

from ..errors import InputError
from ..graph import Graph
from ..ops import get_op
from ..tensor import symbols
from . import grid
from .check import Spec, check
from .isolate import memory_limit_mb, run_isolated, timeout_seconds
from .layered import Layered, block_seeds, is_linear_in, run_engine
from .result import Result, Verdict

DAG_THEOREM = "docs/dag-theorem.md"


def _param_key(v):
    if isinstance(v, np.ndarray):
        return ("array", v.shape, tuple(str(e) for e in v.flat))
    return str(v)


def _node_key(graph: Graph, node):
    """(key, distinct reads, shapes, reads pattern) of a tape node's obligation."""
    distinct = list(dict.fromkeys(node.reads))
    shapes = [graph.shape(r) for r in distinct]
    reads = None if len(distinct) == len(node.reads) else \
        tuple(distinct.index(r) for r in node.reads)
    key = (node.op, tuple(shapes), reads,
           tuple(sorted((k, _param_key(v)) for k, v in node.params.items())))
    return key, distinct, shapes, reads


def node_obligations(graph: Graph) -> list:
    """Distinct (op, shapes, reads pattern, params) of the tape, in tape order."""
    seen, out = set(), []
    for node in graph.nodes:
        key, _, shapes, reads = _node_key(graph, node)
        if key not in seen:
            seen.add(key)
            out.append((node, shapes, reads))
    return out


def tape_conditions(graph: Graph, node_results: list) -> list:
    """The side conditions of the node obligations (``node_results``, in the order of
    :func:`node_obligations`) restated at every tape node that uses them, over the tape
    values it reads: softmax's ``exp(x[0,0]) + exp(x[0,1]) ≠ 0`` at the node reading
    ``scaled`` reads ``exp(scaled[0,0]) + exp(scaled[0,1]) ≠ 0``."""
    by_key = {}
    for (node, _, _), r in zip(node_obligations(graph), node_results):
        by_key[_node_key(graph, node)[0]] = r
    out = []
    for k, node in enumerate(graph.nodes):
        key, distinct, _, reads = _node_key(graph, node)
        r = by_key.get(key)
        if r is None:
            continue
        args = get_op(node.op).args
        names = list(args) if reads is None else [args[reads.index(i)]
                                                  for i in range(len(distinct))]
        rename = {n: graph.values[v] for n, v in zip(names, distinct)}
        pattern = re.compile(r"(?<![\w.])(" + "|".join(map(re.escape, rename)) +
                             r")(?=\[)")
        for c in r.side_conditions:
            text = c.text if c.reason == "summary" else \
                pattern.sub(lambda m: rename[m.group(1)], c.text)
            out.append({"node": graph.values[len(graph.inputs) + k], "op": node.op,
                        "text": text, "reason": c.reason, "discharged": c.discharged})
    return out


def end_to_end_spec(graph: Graph, backprop=None, block: int | None = None) -> Spec:
    """The whole tape as one obligation: forward = every tape value (flattened), rule =
    the engine's backprop from a whole-tape seed. ``block``: only tape value ``block`` is
    seeded (and is the forward) — one seed block of the split identity."""
    blocks = list(range(len(graph.values))) if block is None else [block]
    shapes = [graph.shape(i) for i in blocks]
    evaluated: dict = {}

    def values(xs):
        # one evaluation for both sides: shared subexpressions stay shared (see
        # docs/method.md, "Sharing")
        key = tuple(id(x) for x in xs)
        if key not in evaluated:
            evaluated.clear()
            evaluated[key] = graph.eval(list(xs))
        return evaluated[key]

    def forward(*xs):
        vals = values(xs)
        return np.concatenate([np.asarray(vals[i], dtype=object).ravel() for i in blocks])

    def every_value(*xs):   # every tape value, for the abstraction pass
        return np.concatenate([np.asarray(v, dtype=object).ravel() for v in values(xs)])

    def rule(g, out, *xs):
        # every tape value gets a seed (zeros outside the block), so a block's backprop is
        # the whole-tape backprop restricted to it — what backprop_is_linear speaks about
        return tuple(run_engine(backprop, graph, values(xs), block_seeds(graph, blocks, g)))

    def layered(arrays, g):
        return Layered(graph, backprop, blocks, arrays, g, values(arrays))

    what = "end to end" if block is None else f"end to end, seed on {graph.values[block]}"
    labels = [graph.axis_labels.get(name) for name, _ in graph.inputs]
    return Spec(name=f"{graph.name}: {what}", forward=forward, vjp=rule,
                inputs=list(graph.inputs), symmetry=any(labels),
                axis_labels=labels if any(labels) else None,
                blocks=[int(np.prod(s)) for s in shapes], abstract_sums=every_value,
                layered=layered, user_code=False)


def backprop_is_linear(graph: Graph, backprop=None) -> Result:
    """PROVED when the engine's backprop is linear in the whole-tape seed: every input
    cotangent has degree ≤ 1 in the seed symbols and is exactly 0 at the zero seed. Then
    the end-to-end identity is the sum of its seed blocks' identities."""
    t0 = time.perf_counter()
    run_backprop = backprop or Graph.backprop
    xs = [symbols(n, s) for n, s in graph.inputs]
    vals = graph.eval(xs)
    seeds = {i: symbols(f"s{i}_", graph.shape(i)) for i in range(len(vals))}
    seed_set = frozenset(v for a in seeds.values() for v in a.flat)
    cot = run_backprop(graph, vals, seeds)[:len(xs)]
    zeros = {i: np.zeros(graph.shape(i), dtype=object) for i in range(len(vals))}
    zero = run_backprop(graph, vals, zeros)[:len(xs)]
    ok, worst = is_linear_in(cot, seed_set, zero)
    return Result(name=f"{graph.name}: backprop linear in the seed",
                  verdict=Verdict.PROVED if ok else Verdict.UNKNOWN,
                  method="degree bound in the seed symbols", seconds=time.perf_counter() - t0,
                  reason="" if ok else (f"the backprop has degree {worst} in the seed" if
                                        worst > 1 else "the backprop is not 0 at the zero seed"),
                  advice="" if ok else "an engine's backward must be linear in the cotangent "
                                       "it is seeded with; look at how it scales or offsets "
                                       "the seed")


def seed_block_check(graph: Graph, backprop, block: int, timeout, memory_mb) -> Result:
    """One seed block of the end-to-end identity, checked in a child process (a task of
    its own on a cluster: module level, so it pickles by reference)."""
    spec = end_to_end_spec(graph, backprop, block=block)
    return run_isolated(lambda: check(spec), spec.name, timeout, memory_mb)


def linearity_check(graph: Graph, backprop, timeout, memory_mb) -> Result:
    """:func:`backprop_is_linear` in a child process."""
    return run_isolated(lambda: backprop_is_linear(graph, backprop), "linearity", timeout,
                        memory_mb)


def in_turn(jobs, labels, progress=None) -> list:
    """The default fan-out: each job in this process, one after another."""
    out = []
    for job, label in zip(jobs, labels):
        if progress:
            progress(label)
        out.append(job())
    return out


def by_seed_block(graph: Graph, whole: Result, backprop, timeout, memory_mb, progress,
                  fan_out=None):
    """The end-to-end identity split by seed block (one tape value seeded at a time), each
    block its own obligation; combined with :func:`backprop_is_linear` they prove the
    whole identity, and a refuted block refutes it. ``fan_out(jobs, labels)`` runs the
    blocks' checks and the linearity check and returns their Results in order — by
    default in turn here; :func:`symgrad.verify` runs them side by side, the Dask
    executor as tasks of their own."""
    n = len(graph.values)
    jobs = [partial(seed_block_check, graph, backprop, b, timeout, memory_mb)
            for b in range(n)] + [partial(linearity_check, graph, backprop, timeout,
                                          memory_mb)]
    labels = [f"end to end, seed block {b + 1}/{n}" for b in range(n)] + \
        ["end to end, linearity in the seed"]
    done = fan_out(jobs, labels) if fan_out is not None else in_turn(jobs, labels, progress)
    blocks, linear = done[:n], done[n]
    name = f"{graph.name}: end to end"
    seconds = whole.seconds + linear.seconds + sum(r.seconds for r in blocks)
    refuted = [r for r in blocks if r.verdict is Verdict.REFUTED]
    proved = [r for r in blocks if r.verdict is Verdict.PROVED]
    info = [(graph.values[b], r.verdict.value, round(r.seconds, 3)) for b, r in enumerate(blocks)]
    table = [{"value": graph.values[b], "verdict": r.verdict.value, "terms": r.terms,
              "seconds": round(r.seconds, 3)} for b, r in enumerate(blocks)]
    if refuted:
        r = refuted[0]
        r.method = f"per seed block: {r.name.split('seed on ')[-1]} refuted; {r.method}"
    else:
        r = Result(name=name, verdict=Verdict.UNKNOWN, method="normal form per seed block")
        r.side_conditions = [c for b in proved for c in b.side_conditions][:24]
        if len(proved) == len(blocks) and linear.verdict is Verdict.PROVED:
            r.verdict = Verdict.PROVED
            gridded = [graph.values[b] for b, x in enumerate(blocks)
                       if grid.RESTRICTED in x.method]
            r.method = (f"normal form per seed block ({len(blocks)} blocks; the backprop is "
                        f"linear in the seed" + (f"; entries of {', '.join(gridded)} "
                                                 f"restricted to grids" if gridded else "") + ")")
        else:
            first = next((b for b in blocks if b.verdict is not Verdict.PROVED), linear)
            r.reason = (f"too large as one identity; split by seed block, {len(proved)} of "
                        f"{len(blocks)} blocks proved; first not proved: "
                        f"{first.name.split(': ')[-1]} — {first.reason}")
            r.advice = ("the node obligations and the DAG corollary prove the graph "
                        "compositionally, for an engine that implements the tape semantics"
                        + ("; a longer --timeout may let the end-to-end check finish"
                           if first.reason.startswith("timeout") else ""))
    r.name = name
    r.blocks = table
    r.seconds = seconds
    r.terms = sum(b.terms for b in blocks)
    r.entries = sum(b.entries for b in blocks)
    r.checked = sum(b.checked for b in blocks)
    r.peak_memory_mb = max([whole.peak_memory_mb] + [b.peak_memory_mb for b in blocks])
    return r, info


#: what an end-to-end verdict may rest on (see :func:`end_to_end`)
EVIDENCE = ("auto", "exact", "randomized")
#: with ``auto``, tapes of at most this many scalar values are tried exactly first, each
#: exact check within this many MiB
AUTO_EXACT_ENTRIES = 1000
AUTO_EXACT_MB = 2048
#: … and within this many seconds
AUTO_EXACT_SECONDS = 10.0
#: the exact check's reasons for UNKNOWN that send ``auto`` to the randomized test (any
#: other UNKNOWN — no domain point found, a step region — is the answer)
OUT_OF_REACH = ("too large", "timeout", "out of memory", "the checking process died")


def tape_entries(graph: Graph) -> int:
    """The number of scalar values on the tape (inputs included)."""
    return sum(math.prod(graph.shape(i)) for i in range(len(graph.values)))


def end_to_end(graph: Graph, backprop=None, timeout=None, memory_mb=None, progress=None,
               evidence: str = "exact", fan_out=None):
    """The end-to-end obligation of ``graph``; returns (Result, the seed-block table or
    None). ``evidence``: ``exact`` — one identity, split by seed block when it is too large
    as one; ``randomized`` — the identity test of :mod:`symgrad.prove.randomized` (VERIFIED
    with an error bound, REFUTED only with a certified witness); ``auto`` — exact for tapes
    of at most :data:`AUTO_EXACT_ENTRIES` values, randomized when that is out of reach.
    ``fan_out``: how the seed blocks run (:func:`by_seed_block`)."""
    if evidence not in EVIDENCE:
        raise InputError(f"unknown evidence {evidence!r}; use one of {', '.join(EVIDENCE)}")
    if evidence == "randomized" or (evidence == "auto" and
                                    tape_entries(graph) > AUTO_EXACT_ENTRIES):
        return _randomized(graph, backprop, timeout, memory_mb, progress), None
    if progress:
        progress("end to end")
    exact_mb, exact_s = memory_mb, timeout
    if evidence == "auto":   # exact only within this budget; beyond it, randomized
        exact_mb = min(memory_limit_mb(memory_mb), AUTO_EXACT_MB)
        exact_s = min(timeout_seconds(timeout), AUTO_EXACT_SECONDS)
    spec = end_to_end_spec(graph, backprop)
    whole = run_isolated(lambda: check(spec), spec.name, exact_s, exact_mb)
    blocks = None
    # the layered pass splits by seed block already: a block per process helps only when
    # exact evidence was asked for (auto has the randomized test to go to)
    if evidence == "exact" and whole.verdict is Verdict.UNKNOWN and \
            whole.reason.startswith("too large"):
        whole, blocks = by_seed_block(graph, whole, backprop, timeout, exact_mb, progress,
                                      fan_out)
    if evidence == "auto" and whole.verdict is Verdict.UNKNOWN and \
            whole.reason.startswith(OUT_OF_REACH):
        exact = whole
        whole = _randomized(graph, backprop, timeout, memory_mb, progress)
        whole.seconds += exact.seconds
        whole.method += f"; the exact check: {exact.reason.split(';')[0]}"
        if blocks is not None:
            proved = sum(1 for _, v, _ in blocks if v == "proved")
            whole.method += f" ({proved} of {len(blocks)} seed blocks proved)"
    return whole, blocks


def _randomized(graph, backprop, timeout, memory_mb, progress) -> Result:
    from .randomized import randomized_end_to_end
    if progress:
        progress("end to end, randomized")
    name = f"{graph.name}: end to end"
    return run_isolated(lambda: randomized_end_to_end(graph, backprop, name), name, timeout,
                        memory_mb)

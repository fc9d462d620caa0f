"""Graph benchmark: end-to-end and compositional proofs, with the naive SymPy pipeline.

    python bench/graphs.py [--timeout S]

Rows (targets from the composer issue; peak memory ≤ 4 GiB throughout):
  1. end-to-end MHA (n=2, d=2, H=1, hd=2): symgrad against the naive SymPy pipeline in the
     same run — SymPy ``diff`` of every composed tape value, the whole-tape identity with
     symbolic seed and tangents, ``expand(numerator(together(r)))`` — target ratio ≥ 50×;
  2. end-to-end MHA (4, 4, 2, 2) — target ≤ 5 s;
  3. end-to-end GPT decoder block (n=2, d=4, H=2, hd=2, d_ff=8) — target ≤ 60 s;
  4. compositional GPT decoder block (8, 32, 4, 8, 64): node obligations + corollary —
     target ≤ 120 s.
Each check runs in its own process (the end-to-end entries split over SYMGRAD_WORKERS
processes, default the cores); MHA (4,4,2,2) is repeated in one process, and without the
inferred symmetries in one process (the baseline: every entry normal-formed); "peak MB" is
the largest resident set of one process.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time

import numpy as np
import sympy as sp

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import symgrad as sg  # noqa: E402
from symgrad.prove.isolate import run_isolated  # noqa: E402
from symgrad.prove.result import Result, Verdict  # noqa: E402
from symgrad.tensor import symbols  # noqa: E402


def naive_end_to_end(graph) -> Result:
    t0 = time.perf_counter()
    xs = [symbols(n, s, "sympy") for n, s in graph.inputs]
    dxs = [symbols("d" + n, s, "sympy") for n, s in graph.inputs]
    vals = graph.eval(xs)
    seeds = {i: symbols(f"s{i}_", graph.shape(i), "sympy") for i in range(len(vals))}
    cot = graph.backprop(vals, seeds)
    lhs = 0
    for i, v in enumerate(vals):
        for k in np.ndindex(graph.shape(i)):
            e = sp.sympify(np.asarray(v, dtype=object)[k])
            jvp = sum(sp.diff(e, x[j]) * dx[j] for x, dx in zip(xs, dxs)
                      for j in np.ndindex(x.shape))
            lhs += seeds[i][k] * jvp
    rhs = sum(sp.sympify(c[j]) * dx[j] for c, dx in zip(cot, dxs) for j in np.ndindex(dx.shape))
    num, _ = sp.fraction(sp.together(lhs - rhs))
    zero = sp.expand(num) == 0
    return Result("naive", Verdict.PROVED if zero else Verdict.UNKNOWN,
                  seconds=time.perf_counter() - t0,
                  peak_memory_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def _unlabelled(graph):
    """The graph without axis labels: the end-to-end check normal-forms every entry."""
    graph.axis_labels = {}
    return graph


def run(graph, end_to_end, timeout):
    t0 = time.perf_counter()
    r = sg.verify(graph, end_to_end=end_to_end, timeout=timeout)
    wall = time.perf_counter() - t0
    peak = max((o.peak_memory_mb for o in r.obligations), default=0)
    last = r.obligations[-1]
    return r, wall, peak, last


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timeout", type=float, default=180, help="per obligation, seconds")
    args = ap.parse_args()
    M = sg.models
    cores = str(sg.prove.isolate.workers())
    rows = [
        ("e2e MHA (2,2,1,2)", M.mha(2, 2, 1, 2), True, "ratio ≥ 50x", cores),
        ("e2e MHA (4,4,2,2)", M.mha(4, 4, 2, 2), True, "≤ 5 s", cores),
        ("  the same, entries in one process", M.mha(4, 4, 2, 2), True, "", "1"),
        ("  the same, no symmetry, one process", _unlabelled(M.mha(4, 4, 2, 2)), True,
         "baseline", "1"),
        ("e2e MHA (4,8,2,4)", M.mha(4, 8, 2, 4), True, "", cores),
        ("e2e post-norm MHA (2,2,1,2)", M.mha_postnorm(2, 2, 1, 2), True, "", cores),
        ("e2e GPT decoder (2,4,2,2,8)", M.gpt_decoder_block(2, 4, 2, 2, 8), True, "≤ 60 s",
         cores),
        ("nodes+corollary GPT decoder (8,32,4,8,64)", M.gpt_decoder_block(8, 32, 4, 8, 64),
         False, "≤ 120 s", cores),
    ]
    head = f"{'check':<42} {'verdict':<8} {'seconds':>8} {'peak MB':>8}  {'target':<12} note"
    print(head)
    print("-" * (len(head) + 20))
    for label, graph, e2e, target, workers in rows:
        os.environ["SYMGRAD_WORKERS"] = workers
        r, wall, peak, last = run(graph, e2e, args.timeout)
        note = last.reason[:160] if last.verdict is not Verdict.PROVED else \
            f"{len(r.obligations) - (2 if e2e else 1)} node obligations, {workers} worker(s)"
        print(f"{label:<42} {r.verdict.value:<8} {wall:>8.2f} {peak:>8.0f}  {target:<12} {note}")
        if label.startswith("e2e MHA (2"):
            naive = run_isolated(lambda g=graph: naive_end_to_end(g), "naive", args.timeout)
            ours = last.seconds
            ratio = naive.seconds / ours if naive.verdict is Verdict.PROVED else float("nan")
            print(f"{'  naive SymPy, same obligation':<42} {naive.verdict.value:<8} "
                  f"{naive.seconds:>8.2f} {naive.peak_memory_mb:>8.0f}  "
                  f"{'':<12} symgrad end to end {ours:.2f} s: {ratio:.0f}x")


if __name__ == "__main__":
    main()

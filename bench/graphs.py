"""Graph benchmark: end-to-end and compositional proofs, with the naive SymPy pipeline;
evidence that scales (exact and randomized), with torch.autograd.gradcheck.

    python bench/graphs.py [--timeout S] [--section proofs|evidence|all] [--only TEXT]

Rows (targets from the composer issue; peak memory ≤ 4 GiB throughout):
  1. end-to-end MHA (n=2, d=2, H=1, hd=2): symgrad against the naive SymPy pipeline in the
     same run — SymPy ``diff`` of every composed tape value, the whole-tape identity with
     symbolic seed and tangents, ``expand(numerator(together(r)))`` — target ratio ≥ 50×;
  2. end-to-end MHA (4, 4, 2, 2) — target ≤ 5 s;
  3. end-to-end GPT decoder block (n=2, d=4, H=2, hd=2, d_ff=8) — target ≤ 60 s;
  4. compositional GPT decoder block (8, 32, 4, 8, 64): node obligations + corollary —
     target ≤ 120 s.
Evidence section (targets from the decoder issue; verify = node obligations, corollary and
end to end with ``--evidence auto`` unless said; each row in a fresh process, peak MB the
larger of the largest resident set of one of its processes and the sum of them all as the
memory budget's watchdog sampled it):
  encoder / prenorm / decoder (2,2,1,2,4) — ≤ 60 s, ≤ 2 GiB each;
  decoder (8,32,4,8,64) — PROVED or VERIFIED (≤ 2^-64), ≤ 30 s;
  decoder (16,64,4,16,256) — VERIFIED, ≤ 25 s, ≤ 4 GiB, beside torch.autograd.gradcheck
  (float64, numeric, the same block written in PyTorch) when torch is installed;
  llama (2,2,1,1,2,4) exact, (2,4,2,1,2,4) exact and (4,8,4,2,2,16) — ≤ 60 s each; the
  second beside the same without restricting entries to grids (the baseline: an entry
  too large stays too large), the last beside gradcheck on the same block in PyTorch;
  decoder (16,64,4,16,256) --no-end-to-end — ≤ 5 s; its largest node, affine
  (16x256, 256x64, 64), alone: the sparse path against the general path (the baseline);
  the engine wiring mutants at (16,64,4,16,256) — REFUTED with a certified witness.
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
from symgrad.prove.isolate import run_isolated, run_peak_mb  # noqa: E402
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
    r = sg.verify(graph, end_to_end=end_to_end, timeout=timeout,
                  evidence="exact" if end_to_end else "auto")
    wall = time.perf_counter() - t0
    peak = max((o.peak_memory_mb for o in r.obligations), default=0)
    last = r.obligations[-1]
    return r, wall, peak, last


def _forked(fun):
    """(value, wall seconds, peak MB of the process and its children) of ``fun()`` run in a
    fresh forked process."""
    import multiprocessing as mp
    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)

    def child():
        t0 = time.perf_counter()
        value = fun()
        wall = time.perf_counter() - t0
        peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                   resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
        # the run's processes together (the budget's watchdog samples their sum)
        peak = max(peak, run_peak_mb())
        send.send((value, wall, peak))

    proc = ctx.Process(target=child)
    proc.start()
    out = recv.recv()
    proc.join()
    return out


def torch_decoder(n, d, heads, hd, dff):
    """The post-norm GPT block in PyTorch (float64), for gradcheck: causal hard mask,
    LayerNorm eps 1e-5, GELU tanh."""
    import torch

    def block(x, wq, wk, wv, wo, g1, b1n, w1, b1, w2, b2, g2, b2n):
        def heads_of(t):
            return t.view(n, heads, hd).transpose(0, 1)
        q, k, v = heads_of(x @ wq), heads_of(x @ wk), heads_of(x @ wv)
        s = q @ k.transpose(1, 2) / hd ** 0.5
        s = s.masked_fill(torch.triu(torch.ones(n, n, dtype=torch.bool), 1), float("-inf"))
        a = (torch.softmax(s, -1) @ v).transpose(0, 1).reshape(n, heads * hd) @ wo
        h = torch.nn.functional.layer_norm(x + a, (d,), g1, b1n, 1e-5)
        f = torch.nn.functional.gelu(h @ w1 + b1, approximate="tanh") @ w2 + b2
        return torch.nn.functional.layer_norm(h + f, (d,), g2, b2n, 1e-5)

    gen = torch.Generator().manual_seed(0)
    shapes = [(n, d), (d, heads * hd), (d, heads * hd), (d, heads * hd), (heads * hd, d),
              (d,), (d,), (d, dff), (dff,), (dff, d), (d,), (d,), (d,)]
    inputs = [torch.randn(*s, dtype=torch.float64, generator=gen, requires_grad=True)
              for s in shapes]
    return block, inputs


def gradcheck_decoder(n, d, heads, hd, dff):
    import torch
    block, inputs = torch_decoder(n, d, heads, hd, dff)
    ok = torch.autograd.gradcheck(block, inputs, eps=1e-6, atol=1e-5, rtol=1e-3)
    return "passed" if ok else "failed"


def gradcheck_llama(dims):
    """torch.autograd.gradcheck on the LLaMA block written in PyTorch (the float64 reference
    of tests/test_llama.py), at the same values as the test draws."""
    import torch
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
    from test_llama import _torch_block, _values
    g = sg.models.llama_block(**dims)
    values = _values(g)
    inputs = [torch.tensor(values[name], dtype=torch.float64, requires_grad=True)
              for name, _ in g.inputs]
    ok = torch.autograd.gradcheck(_torch_block(torch, dims), inputs, eps=1e-6, atol=1e-5,
                                  rtol=1e-3)
    return "passed" if ok else "failed"


LLAMA_WIDER = dict(n=4, d_model=8, heads=4, kv_heads=2, head_dim=2, d_ff=16)


def evidence_rows(timeout, only=None):
    M = sg.models
    gpt = (16, 64, 4, 16, 256)
    rows = [
        ("verify encoder (2,2,1,2,4)", lambda: M.encoder_block(2, 2, 1, 2, 4), {}, None,
         "≤ 60 s, 2 GiB"),
        ("verify prenorm (2,2,1,2,4)", lambda: M.prenorm_encoder_block(2, 2, 1, 2, 4), {},
         None, "≤ 60 s, 2 GiB"),
        ("verify decoder (2,2,1,2,4)", lambda: M.gpt_decoder_block(2, 2, 1, 2, 4), {}, None,
         "≤ 60 s, 2 GiB"),
        ("verify decoder (8,32,4,8,64)", lambda: M.gpt_decoder_block(8, 32, 4, 8, 64), {},
         None, "≤ 30 s"),
        ("verify mha (4,8,2,4), exact end to end", lambda: M.mha(4, 8, 2, 4),
         {"evidence": "exact"}, None, "≤ 2 GiB"),
        ("verify decoder (16,64,4,16,256)", lambda: M.gpt_decoder_block(*gpt), {}, None,
         "≤ 25 s, 4 GiB"),
        ("  decoder (16,64,4,16,256) --no-end-to-end", lambda: M.gpt_decoder_block(*gpt),
         {"end_to_end": False}, None, "≤ 5 s"),
        ("verify llama (2,2,1,1,2,4), exact", lambda: M.llama_block(2, 2, 1, 1, 2, 4),
         {"evidence": "exact"}, None, "≤ 60 s"),
        ("verify llama (2,4,2,1,2,4), exact", lambda: M.llama_block(2, 4, 2, 1, 2, 4),
         {"evidence": "exact"}, None, "≤ 60 s"),
        ("  llama (2,4,2,1,2,4), exact, no grids (baseline)",
         lambda: M.llama_block(2, 4, 2, 1, 2, 4),
         {"evidence": "exact", "grids": False}, None, "baseline"),
        ("verify llama (4,8,4,2,2,16)", lambda: M.llama_block(**LLAMA_WIDER), {}, None,
         "≤ 60 s"),
    ]
    affine = [(16, 256), (256, 64), (64,)]
    rows += [("  node affine(16x256,256x64,64)", "node", {}, None, ""),
             ("    the same, general path (baseline)", "node", {"general": True}, None,
              "baseline")]
    from symgrad.mutants import ENGINE_MUTANTS
    for name, bp in sorted(ENGINE_MUTANTS.items()):
        rows.append((f"  {name} (16,64,…)", lambda: M.gpt_decoder_block(*gpt), {}, bp,
                     "REFUTED"))
    head = f"{'check':<44} {'verdict':<9} {'seconds':>8} {'peak MB':>8}  {'target':<14} note"
    print(head)
    print("-" * (len(head) + 30))
    for label, build, options, bp, target in rows:
        if only and only not in label:
            continue
        if build == "node":   # the largest node obligation alone, sparse path or general
            def job(general=options.get("general", False)):
                from symgrad.prove import sparse
                if general:
                    sparse.SPARSE_FROM = float("inf")
                return sg.verify_node("affine", affine, timeout=timeout)
            r, wall, peak = _forked(job)
            print(f"{label:<44} {r.verdict.value:<9} {wall:>8.2f} {peak:>8.0f}  {target:<14} "
                  f"{r.method[:150]}")
            continue
        if bp is not None:   # the end to end alone: the node obligations are the row above
            def job(build=build, bp=bp):
                from symgrad.prove.randomized import randomized_end_to_end
                return randomized_end_to_end(build(), bp)
        else:
            def job(build=build, options=dict(options)):
                if not options.pop("grids", True):   # entries too large stay too large
                    from symgrad.prove import grid
                    grid.choose = lambda *args: None
                return sg.verify(build(), timeout=timeout, **options)
        r, wall, peak = _forked(job)
        last = r if bp is not None else r.obligations[-1]
        note = last.method if last.verdict is not Verdict.UNKNOWN else last.reason
        if last.witness is not None:
            w = last.witness
            note = f"witness {w.input}[{','.join(map(str, w.entry))}], residual in " \
                   f"[{w.residual[0]}, {w.residual[1]}]"
        print(f"{label:<44} {r.verdict.value:<9} {wall:>8.2f} {peak:>8.0f}  {target:<14} "
              f"{note[:150]}")
        if label.startswith(("verify decoder (16", "verify llama (4")):
            try:
                import torch  # noqa: F401
            except ImportError:
                print(f"{'  gradcheck baseline':<44} {'skipped':<9} — torch is not installed "
                      f"(pip install torch==2.13.0)")
                continue
            baseline = (lambda: gradcheck_decoder(*gpt)) if "decoder" in label else \
                (lambda: gradcheck_llama(LLAMA_WIDER))
            ok, wall, peak = _forked(baseline)
            print(f"{'  torch.autograd.gradcheck, same shape':<44} {ok:<9} {wall:>8.2f} "
                  f"{peak:>8.0f}  {'baseline':<14} numeric, float64, tolerances")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timeout", type=float, default=180, help="per obligation, seconds")
    ap.add_argument("--section", choices=["proofs", "evidence", "all"], default="all")
    ap.add_argument("--only", metavar="TEXT", help="evidence rows whose label holds TEXT")
    args = ap.parse_args()
    if args.section in ("evidence", "all"):
        evidence_rows(args.timeout, args.only)
        if args.section == "evidence":
            return
        print()
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

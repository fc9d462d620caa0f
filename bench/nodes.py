"""Node-obligation benchmark: symgrad against a naive SymPy pipeline, in the same run.

    python bench/nodes.py [--quick]

Part 1 — the four target shapes (target: each ≤ 2 s on a 2-core machine, peak memory
≤ 2 GiB): symgrad's default (one entry per verified-symmetry orbit) and, side by side, the
entry-by-entry check (``symmetry=False``).

Part 2 — small shapes, where the naive baseline finishes: SymPy ``diff`` of the forward,
the whole adjoint identity ⟨ḡ, Df[ẋ]⟩ − Σ⟨vjp, ẋ⟩ with symbolic ẋ, then
``expand(numerator(together(r))) == 0``; against symgrad on the same shapes, with the ratio.

Every check runs in its own forked process (as symgrad always does), so the seconds are the
checking process's own and "peak MB" is its maximum resident set size.
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
from symgrad.api import op_params  # noqa: E402
from symgrad.prove.isolate import run_isolated  # noqa: E402
from symgrad.prove.result import Result, Verdict  # noqa: E402
from symgrad.tensor import symbols  # noqa: E402

TARGETS = [
    ("softmax", [(4, 16, 16)]),
    ("layer_norm", [(16, 64), (64,), (64,)]),
    ("matmul", [(16, 64), (64, 64)]),
    ("gelu_tanh", [(64, 64)]),
]
SMALL = [
    ("softmax", [(2, 3)]),
    ("layer_norm", [(2, 3), (3,), (3,)]),
    ("matmul", [(2, 3), (3, 3)]),
    ("gelu_tanh", [(2, 2)]),
]


def naive_sympy(op_name, shapes) -> Result:
    """The textbook pipeline: SymPy diff + together/expand on the whole identity."""
    t0 = time.perf_counter()
    op = sg.get_op(op_name)
    values = op_params(op, shapes, backend="sympy")
    xs = [symbols(n, s, "sympy") for n, s in zip(op.args, shapes)]
    dxs = [symbols("d" + n, s, "sympy") for n, s in zip(op.args, shapes)]
    out = np.asarray(op.forward(*xs, **values), dtype=object)
    g = symbols("g", out.shape, "sympy")
    cots = op.vjp(g, out, *xs, **values)
    lhs = 0
    for k in np.ndindex(out.shape):
        jvp = sum(sp.diff(out[k], x[e]) * dx[e]
                  for x, dx in zip(xs, dxs) for e in np.ndindex(x.shape))
        lhs += g[k] * jvp
    rhs = sum(c[e] * dx[e] for c, dx in zip(cots, dxs) if c is not None
              for e in np.ndindex(dx.shape))
    num, _ = sp.fraction(sp.together(lhs - rhs))
    zero = sp.expand(num) == 0
    return Result(f"{op_name} (naive)", Verdict.PROVED if zero else Verdict.UNKNOWN,
                  method="sympy diff + together/expand", seconds=time.perf_counter() - t0)


def measure(fn, name, timeout):
    def target():
        r = fn()
        r.peak_memory_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return r
    return run_isolated(target, name, timeout=timeout)


def shape_text(shapes):
    return ", ".join("x".join(map(str, s)) for s in shapes)


def fmt_seconds(r):
    return f"{r.seconds:.2f}" if r.verdict is Verdict.PROVED else f"{r.verdict.value} ({r.seconds:.0f} s)"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="skip the entry-by-entry column")
    ap.add_argument("--timeout", type=float, default=180, help="per check, seconds")
    args = ap.parse_args()

    print("Part 1: target shapes (target ≤ 2 s and ≤ 2048 MB each)\n")
    head = f"{'op':<11} {'shapes':<22} {'verdict':<8} {'seconds':>8} {'peak MB':>8} " \
           f"{'checked':>9} {'terms':>7}   {'entry-by-entry s':>17}"
    print(head)
    print("-" * len(head))
    for op, shapes in TARGETS:
        r = sg.verify_node(op, shapes, timeout=args.timeout)
        full = "-" if args.quick else fmt_seconds(
            sg.verify_node(op, shapes, timeout=args.timeout, symmetry=False))
        print(f"{op:<11} {shape_text(shapes):<22} {r.verdict.value:<8} {r.seconds:>8.2f} "
              f"{r.peak_memory_mb:>8.0f} {f'{r.checked}/{r.entries}':>9} {r.terms:>7}   "
              f"{full:>17}")

    print("\nPart 2: small shapes against the naive SymPy pipeline (same run)\n")
    head = f"{'op':<11} {'shapes':<16} {'naive SymPy s':>14} {'symgrad s':>10} {'ratio':>8}"
    print(head)
    print("-" * len(head))
    for op, shapes in SMALL:
        naive = measure(lambda: naive_sympy(op, shapes), op, args.timeout)
        ours = sg.verify_node(op, shapes, timeout=args.timeout)
        ratio = naive.seconds / ours.seconds if ours.seconds else float("inf")
        print(f"{op:<11} {shape_text(shapes):<16} {fmt_seconds(naive):>14} "
              f"{ours.seconds:>10.3f} {ratio:>7.0f}x")


if __name__ == "__main__":
    main()

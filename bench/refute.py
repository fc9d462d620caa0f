"""Refutation benchmark: a LayerNorm rule wrong in one entry of 16x64, found and certified.

    python bench/refute.py [--quick]

The rule under test is the library's closed form with one entry of dx off by g/1000 — the
kind of bug a hand-written kernel has. symgrad first checks the index symmetries of forward
and rule; the entries where the rule breaks a symmetry its forward has are differentiated
and searched for a certified witness before any other entry. The baseline, in the same run,
is the entry-by-entry path (``symmetry=False``): every input entry differentiated and
normal-formed, the witness searched after. Each check runs in its own forked process.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import symgrad as sg  # noqa: E402

OP = sg.get_op("layer_norm")


def wrong_rule(row, col):
    def vjp(g, out, x, gamma, beta, *, eps):
        dx, dgamma, dbeta = OP.vjp(g, out, x, gamma, beta, eps=eps)
        dx = dx.copy()
        dx[row, col] = dx[row, col] + g[row, col] / 1000
        return dx, dgamma, dbeta
    return vjp


def run(label, shape, symmetry, timeout):
    n, d = shape
    t0 = time.perf_counter()
    r = sg.verify_node("layer_norm", [(n, d), (d,), (d,)], vjp=wrong_rule(3 % n, 5 % d),
                       symmetry=symmetry, timeout=timeout)
    seconds = time.perf_counter() - t0
    where = f"x{list(r.witness.entry)}" if r.witness else r.reason[:60]
    print(f"{label:<38} {n}x{d:<5} {r.verdict.value:<8} {seconds:8.2f} "
          f"{r.peak_memory_mb:8.0f}  {where}")
    return r, seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="4x8 only")
    ap.add_argument("--baseline-timeout", type=float, default=300)
    args = ap.parse_args()
    shape = (4, 8) if args.quick else (16, 64)
    print(f"{'check':<38} {'shape':<8} {'verdict':<8} {'seconds':>8} {'peak MB':>8}  witness")
    print("-" * 92)
    r, s = run("symgrad (symmetry suspects first)", shape, True, 600)
    b, bs = run("baseline: entry by entry", shape, False, args.baseline_timeout)
    target = "≤ 10 s ✓" if s <= 10 and r.verdict is sg.Verdict.REFUTED else "≤ 10 s ✗"
    print(f"\ntarget {target}; baseline/symgrad = {bs / s:.0f}x"
          + (" (baseline hit its time limit)" if b.verdict is sg.Verdict.UNKNOWN else ""))


if __name__ == "__main__":
    main()

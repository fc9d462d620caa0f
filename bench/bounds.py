"""Interval-bounds benchmark: per graph and radius, the mean width of each method's enclosure
of the output divided by the mean width of the best inner range found (the hull of the
graph's values at the box's centre, random points, random corners and projected
sign-gradient ascent on every output entry both ways — all inside the true range, so every
ratio is an upper bound on the method's overestimation), and the time; with auto_LiRPA's IBP
and CROWN on the same graph, values and box (bench/lirpa_baseline.py) when torch and
auto_LiRPA are installed.

    python bench/bounds.py [--budget S] [--quick]

Graphs (the interval-bounds issue's targets): MHA (n=4, d=8, H=2, hd=4) and the post-norm
encoder block (d_ff=16), x perturbed in an L∞ box of radius 0.1 and 0.01, every weight fixed
at values drawn with ``symgrad.intervals.default_values`` (seed 0). Every row also counts
the found values outside the enclosure (must be 0).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import symgrad as sg  # noqa: E402
from symgrad.intervals import default_values  # noqa: E402
from symgrad.intervals.enclose import Box  # noqa: E402
from symgrad.intervals.sample import inner_range  # noqa: E402

CASES = [("mha", (4, 8, 2, 4), 0.1, "≤ 1.5x"), ("encoder", (4, 8, 2, 4, 16), 0.1, "≤ 3x"),
         ("mha", (4, 8, 2, 4), 0.01, "≤ 1.05x"), ("encoder", (4, 8, 2, 4, 16), 0.01, "≤ 1.1x")]


def build(name, dims):
    return sg.models.mha(*dims) if name == "mha" else sg.models.encoder_block(*dims)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=55.0,
                    help="seconds for auto (the targets allow 60 s per case)")
    ap.add_argument("--quick", action="store_true", help="fewer inner points")
    args = ap.parse_args()
    try:
        from lirpa_baseline import lirpa_bounds
        lirpa_bounds("mha", (2, 2, 1, 2), default_values(build("mha", (2, 2, 1, 2))), 0.1)
        lirpa = True
    except ImportError as exc:
        print(f"auto_LiRPA rows skipped: {exc}")
        lirpa = False
    head = f"{'case':<28} {'method':<10} {'width/inner':>12} {'seconds':>8} {'outside':>8}  target"
    print(head)
    print("-" * len(head))
    for name, dims, radius, target in CASES:
        graph = build(name, dims)
        values = default_values(graph, seed=0)
        box = Box(graph, values, radius, [0])
        t = time.perf_counter()
        n = 64 if args.quick else 400
        inner = inner_range(graph, box, samples=n, corners=n, ascent=4 if args.quick else 10)
        t_inner = time.perf_counter() - t
        i_lo, i_hi = inner.lo[graph.output], inner.hi[graph.output]
        width = float(np.mean(i_hi - i_lo))
        label = f"{name} {dims} r={radius}"
        print(f"{label:<28} {'inner':<10} {width:>12.4g} {t_inner:>8.2f} {'':>8}  "
              f"{len(inner.points)} points (mean width, not a ratio)")
        for method in ("ibp", "ops", "centered", "taylor", "cubic", "auto"):
            t = time.perf_counter()
            try:
                found = sg.bounds(graph, values, radius, method=method, budget=args.budget)
            except sg.InputError as exc:
                print(f"{'':<28} {method:<10} {'-':>12} {time.perf_counter() - t:>8.2f}  "
                      f"{str(exc)[:60]}")
                continue
            seconds = time.perf_counter() - t
            lo, hi = found.values[graph.values[-1]]
            outside = int(sum(np.sum((a < found.values[v][0]) | (b > found.values[v][1]))
                              for v, a, b in zip(graph.values, inner.lo, inner.hi)))
            extra = f"{found.pieces} pieces" if method == "auto" else ""
            print(f"{'':<28} {method:<10} {float(np.mean(hi - lo)) / width:>12.4g} "
                  f"{seconds:>8.2f} {outside:>8}  {target if method == 'auto' else ''} {extra}")
        if lirpa:
            found = lirpa_bounds(name, dims, values, radius)
            for method, r in found.items():
                outside = int(np.sum((i_lo < r["lower"]) | (i_hi > r["upper"])))
                print(f"{'':<28} {'lirpa ' + method:<10} "
                      f"{float(np.mean(r['upper'] - r['lower'])) / width:>12.4g} "
                      f"{r['seconds']:>8.2f} {outside:>8}  auto_LiRPA 0.7.1 (baseline)")


if __name__ == "__main__":
    main()

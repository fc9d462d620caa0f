"""Gate benchmark: `symgrad check obligations/` cold and warm, side by side.

    python bench/gate.py

Rows (targets from the reports-and-gate issue): cold with -j 2 (an empty proof cache) —
target ≤ 3 min; cold with -j 1 in the same run as the baseline; warm (every verdict from the
cache filled by the cold run) — target ≤ 5 s; and, with dask.distributed installed, the same
gate on a two-worker LocalCluster (`--executor dask -j 2`), cold and warm (a warm run
starts no cluster: every verdict comes from the cache). Each row is one `symgrad check`
process, timed from outside (start-up and imports included).

A second table is one large graph entry alone — the encoder block at n=2, d_model=4,
heads=2, head_dim=2, d_ff=4 with exact evidence, whose end to end is too large as one
identity and is split into 37 seed blocks plus a linearity check: the blocks in turn
(SYMGRAD_WORKERS=1, the baseline), side by side on the local cores, and as tasks of their
own on a two-worker LocalCluster.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


LARGE = """[[graph]]
graph = "encoder"
n = 2
d_model = 4
heads = 2
head_dim = 2
d_ff = 4
evidence = "exact"
"""


def run(args, cache=None, where="obligations/", env=None):
    t0 = time.perf_counter()
    cached = ["--cache-dir", cache] if cache else []
    proc = subprocess.run([sys.executable, "-m", "symgrad.cli", "check", where,
                           *cached, *args], cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})))
    seconds = time.perf_counter() - t0
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr
    return proc.returncode, seconds, summary


def main():
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cache = os.path.join(tmp, "cache")
        rows.append(("cold, -j 1 (baseline)", "", *run(["-j", "1", "--no-cache"])))
        rows.append(("cold, -j 2", "≤ 180 s", *run(["-j", "2"], cache)))
        rows.append(("warm, -j 2 (cache)", "≤ 5 s", *run(["-j", "2"], cache)))
        try:
            import distributed  # noqa: F401
        except ImportError:
            print("dask.distributed is not installed (pip install 'symgrad[dask]'): the "
                  "dask rows are left out")
        else:
            dask_cache = os.path.join(tmp, "dask-cache")
            rows.append(("cold, dask 2 workers", "", *run(
                ["--executor", "dask", "-j", "2"], dask_cache)))
            rows.append(("warm, dask 2 workers", "", *run(
                ["--executor", "dask", "-j", "2"], dask_cache)))
        large = os.path.join(tmp, "large.toml")
        with open(large, "w") as f:
            f.write(LARGE)
        rows.append(("one large entry: seed blocks in turn (baseline)", "", *run(
            ["--no-cache", "-j", "1"], where=large, env={"SYMGRAD_WORKERS": "1"})))
        rows.append(("one large entry: seed blocks side by side, 2 cores", "", *run(
            ["--no-cache", "-j", "1"], where=large)))
        if "distributed" in sys.modules:
            rows.append(("one large entry: seed blocks as tasks, dask 2 workers", "", *run(
                ["--no-cache", "--executor", "dask", "-j", "2"], where=large)))
    print(f"{'run':<52} {'target':<9} {'exit':>4} {'seconds':>8}  summary")
    print("-" * 130)
    for label, target, code, seconds, summary in rows:
        print(f"{label:<52} {target:<9} {code:>4} {seconds:>8.2f}  {summary}")


if __name__ == "__main__":
    main()

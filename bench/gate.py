"""Gate benchmark: `symgrad check obligations/` cold and warm, side by side.

    python bench/gate.py

Rows (targets from the reports-and-gate issue): cold with -j 2 (an empty proof cache) —
target ≤ 3 min; cold with -j 1 in the same run as the baseline; warm (every verdict from the
cache filled by the cold run) — target ≤ 5 s; and, with dask.distributed installed, the same
gate on a two-worker LocalCluster (`--executor dask -j 2`), cold and warm (a warm run
starts no cluster: every verdict comes from the cache). Each row is one `symgrad check`
process, timed from outside (start-up and imports included).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def run(args, cache=None):
    t0 = time.perf_counter()
    where = ["--cache-dir", cache] if cache else []
    proc = subprocess.run([sys.executable, "-m", "symgrad.cli", "check", "obligations/",
                           *where, *args], cwd=ROOT, capture_output=True, text=True)
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
    print(f"{'run':<24} {'target':<9} {'exit':>4} {'seconds':>8}  summary")
    print("-" * 110)
    for label, target, code, seconds, summary in rows:
        print(f"{label:<24} {target:<9} {code:>4} {seconds:>8.2f}  {summary}")


if __name__ == "__main__":
    main()

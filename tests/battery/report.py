"""Every battery check in one table: ``cd tests && python -m battery.report [-k SUBSTRING]``.

One line per check: what was expected, what symgrad said, how long it took, and — for a
wrong verdict — the reason, the first line of the error, or why the witness was not
confirmed. ``--json FILE`` writes the same rows as JSON.
"""
from __future__ import annotations

import argparse
import json
import time

import symgrad as sg

from .numeric import confirm_witness
from .rules import RULES, TWINS, twin_id
from .test_battery import run_check


def _first_line(exc) -> str:
    text = str(exc).strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if isinstance(exc, sg.InternalError) and len(lines) > 1:
        return f"{type(exc).__name__}: ... {lines[-1].strip()}"
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def check_one(rule, twin=None) -> dict:
    vjp, forward = (rule.vjp, None) if twin is None else (twin.vjp, twin.forward)
    expected = "proved" if twin is None else "refuted"
    row = dict(id=rule.name if twin is None else twin_id(rule, twin), library=rule.library,
               expected=expected, ulp=bool(twin and twin.ulp))
    t0 = time.perf_counter()
    try:
        r = run_check(rule, vjp, forward)
    except Exception as exc:   # a crash is a verdict of its own here
        row.update(verdict="crash", seconds=time.perf_counter() - t0, detail=_first_line(exc))
        return row
    row.update(verdict=r.verdict.value, seconds=r.seconds, detail=r.reason or r.method)
    if twin is not None and r.verdict is sg.Verdict.REFUTED:
        c = confirm_witness(rule, twin, r.witness)
        real = abs(c["diff"]) > c["gap"] * (1 + abs(c["expected"]))
        same_sign = (c["lower"] > 0 and c["diff"] > 0) or (c["upper"] < 0 and c["diff"] < 0)
        if not (real and same_sign):
            row["verdict"] = "refuted, witness not confirmed"
            row["detail"] = (f"finite difference {mp_str(c['expected'])} vs rule "
                             f"{mp_str(c['got'])}; certified [{c['lower']}, {c['upper']}]; "
                             f"point {r.witness.point}")
    row["ok"] = row["verdict"] == expected
    return row


def mp_str(v) -> str:
    import mpmath as mp
    return mp.nstr(v, 12)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-k", default="", help="only ids containing this substring")
    ap.add_argument("--json", help="write the rows to this file")
    ap.add_argument("--wrong-only", action="store_true", help="print only wrong verdicts")
    args = ap.parse_args(argv)
    jobs = [(r, None) for r in RULES] + list(TWINS)
    rows = []
    t0 = time.perf_counter()
    for rule, twin in jobs:
        ident = rule.name if twin is None else twin_id(rule, twin)
        if args.k and args.k not in ident:
            continue
        row = check_one(rule, twin)
        row.setdefault("ok", False)
        rows.append(row)
        if not args.wrong_only or not row["ok"]:
            mark = "ok " if row["ok"] else "BAD"
            print(f"{mark} {row['id']:48s} {row['expected']:8s} {row['verdict']:9s} "
                  f"{row['seconds']:6.2f}s  {'' if row['ok'] else row['detail'][:220]}")
    wall = time.perf_counter() - t0
    bad = [r for r in rows if not r["ok"]]
    print(f"\n{len(rows)} checks in {wall:.1f} s: {len(rows) - len(bad)} as expected, "
          f"{len(bad)} wrong")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1, default=str)


if __name__ == "__main__":
    main()

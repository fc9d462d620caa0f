"""The independent numeric path: a rule's forward and VJP evaluated with mpmath.

:func:`confirm_witness` re-checks a REFUTED verdict without symgrad's symbolic machinery: at
the witness point it takes a central finite difference of ⟨ḡ, f(x)⟩ along the witness entry
(50 digits, h = 1e-20) and compares it with the rule's cotangent there.
:func:`fd_mismatch` does the same for a correct rule at a sampled point, every entry.
"""
from __future__ import annotations

import random
from fractions import Fraction

import mpmath as mp
import numpy as np

from .namespaces import NUMERIC, mpq

DIGITS = 50
STEP = "1e-20"
#: |expected - got| must exceed this times (1 + |expected|) for a plain twin …
GAP = mp.mpf("1e-10")
#: … and for a one-ulp twin (relative size 1e-17) this, far above the difference's own error
#: (about 1e-30: 50 digits over h = 1e-20; truncation h² ≈ 1e-40)
ULP_GAP = mp.mpf("1e-25")


def entry_name(name, index) -> str:
    return f"{name}[{','.join(map(str, index))}]"


def _fill_values():
    """Values for input entries a witness does not mention (its residual does not depend
    on them): distinct, inside (0.5, 0.7], away from every kink of the battery."""
    k = 0
    while True:
        yield Fraction(1, 2) + Fraction(1, 5 + k) + Fraction(1, 1009 + 7 * k)
        k += 1


def _inputs(rule, point):
    fill = _fill_values()
    arrays = []
    for name, shape in zip(rule.input_names, rule.shapes):
        a = np.empty(shape, dtype=object)
        for index in np.ndindex(*shape):
            key = entry_name(name, index)
            a[index] = mpq(point[key]) if key in point else mpq(next(fill))
        arrays.append(a)
    return arrays


def _cotangent_name(rule) -> str:
    g = "g"
    while g in rule.input_names:
        g += "_"
    return g


def _reads(rule, n):
    return tuple(rule.reads) if rule.reads is not None else tuple(range(n))


def _values(forward, arrays, reads):
    return np.asarray(forward(NUMERIC, *[arrays[r] for r in reads]), dtype=object)


def central_difference(forward, arrays, reads, gbar, i, entry):
    """Σ_k ḡ_k (f_k(x + h e) - f_k(x - h e)) / 2h, e the unit vector at input i, entry.
    Each output entry is differenced before the sum, so a large f_k elsewhere cannot
    swamp a small change."""
    h = mp.mpf(STEP)

    def shifted(delta):
        moved = [a.copy() for a in arrays]
        moved[i][entry] = moved[i][entry] + delta
        return _values(forward, moved, reads)
    plus, minus = shifted(h), shifted(-h)
    return sum((gbar[k] * (plus[k] - minus[k]) for k in np.ndindex(*plus.shape)),
               mp.mpf(0)) / (2 * h)


def cotangent(vjp, forward, arrays, reads, gbar, i, entry):
    """Σ over the arguments reading input i of the rule's cotangent at ``entry``."""
    args = [arrays[r] for r in reads]
    out = np.asarray(forward(NUMERIC, *args), dtype=object)
    cots = vjp(NUMERIC, gbar, out, *args)
    got = mp.mpf(0)
    for c, r in zip(cots, reads):
        if c is not None and r == i:
            got += np.asarray(c, dtype=object)[entry]
    return got


def confirm_witness(rule, twin, witness) -> dict:
    """Evaluate a twin's witness independently; returns expected, got, their difference
    and the certified residual bounds, all as mpf."""
    forward = twin.forward or rule.forward
    with mp.workdps(DIGITS):
        point = {k: Fraction(v) for k, v in witness.point.items()}
        arrays = _inputs(rule, point)
        reads = _reads(rule, len(arrays))
        out = np.asarray(forward(NUMERIC, *[arrays[r] for r in reads]), dtype=object)
        gname = _cotangent_name(rule)
        gbar = np.empty(out.shape, dtype=object)
        for k in np.ndindex(*out.shape):
            key = entry_name(gname, k)
            gbar[k] = mpq(point[key]) if key in point else mp.mpf(0)
        i = list(rule.input_names).index(witness.input)
        entry = tuple(witness.entry)
        expected = central_difference(forward, arrays, reads, gbar, i, entry)
        got = cotangent(twin.vjp, forward, arrays, reads, gbar, i, entry)
        return dict(expected=expected, got=got, diff=expected - got,
                    lower=mp.mpf(witness.residual[0]), upper=mp.mpf(witness.residual[1]),
                    gap=ULP_GAP if twin.ulp else GAP)


# ----- the battery's own check: a correct rule agrees with finite differences -----

def _holds(condition, values) -> bool:
    import symengine as se
    if isinstance(condition, tuple):
        expr, relation = condition
        v = se.sympify(expr).subs(values)
        return bool(v > 0) if relation == "> 0" else bool(v != 0)
    return bool(condition.subs(values))


def sample_point(rule, seed: int, radius: int = 2, tries: int = 500):
    """Rational inputs in (-radius, radius) (odd denominators, so away from the battery's
    kinks) satisfying the rule's declared domain."""
    import symengine as se

    import symgrad as sg
    rng = random.Random(seed)
    symbolic = [sg.symbols(n, s) for n, s in zip(rule.input_names, rule.shapes)]
    for attempt in range(tries):
        if attempt and attempt % 100 == 0:
            radius = max(1, radius // 2)     # a narrow domain, e.g. (0, 1): come closer
        values = {}
        arrays = []
        for sym in symbolic:
            a = np.empty(sym.shape, dtype=object)
            for index in np.ndindex(*sym.shape):
                v = (Fraction(rng.randint(-95 * radius, 95 * radius), 100)
                     + Fraction(1, rng.choice([97, 89, 83])))
                values[sym[index]] = v
                a[index] = v
            arrays.append(a)
        exact = {k: se.Rational(v.numerator, v.denominator) for k, v in values.items()}
        if rule.domain is None or all(_holds(c, exact) for c in rule.domain(*symbolic)):
            return arrays
    raise AssertionError(f"{rule.name}: no point of the declared domain found")


#: (seed, radius) of the points a correct rule is checked at: two near the kinks and
#: constants of the battery, one far out (softplus's threshold, relu6's 6, hardswish's ±3)
SAMPLES = ((0, 2), (1, 2), (2, 25))


def fd_mismatch(rule):
    """The largest |finite difference - rule| / (1 + |fd|) over every input entry at the
    :data:`SAMPLES` points of the domain, with random cotangents."""
    return max(_fd_mismatch_at(rule, seed, radius) for seed, radius in SAMPLES)


def _fd_mismatch_at(rule, seed, radius):
    rng = random.Random(seed + 1)
    with mp.workdps(DIGITS):
        arrays = [np.vectorize(mpq, otypes=[object])(a) if a.size else a
                  for a in sample_point(rule, seed, radius)]
        reads = _reads(rule, len(arrays))
        out = np.asarray(rule.forward(NUMERIC, *[arrays[r] for r in reads]), dtype=object)
        gbar = np.empty(out.shape, dtype=object)
        for k in np.ndindex(*out.shape):
            gbar[k] = mpq(Fraction(rng.randint(-30, 30) or 1, 10))
        worst = mp.mpf(0)
        for i, a in enumerate(arrays):
            for entry in np.ndindex(*a.shape):
                fd = central_difference(rule.forward, arrays, reads, gbar, i, entry)
                got = cotangent(rule.vjp, rule.forward, arrays, reads, gbar, i, entry)
                worst = max(worst, abs(fd - got) / (1 + abs(fd)))
        return worst

"""An identity too large to expand, restricted to the points of a grid (docs/method.md §8).

Let both sides of an entry have degree ≤ d in a group G of variables (one input array, or
the seed) — a bound read off their expression trees (:func:`graded`), finite only when no
G sits inside a function, a root, a denominator or an exponent, and no float is there (a
float rounds what a grid point adds to it). Then their difference is
D = Σ_{|β| ≤ d} c_β · G^β, every c_β a function of the other variables and the atoms (none
of which holds a G). D is 0 if and only if it is 0 at every point of the simplex grid
{α ∈ ℕ^G : |α| ≤ d} (:func:`grid`): the grid is unisolvent for degree d — on G₁ = 0 it is
the grid in one variable fewer, so D = G₁·Q there, and Q, of degree d − 1, is 0 on the
grid of degree d − 1 shifted by e₁. Each restriction (G fixed at a grid point) is an
identity of its own, with a fraction of the terms: W_down fixed at one unit matrix keeps
the paths through one of its entries. The split by seed block is the case G = the seed,
d = 1.

A restriction may be split again over another group: each level is the same "zero if and
only if every restriction is", its degree read again on the restriction.
:func:`degree_in` is the unbounded degree (the engine's linearity in the seed, tape.py).
"""
from __future__ import annotations

import math

import symengine as se

#: the largest degree a group is split at (C(n + d, d) points for n variables)
MAX_DEGREE = 2
#: how a result's method line names the groups its entries were restricted to
RESTRICTED = "entries too large restricted to the grids of"


def degree_in(expr, group: frozenset, memo: dict) -> float:
    """An upper bound on the degree of ``expr`` in the ``group`` symbols (∞ when one sits
    inside a function, a root, a denominator or an exponent)."""
    d = memo.get(expr)
    if d is not None:
        return d
    if isinstance(expr, se.Symbol):
        d = 1 if expr in group else 0
    elif not expr.args:
        d = 0
    elif isinstance(expr, se.Add):
        d = max(degree_in(a, group, memo) for a in expr.args)
    elif isinstance(expr, se.Mul):
        d = sum(degree_in(a, group, memo) for a in expr.args)
    elif isinstance(expr, se.Pow) and isinstance(expr.args[1], se.Integer) \
            and int(expr.args[1]) >= 0:
        d = degree_in(expr.args[0], group, memo) * int(expr.args[1])
    else:
        d = math.inf if any(degree_in(a, group, memo) for a in expr.args) else 0
    memo[expr] = d
    return d


def grid(variables: list, d: int) -> list:
    """The simplex grid {α ∈ ℕ^n : |α| ≤ d} over ``variables``, as substitutions (the
    origin first)."""
    exponents = [()]
    for _ in variables:
        exponents = [e + (k,) for e in exponents for k in range(d - sum(e) + 1)]
    exponents.sort(key=sum)
    return [{v: se.Integer(k) for v, k in zip(variables, e)} for e in exponents]


def point_text(point: dict) -> str:
    """``W_down[0,1] = 1`` for a point: its non-zero coordinates (``all 0`` at the
    origin)."""
    shown = [f"{v} = {c}" for v, c in sorted(point.items(), key=lambda kv: str(kv[0])) if c != 0]
    return ", ".join(shown) if shown else "all 0"


def graded(expr, group: frozenset, memo: dict):
    """An estimate of ``expr``'s expansion by degree in ``group``: (c₀, …, c_d), c_k the
    terms of degree k counted without merging — or None past degree MAX_DEGREE (a G
    inside a function, a root or a denominator included), or when ``expr`` holds a float."""
    if expr in memo:
        return memo[expr]
    if isinstance(expr, se.Symbol):
        c = (0.0, 1.0) if expr in group else (1.0,)
    elif isinstance(expr, se.Float):
        c = None   # a float rounds what a grid point adds to it: no exact restriction
    elif not expr.args:
        c = (1.0,)
    elif isinstance(expr, (se.Add, se.Mul)):
        parts = [graded(a, group, memo) for a in expr.args]
        c = None if None in parts else parts[0]
        for p in parts[1:] if c is not None else ():
            c = _plus(c, p) if isinstance(expr, se.Add) else _times(c, p)
            if c is None:
                break
    elif isinstance(expr, se.Pow) and isinstance(expr.args[1], se.Integer) \
            and int(expr.args[1]) >= 0:
        b, k = graded(expr.args[0], group, memo), int(expr.args[1])
        if b is None or (len(b) > 1 and k > MAX_DEGREE):
            c = None
        elif len(b) == 1:   # a G-free base: one count, however high the power
            c = (b[0] ** min(k, 64) if b[0] > 1 else b[0],)
        else:
            c = (1.0,)
            for _ in range(k):
                c = _times(c, b)
    else:
        # a function of G-free arguments is one term; of a G, no polynomial
        free = all((g := graded(a, group, memo)) is not None and len(g) == 1
                   for a in expr.args)
        c = (1.0,) if free else None
    memo[expr] = c
    return c


def _plus(a, b):
    n = max(len(a), len(b))
    return tuple((a[k] if k < len(a) else 0.0) + (b[k] if k < len(b) else 0.0)
                 for k in range(n))


def _times(a, b):
    if len(a) + len(b) - 2 > MAX_DEGREE:
        return None
    out = [0.0] * (len(a) + len(b) - 1)
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            out[i + j] += x * y
    return tuple(out)


#: what one restriction costs on top of its terms (building it, its context), in terms
POINT_COST = 2000


def choose(lhs, rhs, groups: list):
    """The group to split an entry over: (name, its symbols in the entry, d), or None when
    no group ((name, symbols)) has a degree 1 … MAX_DEGREE. Of those, the one whose
    restrictions hold the fewest terms in all, by :func:`graded`'s estimate — Σ over the
    grid of the terms left at each point: each term of degree k survives at the points
    ≥ its exponent, so the origin's c₀ terms are expanded at every point — plus
    :data:`POINT_COST` a point. The seed, of which both sides are linear forms (c₀ = 0),
    costs the least."""
    best = None
    present = lhs.free_symbols | rhs.free_symbols
    for name, group in groups:
        here = group & present
        if not here:
            continue
        memo: dict = {}
        a, b = graded(lhs, here, memo), graded(rhs, here, memo)
        if a is None or b is None:
            continue
        c = _plus(a, b)
        d = len(c) - 1
        while d and c[d] == 0:
            d -= 1
        if d == 0:
            continue
        n = len(here)
        points = math.comb(n + d, d)
        # a term of degree k is non-zero at the grid points ≥ its exponent: C(n + d − k, d − k)
        cost = sum(c[k] * math.comb(n + d - k, d - k) for k in range(d + 1)) + \
            points * POINT_COST
        if best is None or cost < best[0]:
            best = (cost, (name, sorted(here, key=str), d))
    return None if best is None else best[1]

"""An entry too large to expand, restricted to the points of a grid (symgrad/prove/grid.py):
the grid is the simplex grid of the group's degree, the degree bound is honest, a right
identity is proved from its restrictions and a wrong one refuted at the point that shows it."""
import itertools
import math

import pytest
import symengine as se

import symgrad as sg
import symgrad.models as M
from symgrad.mutants import ENGINE_MUTANTS
from symgrad.prove import check as C
from symgrad.prove.grid import choose, graded, grid, point_text
from symgrad.prove.normal_form import Atoms

a = se.symbols("a0:3")
w = se.symbols("w0:4")
s = se.symbols("s0:2")


@pytest.mark.parametrize("n,d", [(1, 1), (3, 1), (3, 2), (4, 2)])
def test_the_grid_is_the_simplex_grid_origin_first(n, d):
    pts = grid(list(w[:n]), d)
    assert len(pts) == math.comb(n + d, d)
    assert all(v == 0 for v in pts[0].values())
    seen = {tuple(int(p[v]) for v in w[:n]) for p in pts}
    assert seen == {e for e in itertools.product(range(d + 1), repeat=n) if sum(e) <= d}


def test_the_grid_is_unisolvent_for_its_degree_and_no_more():
    """Every monomial of degree ≤ d is non-zero at some point of the degree-d grid (so a
    non-zero polynomial of that degree is seen); w0·w1 vanishes on the whole degree-1 grid,
    which is why the degree bound must be honest."""
    for d in (1, 2):
        pts = grid(list(w[:3]), d)
        for e in itertools.product(range(d + 1), repeat=3):
            if sum(e) <= d:
                m = se.Mul(*[v ** k for v, k in zip(w, e)])
                assert any(m.xreplace(p) != 0 for p in pts), (d, e)
    assert all((w[0] * w[1]).xreplace(p) == 0 for p in grid(list(w[:3]), 1))


def test_graded_estimates_and_the_degree_bound():
    G = frozenset(w)
    assert graded(w[0] * se.exp(a[0]) + a[1], G, {}) == (1.0, 1.0)
    assert graded((w[0] + w[1] + a[0]) ** 2, G, {}) == (1.0, 4.0, 4.0)
    # a w inside a function, a root or a denominator: no polynomial in w
    for e in (se.exp(w[0]), 1 / (w[0] + 1), se.sqrt(w[0] + a[0]), a[0] ** w[0]):
        assert graded(e * a[1], G, {}) is None, e
    assert graded(w[0] * w[1] * w[2], G, {}) is None        # degree 3 > MAX_DEGREE
    assert graded(se.exp(a[0]) / (a[1] + 1), G, {}) == (1.0,)
    assert graded(w[0] * (a[0] + 1) ** 10 ** 7, G, {})[1] > 1   # at once, not 10⁷ products
    # a float rounds what a grid point adds to it (2^53 + 1 = 2^53): never split over
    assert graded(w[0] * se.RealDouble(0.5), G, {}) is None


def test_a_float_entry_is_not_restricted_and_its_difference_is_kept(monkeypatch):
    """w₀x₀x₁S + 2^53·x₀x₁S against 2^53·x₀x₁S: at w₀ = 1 the float sum would round the
    difference away; the entry is expanded whole instead, exactly."""
    monkeypatch.setattr(C, "GRID_TERMS", 8)
    x = se.symbols("x0:8")
    S = se.Add(*[x[i] * x[i + 1] for i in range(7)])
    F = se.RealDouble(2.0 ** 53)
    atoms = _atoms()
    kind = C.entry_normal_form(atoms, (0, (0,), (w[0] * x[0] * x[1] + F * x[0] * x[1]) * S,
                                       F * x[0] * x[1] * S), 10 ** 6)[0]
    assert kind == "nonzero"


def test_the_grid_threshold_bounds_the_expansion_not_the_relations(monkeypatch):
    """(1 + 4x²)⁻² against its denominator expanded: right, by the inverse relations, whose
    reduction holds more terms than the grid threshold — it must not come out non-zero."""
    monkeypatch.setattr(C, "GRID_TERMS", 4)
    x = se.Symbol("x")
    entry = (0, (0,), 1 / (1 + 4 * x ** 2) ** 2, 1 / (1 + 8 * x ** 2 + 16 * x ** 4))
    assert C.entry_normal_form(_atoms(), entry, 10 ** 6)[0] in ("zero", "relations")


def test_the_seed_is_chosen_first_when_both_sides_are_linear_in_it():
    lhs = (s[0] + 2 * s[1]) * (w[0] + w[1]) * se.exp(a[0]) + (s[0] - s[1]) * a[1] ** 2
    name, variables, d = choose(lhs, lhs, [("w", frozenset(w)), ("a", frozenset(a)),
                                           ("the seed", frozenset(s))])
    assert (name, d) == ("the seed", 1) and variables == sorted(s, key=str)
    assert choose(se.exp(s[0]), s[1], [("the seed", frozenset(s))]) is None


def _entry(extra=0):
    """Σ_i s_i (Σ_j w_j a_j)² e^{a_0}: expanded on one side, a product on the other."""
    inner = se.Add(*[wj * a[j % 3] for j, wj in enumerate(w)])
    lhs = (s[0] + 2 * s[1]) * inner ** 2 * se.exp(a[0]) / (a[1] ** 2 + 1)
    rhs = se.expand((s[0] + 2 * s[1]) * inner ** 2) * se.exp(a[0]) / (a[1] ** 2 + 1) + extra
    return (0, (0,), lhs, rhs)


def _atoms():
    atoms = Atoms()
    atoms.groups = [("a", frozenset(a)), ("w", frozenset(w)), ("the seed", frozenset(s))]
    return atoms


def test_an_entry_too_large_is_proved_from_its_restrictions(monkeypatch):
    monkeypatch.setattr(C, "GRID_TERMS", 8)
    kind, terms, over = C.entry_normal_form(_atoms(), _entry(), 10 ** 6)
    assert kind in ("zero", "relations") and terms > 0
    assert over[0] == "the seed" and "w" in over       # split again: restrictions too large
    # without groups the same entry expands in full (nothing is lost by the split)
    atoms = _atoms()
    atoms.groups = []
    assert C.entry_normal_form(atoms, _entry(), 10 ** 6)[0] in ("zero", "relations")


def test_a_wrong_cross_term_is_seen_only_at_a_degree_two_point(monkeypatch):
    """The twin is wrong by s₁·w₀·w₁·e^{a₀}: zero at every point of a degree-1 grid in w,
    non-zero at w₀ = w₁ = 1 — which the degree-2 grid holds."""
    monkeypatch.setattr(C, "GRID_TERMS", 8)
    kind, _, (text, _) = C.entry_normal_form(_atoms(), _entry(s[1] * w[0] * w[1] * se.exp(a[0])),
                                             10 ** 6)
    assert kind == "nonzero"
    assert "s1 = 1" in text and "w0 = 1, w1 = 1" in text, text
    assert point_text({w[0]: se.Integer(0), w[1]: se.Integer(2)}) == "w1 = 2"


def test_an_end_to_end_past_the_grid_threshold_is_proved_and_its_twins_refuted(monkeypatch):
    """Every seed block of a residual MHA with the threshold so low that its entries are
    restricted to grids: PROVED, the grids named; each engine mutant still REFUTED."""
    from symgrad.prove.tape import by_seed_block, end_to_end_spec
    monkeypatch.setattr(C, "GRID_TERMS", 40)
    g = M.mha_residual(2, 2, 1, 2)
    whole = sg.Result("whole", sg.Verdict.UNKNOWN, reason="too large: (forced by the test)")
    r, blocks = by_seed_block(g, whole, None, None, None, None)
    assert r.verdict is sg.Verdict.PROVED, r.reason
    out = C.check(end_to_end_spec(g, None, block=len(g.values) - 1))
    assert out.verdict is sg.Verdict.PROVED and "restricted to the grids of" in out.method, \
        out.method
    for name, engine in ENGINE_MUTANTS.items():
        bad, _ = by_seed_block(g, whole, engine, None, None, None)
        assert bad.verdict is sg.Verdict.REFUTED, name

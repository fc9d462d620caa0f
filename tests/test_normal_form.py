"""The normal form: identities it must see, and non-identities it must not."""
import symengine as se

from symgrad.prove.normal_form import Atoms, EntryForm

x, y = se.symbols("x y")
H = lambda u: se.function_symbol("Heaviside", u)   # noqa: E731


def nf(a, b):
    atoms = Atoms()
    form = EntryForm(atoms, (a, b), atoms.scan(a) | atoms.scan(b))
    d = form.polys[0] - form.polys[1]
    return d, form.reduce(d)


def test_identities():
    for a, b in [
        (se.exp(x) ** 2, se.exp(2 * x)),
        (se.exp(x) * se.exp(y), se.exp(x + y)),
        (se.sqrt(6), se.sqrt(2) * se.sqrt(3)),
        (se.sqrt(x) ** 3, x * se.sqrt(x)),
        (1 / (x * x + 2 * x), 1 / (2 * (x * x / 2 + x))),
        (H(-x), 1 - H(x)),
        (se.cosh(x) ** 2 - se.sinh(x) ** 2, se.Integer(1)),
        (x / (x + 1), 1 - 1 / (x + 1)),
        (se.exp(-x) / (1 + se.exp(-x)) ** 2, (1 / (1 + se.exp(-x))) * (1 - 1 / (1 + se.exp(-x)))),
        ((x - y) * (x + y), x * x - y * y),
    ]:
        _, reduced = nf(a, b)
        assert reduced is not None and reduced.is_zero(), (a, b)


def test_non_identities_stay_non_zero():
    for a, b in [
        (se.exp(x), se.exp(y)),
        (se.sqrt(x), x),
        (se.tanh(x), -se.tanh(-x) + 1),
        (1 / (x + 1), 1 / (x + 2)),
        (H(x), se.Integer(1)),
        (se.erf(x), se.erf(2 * x) / 2),
    ]:
        d, reduced = nf(a, b)
        assert not d.is_zero() and (reduced is None or not reduced.is_zero()), (a, b)


def test_side_conditions_recorded():
    atoms = Atoms()
    atoms.scan(se.log(x) + 1 / (y - 1) + se.sqrt(x + y))
    texts = {c.text() for c in atoms.side_conditions()}
    assert {"x > 0", "y + x > 0"} <= texts or {"x > 0", "x + y > 0"} <= texts
    assert any("≠ 0" in t for t in texts)


def test_a_product_past_the_memory_limit_is_refused_with_an_estimate():
    import pytest
    from symgrad.prove.normal_form import TooLarge
    xs = se.symbols("a0:12")
    big = se.Add(*[a * b for a, b in zip(xs, xs[1:])]) ** 3 * se.Add(*[v * v for v in xs]) ** 2
    atoms = Atoms()
    atoms.memory_bytes = 1 << 20
    with pytest.raises(TooLarge, match=r"expanding it needs more than .* terms in 12 variables"):
        EntryForm(atoms, (big, se.Integer(0)), atoms.scan(big))
    atoms = Atoms()   # no limit: the same product expands
    assert len(EntryForm(atoms, (big, se.Integer(0)), atoms.scan(big)).polys[0]) > 1000


def test_conditions_on_deep_shared_expressions_print_briefly():
    from symgrad.prove.normal_form import Condition
    e = x
    for _ in range(60):   # a DAG of 60 levels; printed as a tree it would never end
        e = se.tanh(e) * y + e
    text = Condition(e + 1, "> 0", "radicand").text()
    assert len(text) < 100 and text.endswith("> 0") and "more than 400 nodes" in text


def test_abstracted_sums_fall_back_to_the_full_normal_form_when_they_do_not_suffice():
    import numpy as np
    from symgrad.prove.check import Spec, check

    def forward(x):
        u = x[0] * x[1] + se.exp(x[0])
        return np.array([u, u ** 3], dtype=object)

    def shared(g, out, x):      # reuses the forward's value u: the abstract pass suffices
        u = out[0]
        du = np.array([x[1] + se.exp(x[0]), x[0]], dtype=object)
        return ((g[0] + 3 * u ** 2 * g[1]) * du,)

    def rewritten(g, out, x):   # u spelled differently: needs the expansion of u
        u = (x[0] + 1) * x[1] - x[1] + se.exp(x[0])
        du = np.array([x[1] + se.exp(x[0]), x[0]], dtype=object)
        return ((g[0] + 3 * u ** 2 * g[1]) * du,)

    def wrong(g, out, x):
        u = out[0]
        du = np.array([x[1] + se.exp(x[0]), x[0]], dtype=object)
        return ((g[0] + 2 * u ** 2 * g[1]) * du,)

    def run(rule):
        return check(Spec("u", forward, rule, [("x", (2,))], abstract_sums=True,
                          symmetry=False))

    assert run(shared).proved and run(rewritten).proved
    r = run(wrong)
    assert r.verdict.value == "refuted" and r.witness is not None

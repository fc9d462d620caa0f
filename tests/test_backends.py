"""SymEngine's derivative (the fast path) agrees with SymPy's ``diff`` (the reference) on
every op: the normal form of their difference is zero, entry by entry."""
import numpy as np
import pytest
import symengine as se

import symgrad as sg
from symgrad.api import op_params
from symgrad.ops import OPS
from symgrad.prove.check import Spec, build_sides, reference
from symgrad.prove.normal_form import Atoms, EntryForm


def _reference(name, shapes, backend):
    op = OPS[name]
    values = op_params(op, shapes, backend=backend)
    spec = Spec(name, lambda *a: op.forward(*a, **values),
                lambda g, o, *a: op.vjp(g, o, *a, **values),
                list(zip(op.args, shapes)), backend=backend)
    sides = build_sides(spec)
    wanted = [(i, ix) for i, a in enumerate(sides["arrays"]) for ix in np.ndindex(a.shape)]
    # each build makes its own (dummy) symbols: compare the two builds by symbol name
    by_name = lambda e: e.xreplace({s: se.Symbol(str(s)) for s in e.free_symbols})  # noqa: E731
    return {k: by_name(v) for k, v in reference(sides, wanted).items()}


@pytest.mark.parametrize("name", sorted(OPS))
def test_symengine_and_sympy_derivatives_agree(name):
    shapes = list(OPS[name].examples[0])
    fast, slow = _reference(name, shapes, "symengine"), _reference(name, shapes, "sympy")
    assert fast.keys() == slow.keys()
    atoms = Atoms()
    for key in fast:
        a, b = fast[key], slow[key]
        form = EntryForm(atoms, (a, b), atoms.scan(a) | atoms.scan(b))
        diff = form.polys[0] - form.polys[1]
        if not diff.is_zero():
            diff = form.reduce(diff)
        assert diff.is_zero(), (name, key, a, b)


@pytest.mark.parametrize("name", ["softmax", "layer_norm", "gelu_erf", "relu", "log_softmax"])
def test_sympy_backend_proves(name):
    r = sg.verify_node(name, list(OPS[name].examples[0]), backend="sympy")
    assert r.verdict is sg.Verdict.PROVED and r.backend == "sympy"

"""Every library op is PROVED at (at least) two shapes — one table row per op and shapes."""
import pytest

import symgrad as sg
from symgrad.ops import OPS

CASES = [(name, shapes) for name in sorted(OPS) for shapes in OPS[name].examples]


def test_every_op_has_two_shapes():
    assert all(len(op.examples) >= 2 for op in OPS.values())
    assert len(OPS) == 36


@pytest.mark.parametrize("name,shapes", CASES, ids=[f"{n}-{s}" for n, s in CASES])
def test_op_proved(name, shapes):
    r = sg.verify_node(name, list(shapes))
    assert r.verdict is sg.Verdict.PROVED, (r.reason, r.residual)
    assert r.method.startswith("normal form")
    assert r.entries == sum(__import__("math").prod(s) for s in shapes)


@pytest.mark.parametrize("name,shapes", CASES[::2], ids=[f"{n}-{s}" for n, s in CASES[::2]])
def test_op_proved_entry_by_entry(name, shapes):
    """Without the symmetry reduction every input entry is normal-formed; same verdict."""
    r = sg.verify_node(name, list(shapes), symmetry=False)
    assert r.verdict is sg.Verdict.PROVED
    assert r.checked == r.entries


def test_symbolic_parameters():
    assert sg.verify_node("scale", [(2, 2)]).params["c"] == "c"
    r = sg.verify_node("layer_norm", [(2, 3), (3,), (3,)], params={"eps": sg.tensor.symbol("eps")})
    assert r.verdict is sg.Verdict.PROVED
    assert any(c.text == "eps > 0" and c.reason == "declared" for c in r.side_conditions)


def test_hard_mask_fully_masked_row_gives_zeros_and_is_proved():
    import numpy as np
    mask = np.array([[True, False, True], [False, False, False]])
    op = OPS["hard_masked_softmax"]
    x = sg.symbols("x", (2, 3))
    y = op.forward(x, mask=mask)
    assert all(v == 0 for v in y[1]) and y[0, 1] == 0
    r = sg.verify_node("hard_masked_softmax", [(2, 3)], params={"mask": mask})
    assert r.verdict is sg.Verdict.PROVED


def test_mul_with_the_same_input_twice():
    r = sg.verify_node("mul", [(2, 3)], reads=[0, 0])
    assert r.verdict is sg.Verdict.PROVED and r.entries == 6


def test_side_conditions_are_reported():
    r = sg.verify_node("log", [(2,)])
    texts = [c.text for c in r.side_conditions]
    assert "x[0] > 0" in texts
    r = sg.verify_node("softmax", [(1, 3)], symmetry=False)
    denominators = [c for c in r.side_conditions if c.reason == "denominator"]
    assert denominators and all(c.discharged for c in denominators)
    r = sg.verify_node("relu", [(2,)])
    assert any("≠ 0" in c.text for c in r.side_conditions)

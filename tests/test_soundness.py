"""Every route to a wrong verdict, closed: table-driven, one class of rule per table.

Each correct rule has a wrong twin beside it; correct rules must come out PROVED (never
REFUTED), twins REFUTED with a certified witness, and bad input a RuleError/InputError that
names what is wrong (and, for the user's code, the line).
"""
import math

import numpy as np
import pytest
import symengine as se
import sympy as sp

import symgrad as sg
from symgrad import fn
from symgrad.prove import check as checker

P, R = sg.Verdict.PROVED, sg.Verdict.REFUTED
K = 0.044715
BETA = math.sqrt(2 / math.pi)
G0 = se.Symbol("g[0]")          # a user's constant named like the checker's cotangent


def _inplace_g(g, y, x):
    g *= 3
    return (g,)


def _inplace_g_wrong(g, y, x):
    g *= 2
    return (g,)


def _writes_out(g, y, x):
    y[...] = 0                   # scribbles over the forward's output: must not matter
    return (3 * g,)


def _forward_mutates(x):
    x *= 2
    return x


def _accumulates(g, y, x):
    out = np.zeros(x.shape, dtype=object)
    out += g
    out += g
    return (out,)


def _gelu(x):
    return 0.5 * x * (1 + fn.tanh(BETA * (x + K * x ** 3)))


def _gelu_vjp(kappa):
    def vjp(g, y, x):
        t = fn.tanh(BETA * (x + kappa * x ** 3))
        return (g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * BETA * (1 + kappa * x ** 2 * 3)),)
    return vjp


def _layer_norm(x, eps=1e-5):
    m = x.mean(axis=-1, keepdims=True)
    v = ((x - m) ** 2).mean(axis=-1, keepdims=True)
    return (x - m) / fn.sqrt(v + eps)


def _layer_norm_vjp(g, y, x, eps=1e-5):
    m = x.mean(axis=-1, keepdims=True)
    r = 1 / fn.sqrt(((x - m) ** 2).mean(axis=-1, keepdims=True) + eps)
    xh = (x - m) * r
    return (r * (g - g.mean(axis=-1, keepdims=True)
                 - xh * (g * xh).mean(axis=-1, keepdims=True)),)


def _mse(x, t):
    return ((x - t) ** 2).sum(keepdims=True) / 3


# (name, forward, correct vjp, wrong twin, shapes, kwargs)
CASES = [
    # in-place writes: each call gets its own arrays
    ("inplace g *= 3", lambda x: 3 * x, _inplace_g, _inplace_g_wrong, [(2,)], {}),
    ("rule writes into out", lambda x: 3 * x, _writes_out, lambda g, y, x: (2 * g,),
     [(2,)], {}),
    ("forward writes into x", _forward_mutates, lambda g, y, x: (2 * g,),
     lambda g, y, x: (g,), [(2,)], {}),
    ("out += accumulation", lambda x: 2 * x, _accumulates, lambda g, y, x: (g,), [(2,)], {}),
    ("x read twice, forward writes", lambda a, b: _forward_mutates(a) * b,
     lambda g, y, a, b: (2 * g * b, 2 * g * a), lambda g, y, a, b: (4 * g * b, 2 * g * a),
     [(2,), (2,)], {}),
    # floats: exact where they first meet a symbolic value
    ("mean MSE, float 2.0/3", _mse, lambda g, y, x, t: (2.0 * (x - t) * g / 3,
                                                        -2.0 * (x - t) * g / 3),
     lambda g, y, x, t: (2.0 * (x - t) * g / 3, 2.0 * (x - t) * g / 3), [(3,), (3,)], {}),
    ("GELU tanh with 0.044715", _gelu, _gelu_vjp(K), _gelu_vjp(0.044715000000000004),
     [(2,)], {}),
    ("LayerNorm eps=1e-5 float", _layer_norm, _layer_norm_vjp,
     lambda g, y, x: (_layer_norm_vjp(g, y, x, eps=1e-6)[0],), [(2, 3)], {}),
    ("tanh(0.5 x)", lambda x: fn.tanh(0.5 * x),
     lambda g, y, x: (g * 0.5 * (1 - fn.tanh(0.5 * x) ** 2),),
     lambda g, y, x: (g * 0.5 * (1 - fn.tanh(0.25 * x) ** 2),), [(2,)], {}),
    ("sqrt(x + 0.5)", lambda x: fn.sqrt(x + 0.5), lambda g, y, x: (g * 0.5 / fn.sqrt(x + 0.5),),
     lambda g, y, x: (g * 0.5 / fn.sqrt(x + 0.25),), [(2,)], {}),
    ("x ** 0.5", lambda x: x ** 0.5, lambda g, y, x: (g * 0.5 * x ** -0.5,),
     lambda g, y, x: (g * 0.5 * x ** 0.5,), [(2,)], {}),
    ("x ** 2.5", lambda x: x ** 2.5, lambda g, y, x: (g * 2.5 * x ** 1.5,),
     lambda g, y, x: (g * 2.5 * x ** 2.5,), [(2,)], {}),
    # a constant named like a cotangent is another symbol
    ("constant named g[0]", lambda x: G0 * x, lambda g, y, x: (g * G0,),
     lambda g, y, x: (g * g,), [(1,)], {}),
    # non-smooth forwards: proved under the side condition at the kink
    ("abs", lambda x: abs(x), lambda g, y, x: (g * fn.sign(x),),
     lambda g, y, x: (g,), [(2,)], {}),
    ("relu(x - 1)", lambda x: fn.relu(x - 1), lambda g, y, x: (g * fn.step(x - 1),),
     lambda g, y, x: (g * fn.step(x),), [(2,)], {}),
    ("relu(x @ W)", lambda x, W: fn.relu(x @ W),
     lambda g, y, x, W: ((g * fn.step(x @ W)) @ W.T, x.T @ (g * fn.step(x @ W))),
     lambda g, y, x, W: (g @ W.T, x.T @ (g * fn.step(x @ W))), [(2, 2), (2, 2)], {}),
    ("relu backward on the result", lambda x: fn.relu(x),
     lambda g, y, x: (fn.where(y > 0, g, 0),), lambda g, y, x: (fn.where(y >= 0, g, g),),
     [(2,)], {}),
    ("leaky relu 0.01", lambda x: fn.leaky_relu(x),
     lambda g, y, x: (fn.where(x > 0, g, 0.01 * g),),
     lambda g, y, x: (fn.where(x > 0, g, 0.1 * g),), [(2,)], {}),
    ("hardtanh (clamp)", lambda x: fn.clamp(x, -1.0, 1.0),
     lambda g, y, x: (fn.where(x > -1, fn.where(x < 1, g, 0), 0),),
     lambda g, y, x: (fn.where(x > -1, g, 0),), [(2,)], {}),
    ("hardswish", lambda x: x * fn.clamp(x + 3, 0, 6) / 6,
     lambda g, y, x: (fn.where(x < -3, 0, fn.where(x <= 3, g * (x / 3 + 0.5), g)),),
     lambda g, y, x: (fn.where(x < -3, 0, fn.where(x <= 3, g * (x / 3 + 0.25), g)),),
     [(2,)], {}),
    ("maximum with ties", lambda a, b: fn.maximum(a, b),
     lambda g, y, a, b: (fn.where(a == b, g / 2, fn.where(a > b, g, 0)),
                         fn.where(a == b, g / 2, fn.where(a < b, g, 0))),
     lambda g, y, a, b: (fn.where(a > b, g, 0), fn.where(a > b, g, 0)), [(2,), (2,)], {}),
    ("step forward, zero rule", lambda x: fn.step(x) * 5, lambda g, y, x: (0 * g,),
     lambda g, y, x: (g,), [(2,)], {}),
    ("Piecewise via SymEngine", lambda x: np.vectorize(
        lambda e: se.Piecewise((e.e ** 2, e.e < 1), (2 * e.e - 1, True)), otypes=[object])(x),
     lambda g, y, x: (fn.where(x < 1, 2 * x * g, 2 * g),),
     lambda g, y, x: (fn.where(x < 1, 2 * x * g, g),), [(2,)], {}),
    # values that are exactly 0 on a whole region (found by a red-team pass): sign(0) = 0,
    # a non-strict Piecewise at a tie, SymPy's H(0) = 1/2, x == max(x, z)
    ("sign of a relu", lambda x, y: y * np.vectorize(
        lambda e: se.sign(e.e), otypes=[object])(fn.relu(x)),
     lambda g, o, x, y: (0 * g, g * fn.step(x)), lambda g, o, x, y: (0 * g, g * fn.sign(x)),
     [(1,), (1,)], {}),
    ("Piecewise with <=", lambda x, y: np.vectorize(
        lambda r, b: se.Piecewise((b.e, r.e <= 0), (2 * b.e, True)), otypes=[object])(
            fn.relu(x), y),
     lambda g, o, x, y: (0 * g, g * (1 + fn.step(x))), lambda g, o, x, y: (0 * g, 2 * g),
     [(1,), (1,)], {}),
    ("SymPy Heaviside, H(0) = 1/2", lambda x, y: y * np.vectorize(
        lambda e: sp.Heaviside(e.e._sympy_()), otypes=[object])(fn.relu(x)),
     lambda g, o, x, y: (0 * g, g * (fn.step(x) + (1 - fn.step(x)) / 2)),
     lambda g, o, x, y: (0 * g, g * fn.step(x)), [(1,), (1,)], {}),
    ("x == max(x, z) indicator", lambda x, z, y: y * fn.where(x == fn.maximum(x, z), 1, 0),
     lambda g, o, x, z, y: (0 * x, 0 * z, g * fn.step(x - z)),
     lambda g, o, x, z, y: (0 * x, 0 * z, 0 * y), [(1,), (1,), (1,)], {}),
    ("steep sin(2^44 x)", lambda x: fn.sin(2 ** 44 * x),
     lambda g, y, x: (g * 2 ** 44 * fn.cos(2 ** 44 * x),),
     lambda g, y, x: (g * 2 ** 43 * fn.cos(2 ** 44 * x),), [(1,)], {}),
    # a second red-team pass: a tie argument too large for the quick split, a step of
    # SymPy's default Heaviside, a comparison of a 0-d sum, narrow interval domains
    ("large x == max(x, z) argument", lambda x, z, y, w: y * fn.where(
        x * (1 + (w * w).sum()) == fn.maximum(x, z) * (1 + (w * w).sum()), 1, 0),
     lambda g, o, x, z, y, w: (0 * x, 0 * z, g * fn.step(x - z), 0 * w),
     lambda g, o, x, z, y, w: (0 * x, 0 * z, 0 * y, 0 * w), [(1,), (1,), (1,), (40,)], {}),
    ("where on a sum", lambda x: x * fn.where(x.sum() > 0, 1, 0),
     lambda g, y, x: (g * fn.where(x.sum() > 0, 1, 0),),
     lambda g, y, x: (g,), [(2,)], {}),
    ("x**3 on 3 < x < 3.25", lambda x: x ** 3, lambda g, y, x: (3 * x ** 2 * g,),
     lambda g, y, x: (2 * x ** 2 * g,), [(2, 3)],
     {"assumptions": lambda x: [e - 3 > 0 for e in x.flat] + [3.25 - e > 0 for e in x.flat]}),
    # wrong only far from the origin, or inside a domain away from it
    ("wrong only for x > 4", lambda x: x ** 3, lambda g, y, x: (3 * x ** 2 * g,),
     lambda g, y, x: (g * (3 * x ** 2 + fn.where(x > 4, 1, 0)),), [(2,)], {}),
    ("log(x - 3)", lambda x: fn.log(x - 3), lambda g, y, x: (g / (x - 3),),
     lambda g, y, x: (g / (x - 2),), [(2,)], {}),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_correct_rule_proved_and_its_twin_refuted(case):
    name, forward, right, wrong, shapes, kw = case
    r = sg.check_vjp(forward, right, shapes, **kw)
    assert r.verdict is P, (name, r.reason, r.residual)
    w = sg.check_vjp(forward, wrong, shapes, **kw)
    assert w.verdict is R, (name, w.reason, w.residual)
    lo, hi = (float(v) for v in w.witness.residual)
    assert lo > 0 or hi < 0


@pytest.mark.parametrize("name, forward, vjp, condition", [
    ("abs", lambda x: abs(x), lambda g, y, x: (g * fn.sign(x),), "x[0] ≠ 0"),
    ("relu(x - 1)", lambda x: fn.relu(x - 1), lambda g, y, x: (g * fn.step(x - 1),),
     "1 - x[0] ≠ 0"),
    ("a step with derivative 0", lambda x: fn.step(x) * 5, lambda g, y, x: (0 * g,),
     "x[0] ≠ 0"),
])
def test_non_smooth_points_are_excluded_and_printed(name, forward, vjp, condition):
    r = sg.check_vjp(forward, vjp, [(2,)], symmetry=False)
    assert r.verdict is P
    assert condition in [c.text for c in r.side_conditions], r.side_conditions


def test_one_ulp_constant_is_refuted_and_the_witness_shows_both_values():
    w = sg.check_vjp(_gelu, _gelu_vjp(0.044715000000000004), [(1,)])
    assert w.verdict is R
    assert w.witness.expected != w.witness.got          # printed with enough digits
    assert "float constant" in w.witness.note
    # written the PyTorch way, 3*kKappa is rounded before it meets x: right to refute
    def folded(g, y, x):
        t = fn.tanh(BETA * (x + K * x ** 3))
        return (g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * BETA * (1 + 3 * K * x ** 2)),)
    assert sg.check_vjp(_gelu, folded, [(1,)]).verdict is R


def test_witness_names_inputs_as_the_forward_does():
    w = sg.check_vjp(lambda act, W: act @ W,
                     lambda g, y, act, W: (g @ W.T, 2 * act.T @ g), [(2, 2), (2, 2)])
    assert w.verdict is R and w.witness.input == "W"


def _branchy(x):
    out = np.empty(x.shape, dtype=object)
    for i in range(x.size):
        out[i] = x[i] if x[i] > 0 else 0 * x[i]     # the line the error must name
    return out


BAD = [
    ("control flow", _branchy, lambda g, y, x: (g,), [(2,)], {},
     r"control flow.*fn\.where.*test_soundness\.py:\d+ in _branchy"),
    ("builtin max", lambda x: max(x[0], 0) * x, lambda g, y, x: (g,), [(2,)], {},
     r"truth value.*fn\.where"),
    ("np.where", lambda x: np.where(x > 0, x, 0), lambda g, y, x: (g,), [(2,)], {},
     r"np\.where"),
    ("NaN constant", lambda x: x * float("nan"), lambda g, y, x: (g,), [(2,)], {},
     r"nan is not a finite number.*test_soundness"),
    ("inf constant", lambda x: x, lambda g, y, x: (g * math.inf,), [(2,)], {},
     r"inf is not a finite number"),
    ("math.exp", lambda x: x * math.exp(x[0]), lambda g, y, x: (g,), [(2,)], {},
     r"converted to a Python number.*symgrad\.fn"),
    ("np.exp", lambda x: np.exp(x), lambda g, y, x: (g,), [(2,)], {},
     r"np\.exp.*symgrad\.fn\.exp"),
    ("string output", lambda x: "x squared", lambda g, y, x: (g,), [(2,)], {},
     r"forward rule's result is a str"),
    ("wrong cotangent shape", lambda x: x, lambda g, y, x: (g[:1],), [(2,)], {},
     r"cotangent for input x has shape \(1\)"),
    ("wrong vjp arity", lambda x: x, lambda g, x: (g,), [(2,)], {},
     r"vjp rule .* cannot be called as vjp\(g, out, input0\)"),
    ("wrong forward arity", lambda x, y: x, lambda g, o, x: (g,), [(2,)], {},
     r"forward rule .* cannot be called"),
    ("KeyError in the rule", lambda x: x, lambda g, y, x: ({}["k"],), [(2,)], {},
     r"vjp rule raised KeyError.*test_soundness\.py"),
    ("division by zero", lambda x: x / 0, lambda g, y, x: (g,), [(2,)], {},
     r"division by zero"),
    ("AttributeError", lambda x: x.no_such_thing, lambda g, y, x: (g,), [(2,)], {},
     r"forward rule raised AttributeError"),
    ("duplicate names", lambda a, b: a * b, lambda g, y, a, b: (g * b, g * a),
     [(2,), (2,)], {"names": ["x", "x"]}, r"two inputs are named 'x'"),
    ("complex value", lambda x: x * fn.sqrt(-1), lambda g, y, x: (g,), [(2,)], {},
     r"complex"),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_rules_get_a_named_error(case):
    _, forward, vjp, shapes, kw, pattern = case
    with pytest.raises(sg.InputError, match=pattern):
        sg.check_vjp(forward, vjp, shapes, **kw)


def test_a_false_declared_assumption_is_an_input_error():
    with pytest.raises(sg.InputError, match=r"declared assumption -1 > 0 is false"):
        sg.verify_node("layer_norm", [(2, 3), (3,), (3,)], params={"eps": -1})
    with pytest.raises(sg.InputError, match=r"domain is empty"):
        sg.check_vjp(lambda x: x, lambda g, y, x: (g,), [(2,)],
                     assumptions=lambda x: [(x[0] * 0 - 1, "> 0")])


def test_the_soundness_alarm_catches_a_zero_normal_form_that_is_wrong(monkeypatch):
    """A broken normal form (every residual "zero") must not give a PROVED: the numeric
    cross-check after it raises an InternalError."""
    monkeypatch.setattr(checker, "entry_normal_form",
                        lambda atoms, entry, budget, *rest: ("zero", 0, None))
    spec = checker.Spec(name="wrong", forward=lambda x: x ** 3,
                        vjp=lambda g, y, x: (2 * g * x,), inputs=[("x", (2,))])
    with pytest.raises(sg.InternalError, match="soundness alarm"):
        checker.check(spec)
    right = checker.Spec(name="right", forward=lambda x: x ** 3,
                         vjp=lambda g, y, x: (3 * g * x ** 2,), inputs=[("x", (2,))])
    assert checker.check(right).verdict is P


def test_a_layer_norm_rule_wrong_in_one_entry_is_refuted_there_first():
    op = sg.get_op("layer_norm")

    def wrong(g, out, x, gamma, beta, *, eps):
        dx, dg, db = op.vjp(g, out, x, gamma, beta, eps=eps)
        dx = dx.copy()
        dx[1, 2] = dx[1, 2] + g[1, 2] / 1000
        return dx, dg, db

    r = sg.verify_node("layer_norm", [(4, 8), (8,), (8,)], vjp=wrong)
    assert r.verdict is R and r.witness.entry == (1, 2) or r.witness.entry in {(0, 2), (1, 1)}
    assert "breaks an index symmetry" in r.method


def test_an_empty_domain_gives_no_proved():
    """tanh x = 2σ(2x) − 1 everywhere, so the tie ``==`` holds everywhere and its step
    conditions leave no point: an identity there proves nothing."""
    forward = lambda x, y: y * fn.where(fn.tanh(x) == 2 * fn.sigmoid(2 * x) - 1, 1, 0)  # noqa
    r = sg.check_vjp(forward, lambda g, o, x, y: (0 * g, 0 * g), [(1,), (1,)])
    assert r.verdict is not P


@pytest.mark.skipif(np.finfo(np.longdouble).eps == np.finfo(float).eps,
                    reason="long double is a double on this platform")
def test_long_double_constants_are_exact():
    c = np.longdouble(1) / 3
    c2 = c * (1 + np.finfo(np.longdouble).eps)
    assert float(c) == float(c2)
    assert sg.check_vjp(lambda x: x * c, lambda g, y, x: (g * c2,), [(1,)]).verdict is R
    assert sg.check_vjp(lambda x: x * c, lambda g, y, x: (g * c,), [(1,)]).verdict is P


def test_conditions_of_a_rewrite_in_worker_processes_reach_the_verdict(monkeypatch):
    """With many entries the relation stage runs in forked workers; a split log's side
    conditions (each factor > 0) must still be part of the verdict."""
    monkeypatch.setenv("SYMGRAD_WORKERS", "2")
    a, b, c = se.symbols("a b c")
    fa, fb, fc = a + 1000, b + 1000, c + 1000
    S = se.exp(se.log(fa * fb) / 2) * se.exp(se.log(fa * fc) / 2)
    T = fa * se.exp(se.log(fb * fc) / 2)       # = S only where a + 1000 > 0
    n = 40
    forward = lambda y: np.array([y[i] * S for i in range(n)], dtype=object)  # noqa: E731
    rule = lambda g, o, y: (np.array([g[i] * T for i in range(n)], dtype=object),)  # noqa
    r = sg.check_vjp(forward, rule, [(n,)], symmetry=False)
    texts = [c.text for c in r.side_conditions]
    assert r.verdict is not P or "1000 + a > 0" in texts, texts


def test_an_assumption_on_one_entry_is_not_carried_to_the_others_by_symmetry():
    r = sg.check_vjp(lambda x: fn.relu(x + 1000), lambda g, y, x: (g,), [(2,)],
                     assumptions=lambda x: [x[0] + 1000 > 0])
    assert r.verdict is not P, r.method


@pytest.mark.parametrize("name, forward", [
    ("sqrt(x²) − x", lambda x: x * fn.where((x * x) ** 0.5 - x != 0, 1, 0)),
    ("SymPy backend, H(0) = 1/2", None),
])
def test_a_step_argument_zero_on_a_region_gives_no_proved(name, forward):
    """Such an argument's condition u ≠ 0 would cut the region out of the domain: never a
    PROVED for a rule that is wrong there."""
    if forward is None:
        r = sg.check_vjp(lambda x, y: y * sp.Heaviside(fn.relu(x)[0]),
                         lambda g, o, x, y: (0 * g, g * fn.step(x)), [(1,), (1,)],
                         backend="sympy")
    else:
        r = sg.check_vjp(forward, lambda g, y, x: (g,), [(1,)])
    assert r.verdict is not P, (name, r.method, r.reason)


def test_parameters_read_floats_in_either_order():
    c = se.Symbol("c")
    r1 = sg.verify_node("scale", [(2,)], params={"c": c},
                        vjp=lambda g, y, x, *, c: (c * g * 0.1 * 10,))
    r2 = sg.verify_node("scale", [(2,)], params={"c": c},
                        vjp=lambda g, y, x, *, c: (g * c * 0.1 * 10,))
    assert r1.verdict is r2.verdict is R     # 10·(the double 0.1) is not 1


def test_a_user_symbol_named_like_an_input_keeps_its_own_witness_value():
    c = se.Symbol("x[0]")
    w = sg.check_vjp(lambda x: x * c + x ** 2, lambda g, y, x: (g * 0,), [(1,)])
    assert w.verdict is R
    assert "x[0]" in w.witness.point and len(w.witness.point) == 3, w.witness.point

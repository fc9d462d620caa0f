"""symgrad.jax: custom_vjp rules and JAX's own derivatives, proved or refuted; the primitive
table run on floats beside JAX itself."""
import numpy as np
import pytest
import symengine as se

jax = pytest.importorskip("jax", reason="JAX is an optional extra: pip install 'symgrad[jax]'")

import jax.numpy as jnp  # noqa: E402

import symgrad as sg  # noqa: E402
import symgrad.jax  # noqa: E402,F401  (sg.jax)
from symgrad.frameworks.jax import _examples, _make, interpret, prepare  # noqa: E402


def _custom(primal, fwd, bwd):
    f = jax.custom_vjp(primal)
    f.defvjp(fwd, bwd)
    return f


TANH = _custom(jnp.tanh, lambda x: (jnp.tanh(x), jnp.tanh(x)), lambda y, g: (g * (1 - y * y),))
TANH_WRONG = _custom(jnp.tanh, lambda x: (jnp.tanh(x), jnp.tanh(x)), lambda y, g: (g * (1 - y),))


def _sin_mul(x, y):
    return jnp.sin(x) * y


SIN_MUL = _custom(_sin_mul, lambda x, y: (_sin_mul(x, y), (jnp.cos(x), jnp.sin(x), y)),
                  lambda r, g: (r[0] * g * r[2], r[1] * g))
SIN_MUL_WRONG = _custom(_sin_mul, lambda x, y: (_sin_mul(x, y), (jnp.cos(x), jnp.sin(x), y)),
                        lambda r, g: (r[0] * g, r[1] * g))       # drops y from x's gradient


def _prod(x):
    return jnp.prod(x, axis=-1, keepdims=True)


PROD_BY_DIVISION = _custom(_prod, lambda x: (_prod(x), (x, _prod(x))),
                           lambda r, g: (g * r[1] / r[0],))     # the zero-input bug


@pytest.mark.parametrize("f, shapes, verdict, wrong_input", [
    (TANH, [(2, 3)], sg.Verdict.PROVED, None),
    (TANH_WRONG, [(2, 3)], sg.Verdict.REFUTED, "x"),
    (SIN_MUL, [(2, 2), (2, 2)], sg.Verdict.PROVED, None),
    (SIN_MUL_WRONG, [(2, 2), (2, 2)], sg.Verdict.REFUTED, "x"),
    (PROD_BY_DIVISION, [(3,)], sg.Verdict.REFUTED, "x"),
])
def test_custom_vjp_rules(f, shapes, verdict, wrong_input):
    r = sg.jax.check_custom_vjp(f, shapes=shapes)
    assert r.verdict is verdict, (r.verdict, r.reason)
    if wrong_input:
        assert r.witness.input == wrong_input


def _rope_tables(n, d, base=10000.0):
    """cos and sin of position·θ_i, θ_i = base^(−2i/d), each frequency twice (rotate-half)."""
    angle = np.arange(n)[:, None] * (1.0 / base ** (np.arange(0, d, 2) / d))
    angle = np.concatenate([angle, angle], -1)
    return np.cos(angle), np.sin(angle)


_ROPE = _rope_tables(2, 4)


def _rms(x, g):
    return x * jax.lax.rsqrt(jnp.mean(x * x, -1, keepdims=True) + 1e-6) * g


def _rms_fwd(x, g):
    r = jax.lax.rsqrt(jnp.mean(x * x, -1, keepdims=True) + 1e-6)
    return x * r * g, (x, g, r)


def _rms_bwd(right):
    def bwd(res, dy):
        x, g, r = res
        dxhat = dy * g
        dx = r * dxhat - (x * r ** 3 * jnp.mean(dxhat * x, -1, keepdims=True) if right else 0)
        return dx, jnp.sum(dy * x * r, 0)
    return bwd


RMS_NORM = _custom(_rms, _rms_fwd, _rms_bwd(True))
RMS_NORM_NO_MEAN_TERM = _custom(_rms, _rms_fwd, _rms_bwd(False))   # a wrong twin


@pytest.mark.parametrize("f, verdict", [(RMS_NORM, sg.Verdict.PROVED),
                                        (RMS_NORM_NO_MEAN_TERM, sg.Verdict.REFUTED)])
def test_an_rms_norm_custom_vjp_and_its_wrong_twin(f, verdict):
    r = sg.jax.check_custom_vjp(f, shapes=[(2, 4), (4,)])
    assert r.verdict is verdict, (r.verdict, r.reason)
    if verdict is sg.Verdict.REFUTED:
        assert r.witness.input == "x"


FUNCTIONS = [
    ("softmax", jax.nn.softmax, [(2, 3)]),
    ("log_softmax", jax.nn.log_softmax, [(2, 3)]),
    ("gelu (tanh)", jax.nn.gelu, [(4,)]),
    ("matmul", lambda a, b: a @ b, [(2, 3), (3, 2)]),
    ("layer norm", lambda x: (x - x.mean(-1, keepdims=True)) /
     jnp.sqrt(x.var(-1, keepdims=True) + 1e-5), [(2, 4)]),
    ("relu", jax.nn.relu, [(3,)]),
    ("attention", lambda q, k, v: jax.nn.softmax(q @ k.T / jnp.sqrt(2.0), axis=-1) @ v,
     [(3, 2), (3, 2), (3, 2)]),
    # RoPE's rotate-half: its VJP runs pad (a slice's transpose) and split (concatenate's)
    ("rotate half", lambda x: x * jnp.concatenate([-x[..., 2:], x[..., :2]], -1) +
     jnp.concatenate([x[:, ::2], x[:, 1::2]], -1), [(2, 4)]),
    ("silu", jax.nn.silu, [(3,)]),
    # the LLaMA block's pieces as people write them in JAX: RMSNorm with rsqrt, SwiGLU,
    # RoPE with its float64 cos/sin tables (proved for those doubles, read exactly), and
    # grouped-query attention's repeat of the key heads
    ("rms norm", lambda x, g: x * jax.lax.rsqrt(jnp.mean(x * x, -1, keepdims=True) + 1e-6) * g,
     [(2, 4), (4,)]),
    ("swiglu", lambda a, b: jax.nn.silu(a) * b, [(3,), (3,)]),
    ("rope", lambda x: x * _ROPE[0] + jnp.concatenate([-x[..., 2:], x[..., :2]], -1) *
     _ROPE[1], [(2, 4)]),
    ("grouped-query scores", lambda q, k: q @ jnp.swapaxes(jnp.repeat(k, 2, axis=0), -1, -2),
     [(2, 2, 2), (1, 2, 2)]),
]


@pytest.mark.parametrize("name, f, shapes", FUNCTIONS, ids=[c[0] for c in FUNCTIONS])
def test_jax_own_derivatives_are_proved(name, f, shapes):
    r = sg.jax.check_function(f, shapes=shapes)
    assert r.verdict is sg.Verdict.PROVED, (name, r.verdict, r.reason)


def test_a_rounded_transcendental_constant_in_jax_own_rule_is_reported():
    # erf's derivative rule multiplies by 2/√π as a double: one ulp from the exact value
    r = sg.jax.check_function(lambda x: jax.nn.gelu(x, approximate=False), shapes=[(4,)])
    assert r.verdict is sg.Verdict.REFUTED and "float constant" in r.witness.note


@pytest.mark.parametrize("name, f, shapes", FUNCTIONS, ids=[c[0] for c in FUNCTIONS])
def test_the_primitive_table_computes_what_jax_computes(name, f, shapes):
    xs = _examples(shapes)
    n = len(shapes)

    def vjp_of(*args):
        _, pull = jax.vjp(f, *args[:n])
        return tuple(pull(args[n]))
    out = f(*xs)
    g = jnp.asarray(np.random.default_rng(1).standard_normal(out.shape))
    for fun, args, want in ((f, xs, [out]), (vjp_of, xs + [g], list(vjp_of(*xs, g)))):
        closed = prepare(_make(fun, args, name))
        got = interpret(closed, [np.array(np.asarray(a).tolist(), dtype=object) for a in args])
        for a, b in zip(got, want):
            a = np.vectorize(_float)(np.asarray(a, dtype=object))
            assert np.max(np.abs(a - np.asarray(b))) < 1e-9, name


def _float(v) -> float:
    """A value the table computed from floats; its steps (max, relu) evaluated there."""
    e = se.sympify(getattr(v, "e", v))
    while True:   # innermost steps first: a max of maxes nests them
        steps = [h for h in e.atoms(se.FunctionSymbol) if h.get_name() == "Heaviside"]
        inner = {h: se.Integer(1 if float(h.args[0]) > 0 else 0) for h in steps
                 if not h.args[0].atoms(se.FunctionSymbol)}
        if not inner:
            return float(e)
        e = e.xreplace(inner)


def test_bad_input_is_one_sentence():
    with pytest.raises(sg.InputError, match="not a jax.custom_vjp"):
        sg.jax.check_custom_vjp(jnp.tanh, shapes=[(2,)])

    def branches(x):
        return x if x.sum() > 0 else -x
    with pytest.raises(sg.InputError, match="cannot trace"):
        sg.jax.check_function(branches, shapes=[(2,)])
    with pytest.raises(sg.RuleError, match="primitive cumsum|primitive cumlogsumexp|primitive"):
        sg.jax.check_function(lambda x: jnp.cumsum(jnp.sort(x)), shapes=[(3,)])


# ----- forward-mode rules: custom_jvp and symgrad.check_jvp --------------------------------

def _tanh_jvp(right):
    f = jax.custom_jvp(jnp.tanh)

    @f.defjvp
    def rule(primals, tangents):
        (x,), (dx,) = primals, tangents
        y = jnp.tanh(x)
        return y, dx * (1 - y * y) if right else dx * (1 - y)
    return f


def _solve_lower(A, b):
    return jax.scipy.linalg.solve_triangular(A, b, lower=True)


def _triangular_solve_jvp(mask):
    """x = L⁻¹b reads only L's lower triangle, so its JVP is L⁻¹(ḃ − tril(L̇)·x); without
    the mask it is the bug of jax-ml/jax#1458 (the solve_triangular JVP behind
    scipy.linalg.solve(sym_pos=True), fixed in 2019; jax-js#84 had it again in 2026)."""
    f = jax.custom_jvp(_solve_lower)

    @f.defjvp
    def rule(primals, tangents):
        (A, b), (dA, db) = primals, tangents
        x = _solve_lower(A, b)
        dA = jnp.tril(dA) if mask else dA
        return x, _solve_lower(A, db - dA @ x)
    return f


@pytest.mark.parametrize("f, shapes, verdict", [
    (_tanh_jvp(True), [(2, 3)], sg.Verdict.PROVED),
    (_tanh_jvp(False), [(2, 3)], sg.Verdict.REFUTED),
    (_triangular_solve_jvp(True), [(2, 2), (2, 1)], sg.Verdict.PROVED),
    (_triangular_solve_jvp(False), [(2, 2), (2, 1)], sg.Verdict.REFUTED),
])
def test_custom_jvp_rules(f, shapes, verdict):
    r = sg.jax.check_custom_jvp(f, shapes=shapes)
    assert r.verdict is verdict, (r.verdict, r.reason)


def test_a_custom_jvp_refutation_names_a_point_of_x_and_its_tangent():
    r = sg.jax.check_custom_jvp(_triangular_solve_jvp(False), shapes=[(2, 2), (2, 1)])
    assert any(k.startswith("dx0") for k in r.witness.point), r.witness.point

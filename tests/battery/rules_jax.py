"""JAX's rules: primitive JVPs in jax/_src/lax/lax.py and jax/_src/lax/special.py (transposed
into VJPs: a JVP ``ẏ = J ẋ`` is linear in ẋ, its transpose is ``x̄ = Jᵀ ȳ``), linear
transpose rules, and the custom_jvp rules of jax/_src/nn/functions.py and jax/_src/lax/other.py."""
from __future__ import annotations

import math

import numpy as np

from .registry import Table, Twin, above, expand, positive

J = Table("JAX")
LAX = "jax/_src/lax/lax.py"
SPECIAL = "jax/_src/lax/special.py"
NN = "jax/_src/nn/functions.py"
V2 = [(2,)]
V3 = [(3,)]


def logistic(F, x):
    return F.sigmoid(x)


J.add("jax_exp", f"{LAX}: exp_p — mul(g, ans)", V2,
      lambda F, x: F.exp(x),
      lambda F, g, ans, x: (g * ans,),
      lambda F, g, ans, x: (g * ans * x,), "extra factor x")

J.add("jax_log", f"{LAX}: log_p — div(g, x)", V2,
      lambda F, x: F.log(x),
      lambda F, g, ans, x: (g / x,),
      lambda F, g, ans, x: (g / x ** 2,), "divides by x²", domain=positive)

J.add("jax_expm1", f"{LAX}: expm1_p — mul(g, add(ans, _one(ans)))", V2,
      lambda F, x: F.expm1(x),
      lambda F, g, ans, x: (g * (ans + 1),),
      lambda F, g, ans, x: (g * (ans - 1),), "ans - 1")

J.add("jax_expm1_highest", f"{LAX}: expm1_p (AccuracyMode.HIGHEST) — mul(g, exp(x))", V2,
      lambda F, x: F.expm1(x),
      lambda F, g, ans, x: (g * F.exp(x),),
      lambda F, g, ans, x: (g * F.expm1(x),), "expm1 instead of exp")

J.add("jax_log1p", f"{LAX}: log1p_p — div(g, add(x, _one(x)))", V2,
      lambda F, x: F.log1p(x),
      lambda F, g, ans, x: (g / (x + 1),),
      lambda F, g, ans, x: (g / (x + 2),), "x + 2", domain=lambda x: above(x, -1))

J.add("jax_tanh", f"{LAX}: tanh_p — mul(add(g, mul(g, ans)), sub(_one(x), ans))", V2,
      lambda F, x: F.tanh(x),
      lambda F, g, ans, x: ((g + g * ans) * (1 - ans),),
      lambda F, g, ans, x: ((g + g * ans) * (1 + ans),), "1 + ans")

J.add("jax_tanh_highest", f"{LAX}: tanh_p (AccuracyMode.HIGHEST) — g * 4 * logistic(2x) * "
      "logistic(-2x)",
      V2, lambda F, x: F.tanh(x),
      lambda F, g, ans, x: (g * (4 * (logistic(F, 2 * x) * logistic(F, -2 * x))),),
      lambda F, g, ans, x: (g * (2 * (logistic(F, 2 * x) * logistic(F, -2 * x))),),
      "2 instead of 4")

J.add("jax_logistic", f"{LAX}: logistic_p — mul(g, mul(ans, sub(_one(ans), ans)))", V2,
      lambda F, x: F.sigmoid(x),
      lambda F, g, ans, x: (g * (ans * (1 - ans)),),
      lambda F, g, ans, x: (g * (ans * (1 + ans)),), "1 + ans")

J.add("jax_logistic_highest", f"{LAX}: logistic_p (AccuracyMode.HIGHEST) — mul(g, mul(ans, "
      "logistic(neg(x))))",
      V2, lambda F, x: F.sigmoid(x),
      lambda F, g, ans, x: (g * (ans * logistic(F, -x)),),
      lambda F, g, ans, x: (g * (ans * logistic(F, x)),), "logistic(x) instead of logistic(-x)")

J.add("jax_cos", f"{LAX}: cos_p — neg(mul(g, sin(x)))", V2,
      lambda F, x: F.cos(x),
      lambda F, g, ans, x: (-(g * F.sin(x)),),
      lambda F, g, ans, x: (-(g * F.cos(x)),), "cos instead of sin")

J.add("jax_tan", f"{LAX}: tan_p — mul(g, add(_const(x, 1), square(ans)))", V2,
      lambda F, x: F.sin(x) / F.cos(x),
      lambda F, g, ans, x: (g * (1 + ans ** 2),),
      lambda F, g, ans, x: (g * (1 - ans ** 2),), "1 - ans² (the tanh rule)",
      note="forward written sin/cos (symgrad.fn has no tan)")

J.add("jax_sinh", f"{LAX}: sinh_p — mul(g, cosh(x))", V2,
      lambda F, x: F.sinh(x),
      lambda F, g, ans, x: (g * F.cosh(x),),
      lambda F, g, ans, x: (-g * F.cosh(x),), "sign flip")

J.add("jax_abs", f"{LAX}: _abs_jvp_rule — select(ge(x, 0), g, neg(g))", V2,
      lambda F, x: abs(x),
      lambda F, g, ans, x: (F.where(F.ge(x, 0), g, -g),),
      lambda F, g, ans, x: (F.where(F.ge(x, 0), -g, g),), "branches swapped")

J.add("jax_sqrt", f"{LAX}: sqrt_p — mul(g, div(_const(x, 0.5), ans))", V2,
      lambda F, x: F.sqrt(x),
      lambda F, g, ans, x: (g * (0.5 / ans),),
      lambda F, g, ans, x: (g * (0.5 * ans),), "multiplies by ans", domain=positive)

J.add("jax_rsqrt", f"{LAX}: rsqrt_p — mul(g, mul(_const(x, -0.5), div(ans, x)))", V2,
      lambda F, x: 1 / F.sqrt(x),
      lambda F, g, ans, x: (g * (-0.5 * (ans / x)),),
      lambda F, g, ans, x: (g * (-0.5 * (ans * x)),), "ans * x", domain=positive)

J.add("jax_cbrt", f"{LAX}: cbrt_p — mul(g, mul(_const(x, 1 / 3), integer_pow(ans, -2)))", V2,
      lambda F, x: x ** F.rational(1, 3),
      lambda F, g, ans, x: (g * (F.rational(1, 3) * ans ** -2),),
      lambda F, g, ans, x: (g * (F.rational(1, 3) * ans ** -1),), "ans**-1", domain=positive,
      note="1/3 written exactly; _const(x, 1 / 3) is the double, the one-ulp twin",
      extra=[Twin("_const(x, 1 / 3) as a double",
                  lambda F, g, ans, x: (g * ((1 / 3) * ans ** -2),), ulp=True, label="one_ulp")])

J.add("jax_square", f"{LAX}: square_p — mul(g, mul(_const(x, 2), x))", V2,
      lambda F, x: x * x,
      lambda F, g, ans, x: (g * (2 * x),),
      lambda F, g, ans, x: (g * (2 * ans),), "ans instead of x")

J.add("jax_integer_pow", f"{LAX}: _integer_pow_jvp (y=3) — mul(g, mul(_const(x, y), "
      "integer_pow(x, y - 1)))",
      V2, lambda F, x: x ** 3,
      lambda F, g, ans, x: (g * (3 * x ** (3 - 1)),),
      lambda F, g, ans, x: (g * (3 * x ** 3),), "x**y instead of x**(y - 1)")

J.add("jax_pow", f"{LAX}: _pow_jvp_lhs / _pow_jvp_rhs — y * pow(x, y - 1), log(_replace_zero(x)) "
      "* ans",
      [(2,), (2,)],
      lambda F, x, y: x ** y,
      lambda F, g, ans, x, y: (g * (y * x ** (y - 1)), g * (F.log(x) * ans)),
      lambda F, g, ans, x, y: (g * (y * x ** (y - 1)), g * (F.log(x) * x)), "x instead of ans",
      domain=lambda x, y: positive(x))

J.add("jax_div", f"{LAX}: div_p — div(g, y), mul(mul(neg(g), x), integer_pow(y, -2))", [(2,), (2,)],
      lambda F, x, y: x / y,
      lambda F, g, ans, x, y: (g / y, (-g * x) * y ** -2),
      lambda F, g, ans, x, y: (g / y, (-g * x) * y ** -1), "integer_pow(y, -1)")


def _balanced_eq(F, x, z, y):
    """lax._balanced_eq: select(eq(x, z), 1, 0) / select(eq(y, z), 2, 1)."""
    return F.where(F.eq(x, z), 1, 0) / F.where(F.eq(y, z), 2, 1)


J.add("jax_max", f"{LAX}: max_p — mul(g, _balanced_eq(x, ans, y))", [(2,), (2,)],
      lambda F, x, y: F.maximum(x, y),
      lambda F, g, ans, x, y: (g * _balanced_eq(F, x, ans, y), g * _balanced_eq(F, y, ans, x)),
      lambda F, g, ans, x, y: (g * _balanced_eq(F, y, ans, x), g * _balanced_eq(F, x, ans, y)),
      "operands swapped")

J.add("jax_min", f"{LAX}: min_p — mul(g, _balanced_eq(x, ans, y))", [(2,), (2,)],
      lambda F, x, y: F.minimum(x, y),
      lambda F, g, ans, x, y: (g * _balanced_eq(F, x, ans, y), g * _balanced_eq(F, y, ans, x)),
      lambda F, g, ans, x, y: (g * _balanced_eq(F, y, ans, x), g * _balanced_eq(F, x, ans, y)),
      "operands swapped")


def _clamp_vjp(operand_checks_max=True):
    def vjp(F, g, ans, lo, x, hi):
        zero = 0 * g
        g_lo = F.where(F.gt(lo, x), F.where(F.lt(lo, hi), g, zero), zero)
        inner = F.where(F.lt(x, hi), g, zero) if operand_checks_max else g
        g_x = F.where(F.gt(x, lo), inner, zero)
        g_hi = F.where(F.lt(hi, x), g, zero)
        return (g_lo, g_x, g_hi)
    return vjp


J.add("jax_clamp", f"{LAX}: clamp_p — select(min > operand & min < max, g, 0), "
      "select(operand > min & operand < max, g, 0), select(max < operand, g, 0)",
      [(2,), (2,), (2,)],
      lambda F, lo, x, hi: F.clamp(x, lo, hi),
      _clamp_vjp(), _clamp_vjp(False), "operand's upper check dropped",
      names=("lo", "x", "hi"), domain=lambda lo, x, hi: [b - a > 0 for a, b in zip(lo, hi)],
      note="the & of two comparisons is written as nested selects; min < max is declared")


def _reduce_max_vjp(F, g, ans, x):
    location_indicators = F.where(F.eq(x, ans), 1, 0)
    counts = location_indicators.sum()
    return (expand(g, x.shape) * location_indicators / counts,)


J.add("jax_reduce_max", f"{LAX}: _reduce_chooser_jvp_rule — reduce_sum(g * location_indicators) "
      "/ counts",
      V3, lambda F, x: np.array(F.maximum(F.maximum(x[0], x[1]), x[2]), dtype=object),
      _reduce_max_vjp,
      lambda F, g, ans, x: (expand(g, x.shape),), "every entry gets g")

J.add("jax_reduce_sum", f"{LAX}: _reduce_sum_transpose_rule — broadcast_in_dim(ct), axes=(1,)",
      [(2, 3)],
      lambda F, x: x.sum(axis=1),
      lambda F, g, ans, x: (expand(g[:, None], x.shape),),
      lambda F, g, ans, x: (expand(g[:, None], x.shape) / 3,), "divided by the axis size")

J.add("jax_cumsum", "jax/_src/lax/control_flow/loops.py: _cumsum_transpose_rule — cumsum(t, "
      "reverse=not reverse)",
      V3, lambda F, x: np.cumsum(x),
      lambda F, g, ans, x: (np.cumsum(g[::-1])[::-1],),
      lambda F, g, ans, x: (np.cumsum(g),), "reverse flag not flipped")

J.add("jax_dot_general", f"{LAX}: _dot_general_transpose_lhs / _rhs (matmul)", [(2, 2), (2, 2)],
      lambda F, a, b: a @ b,
      lambda F, g, ans, a, b: (g @ b.T, a.T @ g),
      lambda F, g, ans, a, b: (g @ b.T, g @ a.T), "product order reversed for rhs",
      names=("a", "b"))

J.add("jax_dot_general_rect", f"{LAX}: _dot_general_transpose_lhs / _rhs (2x3 @ 3x2)",
      [(2, 3), (3, 2)],
      lambda F, a, b: a @ b,
      lambda F, g, ans, a, b: (g @ b.T, a.T @ g),
      lambda F, g, ans, a, b: ((g @ b.T)[::-1], a.T @ g), "lhs cotangent rows reversed",
      names=("a", "b"))

J.add("jax_transpose", f"{LAX}: transpose_p — transpose(t, np.argsort(permutation))", [(2, 2, 2)],
      lambda F, x: np.transpose(x, (2, 0, 1)).copy(),
      lambda F, g, ans, x: (np.transpose(g, np.argsort((2, 0, 1))),),
      lambda F, g, ans, x: (np.transpose(g, (2, 0, 1)),), "permutation not inverted")

J.add("jax_rev", f"{LAX}: rev_p — rev(t, dimensions)", [(2, 3)],
      lambda F, x: x[:, ::-1].copy(),
      lambda F, g, ans, x: (g[:, ::-1],),
      lambda F, g, ans, x: (g[::-1, :],), "reversed along the other dimension")

J.add("jax_erf", f"{SPECIAL}: erf_p — mul(_const(x, 2. / np.sqrt(np.pi)), mul(g, "
      "exp(neg(square(x)))))",
      V2, lambda F, x: F.erf(x),
      lambda F, g, ans, x: ((2 / F.sqrt(F.pi)) * (g * F.exp(-(x * x))),),
      lambda F, g, ans, x: ((2 / F.sqrt(F.pi)) * (g * F.exp(-x)),), "exp(-x) instead of exp(-x²)",
      extra=[Twin("2. / np.sqrt(np.pi) as a double",
                  lambda F, g, ans, x: ((2. / math.sqrt(math.pi)) * (g * F.exp(-(x * x))),),
                  ulp=True, label="one_ulp")])

J.add("jax_erfc", f"{SPECIAL}: erfc_p — mul(_const(x, -2. / np.sqrt(np.pi)), mul(g, "
      "exp(neg(square(x)))))",
      V2, lambda F, x: F.erfc(x),
      lambda F, g, ans, x: ((-2 / F.sqrt(F.pi)) * (g * F.exp(-(x * x))),),
      lambda F, g, ans, x: ((2 / F.sqrt(F.pi)) * (g * F.exp(-(x * x))),), "sign flip",
      extra=[Twin("-2. / np.sqrt(np.pi) as a double",
                  lambda F, g, ans, x: ((-2. / math.sqrt(math.pi)) * (g * F.exp(-(x * x))),),
                  ulp=True, label="one_ulp")])

J.add("jax_exp2", f"{LAX}: exp2_p — mul(log(_const(x, 2)), mul(g, ans))", V2,
      lambda F, x: 2 ** x,
      lambda F, g, ans, x: (F.log(2) * (g * ans),),
      lambda F, g, ans, x: (g * ans,), "drops log 2",
      note="log(_const(x, 2)) is evaluated in floating point by XLA: the one-ulp twin",
      extra=[Twin("log 2 as a double", lambda F, g, ans, x: (math.log(2) * (g * ans),),
                  ulp=True, label="one_ulp")])

# ----- jax.nn custom_jvp rules and composites -----

J.add("jax_nn_relu", f"{NN}: relu.defjvps — select(x > 0, g, 0)", V2,
      lambda F, x: F.maximum(x, 0),
      lambda F, g, ans, x: (F.where(F.gt(x, 0), g, 0 * g),),
      lambda F, g, ans, x: (F.where(F.lt(x, 0), g, 0 * g),), "selects x < 0")

J.add("jax_nn_relu6", f"{NN}: relu6.defjvps — select((x > 0) & (x < 6), g, 0)", V2,
      lambda F, x: F.minimum(F.maximum(x, 0), 6.0),
      lambda F, g, ans, x: (F.where(F.gt(x, 0), F.where(F.lt(x, 6), g, 0 * g), 0 * g),),
      lambda F, g, ans, x: (F.where(F.lt(x, 6), g, 0 * g),), "x > 0 dropped")


def _log1mexp_forward(F, x):
    c = math.log(2.0)           # jnp.log(2.0), a double
    return F.where(F.lt(x, c), F.log(-F.expm1(-x)), F.log1p(-F.exp(-x)))


J.add("jax_nn_log1mexp", f"{NN}: log1mexp.defjvps — g / jnp.expm1(x)", V2,
      _log1mexp_forward,
      lambda F, g, ans, x: (g / F.expm1(x),),
      lambda F, g, ans, x: (g / F.exp(x),), "exp instead of expm1", domain=positive)


def _softplus_forward(F, x):     # jax.nn.softplus = logaddexp(x, 0), lax/other.py's form
    amax = F.maximum(x, 0)
    return amax + F.log1p(F.exp(-abs(x - 0)))


J.add("jax_nn_softplus", "jax/_src/lax/other.py: _logaddexp_jvp — t1 * exp(x1 - primal_out) "
      f"(jax.nn.softplus = logaddexp(x, 0), {NN})", V2,
      _softplus_forward,
      lambda F, g, ans, x: (g * F.exp(x - ans),),
      lambda F, g, ans, x: (g * F.exp(-ans),), "exp(0 - primal_out): the other operand's term")

J.add("jax_nn_softmax", f"{NN}: _softmax_jvp — y * (x_dot - (y * x_dot).sum(axis)), transposed",
      [(2, 3)],
      lambda F, x: F.exp(x) / F.exp(x).sum(axis=-1, keepdims=True),
      lambda F, g, y, x: (y * g - y * (y * g).sum(axis=-1, keepdims=True),),
      lambda F, g, y, x: (y * g - (y * g).sum(axis=-1, keepdims=True),), "sum not multiplied by y")

_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)   # np.sqrt(2 / np.pi)


def _jax_gelu_forward(F, x):
    cdf = 0.5 * (1.0 + F.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * (x ** 3))))
    return x * cdf


def _jax_gelu_vjp(tanh_rule_sign):
    """The VJP JAX derives for jax.nn.gelu(approximate=True): the transposes of mul, add,
    integer_pow (mul(g, mul(_const(x, 3), integer_pow(x, 2)))) and tanh_p, chained."""
    def vjp(F, g, y, x):
        u = _SQRT_2_OVER_PI * (x + 0.044715 * (x ** 3))
        t = F.tanh(u)
        cdf = 0.5 * (1.0 + t)
        ct_cdf = g * x
        ct_t = ct_cdf * 0.5
        ct_u = (ct_t + ct_t * t) * (1 + tanh_rule_sign * t)          # tanh_p
        ct_inner = ct_u * _SQRT_2_OVER_PI
        ct_cube = ct_inner * 0.044715
        return (g * cdf + ct_inner + ct_cube * (3 * x ** 2),)        # integer_pow_p, y=3
    return vjp


J.add("jax_nn_gelu_tanh", f"{NN}: gelu(approximate=True), differentiated through {LAX} tanh_p, "
      "integer_pow_p, mul_p", V2,
      _jax_gelu_forward, _jax_gelu_vjp(-1), _jax_gelu_vjp(1), "tanh rule with 1 + ans",
      note="np.sqrt(2 / np.pi) is the same double in forward and rule; 0.044715 meets the "
           "cotangent before the 3 of integer_pow, so nothing is folded")

RULES = J.rules

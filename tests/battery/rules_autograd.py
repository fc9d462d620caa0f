"""HIPS autograd's VJP rules: autograd/numpy/numpy_vjps.py, autograd/numpy/linalg.py and
autograd/scipy/special.py, translated formula by formula (``ans`` is the forward's value)."""
from __future__ import annotations

import math

import numpy as np

from .registry import Table, Twin, above, between, expand, nonzero, positive

A = Table("HIPS autograd")
NV = "autograd/numpy/numpy_vjps.py"
SP = "autograd/scipy/special.py"
LA = "autograd/numpy/linalg.py"
V2 = [(2,)]
V3 = [(3,)]
INV_ROOT_PI = 0.56418958354775627928   # autograd/scipy/special.py


def balanced_eq(F, x, z, y):
    """numpy_vjps.balanced_eq: (x == z) / (1.0 + (x == y))."""
    return F.where(F.eq(x, z), 1, 0) / (1.0 + F.where(F.eq(x, y), 1, 0))


def replace_zero(F, x, val):
    """numpy_vjps.replace_zero: anp.where(x, x, val)."""
    return F.where(F.ne(x, 0), x, val)


# ----- binary ufuncs -----

A.add("autograd_divide", f"{NV}: anp.divide — g / y, - g * x / y**2", [(2,), (2,)],
      lambda F, x, y: x / y,
      lambda F, g, ans, x, y: (g / y, -g * x / y ** 2),
      lambda F, g, ans, x, y: (g / y, g * x / y ** 2), "sign of the y cotangent")

A.add("autograd_subtract", f"{NV}: anp.subtract — g, -g", [(2,), (2,)],
      lambda F, x, y: x - y,
      lambda F, g, ans, x, y: (g, -g),
      lambda F, g, ans, x, y: (g, g), "sign of the y cotangent")

A.add("autograd_maximum", f"{NV}: anp.maximum — g * balanced_eq(x, ans, y)", [(2,), (2,)],
      lambda F, x, y: F.maximum(x, y),
      lambda F, g, ans, x, y: (g * balanced_eq(F, x, ans, y), g * balanced_eq(F, y, ans, x)),
      lambda F, g, ans, x, y: (g * balanced_eq(F, y, ans, x), g * balanced_eq(F, x, ans, y)),
      "operands swapped in balanced_eq")

A.add("autograd_minimum", f"{NV}: anp.minimum — g * balanced_eq(x, ans, y)", [(2,), (2,)],
      lambda F, x, y: F.minimum(x, y),
      lambda F, g, ans, x, y: (g * balanced_eq(F, x, ans, y), g * balanced_eq(F, y, ans, x)),
      lambda F, g, ans, x, y: (g * balanced_eq(F, y, ans, x), g * balanced_eq(F, x, ans, y)),
      "operands swapped in balanced_eq")

A.add("autograd_logaddexp", f"{NV}: anp.logaddexp — g * exp(x - ans)", [(2,), (2,)],
      lambda F, x, y: F.log(F.exp(x) + F.exp(y)),
      lambda F, g, ans, x, y: (g * F.exp(x - ans), g * F.exp(y - ans)),
      lambda F, g, ans, x, y: (g * F.exp(ans - x), g * F.exp(ans - y)), "exp(ans - x)")

A.add("autograd_power", f"{NV}: anp.power — g * y * x ** where(y, y - 1, 1.), "
      "g * log(replace_zero(x, 1.)) * ans", [(2,), (2,)],
      lambda F, x, y: x ** y,
      lambda F, g, ans, x, y: (g * y * x ** F.where(F.ne(y, 0), y - 1, 1.0),
                               g * F.log(replace_zero(F, x, 1.0)) * ans),
      lambda F, g, ans, x, y: (g * y * x ** F.where(F.ne(y, 0), y - 1, 1.0),
                               g * F.log(replace_zero(F, x, 1.0))), "y cotangent drops ans",
      domain=lambda x, y: positive(x))

A.add("autograd_hypot", f"{NV}: anp.hypot — g * x / ans, g * y / ans", [(2,), (2,)],
      lambda F, x, y: F.sqrt(x * x + y * y),
      lambda F, g, ans, x, y: (g * x / ans, g * y / ans),
      lambda F, g, ans, x, y: (g * y / ans, g * x / ans), "operands swapped")

# ----- simple grads -----

A.add("autograd_abs", f"{NV}: anp.abs — g * replace_zero(conj(x), 0.) / replace_zero(ans, 1.)", V2,
      lambda F, x: abs(x),
      lambda F, g, ans, x: (g * replace_zero(F, x, 0.0) / replace_zero(F, ans, 1.0),),
      lambda F, g, ans, x: (g * replace_zero(F, x, 0.0),), "divisor dropped")

A.add("autograd_fabs", f"{NV}: anp.fabs — anp.sign(x) * g", V2,
      lambda F, x: abs(x),
      lambda F, g, ans, x: (F.sign(x) * g,),
      lambda F, g, ans, x: (-F.sign(x) * g,), "sign flip")

A.add("autograd_reciprocal", f"{NV}: anp.reciprocal — -g / x**2", V2,
      lambda F, x: 1 / x,
      lambda F, g, ans, x: (-g / x ** 2,),
      lambda F, g, ans, x: (g / x ** 2,), "sign flip")

A.add("autograd_exp2", f"{NV}: anp.exp2 — ans * anp.log(2) * g", V2,
      lambda F, x: 2 ** x,
      lambda F, g, ans, x: (ans * F.log(2) * g,),
      lambda F, g, ans, x: (ans * g,), "drops log 2",
      extra=[Twin("anp.log(2) as a double", lambda F, g, ans, x: (ans * math.log(2) * g,),
                  ulp=True, label="one_ulp")])

A.add("autograd_log2", f"{NV}: anp.log2 — g / x / anp.log(2)", V2,
      lambda F, x: F.log(x) / F.log(2),
      lambda F, g, ans, x: (g / x / F.log(2),),
      lambda F, g, ans, x: (g / x * F.log(2),), "multiplies by log 2", domain=positive,
      extra=[Twin("anp.log(2) as a double", lambda F, g, ans, x: (g / x / math.log(2),),
                  ulp=True, label="one_ulp")])

A.add("autograd_log10", f"{NV}: anp.log10 — g / x / anp.log(10)", V2,
      lambda F, x: F.log(x) / F.log(10),
      lambda F, g, ans, x: (g / x / F.log(10),),
      lambda F, g, ans, x: (g / x,), "drops log 10", domain=positive,
      extra=[Twin("anp.log(10) as a double", lambda F, g, ans, x: (g / x / math.log(10),),
                  ulp=True, label="one_ulp")])

A.add("autograd_log1p", f"{NV}: anp.log1p — g / (x + 1)", V2,
      lambda F, x: F.log1p(x),
      lambda F, g, ans, x: (g / (x + 1),),
      lambda F, g, ans, x: (g / x,), "drops the + 1", domain=lambda x: above(x, -1))

A.add("autograd_expm1", f"{NV}: anp.expm1 — (ans + 1) * g", V2,
      lambda F, x: F.expm1(x),
      lambda F, g, ans, x: ((ans + 1) * g,),
      lambda F, g, ans, x: (ans * g,), "drops the + 1")

A.add("autograd_sin", f"{NV}: anp.sin — g * anp.cos(x)", V2,
      lambda F, x: F.sin(x),
      lambda F, g, ans, x: (g * F.cos(x),),
      lambda F, g, ans, x: (g * F.sin(x),), "sin instead of cos")

A.add("autograd_cosh", f"{NV}: anp.cosh — g * anp.sinh(x)", V2,
      lambda F, x: F.cosh(x),
      lambda F, g, ans, x: (g * F.sinh(x),),
      lambda F, g, ans, x: (g * F.cosh(x),), "cosh instead of sinh")

A.add("autograd_tanh", f"{NV}: anp.tanh — g / anp.cosh(x) ** 2", V2,
      lambda F, x: F.tanh(x),
      lambda F, g, ans, x: (g / F.cosh(x) ** 2,),
      lambda F, g, ans, x: (g / F.cosh(x),), "cosh instead of cosh²")

A.add("autograd_arctanh", f"{NV}: anp.arctanh — g / (1 - x**2)", V2,
      lambda F, x: 0.5 * F.log((1 + x) / (1 - x)),
      lambda F, g, ans, x: (g / (1 - x ** 2),),
      lambda F, g, ans, x: (g / (1 + x ** 2),), "the arctan rule",
      domain=lambda x: between(x, -1, 1), note="forward written ½·log((1+x)/(1-x))")

A.add("autograd_square", f"{NV}: anp.square — g * 2 * x", V2,
      lambda F, x: x * x,
      lambda F, g, ans, x: (g * 2 * x,),
      lambda F, g, ans, x: (g * x,), "drops the 2")

A.add("autograd_sqrt", f"{NV}: anp.sqrt — g * 0.5 * x**-0.5", V2,
      lambda F, x: F.sqrt(x),
      lambda F, g, ans, x: (g * 0.5 * x ** -0.5,),
      lambda F, g, ans, x: (g * 0.5 * x ** 0.5,), "x**0.5 instead of x**-0.5", domain=positive)


def _rad2deg_forward_numpy(F, x):
    return x * (180.0 / math.pi)     # numpy's rad2deg: x * (180.0 / NPY_PI), one double


A.add("autograd_rad2deg", f"{NV}: anp.rad2deg — g / anp.pi * 180.0", V2,
      lambda F, x: x / F.pi * 180,
      lambda F, g, ans, x: (g / F.pi * 180.0,),
      lambda F, g, ans, x: (g * F.pi / 180.0,), "the deg2rad rule",
      note="pi written exactly; with numpy's double pi, g / pi * 180.0 and the forward's "
           "constant 180.0 / pi round differently",
      extra=[Twin("g / anp.pi * 180.0 against numpy's 180 / pi constant",
                  lambda F, g, ans, x: (g / math.pi * 180.0,), forward=_rad2deg_forward_numpy,
                  ulp=True, label="one_ulp")])


def _sinc_forward(F, x):
    return F.sin(math.pi * x) / (math.pi * x)


A.add("autograd_sinc", f"{NV}: anp.sinc — g * (cos(pi x) * pi * x - sin(pi x)) / (pi * x**2)", V2,
      _sinc_forward,
      lambda F, g, ans, x: (g * (F.cos(math.pi * x) * math.pi * x - F.sin(math.pi * x))
                            / (math.pi * x ** 2),),
      lambda F, g, ans, x: (g * F.cos(math.pi * x) * math.pi * x / (math.pi * x ** 2),),
      "drops - sin(pi x)",
      note="numpy's pi (a double) appears inside sin and cos, identically in forward and rule")

A.add("autograd_clip", f"{NV}: anp.clip — g * logical_and(ans != a_min, ans != a_max)", V2,
      lambda F, x: F.clamp(x, -0.5, 1.5),
      lambda F, g, ans, x: (F.where(F.ne(ans, -0.5), F.where(F.ne(ans, 1.5), g, 0), 0),),
      lambda F, g, ans, x: (F.where(F.ne(ans, -0.5), g, 0),), "a_max not checked",
      note="a_min=-0.5, a_max=1.5")

A.add("autograd_cross", f"{NV}: anp.cross — cross(b, g), cross(g, a)", [(3,), (3,)],
      lambda F, a, b: np.cross(a, b),
      lambda F, g, ans, a, b: (np.cross(b, g), np.cross(g, a)),
      lambda F, g, ans, a, b: (np.cross(g, b), np.cross(g, a)), "cross(g, b): sign",
      names=("a", "b"))

A.add("autograd_diff", f"{NV}: grad_diff — concatenate((-g[:1], -diff(g), g[-1:]))", V3,
      lambda F, x: np.diff(x),
      lambda F, g, ans, x: (np.concatenate((-g[:1], -np.diff(g), g[-1:])),),
      lambda F, g, ans, x: (np.concatenate((g[:1], -np.diff(g), g[-1:])),), "first entry's sign")

A.add("autograd_roll", f"{NV}: anp.roll — anp.roll(g, -shift)", V3,
      lambda F, x: np.roll(x, 1),
      lambda F, g, ans, x: (np.roll(g, -1),),
      lambda F, g, ans, x: (np.roll(g, 1),), "rolled by +shift")

A.add("autograd_rot90", f"{NV}: anp.rot90 — anp.rot90(g, -k)", [(2, 2)],
      lambda F, x: np.rot90(x).copy(),
      lambda F, g, ans, x: (np.rot90(g, -1).copy(),),
      lambda F, g, ans, x: (np.rot90(g, 1).copy(),), "rotated by +k")

A.add("autograd_transpose", f"{NV}: grad_transpose — anp.transpose(g, argsort(axes))", [(2, 2, 2)],
      lambda F, x: np.transpose(x, (1, 2, 0)).copy(),
      lambda F, g, ans, x: (np.transpose(g, np.argsort((1, 2, 0))),),
      lambda F, g, ans, x: (np.transpose(g, (1, 2, 0)),), "axes not argsorted")

A.add("autograd_moveaxis", f"{NV}: anp.moveaxis — anp.moveaxis(g, destination, source)",
      [(2, 2, 2)],
      lambda F, x: np.moveaxis(x, 0, 2).copy(),
      lambda F, g, ans, x: (np.moveaxis(g, 2, 0),),
      lambda F, g, ans, x: (np.moveaxis(g, 0, 2),), "source and destination not swapped")

A.add("autograd_triu", f"{NV}: anp.triu — anp.triu(g, k)", [(2, 2)],
      lambda F, x: np.triu(x),
      lambda F, g, ans, x: (np.triu(g),),
      lambda F, g, ans, x: (np.tril(g),), "tril instead of triu")

A.add("autograd_trace", f"{NV}: anp.trace — einsum('ij,...->ij...', eye(n, m, k=offset), g)",
      [(2, 2)],
      lambda F, x: np.array(np.trace(x), dtype=object),
      lambda F, g, ans, x: (np.eye(2, dtype=object) * g,),
      lambda F, g, ans, x: (np.ones((2, 2), dtype=object) * g,), "ones instead of eye")

A.add("autograd_diag", f"{NV}: anp.diag — anp.diag(g, k)", V2,
      lambda F, x: np.diag(x),
      lambda F, g, ans, x: (np.diag(g).copy(),),
      lambda F, g, ans, x: (g.sum(axis=1),), "row sums instead of the diagonal")

A.add("autograd_repeat", f"{NV}: grad_repeat — reshape(g, shape[:axis+1] + (repeats,)).sum(axis+1)",
      V2, lambda F, x: np.repeat(x, 2),
      lambda F, g, ans, x: (g.reshape(2, 2).sum(axis=1),),
      lambda F, g, ans, x: (g.reshape(2, 2).sum(axis=0),), "summed over the wrong axis (tile's)",
      note="repeats=2, axis=None on a vector")

A.add("autograd_tile", f"{NV}: grad_tile — sum(anp.split(g, rep, axis))", V2,
      lambda F, x: np.tile(x, 2),
      lambda F, g, ans, x: (sum(np.split(g, 2, 0)),),
      lambda F, g, ans, x: (g.reshape(2, 2).sum(axis=1),), "repeat's reduction")

# ----- reductions -----

A.add("autograd_sum", f"{NV}: grad_np_sum — repeat_to_match_shape(g, shape, axis=0)", [(2, 2)],
      lambda F, x: x.sum(axis=0),
      lambda F, g, ans, x: (expand(g.reshape(1, 2), x.shape),),
      lambda F, g, ans, x: (expand(g.reshape(2, 1), x.shape),), "reshaped along the wrong axis")

A.add("autograd_mean", f"{NV}: grad_np_mean — g_repeated / num_reps, axis=0", [(2, 3)],
      lambda F, x: x.sum(axis=0) / 2,
      lambda F, g, ans, x: (expand(g.reshape(1, 3), x.shape) / 2,),
      lambda F, g, ans, x: (expand(g.reshape(1, 3), x.shape) / 6,), "divides by numel")


def _var_fwd(x, axis, ddof):
    n = x.shape[axis] if axis is not None else x.size
    m = x.sum(axis=axis, keepdims=True) / n
    return ((x - m) ** 2).sum(axis=axis) / (n - ddof), m


def _np_var_vjp(ddof_used):
    def vjp(F, g, ans, x):
        _, m = _var_fwd(x, 1, 1)
        g_repeated = expand(g.reshape(2, 1), x.shape)
        return (2.0 * g_repeated * (x - m) / (3 - ddof_used),)
    return vjp


A.add("autograd_var", f"{NV}: grad_np_var — 2.0 * g_repeated * (x - mean) / (num_reps - ddof)",
      [(2, 3)], lambda F, x: _var_fwd(x, 1, 1)[0], _np_var_vjp(1), _np_var_vjp(0),
      "ddof ignored", note="ddof=1, axis=1")


def _np_std_vjp(extra_two):
    def vjp(F, g, ans, x):
        _, m = _var_fwd(x, None, 0)
        g_repeated = expand(g / ans, x.shape)
        return ((2.0 if extra_two else 1) * g_repeated * (x - m) / (3 - 0),)
    return vjp


A.add("autograd_std", f"{NV}: grad_np_std — (g / ans)_repeated * (x - mean) / (num_reps - ddof)",
      V3, lambda F, x: np.array(F.sqrt(_var_fwd(x, None, 0)[0]), dtype=object),
      _np_std_vjp(False), _np_std_vjp(True), "var's 2.0 kept", note="ddof=0, axis=None")

A.add("autograd_prod", f"{NV}: grad_np_prod — repeat(g * ans) / x", V3,
      lambda F, x: np.array(x[0] * x[1] * x[2], dtype=object),
      lambda F, g, ans, x: (expand(g * ans, x.shape) / x,),
      lambda F, g, ans, x: (expand(g, x.shape) / x,), "ans dropped", domain=nonzero,
      note="right only where no entry is 0: at a zero entry the division is undefined (NaN "
           "in floats) while the product's gradient is not — symgrad REFUTES it on the "
           "whole domain (tests/test_singular.py)")


def _max3(F, x):
    return np.array(F.maximum(F.maximum(x[0], x[1]), x[2]), dtype=object)


A.add("autograd_max", f"{NV}: grad_chooser — g_repeated * (x == ans) / sum(x == ans)", V3,
      _max3,
      lambda F, g, ans, x: (expand(g, x.shape) * F.where(F.eq(x, ans), 1, 0)
                            / F.where(F.eq(x, ans), 1, 0).sum(),),
      lambda F, g, ans, x: (expand(g, x.shape) / 3,), "spread evenly (mean's rule)")

A.add("autograd_cumsum", f"{NV}: grad_np_cumsum — reshape(cumsum(g[::-1], axis)[::-1], x.shape)",
      V3, lambda F, x: np.cumsum(x),
      lambda F, g, ans, x: (np.cumsum(g[::-1])[::-1],),
      lambda F, g, ans, x: (np.cumsum(g[::-1]),), "not reversed back")

A.add("autograd_logsumexp", f"{SP}: make_grad_logsumexp — g_repeated * b * exp(x - ans_repeated)",
      [(2, 3)],
      lambda F, x: F.log(F.exp(x).sum(axis=-1)),
      lambda F, g, ans, x: (g[:, None] * 1.0 * F.exp(x - ans[:, None]),),
      lambda F, g, ans, x: (g[:, None] * 1.0 * F.exp(ans[:, None] - x),), "exp(ans - x)",
      note="axis=-1, b=1.0")

# ----- linear algebra -----

A.add("autograd_matmul", f"{NV}: grad_matmul — tensordot_adjoint_0 / _1 (2-D)", [(2, 2), (2, 2)],
      lambda F, a, b: a @ b,
      lambda F, g, ans, a, b: (g @ b.T, a.T @ g),
      lambda F, g, ans, a, b: (g @ b.T, a @ g), "A not transposed", names=("a", "b"))

A.add("autograd_einsum", f"{NV}: grad_einsum — 'ij,jk->ik': einsum('ik,jk->ij', g, B), "
      "einsum('ik,ij->jk', g, A)",
      [(2, 2), (2, 2)],
      lambda F, a, b: np.einsum("ij,jk->ik", a, b),
      lambda F, g, ans, a, b: (np.einsum("ik,jk->ij", g, b), np.einsum("ik,ij->jk", g, a)),
      lambda F, g, ans, a, b: (np.einsum("ik,kj->ij", g, b), np.einsum("ik,ij->jk", g, a)),
      "'ik,kj->ij': B's subscripts swapped", names=("a", "b"))

A.add("autograd_dot", f"{NV}: dot_adjoint_0 / dot_adjoint_1 (vectors)", [(3,), (3,)],
      lambda F, a, b: np.array(np.dot(a, b), dtype=object),
      lambda F, g, ans, a, b: (g * b, g * a),
      lambda F, g, ans, a, b: (g * a, g * b), "operands swapped", names=("a", "b"))

A.add("autograd_norm", f"{LA}: norm_vjp (ord=None) — expand(g / ans) * conj(x)", V3,
      lambda F, x: np.array(F.sqrt((x * x).sum()), dtype=object),
      lambda F, g, ans, x: (expand(g / ans, x.shape) * x,),
      lambda F, g, ans, x: (expand(g, x.shape) * x,), "drops / ans")

A.add("autograd_norm_ord4", f"{LA}: norm_vjp (ord=4) — expand(g / ans**(ord - 1)) * x * "
      "|x|**(ord - 2)",
      V3, lambda F, x: np.array(((abs(x) ** 4).sum()) ** (1.0 / 4), dtype=object),
      lambda F, g, ans, x: (expand(g / ans ** (4 - 1), x.shape) * x * abs(x) ** (4 - 2),),
      lambda F, g, ans, x: (expand(g / ans ** 4, x.shape) * x * abs(x) ** (4 - 2),),
      "ans**ord instead of ans**(ord - 1)",
      note="the forward's root 1.0 / 4 = 0.25 is exact in double")

# ----- scipy.special -----

A.add("autograd_erf", f"{SP}: erf — 2.0 * g * inv_root_pi * np.exp(-(x**2))", V2,
      lambda F, x: F.erf(x),
      lambda F, g, ans, x: (2.0 * g / F.sqrt(F.pi) * F.exp(-(x ** 2)),),
      lambda F, g, ans, x: (g / F.sqrt(F.pi) * F.exp(-(x ** 2)),), "drops the 2.0",
      extra=[Twin("inv_root_pi = 0.56418958354775627928 as a double",
                  lambda F, g, ans, x: (2.0 * g * INV_ROOT_PI * F.exp(-(x ** 2)),),
                  ulp=True, label="one_ulp")])

A.add("autograd_erfc", f"{SP}: erfc — -2.0 * g * inv_root_pi * np.exp(-(x**2))", V2,
      lambda F, x: F.erfc(x),
      lambda F, g, ans, x: (-2.0 * g / F.sqrt(F.pi) * F.exp(-(x ** 2)),),
      lambda F, g, ans, x: (2.0 * g / F.sqrt(F.pi) * F.exp(-(x ** 2)),), "sign flip",
      extra=[Twin("inv_root_pi as a double",
                  lambda F, g, ans, x: (-2.0 * g * INV_ROOT_PI * F.exp(-(x ** 2)),),
                  ulp=True, label="one_ulp")])

A.add("autograd_logit", f"{SP}: logit — g / (x * (1 - x))", V2,
      lambda F, x: F.log(x / (1 - x)),
      lambda F, g, ans, x: (g / (x * (1 - x)),),
      lambda F, g, ans, x: (g / (1 - x),), "drops x", domain=lambda x: between(x, 0, 1))

A.add("autograd_expit", f"{SP}: expit — g * ans * (1 - ans)", V2,
      lambda F, x: F.sigmoid(x),
      lambda F, g, ans, x: (g * ans * (1 - ans),),
      lambda F, g, ans, x: (g * ans,), "drops (1 - ans)")

RULES = A.rules

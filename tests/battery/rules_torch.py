"""PyTorch's VJP rules: tools/autograd/derivatives.yaml, torch/csrc/autograd/FunctionsManual.cpp
and the ATen CPU backward kernels they call, translated formula by formula.

Conventions: ``g`` is ``grad``, ``y`` is ``result``; a library float constant is written as
the library writes it and meets the symbolic value first (``kKappa * x_sq * 3``, not
``3 * kKappa * x_sq``); where the library folds constants in double before they meet the
tensor, the correct rule is written exactly and the library's spelling is kept as a
``ulp=True`` twin.
"""
from __future__ import annotations

import math

import numpy as np

from .registry import (M_2_SQRTPI, M_180_PI, M_LN2, M_LN10, M_PI_180, M_SQRT1_2, M_SQRT2,
                       Table, Twin, above, arr, between, cumprod, expand, float32, mean_all,
                       nonzero, positive, total)

T = Table("PyTorch")
DY = "tools/autograd/derivatives.yaml"
FM = "torch/csrc/autograd/FunctionsManual.cpp"
ACT = "aten/src/ATen/native/cpu/Activation.cpp"
LOSS = "aten/src/ATen/native/Loss.cpp"
LN = "aten/src/ATen/native/cpu/layer_norm_kernel.cpp"
V2 = [(2,)]
V3 = [(3,)]

# ----- elementwise, derivatives.yaml one-liners -----

T.add("torch_exp", f"{DY}: exp — grad * result", V2,
      lambda F, x: F.exp(x),
      lambda F, g, y, x: (g * y,),
      lambda F, g, y, x: (g * x,), "grad * self instead of grad * result")

T.add("torch_log", f"{DY}: log — grad.div(self)", V2,
      lambda F, x: F.log(x),
      lambda F, g, y, x: (g / x,),
      lambda F, g, y, x: (g / y,), "divides by the result", domain=positive)

T.add("torch_log10", f"{DY}: log10 — grad / (self * M_LN10)", V2,
      lambda F, x: F.log(x) / F.log(10),
      lambda F, g, y, x: (g / (x * F.log(10)),),
      lambda F, g, y, x: (g / x,), "drops the 1/ln 10 factor", domain=positive,
      extra=[Twin("M_LN10 as a double", lambda F, g, y, x: (g / (x * M_LN10),),
                  ulp=True, label="one_ulp")])

T.add("torch_log2", f"{DY}: log2 — grad / (self * M_LN2)", V2,
      lambda F, x: F.log(x) / F.log(2),
      lambda F, g, y, x: (g / (x * F.log(2)),),
      lambda F, g, y, x: (g / (x * F.log(10)),), "ln 10 instead of ln 2", domain=positive,
      extra=[Twin("M_LN2 as a double", lambda F, g, y, x: (g / (x * M_LN2),),
                  ulp=True, label="one_ulp")])

T.add("torch_log1p", f"{FM}: log1p_backward — grad / (self + 1)", V2,
      lambda F, x: F.log1p(x),
      lambda F, g, y, x: (g / (x + 1),),
      lambda F, g, y, x: (g / (1 - x),), "1 - self instead of self + 1",
      domain=lambda x: above(x, -1))

T.add("torch_expm1", f"{DY}: expm1 — grad * (result + 1)", V2,
      lambda F, x: F.expm1(x),
      lambda F, g, y, x: (g * (y + 1),),
      lambda F, g, y, x: (g * y,), "drops the + 1")

T.add("torch_exp2", f"{DY}: exp2 — grad * result * M_LN2", V2,
      lambda F, x: 2 ** x,
      lambda F, g, y, x: (g * y * F.log(2),),
      lambda F, g, y, x: (g * y,), "drops the ln 2 factor",
      extra=[Twin("M_LN2 as a double", lambda F, g, y, x: (g * y * M_LN2,),
                  ulp=True, label="one_ulp")])

T.add("torch_sqrt", f"{DY}: sqrt — grad / (2 * result)", V2,
      lambda F, x: F.sqrt(x),
      lambda F, g, y, x: (g / (2 * y),),
      lambda F, g, y, x: (g / y,), "drops the 2", domain=positive)

T.add("torch_rsqrt", f"{DY}: rsqrt — -0.5 * grad * result.pow(3)", V2,
      lambda F, x: 1 / F.sqrt(x),
      lambda F, g, y, x: (-0.5 * g * y**3,),
      lambda F, g, y, x: (0.5 * g * y**3,), "sign flip", domain=positive)

T.add("torch_reciprocal", f"{DY}: reciprocal — -grad * (result * result)", V2,
      lambda F, x: 1 / x,
      lambda F, g, y, x: (-g * (y * y),),
      lambda F, g, y, x: (-g * y,), "result instead of result²")


def _pow_scalar(p):
    return lambda F, x: x ** p


T.add("torch_pow_2_5", f"{FM}: pow_backward — grad * (exp * self.pow(exp - 1)), exp = 2.5",
      V2, _pow_scalar(2.5),
      lambda F, g, y, x: (g * (2.5 * x ** (2.5 - 1)),),
      lambda F, g, y, x: (g * (2.5 * x ** 2.5),), "exponent not decremented",
      domain=positive, note="2.5 - 1 = 1.5 is exact in double")

T.add("torch_pow_0_3", f"{FM}: pow_backward — grad * (exp * self.pow(exp - 1)), exp = 0.3",
      V2, _pow_scalar(0.3),
      lambda F, g, y, x: (g * (0.3 * x ** 0.3 / x),),
      lambda F, g, y, x: (g * (0.3 * x ** 0.3),), "exponent not decremented",
      domain=positive,
      note="exp - 1 is computed in double: 0.3 - 1 rounds, so the rule is written "
           "exp * self.pow(exp) / self here and the library's spelling is the one-ulp twin",
      extra=[Twin("0.3 - 1 rounded in double", lambda F, g, y, x: (g * (0.3 * x ** (0.3 - 1)),),
                  ulp=True, label="one_ulp")])

T.add("torch_pow_tensor", f"{FM}: pow_backward_self / pow_backward_exponent", [(2,), (2,)],
      lambda F, x, e: x ** e,
      lambda F, g, y, x, e: (g * (e * x ** (e - 1)), g * (y * F.log(x))),
      lambda F, g, y, x, e: (g * (e * x ** (e - 1)), g * F.log(x)),
      "exponent cotangent drops result", names=("x", "e"),
      domain=lambda x, e: positive(x))

T.add("torch_sin", f"{DY}: sin — grad * self.cos()", V2,
      lambda F, x: F.sin(x),
      lambda F, g, y, x: (g * F.cos(x),),
      lambda F, g, y, x: (-g * F.cos(x),), "sign flip")

T.add("torch_cos", f"{DY}: cos — grad * -self.sin()", V2,
      lambda F, x: F.cos(x),
      lambda F, g, y, x: (g * -F.sin(x),),
      lambda F, g, y, x: (g * F.sin(x),), "sign flip")

T.add("torch_tanh", f"{DY}: tanh — tanh_backward(grad, result) = grad * (1 - result * result)",
      V2, lambda F, x: F.tanh(x),
      lambda F, g, y, x: (g * (1 - y * y),),
      lambda F, g, y, x: (g * (1 - y),), "1 - result instead of 1 - result²")

T.add("torch_sigmoid", f"{DY}: sigmoid — sigmoid_backward(grad, result) = grad * (1 - result) * "
      "result",
      V2, lambda F, x: F.sigmoid(x),
      lambda F, g, y, x: (g * (1 - y) * y,),
      lambda F, g, y, x: (g * y * y,), "result² instead of (1 - result)·result")

T.add("torch_sinh", f"{DY}: sinh — grad * self.cosh()", V2,
      lambda F, x: F.sinh(x),
      lambda F, g, y, x: (g * F.cosh(x),),
      lambda F, g, y, x: (g * F.sinh(x),), "sinh instead of cosh")

T.add("torch_cosh", f"{DY}: cosh — grad * self.sinh()", V2,
      lambda F, x: F.cosh(x),
      lambda F, g, y, x: (g * F.sinh(x),),
      lambda F, g, y, x: (-g * F.sinh(x),), "sign flip")

T.add("torch_erf", f"{DY}: erf — M_2_SQRTPI * exp(-(self.pow(2))) * grad", V2,
      lambda F, x: F.erf(x),
      lambda F, g, y, x: (2 / F.sqrt(F.pi) * F.exp(-(x ** 2)) * g,),
      lambda F, g, y, x: (1 / F.sqrt(F.pi) * F.exp(-(x ** 2)) * g,), "1/√π instead of 2/√π",
      extra=[Twin("M_2_SQRTPI as a double",
                  lambda F, g, y, x: (M_2_SQRTPI * F.exp(-(x ** 2)) * g,),
                  ulp=True, label="one_ulp")])

T.add("torch_erfc", f"{DY}: erfc — -M_2_SQRTPI * exp(-(self.pow(2))) * grad", V2,
      lambda F, x: F.erfc(x),
      lambda F, g, y, x: (-2 / F.sqrt(F.pi) * F.exp(-(x ** 2)) * g,),
      lambda F, g, y, x: (2 / F.sqrt(F.pi) * F.exp(-(x ** 2)) * g,), "sign flip",
      extra=[Twin("-M_2_SQRTPI as a double",
                  lambda F, g, y, x: (-M_2_SQRTPI * F.exp(-(x ** 2)) * g,),
                  ulp=True, label="one_ulp")])

T.add("torch_special_erfcx", f"{DY}: special_erfcx — (2.0 * self * result - M_2_SQRTPI) * grad",
      V2, lambda F, x: F.exp(x ** 2) * F.erfc(x),
      lambda F, g, y, x: ((2.0 * x * y - 2 / F.sqrt(F.pi)) * g,),
      lambda F, g, y, x: ((x * y - 2 / F.sqrt(F.pi)) * g,), "drops the 2.0",
      note="forward written exp(x²)·erfc(x) (symgrad.fn has no erfcx)",
      extra=[Twin("M_2_SQRTPI as a double",
                  lambda F, g, y, x: ((2.0 * x * y - M_2_SQRTPI) * g,),
                  ulp=True, label="one_ulp")])

T.add("torch_special_entr", f"{DY}: special_entr — grad * (-(1 + self.log()))", V2,
      lambda F, x: -x * F.log(x),
      lambda F, g, y, x: (g * (-(1 + F.log(x))),),
      lambda F, g, y, x: (-g * F.log(x),), "drops the 1", domain=positive)

T.add("torch_logit", f"{DY}: logit — logit_backward(grad, self, eps=None) = grad / (self * (1 - "
      "self))",
      V2, lambda F, x: F.log(x / (1 - x)),
      lambda F, g, y, x: (g / (x * (1 - x)),),
      lambda F, g, y, x: (g / (x * (1 + x)),), "1 + self instead of 1 - self",
      domain=lambda x: between(x, 0, 1))

T.add("torch_atanh", f"{DY}: atanh — grad * 1 / (1 - self.pow(2))", V2,
      lambda F, x: 0.5 * F.log((1 + x) / (1 - x)),
      lambda F, g, y, x: (g * 1 / (1 - x ** 2),),
      lambda F, g, y, x: (g * 1 / (1 + x ** 2),), "1 + self² (the atan rule)",
      domain=lambda x: between(x, -1, 1), note="forward written ½·log((1+x)/(1-x))")

T.add("torch_rad2deg", f"{FM}: rad2deg_backward — grad * M_180_PI", V2,
      lambda F, x: x * M_180_PI,
      lambda F, g, y, x: (g * M_180_PI,),
      lambda F, g, y, x: (g * M_PI_180,), "the deg2rad constant",
      note="the forward multiplies by the same double M_180_PI: identical constants")

T.add("torch_deg2rad", f"{FM}: deg2rad_backward — grad * M_PI_180", V2,
      lambda F, x: x * M_PI_180,
      lambda F, g, y, x: (g * M_PI_180,),
      lambda F, g, y, x: (g / M_PI_180,), "divides by the constant")

# ----- kinks: abs, sign, relu family, clamp, maximum -----

T.add("torch_abs", f"{DY}: abs — grad * self.sgn()", V2,
      lambda F, x: abs(x),
      lambda F, g, y, x: (g * F.sign(x),),
      lambda F, g, y, x: (g,), "drops the sign")

T.add("torch_sign", f"{DY}: sign — zeros_like(grad)", V2,
      lambda F, x: F.sign(x),
      lambda F, g, y, x: (None,),
      lambda F, g, y, x: (g,), "identity instead of zero")

T.add("torch_relu", f"{DY}: relu — threshold_backward(grad, result, 0)", V2,
      lambda F, x: F.relu(x),
      lambda F, g, y, x: (F.where(F.le(y, 0), 0, g),),
      lambda F, g, y, x: (F.where(F.le(y, 0), g, 0),), "mask inverted")

T.add("torch_threshold", f"{DY}: threshold — threshold_backward(grad, self, threshold); "
      f"{ACT}: threshold_kernel", V2,
      lambda F, x: F.where(F.le(x, 0.1), 20.0, x),
      lambda F, g, y, x: (F.where(F.le(x, 0.1), 0, g),),
      lambda F, g, y, x: (g,), "mask dropped",
      note="threshold=0.1, value=20.0")

T.add("torch_leaky_relu", f"{ACT}: leaky_relu_backward_kernel — a > 0 ? b : b * negval", V2,
      lambda F, x: F.where(F.gt(x, 0), x, x * 0.01),
      lambda F, g, y, x: (F.where(F.gt(x, 0), g, g * 0.01),),
      lambda F, g, y, x: (F.where(F.gt(x, 0), g * 0.01, g),), "branches swapped",
      note="negative_slope=0.01 (the default)")

T.add("torch_rrelu_eval", f"{DY}: rrelu_with_noise (training=False: leaky slope (lower + upper) "
      "/ 2)",
      V2, lambda F, x: F.where(F.gt(x, 0), x, x * ((0.125 + 0.3333333333333333) / 2)),
      lambda F, g, y, x: (F.where(F.gt(x, 0), g, g * ((0.125 + 0.3333333333333333) / 2)),),
      lambda F, g, y, x: (F.where(F.gt(x, 0), g, g * 0.125),), "slope = lower",
      note="the slope is computed in double identically in forward and rule")


def _elu(alpha, scale, input_scale):
    negcoef, poscoef, negiptcoef = alpha * scale, scale, input_scale

    def forward(F, x):
        return F.where(F.le(x, 0), (F.exp(x * negiptcoef) - 1) * negcoef, x * poscoef)

    def vjp(F, g, y, x):   # is_result = false
        return (F.where(F.le(x, 0), g * negiptcoef * negcoef * F.exp(x * negiptcoef),
                        g * poscoef),)

    def vjp_from_result(F, g, y, x):   # is_result = true, b = result
        return (F.where(F.le(y, 0), g * negiptcoef * (y + negcoef), g * poscoef),)
    return forward, vjp, vjp_from_result, (negcoef, poscoef, negiptcoef)


_f, _v, _vr, (_n, _p, _i) = _elu(1.0, 1.0, 1.0)
T.add("torch_elu", f"{ACT}: elu_backward_kernel (is_result=false)", V2, _f, _v,
      lambda F, g, y, x: (F.where(F.le(x, 0), g * 1.0 * (x + 1.0), g * 1.0),),
      "is_result formula applied to self")
T.add("torch_elu_inplace", f"{ACT}: elu_backward_kernel (is_result=true, elu_)", V2, _f, _vr,
      lambda F, g, y, x: (F.where(F.le(y, 0), g * 1.0 * 1.0 * F.exp(y * 1.0), g * 1.0),),
      "the self formula applied to result")

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946
_f, _v, _vr, (_n, _p, _i) = _elu(_SELU_ALPHA, _SELU_SCALE, 1.0)
T.add("torch_selu", f"{ACT}: elu_backward_kernel via selu (alpha, scale = SELU constants)", V2,
      _f, _v,
      lambda F, g, y, x, _n=_n: (F.where(F.le(x, 0), g * 1.0 * _n * F.exp(x), g),),
      "scale dropped on the positive branch",
      note="negcoef = alpha * scale is folded in double, identically in forward and rule")

_f, _v, _vr, (_n, _p, _i) = _elu(1.5, 1, 1.0 / 1.5)
T.add("torch_celu", f"{DY}: celu — elu_backward(grad, alpha, 1, 1.0/alpha, false, self)", V2,
      _f, _v,
      lambda F, g, y, x, _n=_n, _i=_i: (F.where(F.le(x, 0), g * _n * F.exp(x * _i), g),),
      "input_scale factor dropped",
      note="alpha=1.5; 1.0/alpha is rounded in double, identically in forward and rule")


def _gelu_erf_forward(F, x):
    return x * 0.5 * (1 + F.erf(x / F.sqrt(2)))


def _gelu_erf_vjp(F, g, y, x):
    cdf = 0.5 * (1 + F.erf(x / F.sqrt(2)))
    pdf = F.exp(x * x * -0.5) / F.sqrt(2 * F.pi)
    return (g * (cdf + x * pdf),)


def _gelu_erf_forward_as_written(F, x):
    k_alpha = M_SQRT1_2
    return x * 0.5 * (1 + F.erf(x * k_alpha))


def _gelu_erf_vjp_as_written(F, g, y, x):
    k_alpha = M_SQRT1_2
    k_beta = M_2_SQRTPI * M_SQRT1_2 * 0.5
    cdf = 0.5 * (1 + F.erf(x * k_alpha))
    pdf = k_beta * F.exp(x * x * -0.5)
    return (g * (cdf + x * pdf),)


T.add("torch_gelu", f"{ACT}: GeluBackwardKernelImpl (approximate='none')", V2,
      _gelu_erf_forward, _gelu_erf_vjp,
      lambda F, g, y, x: (g * 0.5 * (1 + F.erf(x / F.sqrt(2))),), "drops x·pdf",
      note="kAlpha = M_SQRT1_2 and kBeta = M_2_SQRTPI * M_SQRT1_2 * 0.5 are written exactly "
           "(1/√2, 1/√(2π)); with the doubles, kAlpha² ≠ 1/2 and the rule is off by an ulp",
      extra=[Twin("kAlpha, kBeta as doubles (forward and rule as in the kernel)",
                  _gelu_erf_vjp_as_written, forward=_gelu_erf_forward_as_written,
                  ulp=True, label="one_ulp")])

K_BETA = M_SQRT2 * M_2_SQRTPI * 0.5
K_KAPPA = 0.044715


def _gelu_tanh_forward(F, x):
    x_cube = x * x * x
    inner = K_BETA * (x + K_KAPPA * x_cube)
    return 0.5 * x * (1 + F.tanh(inner))


def _gelu_tanh_vjp(three_kappa_first=False, drop_three=False):
    def vjp(F, g, y, x):
        x_sq = x * x
        x_cube = x_sq * x
        inner = K_BETA * (x + K_KAPPA * x_cube)
        tanh_inner = F.tanh(inner)
        left = 0.5 * x
        right = 1 + tanh_inner
        left_derivative = 0.5 * right
        tanh_derivative = 1 - tanh_inner * tanh_inner
        if drop_three:
            inner_derivative = K_BETA * (1 + K_KAPPA * x_sq)
        elif three_kappa_first:            # as in the kernel: 3 * kKappa folded in double
            inner_derivative = K_BETA * (1 + 3 * K_KAPPA * x_sq)
        else:                              # kKappa meets x² first: exact
            inner_derivative = K_BETA * (1 + K_KAPPA * x_sq * 3)
        right_derivative = left * tanh_derivative * inner_derivative
        return (g * (left_derivative + right_derivative),)
    return vjp


T.add("torch_gelu_tanh", f"{ACT}: GeluBackwardKernelImpl (approximate='tanh')", V2,
      _gelu_tanh_forward, _gelu_tanh_vjp(),
      _gelu_tanh_vjp(drop_three=True), "drops the 3 of d(x³)",
      note="kBeta = M_SQRT2 * M_2_SQRTPI * 0.5 is folded in double identically in forward and "
           "rule (fine); the kernel's scalar_t(3) * kKappa rounds, so the rule is written "
           "kKappa * x_sq * 3 and the kernel's spelling is the one-ulp twin",
      extra=[Twin("3 * kKappa folded in double", _gelu_tanh_vjp(three_kappa_first=True),
                  ulp=True, label="one_ulp")])

T.add("torch_silu", f"{FM}: infinitely_differentiable_silu_backward", V2,
      lambda F, x: x * F.sigmoid(x),
      lambda F, g, y, x: (g * F.sigmoid(x) * (1.0 + x * (1.0 - F.sigmoid(x))),),
      lambda F, g, y, x: (g * F.sigmoid(x) * (1.0 + x * F.sigmoid(x)),),
      "sigmoid instead of 1 - sigmoid")


def _mish_vjp(F, g, y, x):
    sigmoid = F.sigmoid(x)
    softplus = F.log1p(F.exp(x))
    tanh_softplus = F.tanh(softplus)
    return (g * (tanh_softplus + x * sigmoid * (1.0 - tanh_softplus * tanh_softplus)),)


T.add("torch_mish", f"{FM}: infinitely_differentiable_mish_backward", V2,
      lambda F, x: x * F.tanh(F.log1p(F.exp(x))), _mish_vjp,
      lambda F, g, y, x: (g * F.tanh(F.log1p(F.exp(x))),), "drops the x·sigmoid·sech² term")


def _softplus(beta, threshold, drop_beta=False, wrong_ratio=False):
    def forward(F, x):
        return F.where(F.gt(x * beta, threshold), x, F.log1p(F.exp(x * beta)) / beta)

    def vjp(F, g, y, x):
        z = F.exp(x) if drop_beta else F.exp(x * beta)
        inside = g / (z + 1.0) if wrong_ratio else g * z / (z + 1.0)
        return (F.where(F.gt(x * beta, threshold), g, inside),)
    return forward, vjp


_f, _v = _softplus(1, 20)
T.add("torch_softplus", f"{ACT}: softplus_backward_kernel (beta=1, threshold=20)", V2, _f, _v,
      _softplus(1, 20, wrong_ratio=True)[1], "1/(z+1) instead of z/(z+1)")
_f, _v = _softplus(2.0, 10.0)
T.add("torch_softplus_beta2", f"{ACT}: softplus_backward_kernel (beta=2.0, threshold=10.0)", V2,
      _f, _v, _softplus(2.0, 10.0, drop_beta=True)[1], "exp(b) instead of exp(b * beta)")


def _log_sigmoid_forward(F, x):
    return F.minimum(x, 0) - F.log1p(F.exp(-abs(x)))


def _log_sigmoid_vjp(sign_of_term):
    def vjp(F, g, y, x):
        b = F.exp(-abs(x))                       # the forward's buffer
        in_negative = F.lt(x, 0)
        max_deriv = F.where(in_negative, 1, 0)
        sign = F.where(in_negative, 1, -1)
        return ((max_deriv - sign_of_term * sign * (b / (1 + b))) * g,)
    return vjp


T.add("torch_log_sigmoid", f"{ACT}: log_sigmoid_backward_cpu_kernel (buffer = exp(-|x|))", V2,
      _log_sigmoid_forward, _log_sigmoid_vjp(1), _log_sigmoid_vjp(-1), "sign of the b/(1+b) term")

T.add("torch_hardtanh", f"{ACT}: hardtanh_backward_kernel (min=-1, max=1)", V2,
      lambda F, x: F.clamp(x, -1, 1),
      lambda F, g, y, x: (F.where(F.le(x, -1), 0, F.where(F.ge(x, 1), 0, g)),),
      lambda F, g, y, x: (F.where(F.le(x, -1), 0, g),), "upper mask dropped")

T.add("torch_relu6", f"{ACT}: hardtanh_backward_kernel via relu6 = hardtanh(0, 6)", V2,
      lambda F, x: F.clamp(x, 0, 6),
      lambda F, g, y, x: (F.where(F.le(x, 0), 0, F.where(F.ge(x, 6), 0, g)),),
      lambda F, g, y, x: (F.where(F.ge(x, 6), 0, g),), "lower mask dropped")


def _hardsigmoid_forward(F, x):
    return F.minimum(F.maximum(x + 3, 0), 6) / 6


T.add("torch_hardsigmoid", f"{ACT}: hardsigmoid_backward_kernel", V2,
      _hardsigmoid_forward,
      lambda F, g, y, x: (F.where(F.gt(x, -3), F.where(F.lt(x, 3), g / 6, 0), 0),),
      lambda F, g, y, x: (F.where(F.gt(x, -3), F.where(F.lt(x, 3), g / 3, 0), 0),),
      "1/3 instead of 1/6",
      note="the kernel's one_sixth is 1.0f / 6.0f, a float even for double tensors; "
           "the rule is written g / 6 and the kernel's constant is a separate twin",
      extra=[Twin("one_sixth = 1.0f / 6.0f (float32)",
                  lambda F, g, y, x: (F.where(F.gt(x, -3),
                                              F.where(F.lt(x, 3), g * float32(1.0 / 6.0), 0), 0),),
                  label="float32_constant")])

T.add("torch_hardswish", f"{ACT}: hardswish_backward_kernel", V2,
      lambda F, x: x * F.minimum(F.maximum(x + 3, 0), 6) / 6,
      lambda F, g, y, x: (F.where(F.lt(x, -3), 0, F.where(F.le(x, 3), g * ((x / 3) + 0.5), g)),),
      lambda F, g, y, x: (F.where(F.lt(x, -3), 0, F.where(F.le(x, 3), g * ((x / 6) + 0.5), g)),),
      "x/6 instead of x/3")

T.add("torch_softshrink", f"{ACT}: shrink_backward_kernel (softshrink, lambd=0.5)", V2,
      lambda F, x: F.where(F.gt(x, 0.5), x - 0.5, F.where(F.lt(x, -0.5), x + 0.5, 0)),
      lambda F, g, y, x: (F.where(F.ge(x, -0.5), F.where(F.le(x, 0.5), 0, g), g),),
      lambda F, g, y, x: (g,), "dead zone not masked")

T.add("torch_hardshrink", f"{ACT}: shrink_backward_kernel (hardshrink, lambd=0.5)", V2,
      lambda F, x: F.where(F.ge(x, -0.5), F.where(F.le(x, 0.5), 0, x), x),
      lambda F, g, y, x: (F.where(F.ge(x, -0.5), F.where(F.le(x, 0.5), 0, g), g),),
      lambda F, g, y, x: (F.where(F.ge(x, -0.5), F.where(F.le(x, 0.5), g, 0), 0),), "mask inverted")

T.add("torch_clamp", f"{FM}: clamp_backward (min=-0.5, max=1.5)", V2,
      lambda F, x: F.clamp(x, -0.5, 1.5),
      lambda F, g, y, x: (F.where(F.ge(x, -0.5), F.where(F.le(x, 1.5), g, 0), 0),),
      lambda F, g, y, x: (F.where(F.ge(x, -0.5), g, 0),), "max bound dropped")

T.add("torch_clamp_min", f"{DY}: clamp_min — where(self > min, grad, 0)", V2,
      lambda F, x: F.maximum(x, 0.25),
      lambda F, g, y, x: (F.where(F.gt(x, 0.25), g, 0),),
      lambda F, g, y, x: (F.where(F.lt(x, 0.25), g, 0),), "comparison reversed")

T.add("torch_clamp_max", f"{DY}: clamp_max — where(self < max, grad, 0)", V2,
      lambda F, x: F.minimum(x, 0.75),
      lambda F, g, y, x: (F.where(F.lt(x, 0.75), g, 0),),
      lambda F, g, y, x: (F.where(F.gt(x, 0.75), g, 0),), "comparison reversed")


def _max_min_rule(lose_self, lose_other):
    def vjp(F, g, y, x, o):
        split = F.where(F.eq(x, o), g / 2, g)
        return (F.where(lose_self(F, x, o), 0, split), F.where(lose_other(F, x, o), 0, split))
    return vjp


T.add("torch_maximum", f"{DY}: maximum — where(self == other, grad / 2, grad) masked", [(2,), (2,)],
      lambda F, x, o: F.maximum(x, o),
      _max_min_rule(lambda F, x, o: F.lt(x, o), lambda F, x, o: F.gt(x, o)),
      _max_min_rule(lambda F, x, o: F.gt(x, o), lambda F, x, o: F.lt(x, o)), "masks swapped",
      names=("x", "o"))

T.add("torch_minimum", f"{DY}: minimum — where(self == other, grad / 2, grad) masked", [(2,), (2,)],
      lambda F, x, o: F.minimum(x, o),
      _max_min_rule(lambda F, x, o: F.gt(x, o), lambda F, x, o: F.lt(x, o)),
      _max_min_rule(lambda F, x, o: F.lt(x, o), lambda F, x, o: F.gt(x, o)), "masks swapped",
      names=("x", "o"))

# ----- binary arithmetic -----

T.add("torch_mul", f"{DY}: mul.Tensor — mul_tensor_backward", [(2,), (2,)],
      lambda F, x, o: x * o,
      lambda F, g, y, x, o: (g * o, g * x),
      lambda F, g, y, x, o: (g * x, g * o), "operands swapped", names=("x", "o"))

T.add("torch_div", f"{FM}: div_tensor_self_backward / div_tensor_other_backward", [(2,), (2,)],
      lambda F, x, o: x / o,
      lambda F, g, y, x, o: (g / o, -g * ((x / o) / o)),
      lambda F, g, y, x, o: (g / o, -g * (x / o)), "one division by other missing",
      names=("x", "o"))

T.add("torch_sub_alpha", f"{DY}: sub.Tensor — other: maybe_multiply(-grad, alpha), alpha=2",
      [(2,), (2,)],
      lambda F, x, o: x - 2 * o,
      lambda F, g, y, x, o: (g, -g * 2),
      lambda F, g, y, x, o: (g, -g), "alpha dropped", names=("x", "o"))

T.add("torch_lerp", f"{DY}: lerp.Tensor", [(2,), (2,), (2,)],
      lambda F, s, e, w: s + w * (e - s),
      lambda F, g, y, s, e, w: (g * (1 - w), g * w, g * (e - s)),
      lambda F, g, y, s, e, w: (g * (1 - w), g * w, g * (s - e)), "weight cotangent sign",
      names=("s", "e", "w"))

T.add("torch_lerp_scalar", f"{DY}: lerp.Scalar — grad * (1 - weight.toDouble()), weight=0.3",
      [(2,), (2,)],
      lambda F, s, e: s + 0.3 * (e - s),
      lambda F, g, y, s, e: (g - g * 0.3, g * 0.3),
      lambda F, g, y, s, e: (g * 0.3, g * 0.3), "weight instead of 1 - weight",
      names=("s", "e"),
      note="1 - 0.3 rounds in double, so the rule is written g - g * weight; the library's "
           "spelling is the one-ulp twin",
      extra=[Twin("1 - weight folded in double", lambda F, g, y, s, e: (g * (1 - 0.3), g * 0.3),
                  ulp=True, label="one_ulp")])

T.add("torch_addcmul", f"{DY}: addcmul (value=0.5)", [(2,), (2,), (2,)],
      lambda F, s, a, b: s + 0.5 * a * b,
      lambda F, g, y, s, a, b: (g, g * b * 0.5, g * a * 0.5),
      lambda F, g, y, s, a, b: (g, g * b, g * a), "value dropped", names=("s", "a", "b"))

T.add("torch_addcdiv", f"{DY}: addcdiv (value=0.5)", [(2,), (2,), (2,)],
      lambda F, s, a, b: s + 0.5 * a / b,
      lambda F, g, y, s, a, b: (g, g * (0.5 / b), -g * (0.5 * a / (b * b))),
      lambda F, g, y, s, a, b: (g, g * (0.5 / b), g * (0.5 * a / (b * b))), "tensor2 sign",
      names=("s", "a", "b"))

T.add("torch_hypot", f"{DY}: hypot — grad * self / result, grad * other / result", [(2,), (2,)],
      lambda F, x, o: F.sqrt(x * x + o * o),
      lambda F, g, y, x, o: (g * x / y, g * o / y),
      lambda F, g, y, x, o: (g * o / y, g * x / y), "operands swapped", names=("x", "o"))

T.add("torch_xlogy", f"{DY}: xlogy.Tensor — xlogy(grad, other), grad * self / other", [(2,), (2,)],
      lambda F, x, o: x * F.log(o),
      lambda F, g, y, x, o: (g * F.log(o), g * x / o),
      lambda F, g, y, x, o: (g * F.log(o), g / o), "drops self", names=("x", "o"),
      domain=lambda x, o: positive(o))

T.add("torch_logaddexp", f"{DY}: logaddexp — grad / (1 + exp(other - self))", [(2,), (2,)],
      lambda F, x, o: F.log(F.exp(x) + F.exp(o)),
      lambda F, g, y, x, o: (g / (1 + F.exp(o - x)), g / (1 + F.exp(x - o))),
      lambda F, g, y, x, o: (g / (1 + F.exp(x - o)), g / (1 + F.exp(x - o))),
      "self uses exp(self - other)", names=("x", "o"))

T.add("torch_where", f"{DY}: where.self — where(condition, grad, 0), where(condition, 0, grad)",
      [(2, 2), (2, 2)],
      lambda F, x, o: np.where(arr([[True, False], [False, True]]).astype(bool), x, o),
      lambda F, g, y, x, o: (np.where(arr([[True, False], [False, True]]).astype(bool), g, 0),
                             np.where(arr([[True, False], [False, True]]).astype(bool), 0, g)),
      lambda F, g, y, x, o: (np.where(arr([[True, False], [False, True]]).astype(bool), g, 0),
                             np.where(arr([[True, False], [False, True]]).astype(bool), g, 0)),
      "other gets the self mask", names=("x", "o"), note="a fixed condition tensor")

# ----- reductions -----

T.add("torch_sum_dim", f"{FM}: sum_backward — grad.unsqueeze(dim).expand(sizes), dim=0",
      [(2, 2)],
      lambda F, x: x.sum(axis=0),
      lambda F, g, y, x: (expand(g[None, :], x.shape),),
      lambda F, g, y, x: (expand(g[:, None], x.shape),), "unsqueezed at the wrong dim")

T.add("torch_mean_dim", f"{FM}: mean_backward — sum_backward(...) / _safe_size(shape, dim), dim=1",
      [(2, 3)],
      lambda F, x: x.sum(axis=1) / 3,
      lambda F, g, y, x: (expand(g[:, None], x.shape) / 3,),
      lambda F, g, y, x: (expand(g[:, None], x.shape) / 6,), "divides by numel, not size(dim)")

T.add("torch_mean", f"{DY}: mean — grad.expand(self.sizes()) / self.numel()", [(2, 3)],
      lambda F, x: mean_all(x),
      lambda F, g, y, x: (expand(g, x.shape) / x.size,),
      lambda F, g, y, x: (expand(g, x.shape) / x.shape[0],), "divides by size(0)")


def _var(x, axis, correction):
    n = x.shape[axis]
    m = x.sum(axis=axis, keepdims=True) / n
    return ((x - m) ** 2).sum(axis=axis) / (n - correction), m


def _var_rule(axis, correction, dof_override=None, exact=True):
    def vjp(F, g, y, x):
        _, m = _var(x, axis, correction)
        dof = (dof_override or x.shape[axis] - correction)
        gg = expand(np.expand_dims(g, axis), x.shape)
        if exact:
            return (2 * gg * (x - m) / dof,)
        return ((2.0 / dof) * gg * (x - m),)    # as in var_backward: SymFloat(2.0) / dof
    return vjp


T.add("torch_var", f"{FM}: var_backward — (2.0 / dof) * grad * (self - self.mean(dim, true)), "
      "correction=1, dim=1", [(2, 3)],
      lambda F, x: _var(x, 1, 1)[0], _var_rule(1, 1, exact=False),
      _var_rule(1, 1, dof_override=3, exact=False), "biased dof (N instead of N - 1)",
      note="dof = 2 here, so 2.0 / dof is exact")

T.add("torch_var_dof3", f"{FM}: var_backward — (2.0 / dof) * grad * (self - mean), "
      "correction=1, dim=1, N=4", [(2, 4)],
      lambda F, x: _var(x, 1, 1)[0], _var_rule(1, 1),
      _var_rule(1, 1, dof_override=4), "biased dof (N instead of N - 1)",
      note="2.0 / 3 rounds in double; the rule is written 2 * grad * (self - mean) / dof and "
           "the library's spelling is the one-ulp twin",
      extra=[Twin("2.0 / dof folded in double", _var_rule(1, 1, exact=False),
                  ulp=True, label="one_ulp")])

T.add("torch_var_biased", f"{FM}: var_backward — correction=0, all elements", [(4,)],
      lambda F, x: np.array(_var(x, 0, 0)[0], dtype=object),
      lambda F, g, y, x: ((2.0 / 4) * g * (x - x.sum() / 4),),
      lambda F, g, y, x: ((2.0 / 3) * g * (x - x.sum() / 4),), "unbiased dof for a biased var")


def _std_rule(halve):
    def vjp(F, g, y, x):
        grad_var = g / (y * 2) if halve else g / y
        _, m = _var(x, 1, 1)
        return ((2.0 / 2) * expand(grad_var[:, None], x.shape) * (x - m),)
    return vjp


T.add("torch_std", f"{FM}: std_backward — var_backward(grad / (result * 2), ...), correction=1",
      [(2, 3)],
      lambda F, x: F.sqrt(_var(x, 1, 1)[0]), _std_rule(True), _std_rule(False),
      "grad / result (the 2 dropped)")

T.add("torch_norm2", f"{FM}: norm_backward (p=2) — grad * (self / norm)", [(2, 3)],
      lambda F, x: F.sqrt((x * x).sum(axis=-1)),
      lambda F, g, y, x: (expand(g[:, None], x.shape) * (x / y[:, None]),),
      lambda F, g, y, x: (expand(g[:, None], x.shape) * (x / y[:, None] ** 2),), "divides by norm²")

T.add("torch_norm1", f"{FM}: norm_backward (p=1) — self.sgn() * grad", V3,
      lambda F, x: total(abs(x)),
      lambda F, g, y, x: (F.sign(x) * g,),
      lambda F, g, y, x: (expand(g, x.shape),), "drops sgn")


def _pnorm_forward(root):
    return lambda F, x: np.array(total(abs(x) ** 3.0)[()] ** root(F), dtype=object)


def _pnorm_vjp(p_minus_one):
    def vjp(F, g, y, x):
        p = 3.0
        self_scaled = x * abs(x) ** (p - 2)
        scale_v = g / y ** p_minus_one
        return (self_scaled * scale_v,)
    return vjp


T.add("torch_norm3", f"{FM}: norm_backward (p=3, the p >= 2 branch)", V3,
      _pnorm_forward(lambda F: F.rational(1, 3)), _pnorm_vjp(3.0 - 1),
      _pnorm_vjp(3.0), "norm.pow(p) instead of norm.pow(p - 1)",
      note="the forward's root 1/p is written exactly; ATen's forward computes 1.0 / p in "
           "double, which makes the (unchanged) rule one ulp off",
      extra=[Twin("forward root 1.0 / p rounded in double",
                  _pnorm_vjp(3.0 - 1), forward=_pnorm_forward(lambda F: 1.0 / 3.0),
                  ulp=True, label="one_ulp")])

_PROD_NOTE = ("prod_backward takes this division path only when no input is 0 (else "
              "prod_safe_zeros_backward): checked on that domain; on the whole domain the "
              "division is undefined at a zero input and symgrad REFUTES it "
              "(tests/test_singular.py)")

T.add("torch_prod", f"{FM}: prod_backward — grad * (result / input)", V3,
      lambda F, x: np.array(x[0] * x[1] * x[2], dtype=object),
      lambda F, g, y, x: (g * (y / x),),
      lambda F, g, y, x: (expand(g * y, x.shape),), "drops / input", domain=nonzero,
      note=_PROD_NOTE)

T.add("torch_prod_dim", f"{FM}: prod_backward(grad, input, result, dim=0)", [(2, 2)],
      lambda F, x: x[0] * x[1],
      lambda F, g, y, x: (g[None, :] * (y[None, :] / x),),
      lambda F, g, y, x: (g[:, None] * (y[:, None] / x),), "unsqueezed at the wrong dim",
      domain=nonzero, note=_PROD_NOTE)


def _prod_safe(exclusive):
    def vjp(F, g, y, x):
        ones = arr([1])
        normal = np.concatenate([ones, x[:-1]]) if exclusive else x
        exclusive_normal = cumprod(normal)
        exclusive_reverse = cumprod(np.concatenate([ones, x[1:][::-1]]))[::-1]
        return (g * (exclusive_normal * exclusive_reverse),)
    return vjp


T.add("torch_prod_safe_zeros", f"{FM}: prod_safe_zeros_backward (exclusive cumprods)", V3,
      lambda F, x: np.array(x[0] * x[1] * x[2], dtype=object),
      _prod_safe(True), _prod_safe(False), "inclusive instead of exclusive cumprod")

T.add("torch_cumsum", f"{FM}: cumsum_backward — grad.flip(dim).cumsum(dim).flip(dim), dim=1",
      [(2, 3)],
      lambda F, x: np.cumsum(x, axis=1),
      lambda F, g, y, x: (np.cumsum(g[:, ::-1], axis=1)[:, ::-1],),
      lambda F, g, y, x: (np.cumsum(g, axis=1),), "flips missing")

T.add("torch_logsumexp", f"{FM}: logsumexp_backward — grad * (self - result).exp(), dim=-1",
      [(2, 3)],
      lambda F, x: F.log(F.exp(x).sum(axis=-1)),
      lambda F, g, y, x: (g[:, None] * F.exp(x - y[:, None]),),
      lambda F, g, y, x: (g[:, None] * F.exp(x),), "result not subtracted")

T.add("torch_softmax", f"{DY}: _softmax — _softmax_backward_data: output * (grad - (grad * "
      "output).sum(dim, true))",
      [(2, 3)],
      lambda F, x: F.exp(x) / F.exp(x).sum(axis=-1, keepdims=True),
      lambda F, g, y, x: (y * (g - (g * y).sum(axis=-1, keepdims=True)),),
      lambda F, g, y, x: (y * g,), "drops the row-sum term")

T.add("torch_log_softmax", f"{DY}: _log_softmax — grad - exp(output) * grad.sum(dim, true)",
      [(2, 3)],
      lambda F, x: x - F.log(F.exp(x).sum(axis=-1, keepdims=True)),
      lambda F, g, y, x: (g - F.exp(y) * g.sum(axis=-1, keepdims=True),),
      lambda F, g, y, x: (g - y * g.sum(axis=-1, keepdims=True),), "output instead of exp(output)")

# ----- linear algebra -----

T.add("torch_mm", f"{FM}: mm_mat1_backward / mm_mat2_backward", [(2, 2), (2, 2)],
      lambda F, a, b: a @ b,
      lambda F, g, y, a, b: (g @ b.T, a.T @ g),
      lambda F, g, y, a, b: (g @ b, a.T @ g), "mat2 not transposed", names=("a", "b"))

T.add("torch_mm_rect", f"{FM}: mm_mat1_backward / mm_mat2_backward (2x3 @ 3x2)", [(2, 3), (3, 2)],
      lambda F, a, b: a @ b,
      lambda F, g, y, a, b: (g @ b.T, a.T @ g),
      lambda F, g, y, a, b: (g @ b.T, (g.T @ a).T[::-1]), "rows of mat2's cotangent reversed",
      names=("a", "b"))

T.add("torch_bmm", f"{DY}: bmm — grad.bmm(mat2.transpose(1, 2)), self.transpose(1, 2).bmm(grad)",
      [(2, 2, 2), (2, 2, 2)],
      lambda F, a, b: np.matmul(a, b),
      lambda F, g, y, a, b: (np.matmul(g, b.transpose(0, 2, 1)),
                             np.matmul(a.transpose(0, 2, 1), g)),
      lambda F, g, y, a, b: (np.matmul(g, b.transpose(0, 2, 1)), np.matmul(a, g)),
      "self not transposed for mat2", names=("a", "b"))

T.add("torch_matmul_broadcast", f"{DY}: matmul — matmul_backward (batch 2x2x2 @ 2x2)",
      [(2, 2, 2), (2, 2)],
      lambda F, a, b: np.matmul(a, b),
      lambda F, g, y, a, b: (np.matmul(g, b.T), np.matmul(a.transpose(0, 2, 1), g).sum(axis=0)),
      lambda F, g, y, a, b: (np.matmul(g, b.T), np.matmul(a.transpose(0, 2, 1), g).sum(axis=0) / 2),
      "batch reduced by mean instead of sum", names=("a", "b"))

T.add("torch_addmm", f"{DY}: addmm (beta=0.5, alpha=2.0)", [(2, 2), (2, 3), (3, 2)],
      lambda F, s, a, b: 0.5 * s + 2.0 * (a @ b),
      lambda F, g, y, s, a, b: (g * 0.5, (g @ b.T) * 2.0, (a.T @ g) * 2.0),
      lambda F, g, y, s, a, b: (g, (g @ b.T) * 2.0, (a.T @ g) * 2.0), "beta dropped",
      names=("s", "a", "b"))

T.add("torch_addmv", f"{DY}: addmv (beta=0.5, alpha=2.0)", [(2,), (2, 2), (2,)],
      lambda F, s, m, v: 0.5 * s + 2.0 * (m @ v),
      lambda F, g, y, s, m, v: (g * 0.5, np.outer(g, v) * 2.0, (m.T @ g) * 2.0),
      lambda F, g, y, s, m, v: (g * 0.5, np.outer(g, v) * 2.0, (m @ g) * 2.0), "mat not transposed",
      names=("s", "m", "v"))

T.add("torch_addr", f"{DY}: addr (beta=0.5, alpha=2.0)", [(2, 2), (2,), (2,)],
      lambda F, s, u, v: 0.5 * s + 2.0 * np.outer(u, v),
      lambda F, g, y, s, u, v: (g * 0.5, (g @ v) * 2.0, (g.T @ u) * 2.0),
      lambda F, g, y, s, u, v: (g * 0.5, (g @ v) * 2.0, (g @ u) * 2.0), "grad not transposed",
      names=("s", "u", "v"))

T.add("torch_outer", f"{DY}: ger/outer — grad.mv(vec2), grad.t().mv(self)", [(2,), (2,)],
      lambda F, u, v: np.outer(u, v),
      lambda F, g, y, u, v: (g @ v, g.T @ u),
      lambda F, g, y, u, v: (g.T @ v, g.T @ u), "grad transposed for self", names=("u", "v"))

T.add("torch_dot", f"{DY}: dot — grad * tensor, grad * self", V3 + V3,
      lambda F, u, v: np.array(np.dot(u, v), dtype=object),
      lambda F, g, y, u, v: (g * v, g * u),
      lambda F, g, y, u, v: (g * u, g * v), "operands swapped", names=("u", "v"))

T.add("torch_mv", f"{DY}: mv — grad.ger(vec), self.t().mv(grad)", [(2, 2), (2,)],
      lambda F, m, v: m @ v,
      lambda F, g, y, m, v: (np.outer(g, v), m.T @ g),
      lambda F, g, y, m, v: (np.outer(g, v), m @ g), "self not transposed", names=("m", "v"))

T.add("torch_linear", f"{DY}: linear — linear_backward (input, weight, bias)",
      [(2, 3), (2, 3), (2,)],
      lambda F, x, w, b: x @ w.T + b,
      lambda F, g, y, x, w, b: (g @ w, g.T @ x, g.sum(axis=0)),
      lambda F, g, y, x, w, b: (g @ w, g.T @ x, g.sum(axis=1)), "bias summed over the wrong axis",
      names=("x", "w", "b"))

T.add("torch_transpose", f"{DY}: transpose.int — grad.transpose(dim0, dim1)", [(2, 3)],
      lambda F, x: x.T.copy(),
      lambda F, g, y, x: (g.T,),
      lambda F, g, y, x: (g.reshape(2, 3),), "reshape instead of transpose")

T.add("torch_permute", f"{FM}: permute_backwards — inverse permutation, dims=(1, 2, 0)",
      [(2, 2, 2)],
      lambda F, x: x.transpose(1, 2, 0).copy(),
      lambda F, g, y, x: (g.transpose(2, 0, 1),),
      lambda F, g, y, x: (g.transpose(1, 2, 0),), "the permutation, not its inverse")

T.add("torch_expand", f"{DY}: expand — at::sum_to(grad, self.sizes()), 2x1 -> 2x3", [(2, 1)],
      lambda F, x: expand(x, (2, 3)),
      lambda F, g, y, x: (g.sum(axis=1, keepdims=True),),
      lambda F, g, y, x: (g.sum(axis=1, keepdims=True) / 3,), "mean instead of sum")

# ----- losses (reduction='mean') -----


def _smooth_l1_bw(F, g, a, b, beta, norm):
    d = a - b
    gg = expand(g, a.shape)
    return F.where(F.le(d, -beta), -norm * gg,
                   F.where(F.ge(d, beta), norm * gg, norm * d * gg / beta))


def _smooth_l1_forward(beta):
    def forward(F, x, t):
        d = x - t
        z = abs(d)
        return mean_all(F.where(F.lt(z, beta), 0.5 * z * z / beta, z - 0.5 * beta))
    return forward


T.add("torch_smooth_l1_loss", f"{LOSS}: smooth_l1_loss_backward (beta=1.0, norm = 1. / numel)",
      [(2,), (2,)], _smooth_l1_forward(1.0),
      lambda F, g, y, x, t: (_smooth_l1_bw(F, g, x, t, 1.0, 1. / 2),
                             _smooth_l1_bw(F, g, t, x, 1.0, 1. / 2)),
      lambda F, g, y, x, t: (_smooth_l1_bw(F, g, x, t, 1.0, 1.0),
                             _smooth_l1_bw(F, g, t, x, 1.0, 1.0)), "sum normalisation for mean",
      names=("x", "t"), note="numel = 2, so norm = 1. / 2 is exact")


def _huber_bw(F, g, a, b, delta, norm, wrong=False):
    d = a - b
    gg = expand(g, a.shape)
    middle = norm * d * gg / delta if wrong else norm * d * gg
    return F.where(F.le(d, -delta), -norm * gg * delta,
                   F.where(F.ge(d, delta), norm * gg * delta, middle))


T.add("torch_huber_loss", f"{LOSS}: huber_loss_backward (delta=0.5, norm = 1. / numel)",
      [(2,), (2,)],
      lambda F, x, t: mean_all(F.where(F.lt(abs(x - t), 0.5), 0.5 * (x - t) ** 2,
                                       0.5 * (abs(x - t) - 0.5 * 0.5))),
      lambda F, g, y, x, t: (_huber_bw(F, g, x, t, 0.5, 1. / 2),
                             _huber_bw(F, g, t, x, 0.5, 1. / 2)),
      lambda F, g, y, x, t: (_huber_bw(F, g, x, t, 0.5, 1. / 2, True),
                             _huber_bw(F, g, t, x, 0.5, 1. / 2, True)),
      "smooth-L1's / delta in the quadratic zone", names=("x", "t"))

T.add("torch_mse_loss", f"{DY}: mse_loss — mse_loss_backward: norm = 2. / numel, norm * (self - "
      "target) * grad",
      [(2, 2), (2, 2)],
      lambda F, x, t: mean_all((x - t) ** 2),
      lambda F, g, y, x, t: ((2. / 4) * (x - t) * g, (2. / 4) * (t - x) * g),
      lambda F, g, y, x, t: ((1. / 4) * (x - t) * g, (1. / 4) * (t - x) * g), "1/N instead of 2/N",
      names=("x", "t"), note="numel = 4: 2. / 4 is exact")

T.add("torch_mse_loss_n3", f"{DY}: mse_loss — mse_loss_backward with numel = 3", [(3,), (3,)],
      lambda F, x, t: mean_all((x - t) ** 2),
      lambda F, g, y, x, t: (2 * (x - t) * g / 3, 2 * (t - x) * g / 3),
      lambda F, g, y, x, t: ((x - t) * g / 3, (t - x) * g / 3), "1/N instead of 2/N",
      names=("x", "t"),
      note="2. / 3 rounds in double; the rule is written 2 * (self - target) * grad / numel "
           "and the library's norm is the one-ulp twin",
      extra=[Twin("norm = 2. / numel folded in double",
                  lambda F, g, y, x, t: ((2. / 3) * (x - t) * g, (2. / 3) * (t - x) * g),
                  ulp=True, label="one_ulp")])

T.add("torch_l1_loss", f"{DY}: abs — grad * self.sgn(), then mean (l1_loss is composite)",
      [(2,), (2,)],
      lambda F, x, t: mean_all(abs(x - t)),
      lambda F, g, y, x, t: (F.sign(x - t) * g / 2, -F.sign(x - t) * g / 2),
      lambda F, g, y, x, t: (F.sign(x - t) * g, -F.sign(x - t) * g), "/ numel missing",
      names=("x", "t"))


def _bce_forward(F, x, t):
    return mean_all(-(t * F.log(x) + (1 - t) * F.log(1 - x)))


T.add("torch_binary_cross_entropy",
      f"{LOSS}: binary_cross_entropy_backward — grad * (input - target) / ((1 - input) * input); "
      f"{FM}: binary_cross_entropy_target_backward — -logit(self) * grad", [(2,), (2,)],
      _bce_forward,
      lambda F, g, y, x, t: (g * (x - t) / ((1 - x) * x) / 2, -F.log(x / (1 - x)) * g / 2),
      lambda F, g, y, x, t: (g * (t - x) / ((1 - x) * x) / 2, -F.log(x / (1 - x)) * g / 2),
      "target - input (sign)", names=("x", "t"), domain=lambda x, t: between(x, 0, 1),
      note="the max(·, EPSILON) guard and the forward's log clamp at -100 are left out "
           "(inactive inside the domain); torch_binary_cross_entropy_clamped keeps them")

EPSILON = float32(1e-12)   # Loss.cpp: constexpr float EPSILON = 1e-12


def _bce_clamped_forward(F, x, t):
    return mean_all((t - 1) * F.maximum(F.log(1 - x), -100) - t * F.maximum(F.log(x), -100))


def _bce_clamped_vjp(sign):
    def vjp(F, g, y, x, t):
        return (g * sign * (x - t) / F.maximum((1 - x) * x, EPSILON) / 2,
                -F.log(x / (1 - x)) * g / 2)
    return vjp


T.add("torch_binary_cross_entropy_clamped",
      f"{LOSS}: binary_cross_entropy_out_cpu / binary_cross_entropy_backward_out_cpu, with the "
      "max(log, -100) and max(·, EPSILON) guards", [(2,), (2,)],
      _bce_clamped_forward, _bce_clamped_vjp(1), _bce_clamped_vjp(-1), "target - input (sign)",
      names=("x", "t"),
      domain=lambda x, t: between(x, 0, 1) + [(1 - e) * e - EPSILON > 0 for e in x.flat],
      note="correct on the declared domain (1 - x)·x > EPSILON; proving it needs the guards "
           "resolved from the assumptions")


def _bce_logits_forward(F, x, t):
    max_val = F.maximum(-x, 0)
    return mean_all((1 - t) * x + max_val + F.log(F.exp(-max_val) + F.exp(-x - max_val)))


T.add("torch_bce_with_logits",
      f"{LOSS}: binary_cross_entropy_with_logits_backward — "
      "(input.sigmoid() - target) * grad / numel; "
      f"{FM}: binary_cross_entropy_with_logits_target_backward — -self * grad", [(2,), (2,)],
      _bce_logits_forward,
      lambda F, g, y, x, t: ((F.sigmoid(x) - t) * g / 2, -x * g / 2),
      lambda F, g, y, x, t: ((F.sigmoid(x) - t) * g, -x * g), "/ numel missing", names=("x", "t"))

T.add("torch_kl_div", f"{LOSS}: kl_div_backward_cpu — target > 0 ? -target * grad : 0; "
      f"{FM}: kl_div_target_backward — grad * (target.log() + 1 - self)", [(2,), (2,)],
      lambda F, x, t: mean_all(F.where(F.gt(t, 0), t * (F.log(t) - x), 0)),
      lambda F, g, y, x, t: (F.where(F.gt(t, 0), -t * g, 0) / 2,
                             F.where(F.gt(t, 0), g * (F.log(t) + 1 - x), 0) / 2),
      lambda F, g, y, x, t: (F.where(F.gt(t, 0), t * g, 0) / 2,
                             F.where(F.gt(t, 0), g * (F.log(t) + 1 - x), 0) / 2),
      "input cotangent sign", names=("x", "t"), domain=lambda x, t: positive(t),
      note="log_target=False, reduction='mean'")

T.add("torch_kl_div_log_target", f"{LOSS}: kl_div_backward_cpu (log_target) — -exp(target) * grad; "
      f"{FM}: kl_div_target_backward (log_target)", [(2,), (2,)],
      lambda F, x, t: mean_all(F.exp(t) * (t - x)),
      lambda F, g, y, x, t: (-F.exp(t) * g / 2, g * F.exp(t) * (t + 1 - x) / 2),
      lambda F, g, y, x, t: (-F.exp(t) * g / 2, g * F.exp(t) * (t - x) / 2),
      "target cotangent drops the + 1", names=("x", "t"))

_ONE_HOT = arr([[0, 1, 0], [1, 0, 0]])          # targets (1, 0)
_ONE_HOT_SHIFTED = arr([[0, 0, 1], [0, 1, 0]])  # targets (2, 1): off by one

T.add("torch_nll_loss", f"{DY}: nll_loss_forward — nll_loss_backward: -grad / total_weight at "
      "the target", [(2, 3)],
      lambda F, x: np.array(-(x * _ONE_HOT).sum() / 2, dtype=object),
      lambda F, g, y, x: (-expand(g, x.shape) * _ONE_HOT / 2,),
      lambda F, g, y, x: (-expand(g, x.shape) * _ONE_HOT_SHIFTED / 2,), "target index off by one",
      note="log-probabilities in, fixed targets (1, 0), no weights")


def _log_softmax(F, x):
    return x - F.log(F.exp(x).sum(axis=-1, keepdims=True))


def _softmax(F, x):
    return F.exp(x) / F.exp(x).sum(axis=-1, keepdims=True)


T.add("torch_cross_entropy_soft", f"{DY}: _log_softmax (cross_entropy with class probabilities, "
      "via _log_softmax_backward_data)", [(2, 3), (2, 3)],
      lambda F, x, t: np.array(-(t * _log_softmax(F, x)).sum() / 2, dtype=object),
      lambda F, g, y, x, t: ((_softmax(F, x) * t.sum(axis=-1, keepdims=True) - t) * g / 2,
                             -_log_softmax(F, x) * g / 2),
      lambda F, g, y, x, t: ((_softmax(F, x) - t) * g / 2, -_log_softmax(F, x) * g / 2),
      "assumes each target row sums to 1", names=("x", "t"))

# ----- activations with several inputs, normalisation, attention -----


def _glu_vjp(keep_one_minus):
    def vjp(F, g, y, x):
        a, b = x[:, :2], x[:, 2:]
        s = F.sigmoid(b)
        gb = g * a * s * (1 - s) if keep_one_minus else g * a * s
        return (np.concatenate([g * s, gb], axis=1),)
    return vjp


T.add("torch_glu", f"{DY}: glu — glu_backward (dim=-1)", [(2, 4)],
      lambda F, x: x[:, :2] * F.sigmoid(x[:, 2:]),
      _glu_vjp(True), _glu_vjp(False), "drops (1 - sigmoid(b))")

T.add("torch_prelu", f"{DY}: _prelu_kernel — _prelu_kernel_backward", [(2, 2), (1,)],
      lambda F, x, w: F.where(F.gt(x, 0), x, w[0] * x),
      lambda F, g, y, x, w: (F.where(F.gt(x, 0), g, w[0] * g),
                             arr([F.where(F.gt(x, 0), 0, x * g).sum()])),
      lambda F, g, y, x, w: (F.where(F.gt(x, 0), g, w[0] * g),
                             arr([F.where(F.gt(x, 0), 0, g).sum()])), "weight cotangent drops self",
      names=("x", "w"))


def _layer_norm_forward(F, x, w, b, eps=1e-5):
    n = x.shape[-1]
    mean = x.sum(axis=-1, keepdims=True) / n
    var = ((x - mean) ** 2).sum(axis=-1, keepdims=True) / n
    rstd = 1 / F.sqrt(var + eps)
    scale, bias = rstd, -rstd * mean
    return (x * scale + bias) * w + b


def _layer_norm_vjp(mode="exact", unbiased=False):
    """LayerNormBackwardKernelImplInternal: dX = a·dY·γ + b·X + c."""
    def vjp(F, g, y, x, w, beta, eps=1e-5):
        n = x.shape[-1]
        mean = x.sum(axis=-1, keepdims=True) / n
        var = ((x - mean) ** 2).sum(axis=-1, keepdims=True) / (n - 1 if unbiased else n)
        a = 1 / F.sqrt(var + eps)
        ds = (g * x * w).sum(axis=-1, keepdims=True)
        db = (g * w).sum(axis=-1, keepdims=True)
        if mode == "exact":
            b_ = (db * mean - ds) * a * a * a / n
            c = -b_ * mean - db * a / n
        else:   # as in the kernel: scale = T_ACC(1) / N folded in double
            scale = 1.0 / n
            b_ = (db * mean - ds) * a * a * a * scale
            c = -b_ * mean - db * a * scale
        dx = a * g * w + b_ * x + c
        dgamma = (g * (a * x + (-a * mean))).sum(axis=0)
        dbeta = g.sum(axis=0)
        return (dx, dgamma, dbeta)
    return vjp


T.add("torch_layer_norm", f"{LN}: LayerNormBackwardKernelImplInternal (N=3, eps=1e-5)",
      [(2, 3), (3,), (3,)], _layer_norm_forward, _layer_norm_vjp(),
      _layer_norm_vjp(unbiased=True), "rstd from the unbiased variance",
      names=("x", "w", "b"),
      note="scale = 1/N is folded in double in the kernel (1/3 rounds); the rule is written "
           "with / N and the kernel's scale is the one-ulp twin",
      extra=[Twin("scale = T_ACC(1) / N folded in double", _layer_norm_vjp(mode="kernel"),
                  ulp=True, label="one_ulp")])

T.add("torch_layer_norm_n2", f"{LN}: LayerNormBackwardKernelImplInternal (N=2, as written)",
      [(2, 2), (2,), (2,)], _layer_norm_forward, _layer_norm_vjp(mode="kernel"),
      lambda F, g, y, x, w, b: (_layer_norm_vjp(mode="kernel")(F, g, y, x, w, b)[:2]
                                + (g.sum(axis=1),)),
      "beta cotangent summed over the wrong axis", names=("x", "w", "b"),
      note="N = 2: scale = 1.0 / 2 is exact, so the kernel's spelling is kept")


def _rms_norm_forward(F, x, w, eps=1e-6):
    rstd = 1 / F.sqrt((x * x).sum(axis=-1, keepdims=True) / x.shape[-1] + eps)
    return x * rstd * w


def _rms_norm_vjp(second_term=True):
    def vjp(F, g, y, x, w, eps=1e-6):
        n = x.shape[-1]
        rstd = 1 / F.sqrt((x * x).sum(axis=-1, keepdims=True) / n + eps)
        rstd_pow3 = rstd ** 3
        grad_x_hat = g * w
        dx = rstd * grad_x_hat
        if second_term:
            dx = dx - (x * rstd_pow3 / float(n)) * (x * grad_x_hat).sum(axis=-1, keepdims=True)
        dgamma = (g * (x * rstd)).sum(axis=0)
        return (dx, dgamma)
    return vjp


T.add("torch_rms_norm", f"{FM}: infinitely_differentiable_native_rms_norm_backward (eps=1e-6)",
      [(2, 3), (3,)], _rms_norm_forward, _rms_norm_vjp(), _rms_norm_vjp(False),
      "drops the rstd³ term", names=("x", "w"),
      note="the division by static_cast<double>(N_rms) is exact")

_SCALE = 1 / math.sqrt(2)   # sdp::calculate_scale: 1 / sqrt(E), E = 2, a double


def _attention(F, q, k, v):
    s = (q @ k.T) * _SCALE
    return _softmax(F, s)


def _sdpa_vjp(transpose_ds=True):
    def vjp(F, g, y, q, k, v):
        p = _attention(F, q, k, v)
        dv = p.T @ g
        dp = g @ v.T
        ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))
        dq = ds @ k * _SCALE
        dk = (ds.T if transpose_ds else ds) @ q * _SCALE
        return (dq, dk, dv)
    return vjp


T.add("torch_sdpa_math", f"{DY}: mm, _softmax (as composed by _scaled_dot_product_attention_math)",
      [(2, 2), (2, 2), (2, 2)],
      lambda F, q, k, v: _attention(F, q, k, v) @ v,
      _sdpa_vjp(), _sdpa_vjp(False), "dS not transposed for dK", names=("q", "k", "v"),
      note="scale = 1/sqrt(2) as a double, the same in forward and rule")

RULES = T.rules

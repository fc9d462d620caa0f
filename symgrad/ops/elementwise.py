"""Elementwise nonlinearities: forward from symgrad.fn, VJP in a runtime's closed form."""
from .. import fn
from . import defop, elementwise_shape, same_shape


def _exp(x):
    """e^x."""
    return fn.exp(x)


def _exp_vjp(g, out, x):
    return (g * out,)


def _log(x):
    """log x (x > 0)."""
    return fn.log(x)


def _log_vjp(g, out, x):
    return (g / x,)


def _tanh(x):
    """tanh x."""
    return fn.tanh(x)


def _tanh_vjp(g, out, x):
    return (g * (1 - out * out),)


def _sigmoid(x):
    """σ(x) = 1/(1 + e^{-x})."""
    return fn.sigmoid(x)


def _sigmoid_vjp(g, out, x):
    return (g * out * (1 - out),)


def _silu(x):
    """x·σ(x)."""
    return fn.silu(x)


def _silu_vjp(g, out, x):
    s = fn.sigmoid(x)
    return (g * s * (1 + x * (1 - s)),)


def _swiglu(a, b):
    """SwiGLU's product silu(a)⊙b (a the gate projection, b the up projection)."""
    return fn.silu(a) * b


def _swiglu_vjp(g, out, a, b):
    return _silu_vjp(g * b, None, a)[0], g * fn.silu(a)


def _gelu_tanh(x):
    """GELU, tanh approximation: x/2·(1 + tanh(√(2/π)(x + 0.044715x³)))."""
    return fn.gelu_tanh(x)


def _gelu_tanh_vjp(g, out, x):
    # PyTorch's GeluBackward (approximate='tanh'): ½(1+t) + ½x(1−t²)·k(1 + 3c·x²)
    k = fn.sqrt(2 / fn.pi)
    c = fn.rational(fn.GELU_TANH_C)
    t = fn.tanh(k * (x + c * x**3))
    return (g * ((1 + t) / 2 + x * (1 - t * t) * k * (1 + 3 * c * x**2) / 2),)


def _gelu_erf(x):
    """GELU, exact: x·Φ(x) = x/2·(1 + erf(x/√2))."""
    return fn.gelu_erf(x)


def _gelu_erf_vjp(g, out, x):
    # Φ(x) + x·φ(x), φ the standard normal density
    cdf = (1 + fn.erf(x / fn.sqrt(2))) / 2
    pdf = fn.exp(-x * x / 2) / fn.sqrt(2 * fn.pi)
    return (g * (cdf + x * pdf),)


def _relu(x):
    """max(x, 0) = x·H(x) (differentiable for x ≠ 0)."""
    return fn.relu(x)


def _relu_vjp(g, out, x):
    return (g * fn.step(x),)


def _sqrt(x):
    """√x (x > 0)."""
    return fn.sqrt(x)


def _sqrt_vjp(g, out, x):
    return (g / (2 * out),)


def _inv(x):
    """1/x (x ≠ 0)."""
    return 1 / x


def _inv_vjp(g, out, x):
    return (-g * out * out,)


def _entrywise(name, relation):
    def assume(x, **_):
        return [(e, relation) for e in x.flat]
    return assume


_ELEMENTWISE = [
    ("exp", _exp, _exp_vjp, "", None),
    ("log", _log, _log_vjp, "x > 0", _entrywise("log", "> 0")),
    ("tanh", _tanh, _tanh_vjp, "", None),
    ("sigmoid", _sigmoid, _sigmoid_vjp, "", None),
    ("silu", _silu, _silu_vjp, "", None),
    ("gelu_tanh", _gelu_tanh, _gelu_tanh_vjp, "", None),
    ("gelu_erf", _gelu_erf, _gelu_erf_vjp, "", None),
    ("relu", _relu, _relu_vjp, "x ≠ 0", _entrywise("relu", "!= 0")),
    ("sqrt", _sqrt, _sqrt_vjp, "x > 0", _entrywise("sqrt", "> 0")),
    ("inv", _inv, _inv_vjp, "x ≠ 0", _entrywise("inv", "!= 0")),
]
for _name, _f, _vjp, _cond, _assume in _ELEMENTWISE:
    defop(_name, _f, _vjp, args=("x",), signature="x (...) -> (same)", linearity="nonlinear",
          out_shape=elementwise_shape, examples=[[(2, 3)], [(4,)]], conditions=_cond,
          assumptions=_assume)

defop("swiglu", _swiglu, _swiglu_vjp, args=("a", "b"), signature="a (...), b (same) -> (same)",
      linearity="nonlinear", out_shape=same_shape("swiglu", ("a", "b")),
      examples=[[(2, 3), (2, 3)], [(4,), (4,)]])

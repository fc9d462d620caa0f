"""Two backward rules written by hand, and a third with a bug.

``rms_norm`` is an op in symgrad's registry (``symgrad.define_op``, named ``my_rms_norm``:
symgrad has a built-in ``rms_norm``), usable in a Graph;
``swish``/``swish_vjp`` are a plain forward/VJP pair; ``swish_vjp_wrong`` forgets the
second term of the product rule.
"""
import symgrad as sg
from symgrad import fn

EPS = sg.fn.rational("1/100000")


def rms_norm_forward(x, w):
    """x / √(mean(x²) + ε) · w over the last axis."""
    r = fn.rsqrt((x * x).sum(axis=-1, keepdims=True) / x.shape[-1] + EPS)
    return x * r * w


def rms_norm_vjp(g, y, x, w):
    d = x.shape[-1]
    r = fn.rsqrt((x * x).sum(axis=-1, keepdims=True) / d + EPS)
    gw = g * w
    dx = r * gw - x * r ** 3 * (gw * x).sum(axis=-1, keepdims=True) / d
    dw = (g * x * r).sum(axis=tuple(range(x.ndim - 1)))
    return dx, dw


rms_norm = sg.define_op("my_rms_norm", rms_norm_forward, rms_norm_vjp, args=["x", "w"])


def swish(x):
    return x * fn.sigmoid(x)


def swish_vjp(g, y, x):
    s = fn.sigmoid(x)
    return (g * (s + x * s * (1 - s)),)


def swish_vjp_wrong(g, y, x):
    return (g * fn.sigmoid(x),)

"""Rules, their wrong twins, and the constants the libraries write.

A :class:`Rule` is one library's VJP formula with its forward, both written against a
namespace ``F`` (see :mod:`.namespaces`): ``forward(F, *inputs)`` and
``vjp(F, g, out, *inputs)`` returning one cotangent per input (``None`` = zero). Each rule
carries at least one :class:`Twin`: a plausible wrong variant (sign flip, dropped term,
missing transpose, …) that must be REFUTED. A twin marked ``ulp=True`` is the library's
formula exactly as written where a float constant is rounded before it meets the symbolic
value (``3 * kKappa`` in double, ``M_2_SQRTPI``, ``1.0 / N``): wrong at the exact-rational
level, so REFUTED, by about one unit in the last place.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

# ----- library constants, as the C headers / modules spell them (read as Python floats) -----
M_PI = float("3.14159265358979323846")
M_2_SQRTPI = float("1.12837916709551257390")     # 2/sqrt(pi)
M_SQRT2 = float("1.41421356237309504880")
M_SQRT1_2 = float("0.70710678118654752440")      # 1/sqrt(2)
M_LN2 = float("0.69314718055994530942")
M_LN10 = float("2.30258509299404568402")
M_180_PI = 57.295779513082320876798154814105170332405472466564  # FunctionsManual rad2deg
M_PI_180 = 0.017453292519943295769236907684886127134428718885417  # FunctionsManual deg2rad


def float32(value: float) -> float:
    """A C ``float`` constant (``1.0f / 6.0f``, ``constexpr float EPSILON = 1e-12``) as
    the double it becomes when it is widened."""
    return float(np.float32(value))


@dataclass(frozen=True)
class Twin:
    """A wrong variant of a rule: its ``vjp`` (and, rarely, its own ``forward``)."""

    defect: str                       #: what is wrong, in a few words
    vjp: Callable
    forward: Callable | None = None   #: None: the rule's forward
    ulp: bool = False                 #: wrong only by a rounded float constant
    label: str = "wrong"


@dataclass(frozen=True)
class Rule:
    """One library's VJP formula, its forward, and its wrong twins."""

    name: str
    library: str                      #: PyTorch, HIPS autograd, JAX, tinygrad
    source: str                       #: "file: op — formula" in the library's repository
    shapes: tuple
    forward: Callable
    vjp: Callable
    twins: tuple
    names: tuple | None = None        #: input names (default x, y, z, …)
    reads: tuple | None = None
    domain: Callable | None = None    #: (*symbolic inputs) -> conditions such as e > 0
    note: str = ""                    #: how the translation differs from the source, if at all

    @property
    def input_names(self) -> tuple:
        if self.names is not None:
            return tuple(self.names)
        n = len(self.shapes)
        return tuple(chr(ord("x") + i) if i < 3 else f"x{i}" for i in range(n))


REPOS = {
    "PyTorch": "github.com/pytorch/pytorch",
    "HIPS autograd": "github.com/HIPS/autograd",
    "JAX": "github.com/jax-ml/jax",
    "tinygrad": "github.com/tinygrad/tinygrad",
}


@dataclass
class Table:
    """The rules of one library, in the order they are declared."""

    library: str
    rules: list = field(default_factory=list)

    def add(self, name, source, shapes, forward, vjp, wrong, defect, *, extra=(), **kw):
        """Declare a rule with its plausible wrong twin (``wrong``, ``defect``) and any
        ``extra`` twins (e.g. the library's rounded constant, ``ulp=True``)."""
        twins = (Twin(defect, wrong),) + tuple(extra)
        self.rules.append(Rule(name=name, library=self.library, source=source,
                               shapes=tuple(tuple(s) for s in shapes), forward=forward,
                               vjp=vjp, twins=twins, **kw))


# ----- helpers for domains -----

def positive(*arrays):
    """Every entry > 0."""
    return [e > 0 for a in arrays for e in np.asarray(a).flat]


def above(a, lo):
    return [e - lo > 0 for e in np.asarray(a).flat]


def between(a, lo, hi):
    """lo < entry < hi."""
    return [c for e in np.asarray(a).flat for c in (e - lo > 0, hi - e > 0)]


def nonzero(*arrays):
    return [(e, "!= 0") for a in arrays for e in np.asarray(a).flat]


def arr(values):
    """A constant object array (a fixed mask, one-hot target, …)."""
    return np.array(values, dtype=object)


# ----- array helpers shared by the rule tables -----

def expand(a, shape):
    """``a`` broadcast to ``shape`` as a fresh object array (a reduction's cotangent
    expanded back over the reduced axes)."""
    return np.array(np.broadcast_to(np.asarray(a, dtype=object), shape), dtype=object)


def cumprod(a, axis=0):
    """Cumulative product of an object array (what ``cumprod`` means on every backend)."""
    return np.multiply.accumulate(np.asarray(a, dtype=object), axis=axis)


def total(a):
    """The sum of all entries, as a 0-d object array (a full reduction's output)."""
    return np.array(np.asarray(a, dtype=object).sum(), dtype=object)


def mean_all(a):
    a = np.asarray(a, dtype=object)
    return np.array(a.sum() / a.size, dtype=object)

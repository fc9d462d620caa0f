"""Symbolic tensors: NumPy object arrays whose entries are symbolic expressions.

The checker works on SymEngine expressions (the fast path); ``backend="sympy"`` gives SymPy
ones (the reference path). Entries are named readably after their index:

>>> x = symbols("x", (2, 3))
>>> x.shape, str(x[0, 1])
((2, 3), 'x[0,1]')
>>> str(symbols("v", (2,), backend="sympy")[1])
'v[1]'
"""
from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import symengine as se
import sympy as sp

from .errors import InputError

BACKENDS = ("symengine", "sympy")


def entry_name(name: str, index: tuple[int, ...]) -> str:
    """The readable name of one entry: ``x[0,1]``."""
    return f"{name}[{','.join(map(str, index))}]"


def symbol(name: str, backend: str = "symengine"):
    """One scalar symbol (a parameter such as ``c`` or ``eps``)."""
    return se.Symbol(name) if backend == "symengine" else sp.Symbol(name)


def symbols(name: str, shape, backend: str = "symengine", unique: bool = False) -> np.ndarray:
    """An object array of fresh symbols ``name[i,j,…]`` of the given shape. ``unique``
    makes them dummies: printed the same, but equal to no other symbol of that name (the
    checker's own, so a user's constant named ``g[0]`` cannot stand for a cotangent)."""
    shape = tuple(int(s) for s in shape)
    if unique:
        make = se.Dummy if backend == "symengine" else sp.Dummy
    else:
        make = se.Symbol if backend == "symengine" else sp.Symbol
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    out = np.empty(shape, dtype=object)
    for index in itertools.product(*(range(s) for s in shape)):
        out[index] = make(entry_name(name, index))
    return out


def constant(value, backend: str = "symengine"):
    """An exact symbolic number: ints, Fractions, strings like ``"1/3"``; floats exactly."""
    if isinstance(value, (float, np.floating)):     # exact for float16 … long double
        value = Fraction(*value.as_integer_ratio())
    elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = int(value)
    elif isinstance(value, str):
        value = Fraction(value)
    if isinstance(value, Fraction):
        if backend == "sympy":
            return sp.Rational(value.numerator, value.denominator)
        return se.Rational(value.numerator, value.denominator)
    return se.sympify(value) if backend == "symengine" else sp.sympify(value)


def as_symengine(arr) -> np.ndarray:
    """An object array of SymEngine expressions (SymPy entries and Python numbers
    converted; bare floats exactly)."""
    a = np.asarray(arr, dtype=object)
    if a.size and all(isinstance(v, se.Basic) for v in a.flat):
        return a
    out = np.empty(a.shape, dtype=object)
    for index in np.ndindex(a.shape):
        out[index] = se.sympify(float_to_exact(a[index]))
    return out


def float_to_exact(v):
    """A bare Python or NumPy float, NumPy integer or Fraction as an exact number; anything
    else unchanged."""
    return constant(v) if isinstance(v, (float, Fraction, np.floating, np.integer)) else v


def shape_tuple(shape) -> str:
    """``(2, 3)`` → ``(2,3)``: how error messages name a shape."""
    return "(" + ",".join(map(str, shape)) + ")"


def shape_str(shape) -> str:
    """``(2, 3)`` → ``2x3`` (and ``()`` → ``scalar``)."""
    return "x".join(map(str, shape)) if len(shape) else "scalar"


def parse_shape(text: str) -> tuple:
    """``2x3`` → (2, 3); one clear error for anything else."""
    parts = text.lower().split("x")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        raise InputError(f"cannot read the shape {text!r}; write it like 2x3 (positive "
                         f"integers joined by x)") from None
    bad = [d for d in dims if d <= 0]
    if bad:
        raise InputError(f"the shape {text!r} has the dimension {bad[0]}; every dimension "
                         f"must be a positive integer")
    return dims

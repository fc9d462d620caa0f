"""Interval bounds: sound enclosures of every tape value (and of the output's Jacobian) over a
box of inputs — ``symgrad.bounds`` and ``symgrad bounds``. The theorems: docs/bounds.md.

>>> import numpy as np, symgrad as sg
>>> g = sg.models.mha(2, 2, 1, 2)
>>> rng = np.random.default_rng(0)
>>> values = {name: rng.standard_normal(shape) for name, shape in g.inputs}
>>> b = sg.bounds(g, values, radius=0.01, method="centered")
>>> lo, hi = b.values["out"]
>>> bool(np.all(lo <= g.evaluate(values)["out"])) and bool(np.all(g.evaluate(values)["out"] <= hi))
True
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError, ShapeError
from ..tensor import shape_tuple
from .enclose import Box
from .methods import METHODS, enclose_box
from .interval import NotSupported, as_interval, bounds_arrays

#: seconds the default method (auto) may spend subdividing
DEFAULT_BUDGET = 20.0


@dataclass
class Bounds:
    """Enclosures of every tape value over the box: ``values[name] = (lower, upper)``
    float64 arrays of the value's shape, outward rounded; ``jacobian[input] = (lower,
    upper)`` of shape out.shape + input.shape when computed."""

    graph: str
    method: str
    radius: float
    perturb: list
    seconds: float
    values: dict
    jacobian: dict = field(default_factory=dict)
    pieces: int = 1
    per_method: dict = field(default_factory=dict)   #: method → (lower, upper) of out

    def widths(self) -> dict:
        """Mean width of each tape value's enclosure."""
        return {name: float(np.mean(hi - lo)) if lo.size else 0.0
                for name, (lo, hi) in self.values.items()}

    def to_json(self) -> dict:
        def pair(lo, hi):
            return {"lower": lo.tolist(), "upper": hi.tolist()}
        out = {"graph": self.graph, "method": self.method, "radius": self.radius,
               "perturb": self.perturb, "seconds": round(self.seconds, 4),
               "pieces": self.pieces, "widths": self.widths(),
               "values": {n: pair(*v) for n, v in self.values.items()},
               "methods": {m: pair(*v) for m, v in self.per_method.items()}}
        if self.jacobian:
            out["jacobian"] = {n: pair(*v) for n, v in self.jacobian.items()}
        return out


def default_values(graph, seed: int = 0) -> dict:
    """Values for every input when none are given: x ~ N(0, 1); weight matrices
    N(0, 1)/√fan-in; γ ~ 1 + 0.1·N(0, 1); β and biases 0.1·N(0, 1) (NumPy, ``seed``)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in graph.inputs:
        base = name.split(".")[0]
        if base == "x":
            out[name] = rng.standard_normal(shape)
        elif base.startswith("gamma"):
            out[name] = 1 + 0.1 * rng.standard_normal(shape)
        elif len(shape) == 1:
            out[name] = 0.1 * rng.standard_normal(shape)
        else:
            out[name] = rng.standard_normal(shape) / np.sqrt(shape[0])
    return out


def load_values(path) -> dict:
    """Every array of an .npz file, by name; one sentence when it cannot be read."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: np.array(data[k]) for k in data.files}
    except FileNotFoundError:
        raise InputError(f"--values {path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"--values {path}: not a NumPy .npz file ({exc})") from None


def check_inputs(graph, values, radius, perturb, method) -> list:
    """The perturbed inputs' indices, after checking every argument (one sentence each)."""
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    try:
        r = float(radius)
    except (TypeError, ValueError):
        raise InputError(f"the radius must be a number, got {radius!r}") from None
    if not math.isfinite(r) or r < 0:
        raise InputError(f"the radius must be a finite number ≥ 0, got {radius!r}")
    names = [n for n, _ in graph.inputs]
    for name in perturb:
        if name not in names:
            raise InputError(f"--perturb {name}: graph {graph.name} has no input {name!r}; "
                             f"its inputs are {', '.join(names)}")
    for name, shape in graph.inputs:
        if name not in values:
            raise InputError(f"no value for input {name!r} of graph {graph.name} (its inputs "
                             f"are {', '.join(names)})")
        try:
            v = np.asarray(values[name], dtype=float)
        except (TypeError, ValueError):
            raise InputError(f"the value of input {name!r} is not an array of numbers") \
                from None
        if v.shape != tuple(shape):
            raise ShapeError(f"input {name!r} has shape {shape_tuple(v.shape)}, graph "
                             f"{graph.name} expects {shape_tuple(shape)}")
        if not np.all(np.isfinite(v)):
            raise InputError(f"input {name!r} holds a non-finite value")
    for node in graph.nodes:   # LayerNorm's rule and form rest on ε > 0 (as its proof does)
        if node.op == "layer_norm":
            eps = as_interval(node.params["eps"])
            if not eps.lo > 0:
                raise InputError(f"node {node.name} (layer_norm) has eps = "
                                 f"{node.params['eps']}; interval bounds need eps > 0")
    return [names.index(n) for n in dict.fromkeys(perturb)]


def bounds(graph, values: dict, radius: float = 0.1, perturb=None, method: str = "auto",
           grad: bool = False, budget: float = DEFAULT_BUDGET) -> Bounds:
    """Sound enclosures of every tape value of ``graph`` over the box: each input named in
    ``perturb`` (default: x, or the first input of a graph without one — the attention
    core's Q) anywhere in [v − radius, v + radius] entrywise (L∞), the others fixed at
    ``values``. ``method``: ibp, ops, centered, taylor, cubic, subdivide or auto (subdivide within
    ``budget`` seconds; the tightest). ``grad``: also enclose ∂out/∂input over the box for
    every perturbed input."""
    if not perturb:
        names = [n for n, _ in graph.inputs]
        perturb = ("x",) if "x" in names else (names[0],)
    perturbed = check_inputs(graph, values, radius, perturb, method)
    t0 = time.perf_counter()
    box = Box(graph, values, float(radius), perturbed)
    chosen = "subdivide" if method == "auto" else method
    try:
        found = enclose_box(graph, box, chosen, budget, grad=grad)
    except (NotSupported, ZeroDivisionError, OverflowError) as exc:
        raise InputError(f"cannot enclose graph {graph.name} with {chosen}: {exc}") from None
    vals = {name: bounds_arrays(v) for name, v in zip(graph.values, found["values"])}
    jac = {}
    if found["jacobian"] is not None and (grad or method in ("centered", "taylor", "cubic",
                                                                "subdivide", "auto")):
        jac = {graph.inputs[i][0]: bounds_arrays(J) for i, J in found["jacobian"].items()}
    return Bounds(graph.name, method, float(radius), list(dict.fromkeys(perturb)),
                  time.perf_counter() - t0, vals, jac if grad else {}, found["pieces"],
                  {m: bounds_arrays(v) for m, v in found["per_method"].items()})

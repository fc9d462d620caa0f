"""Inner ranges: where the graph really goes over the box, found by running its own forward
and VJP code on float64 points — random points, box corners, and projected sign-gradient
ascent on each output entry (up and down). What they find is inside the true range, so an
enclosure must contain it; the width of the hull of what they find is the yardstick for the
enclosures' tightness (a lower bound on the true range's width)."""
from __future__ import annotations

import numpy as np

from .interval import floats, nums


def evaluate(graph, inputs: list) -> list:
    """float64 values of every tape value at one point (inputs: float arrays)."""
    return [floats(v) for v in graph.eval([nums(a) for a in inputs])]


def _output_gradient(graph, inputs: list, k) -> list:
    vals = graph.eval([nums(a) for a in inputs])
    shape = graph.shape(graph.output)
    seed = np.zeros(shape, dtype=object)
    seed[k] = 1
    cot = graph.backprop(vals, {graph.output: nums(seed.astype(float))})
    return [floats(c) if isinstance(c, np.ndarray) else np.zeros(graph.shape(i))
            for i, c in enumerate(cot[:len(graph.inputs)])]


class Inner:
    """The hull of the points found, per tape value; ``points`` keeps every input point."""

    def __init__(self, graph):
        self.graph = graph
        self.lo = None
        self.hi = None
        self.points = []

    def add(self, inputs: list):
        vals = evaluate(self.graph, inputs)
        self.points.append([a.copy() for a in inputs])
        if self.lo is None:
            self.lo = [v.copy() for v in vals]
            self.hi = [v.copy() for v in vals]
        else:
            self.lo = [np.minimum(a, v) for a, v in zip(self.lo, vals)]
            self.hi = [np.maximum(a, v) for a, v in zip(self.hi, vals)]
        return vals


def inner_range(graph, box, samples: int = 64, corners: int = 64, ascent: int = 8,
                seed: int = 0) -> Inner:
    """Random points, random corners of the box and ``ascent`` steps of projected
    sign-gradient ascent from the box's centre on each output entry, both ways."""
    rng = np.random.default_rng(seed)
    inner = Inner(graph)
    mid = [(lo + hi) / 2 for lo, hi in zip(box.lo, box.hi)]
    inner.add(mid)
    for _ in range(samples):
        inner.add([lo + (hi - lo) * rng.random(lo.shape) for lo, hi in zip(box.lo, box.hi)])
    for _ in range(corners):
        inner.add([np.where(rng.random(lo.shape) < 0.5, lo, hi)
                   for lo, hi in zip(box.lo, box.hi)])
    if ascent:
        shape = graph.shape(graph.output)
        for k in np.ndindex(shape):
            for sign in (1.0, -1.0):
                x = [m.copy() for m in mid]
                for step in range(ascent):
                    grads = _output_gradient(graph, x, k)
                    frac = 1.0 if step == 0 else 0.5 ** step
                    x = [np.clip(xi + sign * frac * (hi - lo) * np.sign(gi), lo, hi)
                         for xi, gi, lo, hi in zip(x, grads, box.lo, box.hi)]
                    inner.add(x)
    return inner

"""What every builder shares: the positive-size check and the axis labels of the inputs."""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..graph import Graph


def _check_dims(**dims):
    for k, v in dims.items():
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v <= 0:
            raise InputError(f"{k} must be a positive integer, got {v!r}")


#: the role of each axis of the builders' inputs (n positions, d model width, hh the
#: concatenated heads, ff the FFN width, h heads, hd head width)
_AXES = {"x": ("n", "d"), "Wq": ("d", "hh"), "Wk": ("d", "hh"), "Wv": ("d", "hh"),
         "Wo": ("hh", "d"), "gamma": ("d",), "beta": ("d",), "gamma1": ("d",),
         "beta1": ("d",), "gamma2": ("d",), "beta2": ("d",), "W1": ("d", "ff"),
         "b1": ("ff",), "W2": ("ff", "d"), "b2": ("d",), "Q": ("h", "n", "hd"),
         "Kt": ("h", "hd", "n"), "V": ("h", "n", "hd")}


def _labelled(g: Graph) -> Graph:
    g.axis_labels = {name: _AXES[name] for name, shape in g.inputs
                     if name in _AXES and len(_AXES[name]) == len(shape)}
    return g

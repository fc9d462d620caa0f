"""symgrad: prove with computer algebra that an autograd tape's backward pass is right.

>>> import symgrad as sg
>>> sg.verify_node("matmul", shapes=[(2, 3), (3, 2)]).verdict
<Verdict.PROVED: 'proved'>
"""
from . import fn, models
from .api import check_jvp, check_vjp, define_op, verify, verify_node
from .errors import InputError, InternalError, RuleError, ShapeError
from .graph import Graph
from .intervals import Bounds, bounds
from .ops import OPS, get_op
from .prove.result import GraphResult, Result, SideCondition, Verdict, Witness
from .tensor import symbols
from .version import __version__

__all__ = [
    "check_vjp", "check_jvp", "define_op", "verify_node", "verify", "Graph", "GraphResult", "models",
    "symbols", "fn",
    "Verdict", "Result", "Witness", "SideCondition", "OPS", "get_op", "InputError",
    "RuleError", "ShapeError", "InternalError", "bounds", "Bounds", "__version__",
]


def __getattr__(name):
    """``symgrad.torch`` and ``symgrad.jax`` on first use (optional extras, slow to
    import)."""
    if name in ("torch", "jax"):
        import importlib
        return importlib.import_module(f"symgrad.{name}")
    raise AttributeError(f"module 'symgrad' has no attribute {name!r}")

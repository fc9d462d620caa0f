"""symgrad: prove with computer algebra that an autograd tape's backward pass is right.

>>> import symgrad as sg
>>> sg.verify_node("matmul", shapes=[(2, 3), (3, 2)]).verdict
<Verdict.PROVED: 'proved'>
"""
from . import fn, models
from .api import check_vjp, verify_node
from .graph import Graph
from .prove.tape import GraphResult, verify
from .errors import InputError, InternalError, RuleError, ShapeError
from .ops import OPS, get_op
from .prove.result import Result, SideCondition, Verdict, Witness
from .tensor import symbols

__version__ = "0.1.0"

__all__ = [
    "check_vjp", "verify_node", "verify", "Graph", "GraphResult", "models", "symbols", "fn", "Verdict", "Result", "Witness",
    "SideCondition", "OPS", "get_op", "InputError", "RuleError", "ShapeError",
    "InternalError", "__version__",
]

"""Stage 0 of the normal form, its limits: what it refuses and the sizes it works within.

:class:`Unsupported` is raised for what a normal form cannot represent, :class:`TooLarge`
for a product that would pass the memory of a checking process; conversion memos hold at
most :data:`MEMO_TERMS` terms; expression trees are measured in nodes
(:func:`_smaller_than`): bases under :data:`SMALL_BASE` nodes are expanded, and
:func:`brief` prints a larger tree as a summary.
"""
from __future__ import annotations

import symengine as se


class Unsupported(Exception):
    """The expression holds something the normal form cannot represent."""


class TooLarge(Exception):
    """Expanding an entry would pass the memory limit; the message gives the estimate."""

    def __init__(self, held: int, left: int, right: int, limit: int, nvars: int):
        self.estimate, self.limit = held + left * right, limit
        super().__init__(
            f"expanding it needs more than {self.estimate:.1e} terms in {nvars} variables "
            f"({held:,} expanded so far, then a product of {left:,} × {right:,}), past the "
            f"{limit:.1e} that fit in a checking process")


#: terms a conversion memo may hold before it is cleared between entries
MEMO_TERMS = 2_000_000
#: bases with fewer nodes than this are keyed by their expansion
SMALL_BASE = 200


def _smaller_than(node, limit: int) -> bool:
    """Whether the expression tree of ``node`` has fewer than ``limit`` nodes."""
    stack, count = [node], 0
    while stack:
        count += 1
        if count >= limit:
            return False
        stack.extend(stack.pop().args)
    return True


def brief(node, limit: int = 400) -> str:
    """``str(node)``, or a summary when the tree is large: SymEngine prints a shared DAG as
    a tree, so a LayerNorm radicand deep in a composed graph prints to gigabytes."""
    if _smaller_than(node, limit):
        return str(node)
    head = function_name(node) if isinstance(node, se.FunctionSymbol) or not isinstance(
        node, (se.Add, se.Mul, se.Pow)) else {se.Add: "sum", se.Mul: "product",
                                              se.Pow: "power"}[type(node)]
    return f"⟨{head} of more than {limit} nodes⟩"


def function_name(node) -> str:
    if isinstance(node, (se.FunctionSymbol,)):
        return node.get_name()
    return type(node).__name__

"""``symgrad.jax``: prove the backward JAX runs (docs/frameworks.md).

* :func:`check_custom_vjp` — a ``jax.custom_vjp``'s ``fwd``/``bwd`` pair;
* :func:`check_custom_jvp` — a ``jax.custom_jvp``'s forward-mode rule;
* :func:`check_function` — JAX's own derivative of a function.

The implementation is :mod:`symgrad.frameworks.jax`; JAX is an optional extra
(``pip install 'symgrad[jax]'``).
"""
from .frameworks.jax import PRIMITIVES, check_custom_jvp, check_custom_vjp, check_function, \
    interpret

__all__ = ["check_custom_vjp", "check_custom_jvp", "check_function", "interpret", "PRIMITIVES"]

"""Prove the backward JAX runs: a ``jax.custom_vjp``'s ``fwd``/``bwd`` pair
(:func:`check_custom_vjp`), or JAX's own derivative of a function (:func:`check_function`,
the jaxpr of ``jax.vjp``).

Both make jaxprs (``jax.make_jaxpr``, float64) of the primal and of the VJP, run them over
symbolic tensors by one table of primitives (``PRIMITIVES``), and prove with
:func:`symgrad.check_vjp` that the second is the transposed derivative of the first. Each
primitive's entry is its mathematical meaning written with ``symgrad.fn``; floats (literals
and constants) enter as the exact rationals of their doubles. ``tests/test_jax.py`` runs the
table on floats beside JAX itself. JAX is an optional extra: ``pip install 'symgrad[jax]'``.
"""
from __future__ import annotations

import math

import numpy as np

from .. import fn
from ..api import _normalise_shapes, check_jvp
from ..errors import InputError, RuleError
from ..scalar import SymArray
from . import prove_traced
from .aten import _arr, _compare, _num, _sym, _where
from .targets import load

try:
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
except ImportError:   # the optional extra is absent: every entry point says so
    jax = None


def _need_jax():
    if jax is None:
        raise InputError("symgrad.jax needs JAX: pip install 'symgrad[jax]'")


def _value(v):
    """A literal or constant: an exact scalar (±∞ kept as a float), or an object array."""
    a = np.asarray(v)
    if a.ndim == 0:
        x = a.item()
        if isinstance(x, float) and not math.isfinite(x):
            return x
        return _num(x) if not isinstance(x, (bool, np.bool_)) else bool(x)
    out = np.empty(a.shape, dtype=object)
    for index in np.ndindex(a.shape):
        x = a[index].item()
        out[index] = x if isinstance(x, bool) or (isinstance(x, float) and
                                                  not math.isfinite(x)) else _num(x)
    return out.view(SymArray)


def _infinite(v) -> int:
    """+1 / −1 for a literal ±∞, else 0."""
    if isinstance(v, float) and math.isinf(v):
        return 1 if v > 0 else -1
    return 0


def _extreme(pick):
    """max/min of two operands; a literal ±∞ (JAX's softmax seeds its max with −∞) is the
    identity or absorbing element."""
    def apply(a, b, **_):
        for x, y in ((a, b), (b, a)):
            s = _infinite(x)
            if s:
                keep = (s < 0) == (pick is fn.maximum)
                return _sym(y) if keep else x
        return _sym(pick(_arr(a), _arr(b)))
    return apply


def _dot_general(a, b, dimension_numbers, **_):
    (ca, cb), (ba, bb) = dimension_numbers
    a, b = _arr(a), _arr(b)
    fa = [d for d in range(a.ndim) if d not in ca and d not in ba]
    fb = [d for d in range(b.ndim) if d not in cb and d not in bb]
    A = np.transpose(a, list(ba) + fa + list(ca))
    Bm = np.transpose(b, list(bb) + list(cb) + fb)
    batch = A.shape[:len(ba)]
    m = int(np.prod([a.shape[d] for d in fa]))
    k = int(np.prod([a.shape[d] for d in ca]))
    n = int(np.prod([b.shape[d] for d in fb]))
    A = A.reshape(batch + (m, k))
    Bm = Bm.reshape(batch + (k, n))
    out = np.empty(batch + (m, n), dtype=object)
    for index in np.ndindex(batch):
        out[index] = fn.matmul(np.asarray(A[index]), np.asarray(Bm[index]))
    return _sym(out.reshape(batch + tuple(a.shape[d] for d in fa) +
                            tuple(b.shape[d] for d in fb)))


def _broadcast_in_dim(x, shape, broadcast_dimensions, **_):
    a = _arr(x)
    expanded = np.empty([1] * len(shape), dtype=object) if a.ndim == 0 else None
    if a.ndim == 0:
        expanded[...] = a[()] if isinstance(a, np.ndarray) else a
        return _sym(np.broadcast_to(expanded, tuple(shape)))
    view = [1] * len(shape)
    for src, dst in enumerate(broadcast_dimensions):
        view[dst] = a.shape[src]
    return _sym(np.broadcast_to(a.reshape(view), tuple(shape)))


def _triangular_solve(a, b, left_side=False, lower=False, transpose_a=False,
                      unit_diagonal=False, **_):
    """X with op(A)·X = B (left_side) or X·op(A) = B: only A's ``lower`` (else upper)
    triangle is read, its diagonal taken as 1 when ``unit_diagonal`` — substitution."""
    A, B = _arr(a), _arr(b)
    lead = A.shape[:-2]
    n = A.shape[-1]
    out = np.empty(np.broadcast_shapes(lead, B.shape[:-2]) + B.shape[-2:], dtype=object)
    for index in np.ndindex(out.shape[:-2]):
        Ai = np.asarray(np.broadcast_to(A, out.shape[:-2] + A.shape[-2:])[index])
        Bi = np.asarray(np.broadcast_to(B, out.shape[:-2] + B.shape[-2:])[index])
        T = np.zeros((n, n), dtype=object)
        for i in range(n):
            for j in range(n):
                if (j <= i) if lower else (j >= i):
                    T[i, j] = Ai[i, j]
            if unit_diagonal:
                T[i, i] = 1
        M = T.T if transpose_a else T
        if not left_side:            # X·M = B  ⇔  Mᵀ·Xᵀ = Bᵀ
            M, Bi = M.T, Bi.T
        down = (bool(lower) != bool(transpose_a)) != (not left_side)   # M lower-triangular
        order = range(n) if down else range(n - 1, -1, -1)
        Y = np.empty(Bi.shape, dtype=object)
        done = []
        for i in order:
            acc = Bi[i]
            for j in done:
                acc = acc - M[i, j] * Y[j]
            Y[i] = acc / M[i, i]
            done.append(i)
        out[index] = Y if left_side else Y.T
    return _sym(out)


def _pad(x, padding_value, padding_config, **_):
    """lax.pad: per axis (low, high, interior) — interior copies of the value between
    entries, then low and high ones at the ends (negative: entries cut off)."""
    a, value = _arr(x), _arr(padding_value).reshape(()).item()
    for axis, (low, high, interior) in enumerate(padding_config):
        n = a.shape[axis]
        if interior and n > 1:
            shape = list(a.shape)
            shape[axis] = n + (n - 1) * interior
            spread = np.full(shape, value, dtype=object)
            at = [slice(None)] * a.ndim
            at[axis] = slice(None, None, interior + 1)
            spread[tuple(at)] = a
            a = spread
        ends = [(0, 0)] * a.ndim
        ends[axis] = (max(low, 0), max(high, 0))
        a = np.pad(a, ends, constant_values=value) if low > 0 or high > 0 else a
        cut = [slice(None)] * a.ndim
        cut[axis] = slice(-low if low < 0 else None, high if high < 0 else None)
        a = a[tuple(cut)]
    return _sym(a)


def _select_n(pred, *cases, **_):
    if len(cases) != 2:
        raise RuleError("select_n with more than two cases is not supported")
    return _where(pred, cases[1], cases[0])


def _convert(x, new_dtype=None, **_):
    a = _arr(x)
    kind = np.dtype(new_dtype).kind if new_dtype is not None else "f"
    if kind in "iub" and a.size and not isinstance(a.flat[0], (bool, int, np.bool_,
                                                               np.integer)) \
            and type(a.flat[0]).__name__ != "Relation":
        raise RuleError(f"convert_element_type casts a real value to {new_dtype} (a "
                        f"truncation, not differentiable): symgrad does not model it")
    if a.dtype == object and a.size and not isinstance(a.flat[0], (bool, np.bool_)) and \
            type(a.flat[0]).__name__ == "Relation":
        out = np.empty(a.shape, dtype=object)
        for index in np.ndindex(a.shape):
            out[index] = fn.indicator(a[index])
        return _sym(out)
    if a.dtype == bool:
        return _sym(a.astype(int).astype(object))
    return _sym(a)


def _reduce(name):
    def apply(x, axes, **_):
        a = _arr(x)
        if name == "sum":
            return _sym(a.sum(axis=tuple(axes)))
        if name == "prod":
            return _sym(np.prod(a, axis=tuple(axes)))
        pick = fn.maximum if name == "max" else fn.minimum
        moved = np.moveaxis(a, tuple(axes), tuple(range(-len(axes), 0)))
        flat = moved.reshape(moved.shape[:moved.ndim - len(axes)] + (-1,))
        out = np.empty(flat.shape[:-1], dtype=object)
        for index in np.ndindex(out.shape):
            row = flat[index]
            best = row[0]
            for v in row[1:]:
                best = pick(best, v)
                best = best[()] if isinstance(best, np.ndarray) else best
            out[index] = best
        return _sym(out)
    return apply


def _unary(f):
    return lambda x, **_: _sym(f(_arr(x)))


def _binary(f):
    return lambda a, b, **_: _sym(f(_arr(a) if isinstance(a, np.ndarray) else a,
                                    _arr(b) if isinstance(b, np.ndarray) else b))


#: JAX primitive name → its meaning on symbolic arrays (one table)
PRIMITIVES = {
    "add": _binary(lambda a, b: a + b), "add_any": _binary(lambda a, b: a + b),
    "sub": _binary(lambda a, b: a - b), "mul": _binary(lambda a, b: a * b),
    "div": _binary(lambda a, b: a / b), "neg": _unary(lambda a: -a),
    "max": _extreme(fn.maximum), "min": _extreme(fn.minimum),
    "integer_pow": lambda x, y, **_: _sym(_arr(x) ** int(y)),
    "pow": _binary(lambda a, b: a ** b), "square": _unary(lambda a: a * a),
    "exp": _unary(fn.exp), "log": _unary(fn.log), "log1p": _unary(fn.log1p),
    "expm1": _unary(fn.expm1), "tanh": _unary(fn.tanh), "logistic": _unary(fn.sigmoid),
    "sin": _unary(fn.sin), "cos": _unary(fn.cos), "sqrt": _unary(fn.sqrt),
    "rsqrt": _unary(fn.rsqrt), "erf": _unary(fn.erf), "erfc": _unary(fn.erfc),
    "abs": _unary(fn.abs),
    "sign": _unary(fn.sign),
    "dot_general": _dot_general, "triangular_solve": _triangular_solve,
    "iota": lambda dtype=None, shape=(), dimension=0, **_: np.indices(tuple(shape))[
        dimension].astype(object),
    "transpose": lambda x, permutation, **_: _sym(np.transpose(_arr(x), permutation)),
    "reshape": lambda x, new_sizes, **_: _sym(_arr(x).reshape(new_sizes)),
    "broadcast_in_dim": _broadcast_in_dim,
    "squeeze": lambda x, dimensions, **_: _sym(np.squeeze(_arr(x), axis=tuple(dimensions))),
    "expand_dims": lambda x, dimensions, **_: _sym(np.expand_dims(_arr(x), tuple(dimensions))),
    "concatenate": lambda *xs, dimension, **_: _sym(np.concatenate([_arr(x) for x in xs],
                                                                   axis=dimension)),
    "slice": lambda x, start_indices, limit_indices, strides=None, **_: _sym(_arr(x)[tuple(
        slice(a, b, s) for a, b, s in zip(start_indices, limit_indices,
                                          strides or [1] * len(start_indices)))]),
    "pad": _pad,
    "split": lambda x, sizes, axis, **_: [_sym(part) for part in np.split(
        _arr(x), np.cumsum(sizes)[:-1], axis=axis)],
    "reduce_sum": _reduce("sum"), "reduce_max": _reduce("max"), "reduce_min": _reduce("min"),
    "reduce_prod": _reduce("prod"),
    "select_n": _select_n, "convert_element_type": _convert,
    "stop_gradient": lambda x, **_: _sym(x), "copy": lambda x, **_: _sym(x),
    "copy_p": lambda x, **_: _sym(x),
    "eq": _compare(lambda a, b: a == b), "ne": _compare(lambda a, b: a != b),
    "gt": _compare(lambda a, b: a > b), "ge": _compare(lambda a, b: a >= b),
    "lt": _compare(lambda a, b: a < b), "le": _compare(lambda a, b: a <= b),
}

#: primitives that hold a jaxpr to run in place (a jit, a custom rule's primal)
_NESTED = {"pjit": "jaxpr", "jit": "jaxpr", "closed_call": "call_jaxpr",
           "custom_vjp_call": "call_jaxpr", "custom_vjp_call_jaxpr": "fun_jaxpr",
           "custom_jvp_call": "call_jaxpr", "remat": "jaxpr", "checkpoint": "jaxpr"}


#: the constants of every closed jaxpr prepared (by id), as NumPy arrays: read in the parent
#: process, so the forked checker never calls into JAX (whose threads do not survive a fork)
_CONSTS: dict = {}


def prepare(closed):
    """Read the constants of a closed jaxpr and of every jaxpr nested in it into NumPy."""
    _CONSTS[id(closed)] = [np.asarray(c) for c in getattr(closed, "consts", [])]
    for eqn in _jaxpr_of(closed).eqns:
        key = _NESTED.get(eqn.primitive.name)
        if key is not None:
            prepare(eqn.params[key])
    return closed


def interpret(closed, inputs: list) -> list:
    """Run a ClosedJaxpr (read by :func:`prepare`) on symbolic arrays; returns its
    outputs."""
    jaxpr = closed.jaxpr if hasattr(closed, "jaxpr") else closed
    consts = _CONSTS[id(closed)] if id(closed) in _CONSTS else \
        [np.asarray(c) for c in getattr(closed, "consts", [])]
    env = {}

    def read(v):
        if type(v).__name__ == "Literal":
            return _value(v.val)
        return env[v]
    for var, c in zip(jaxpr.constvars, consts):
        env[var] = _value(c)
    for var, x in zip(jaxpr.invars, inputs):
        env[var] = x
    live = _live(jaxpr)
    for eqn in jaxpr.eqns:
        if not any(o in live for o in eqn.outvars if type(o).__name__ != "DropVar"):
            continue   # nothing reads it (JAX's VJPs keep a few such values)
        args = [read(v) for v in eqn.invars]
        name = eqn.primitive.name
        if name in _NESTED:
            inner = eqn.params[_NESTED[name]]
            out = interpret(inner, args[len(args) - len(_jaxpr_of(inner).invars):])
        else:
            rule = PRIMITIVES.get(name)
            if rule is None:
                raise RuleError(f"the JAX primitive {name} is not in symgrad's table of "
                                f"{len(PRIMITIVES)} primitives (symgrad/frameworks/jax.py)"
                                f"{_where_from(eqn)}")
            try:
                out = rule(*args, **eqn.params)
            except (TypeError, ValueError, IndexError) as exc:
                raise RuleError(f"the JAX primitive {name} with these arguments is not "
                                f"supported: {exc}{_where_from(eqn)}") from None
        outs = out if eqn.primitive.multiple_results else [out]
        for var, value in zip(eqn.outvars, outs):
            env[var] = value
    return [read(v) for v in jaxpr.outvars]


def _live(jaxpr) -> set:
    """The variables the outputs depend on."""
    live = {v for v in jaxpr.outvars if type(v).__name__ != "Literal"}
    for eqn in reversed(jaxpr.eqns):
        if any(o in live for o in eqn.outvars if type(o).__name__ != "DropVar"):
            live |= {v for v in eqn.invars if type(v).__name__ != "Literal"}
    return live


def _jaxpr_of(inner):
    return inner.jaxpr if hasattr(inner, "jaxpr") else inner


def _where_from(eqn) -> str:
    info = getattr(eqn, "source_info", None)
    try:
        from jax._src import source_info_util
        frame = source_info_util.user_frame(info.traceback) if info is not None else None
    except Exception:  # noqa: BLE001 - only a better message was at stake
        frame = None
    return f" (from {frame.file_name}:{frame.start_line})" if frame is not None else ""


def _examples(shapes):
    rng = np.random.default_rng(0)
    return [jnp.asarray(rng.standard_normal(s)) for s in shapes]


def _make(f, examples, what):
    try:
        return jax.make_jaxpr(f)(*examples)
    except Exception as exc:   # noqa: BLE001 - JAX's tracing errors have no common base
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = ("; it branches on a value, which a trace cannot follow for every input — "
                "write it with jnp.where or lax.cond" if "Concretization" in
                type(exc).__name__ or "concrete" in text.lower() else "")
        raise InputError(f"cannot trace {what}: {type(exc).__name__}: {text}{hint}") from None


def _prove(primal, vjp_of, shapes, names, name, options):
    """primal(*xs) → outputs; vjp_of(*xs, *gs) → one cotangent per input."""
    examples = _examples(shapes)
    forward_jaxpr = prepare(_make(primal, examples, f"{name} (forward)"))
    outs = jax.eval_shape(primal, *examples)
    outs = list(outs) if isinstance(outs, (tuple, list)) else [outs]
    out_shapes = [tuple(o.shape) for o in outs]
    vjp_jaxpr = prepare(_make(vjp_of, examples + [jnp.zeros(s) for s in out_shapes],
                              f"{name} (backward)"))
    return prove_traced(lambda xs: interpret(forward_jaxpr, xs),
                        lambda args: interpret(vjp_jaxpr, args), shapes, out_shapes,
                        names=names, name=name, options=options)


def check_custom_vjp(f, shapes, *, names=None, **options):
    """Prove (or refute) a ``jax.custom_vjp`` function's ``bwd`` (fed by its ``fwd``'s
    residuals) against the derivative of its primal, at the given input shapes.

    >>> import jax, jax.numpy as jnp, symgrad as sg
    >>> @jax.custom_vjp
    ... def f(x):
    ...     return jnp.tanh(x)
    >>> f.defvjp(lambda x: (f(x), jnp.tanh(x)), lambda y, g: (g * (1 - y * y),))
    >>> sg.jax.check_custom_vjp(f, shapes=[(2, 3)]).verdict
    <Verdict.PROVED: 'proved'>
    """
    _need_jax()
    if not all(hasattr(f, a) for a in ("fun", "fwd", "bwd")) or f.fwd is None:
        raise InputError(f"{f!r} is not a jax.custom_vjp function with defvjp(fwd, bwd)")
    shapes = _normalise_shapes(shapes)
    n = len(shapes)

    def vjp_of(*xs_and_gs):
        xs, gs = xs_and_gs[:n], xs_and_gs[n:]
        _, residuals = f.fwd(*xs)
        return tuple(f.bwd(residuals, gs[0] if len(gs) == 1 else tuple(gs)))
    return _prove(f.fun, vjp_of, shapes, names, getattr(f.fun, "__name__", "custom_vjp"),
                  options)


def check_custom_jvp(f, shapes, *, names=None, **options):
    """Prove (or refute) a ``jax.custom_jvp`` function's forward-mode rule (its
    ``defjvp``: primals and tangents to the primal output and its tangent) against the
    derivative of its primal, by :func:`symgrad.check_jvp`.

    >>> import jax, jax.numpy as jnp, symgrad as sg
    >>> @jax.custom_jvp
    ... def f(x):
    ...     return jnp.tanh(x)
    >>> @f.defjvp
    ... def f_jvp(primals, tangents):
    ...     (x,), (dx,) = primals, tangents
    ...     y = jnp.tanh(x)
    ...     return y, dx * (1 - y * y)
    >>> sg.jax.check_custom_jvp(f, shapes=[(2, 3)]).verdict
    <Verdict.PROVED: 'proved'>
    """
    _need_jax()
    if not all(hasattr(f, a) for a in ("fun", "jvp")) or f.jvp is None:
        raise InputError(f"{f!r} is not a jax.custom_jvp function with a defjvp rule")
    shapes = _normalise_shapes(shapes)
    n = len(shapes)
    examples = _examples(shapes)
    name = getattr(f.fun, "__name__", "custom_jvp")
    forward_jaxpr = prepare(_make(f.fun, examples, f"{name} (forward)"))
    rule = getattr(f.jvp, "__wrapped__", f.jvp)

    def tangent_of(*xs_and_ts):
        out = rule(tuple(xs_and_ts[:n]), tuple(xs_and_ts[n:]))
        return out[1]
    jvp_jaxpr = prepare(_make(tangent_of, examples + examples, f"{name} (jvp rule)"))

    def forward(*inputs):
        got = interpret(forward_jaxpr, list(inputs))
        if len(got) != 1:
            raise RuleError(f"{name} returns {len(got)} outputs; check_custom_jvp takes one")
        return got[0]

    def jvp(*xs_and_ts):
        return interpret(jvp_jaxpr, list(xs_and_ts))[0]
    if names is None:
        names = [f"x{k}" if n > 1 else "x" for k in range(n)]
    return check_jvp(forward, jvp, shapes, names=names, name=name, **options)


def check_function(f, shapes, *, names=None, **options):
    """Prove (or refute) JAX's own derivative of ``f`` (the jaxpr of ``jax.vjp``) at the
    given input shapes."""
    _need_jax()
    shapes = _normalise_shapes(shapes)
    n = len(shapes)

    def vjp_of(*xs_and_gs):
        xs, gs = xs_and_gs[:n], xs_and_gs[n:]
        _, pull = jax.vjp(f, *xs)
        return tuple(pull(gs[0] if len(gs) == 1 else tuple(gs)))
    return _prove(f, vjp_of, shapes, names, getattr(f, "__name__", "function"), options)


def check_target(target, shapes, **options):
    """``symgrad verify jax``: a custom_vjp function by :func:`check_custom_vjp`, any other
    function of arrays by :func:`check_function`."""
    _need_jax()
    f = load(target) if isinstance(target, str) else target
    if all(hasattr(f, a) for a in ("fun", "fwd", "bwd")) and f.fwd is not None:
        return check_custom_vjp(f, shapes, **options)
    if hasattr(f, "fun") and getattr(f, "jvp", None) is not None:
        return check_custom_jvp(f, shapes, **options)
    if not callable(f):
        raise InputError(f"{target} is not a function")
    return check_function(f, shapes, **options)

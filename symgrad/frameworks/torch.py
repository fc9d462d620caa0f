"""Prove the backward PyTorch runs: a custom ``torch.autograd.Function``'s hand-written
``backward`` (:func:`check_function`), or PyTorch's own backward of a module or function
(:func:`check_module`).

Both trace with ``make_fx`` on fake tensors of the given shapes: the primal (forward) to one
ATen graph, and the vector-Jacobian product ``torch.autograd.grad(outputs, inputs, g)`` —
which runs the Function's ``backward``, or PyTorch's derivative formulas — to another. Each
graph is then run over symbolic tensors by the table in :mod:`symgrad.frameworks.aten`,
and :func:`symgrad.check_vjp` proves that the second is the transposed derivative of the
first, or refutes it with a certified witness.

What a trace covers: the code path the example takes. Fake tensors hold no values, so code
that branches on a tensor's values (``if x.sum() > 0``, ``.item()``) cannot be traced and is
refused — write it with ``torch.where``, which becomes a step function here. Shapes are
fixed, as everywhere in symgrad.
"""
from __future__ import annotations

import copy
import inspect
import operator
import re
import time

import numpy as np

from ..api import _normalise_shapes, check_jvp
from ..errors import InputError, RuleError
from ..scalar import SymArray
from ..tensor import constant
from . import prove_traced, side_by_side
from .aten import ATEN
from .targets import load

try:
    import torch
    from torch.fx.experimental.proxy_tensor import make_fx
    from torch.fx.node import map_arg
except ImportError:   # the optional extra is absent: every entry point says so
    torch = None

#: keyword arguments of ATen calls that do not change values
_IGNORED = {"dtype", "layout", "device", "pin_memory", "memory_format", "non_blocking"}


def _need_torch():
    if torch is None:
        raise InputError("symgrad.torch needs PyTorch: pip install 'symgrad[torch]' (the CPU "
                         "build: pip install torch==2.13.0 --index-url "
                         "https://download.pytorch.org/whl/cpu)")


def op_name(target) -> str:
    """``"mm.default"`` for ``torch.ops.aten.mm.default`` (the key of the ATen table)."""
    return f"{target.overloadpacket.__name__}.{target._overloadname}"


def _source_line(node) -> str:
    """The user's line a traced node came from (its stack trace's last frame)."""
    trace = node.meta.get("stack_trace") or ""
    frames = re.findall(r'File "([^"]+)", line (\d+), in (\S+)\n\s*(.*)', trace)
    frames = [f for f in frames if "/torch/" not in f[0]]
    if not frames:
        return "an unknown line"
    path, line, func, code = frames[-1]
    return f"{path}:{line} ({func}: {code.strip()})"


def _tensor_constant(t) -> np.ndarray:
    values = t.detach().to(torch.float64).cpu().numpy()
    out = np.empty(values.shape, dtype=object)
    for index in np.ndindex(values.shape):   # −∞ (an attention mask's) stays a float
        v = float(values[index])
        out[index] = constant(v) if np.isfinite(v) else v
    return out.view(SymArray) if out.ndim else out


def interpret(gm, inputs: list) -> list:
    """Run a traced GraphModule on symbolic arrays; returns its outputs, flattened."""
    env = {}
    feed = iter(inputs)
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            env[node] = next(feed)
        elif node.op == "get_attr":
            env[node] = _tensor_constant(getattr(gm, node.target))
        elif node.op == "call_function":
            args = map_arg(node.args, lambda n: env[n])
            kwargs = {k: v for k, v in map_arg(node.kwargs, lambda n: env[n]).items()
                      if k not in _IGNORED}
            if node.target is operator.getitem:
                env[node] = args[0][args[1]]
                continue
            dtype = node.kwargs.get("dtype")
            if isinstance(dtype, torch.dtype) and not dtype.is_floating_point and \
                    _symbolic(args[0] if args else None):
                raise RuleError(f"aten.{op_name(node.target)} casts a real value to {dtype} "
                                f"(a truncation, not differentiable; from "
                                f"{_source_line(node)}): symgrad does not model it")
            name = op_name(node.target) if hasattr(node.target, "_overloadname") else \
                getattr(node.target, "__name__", str(node.target))
            rule = ATEN.get(name)
            if rule is None:
                raise RuleError(f"the ATen op aten.{name} (from {_source_line(node)}) is not "
                                f"in symgrad's table of {len(ATEN)} ops "
                                f"(symgrad/frameworks/aten.py)")
            try:
                env[node] = rule(*args, **kwargs)
            except (TypeError, ValueError, IndexError) as exc:
                raise RuleError(f"aten.{name} (from {_source_line(node)}) with these "
                                f"arguments is not supported: {exc}") from None
        elif node.op == "output":
            out = map_arg(node.args[0], lambda n: env[n])
            return list(out) if isinstance(out, (tuple, list)) else [out]
    raise RuleError("the traced graph has no output")


def _unsupported(gm) -> list:
    """The call_function nodes of a traced graph whose op the table lacks."""
    return [n for n in gm.graph.nodes if n.op == "call_function"
            and n.target is not operator.getitem and hasattr(n.target, "_overloadname")
            and op_name(n.target) not in ATEN]


def _called_from(f, examples, target) -> str:
    """The user's line that calls ``target``: ``f`` run once more on real tensors under a
    dispatch mode that looks at the stack when the op comes by."""
    import traceback
    from torch.utils._python_dispatch import TorchDispatchMode

    class Finder(TorchDispatchMode):
        line = None

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if Finder.line is None and func == target:
                for frame in reversed(traceback.extract_stack()[:-1]):
                    if not any(p in frame.filename for p in ("/torch/", "/symgrad/", "<")):
                        Finder.line = (f"{frame.filename}:{frame.lineno} ({frame.name}: "
                                       f"{(frame.line or '').strip()})")
                        break
            return func(*args, **(kwargs or {}))
    try:
        with Finder():
            f(*[e.clone() for e in examples])
    except Exception:  # noqa: BLE001 - only a better message was at stake
        pass
    return Finder.line or "PyTorch's own code (no line of yours calls it)"


def _truncating(gm) -> list:
    """Casts of a real value to an integer or boolean type in a traced graph."""
    out = []
    for n in gm.graph.nodes:
        dtype = n.kwargs.get("dtype") if n.op == "call_function" else None
        src = n.args[0].meta.get("val") if dtype is not None and n.args and \
            hasattr(n.args[0], "meta") else None
        if isinstance(dtype, torch.dtype) and not dtype.is_floating_point and \
                src is not None and getattr(src, "is_floating_point", lambda: False)():
            out.append(n)
    return out


def _covered(gm, f, examples, what):
    casts = _truncating(gm)
    if casts:
        line = _called_from(f, examples, casts[0].target)
        raise RuleError(f"{what}: aten.{op_name(casts[0].target)} casts a real value to "
                        f"{casts[0].kwargs['dtype']} (from {line}) — a truncation, not "
                        f"differentiable: symgrad does not model it")
    missing = _unsupported(gm)
    if missing:
        names = sorted({op_name(n.target) for n in missing})
        line = _called_from(f, examples, missing[0].target)
        raise RuleError(f"{what}: the ATen op aten.{names[0]} (from {line}) is not in "
                        f"symgrad's table of {len(ATEN)} ops (symgrad/frameworks/aten.py)"
                        + (f"; nor are {', '.join('aten.' + n for n in names[1:])}"
                           if len(names) > 1 else ""))


def _symbolic(a) -> bool:
    """Whether an argument holds real values (not integers or truth values)."""
    if not isinstance(a, np.ndarray) or not a.size:
        return False
    v = a.flat[0]
    return not isinstance(v, (bool, int, np.bool_, np.integer))


def _flat(outs) -> list:
    return list(outs) if isinstance(outs, (tuple, list)) else [outs]


def _trace(f, examples, what: str):
    try:
        return make_fx(f, tracing_mode="fake", _allow_non_fake_inputs=True)(*examples)
    except RuleError:
        raise
    except Exception as exc:   # noqa: BLE001 - PyTorch's tracing errors have no common base
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = ""
        if "data-dependent" in text.lower() or "data dependent" in text.lower() or \
                "item()" in text or "DataDependent" in type(exc).__name__:
            hint = ("; it branches on a tensor's values, which a trace cannot follow for "
                    "every input — write it with torch.where")
        raise InputError(f"cannot trace {what}: {type(exc).__name__}: {text}{hint}") from None


def _traced(f, examples, what: str):
    """``f`` traced at ``examples``, every op it runs in the ATen table (else the error
    naming the op and the user's line)."""
    gm = _trace(f, examples, what)
    _covered(gm, f, examples, what)
    return gm


def _prove(primal, n_inputs: int, shapes, names, name, options):
    """Trace primal(*tensors) and its VJP through autograd; prove the one is the transposed
    derivative of the other."""
    t0 = time.perf_counter()
    examples = [torch.randn(*s, dtype=torch.float64) for s in shapes]
    forward_gm = _traced(primal, examples, f"{name} (forward)")
    outs = _flat(forward_gm(*examples))
    if not outs or any(not isinstance(o, torch.Tensor) or not o.is_floating_point()
                       for o in outs):
        raise InputError(f"{name} must return floating-point tensors (got "
                         f"{', '.join(type(o).__name__ for o in outs) or 'nothing'})")
    out_shapes = [tuple(o.shape) for o in outs]

    def vjp_fn(*xs_and_gs):
        xs = [x.detach().requires_grad_(True) for x in xs_and_gs[:n_inputs]]
        gs = list(xs_and_gs[n_inputs:])
        got = _flat(primal(*xs))
        grads = torch.autograd.grad(got, xs, gs, allow_unused=True)
        return tuple(torch.zeros_like(x) if g is None else g for g, x in zip(grads, xs))
    cotangents = [torch.randn(*s, dtype=torch.float64) for s in out_shapes]
    vjp_gm = _traced(vjp_fn, examples + cotangents, f"{name} (backward)")
    traced = time.perf_counter() - t0
    result = prove_traced(lambda xs: interpret(forward_gm, xs),
                          lambda args: interpret(vjp_gm, args), shapes, out_shapes,
                          names=names, name=name, options=options)
    result.phases = {"trace": traced, **result.phases}
    return result


def check_function(fn_class, shapes, *, args=(), names=None, **options):
    """Prove (or refute) a ``torch.autograd.Function``'s ``backward`` against its
    ``forward`` at the given input shapes (one per tensor argument, in order). ``args``:
    non-tensor arguments passed after the tensors (``Fn.apply(*tensors, *args)``). Several
    outputs are proved together (their cotangents side by side). Options as
    :func:`symgrad.check_vjp` (``timeout``, ``memory_mb``, ``assumptions``, …).

    >>> import torch, symgrad as sg
    >>> class Tanh(torch.autograd.Function):
    ...     @staticmethod
    ...     def forward(ctx, x):
    ...         y = torch.tanh(x)
    ...         ctx.save_for_backward(y)
    ...         return y
    ...     @staticmethod
    ...     def backward(ctx, g):
    ...         (y,) = ctx.saved_tensors
    ...         return g * (1 - y * y)
    >>> sg.torch.check_function(Tanh, shapes=[(2, 3)]).verdict
    <Verdict.PROVED: 'proved'>
    """
    _need_function(fn_class)
    shapes = _normalise_shapes(shapes)
    extra = tuple(args)
    return _prove(lambda *xs: fn_class.apply(*xs, *extra), len(shapes), shapes,
                  names or _input_names(fn_class, len(shapes)), fn_class.__name__, options)


def _need_function(fn_class):
    _need_torch()
    if not (isinstance(fn_class, type) and issubclass(fn_class, torch.autograd.Function)):
        raise InputError(f"{fn_class!r} is not a torch.autograd.Function subclass")


def _setup_context_style(fn_class) -> bool:
    """Whether ``forward`` takes no ctx (a ``setup_context`` of its own gets it)."""
    return fn_class.setup_context is not torch.autograd.Function.setup_context


def _input_names(fn_class, n: int):
    """The names of a Function's ``n`` tensor inputs: its forward's parameters (after ctx,
    unless it has a ``setup_context``); None where it has fewer."""
    try:
        params = list(inspect.signature(fn_class.forward).parameters)
    except (TypeError, ValueError):
        return None
    params = params if _setup_context_style(fn_class) else params[1:]
    return params[:n] if len(params) >= n else None


class _Context:
    """The ``ctx`` a Function's forward and jvp get when symgrad calls them itself (for
    :func:`check_function_jvp`): what they save, as PyTorch keeps it — ``jvp`` sees the
    tensors of ``save_for_forward`` as ``saved_tensors``."""

    def __init__(self, n_inputs: int):
        self.needs_input_grad = (True,) * n_inputs
        self.saved_tensors = ()
        self._forward_saved = ()

    def save_for_backward(self, *tensors):
        self.to_save = tensors

    def save_for_forward(self, *tensors):
        self._forward_saved = tensors

    def mark_non_differentiable(self, *tensors):
        pass

    def set_materialize_grads(self, value):
        pass

    def mark_dirty(self, *tensors):
        raise InputError("a Function that changes its inputs in place (ctx.mark_dirty) is "
                         "not supported")


def _run_forward(fn_class, ctx, tensors, extra):
    """Fn's forward with ``ctx``, either style: ``forward(ctx, …)``, or ``forward(…)`` with
    ``setup_context(ctx, inputs, output)``."""
    inputs = tuple(tensors) + tuple(extra)
    if _setup_context_style(fn_class):
        out = fn_class.forward(*inputs)
        fn_class.setup_context(ctx, inputs, out)
        return out
    return fn_class.forward(ctx, *inputs)


def check_function_jvp(fn_class, shapes, *, args=(), names=None, **options):
    """Prove (or refute) a ``torch.autograd.Function``'s forward-mode rule, its ``jvp``
    (fed what ``forward`` saved with ``ctx.save_for_forward``), against the derivative of
    its ``forward``: jvp(ẋ) = Df(x)[ẋ], by :func:`symgrad.check_jvp`. symgrad calls
    ``forward`` and ``jvp`` itself with a plain context and traces the tensor code they
    run, so no forward-mode AD is involved. Options as :func:`check_function`.

    >>> import torch, symgrad as sg
    >>> class Exp(torch.autograd.Function):
    ...     @staticmethod
    ...     def forward(ctx, x):
    ...         y = torch.exp(x)
    ...         ctx.save_for_forward(y)
    ...         return y
    ...     @staticmethod
    ...     def jvp(ctx, dx):
    ...         (y,) = ctx.saved_tensors
    ...         return y * dx
    >>> sg.torch.check_function_jvp(Exp, shapes=[(3,)]).verdict
    <Verdict.PROVED: 'proved'>
    """
    _need_function(fn_class)
    if fn_class.jvp is torch.autograd.Function.jvp:
        raise InputError(f"{fn_class.__name__} defines no jvp (forward-mode rule); check "
                         f"its backward with check_function")
    shapes = _normalise_shapes(shapes)
    n, extra = len(shapes), tuple(args)

    def primal(*xs):
        return _run_forward(fn_class, _Context(n), xs, extra)

    def jvp_fn(*xs_and_dxs):
        ctx = _Context(n)
        _run_forward(fn_class, ctx, xs_and_dxs[:n], extra)
        ctx.saved_tensors = ctx._forward_saved
        return fn_class.jvp(ctx, *xs_and_dxs[n:], *([None] * len(extra)))

    t0 = time.perf_counter()
    examples = [torch.randn(*s, dtype=torch.float64) for s in shapes]
    forward_gm = _traced(primal, examples, f"{fn_class.__name__} (forward)")
    tangents = [torch.randn(*s, dtype=torch.float64) for s in shapes]
    jvp_gm = _traced(jvp_fn, examples + tangents, f"{fn_class.__name__} (jvp)")
    outs = _flat(forward_gm(*examples))
    got = _flat(jvp_gm(*examples, *tangents))
    if len(got) != len(outs) or any(tuple(a.shape) != tuple(b.shape)
                                    for a, b in zip(got, outs)):
        raise RuleError(f"{fn_class.__name__}.jvp returned {len(got)} tangent(s) of shapes "
                        f"{[tuple(a.shape) for a in got]}; the forward's outputs have "
                        f"{[tuple(b.shape) for b in outs]}")
    traced = time.perf_counter() - t0
    result = check_jvp(lambda *xs: side_by_side(interpret(forward_gm, list(xs))),
                       lambda *a: side_by_side(interpret(jvp_gm, list(a))), shapes,
                       names=names or _input_names(fn_class, n),
                       name=f"{fn_class.__name__}.jvp", **options)
    result.phases = {"trace": traced, **result.phases}
    return result


def check_module(module, shapes, *, names=None, parameters=True, **options):
    """Prove (or refute) PyTorch's own backward of a module (or a function of tensors) at
    the given input shapes: the VJP autograd computes — its derivative formulas, e.g.
    ``native_layer_norm_backward``, ``_softmax_backward_data``, ``gelu_backward`` — against
    the transposed derivative of the traced forward. With ``parameters`` (default) the
    module's parameters are inputs too (named as in ``named_parameters``), so their
    gradients are proved as well; else they are constants. A module runs in eval mode
    (dropout off)."""
    _need_torch()
    shapes = _normalise_shapes(shapes)
    if isinstance(module, torch.nn.Module):
        module = copy.deepcopy(module).double().eval()   # the user's module stays as it is
        pnames = [n for n, _ in module.named_parameters()] if parameters else []
        pshapes = [tuple(p.shape) for _, p in module.named_parameters()] if parameters else []
        n = len(shapes)

        def primal(*tensors):
            if not pnames:
                return module(*tensors[:n])
            given = dict(zip(pnames, tensors[n:]))
            return torch.func.functional_call(module, given, tuple(tensors[:n]))
        label = type(module).__name__
        all_names = (list(names) if names else [f"x{k}" if n > 1 else "x" for k in range(n)]) \
            + pnames
        return _prove(primal, n + len(pnames), shapes + [s for s in pshapes],
                      [a.replace(".", "_") for a in all_names], label, options)
    if not callable(module):
        raise InputError(f"{module!r} is neither a torch.nn.Module nor a function")
    return _prove(module, len(shapes), shapes, names,
                  getattr(module, "__name__", "function"), options)


def check_target(target, shapes, *, args=(), parameters=True, jvp=False, **options):
    """``symgrad verify torch``: a Function subclass by :func:`check_function` (its
    ``jvp`` by :func:`check_function_jvp` with ``jvp``); an nn.Module (a class is
    instantiated without arguments) or a function of tensors by :func:`check_module`."""
    _need_torch()
    obj = load(target) if isinstance(target, str) else target
    is_function = isinstance(obj, type) and issubclass(obj, torch.autograd.Function)
    if jvp and not is_function:
        raise InputError("--jvp applies to a torch.autograd.Function only")
    if jvp:
        return check_function_jvp(obj, shapes, args=args, **options)
    if is_function:
        return check_function(obj, shapes, args=args, **options)
    if args:
        raise InputError("--arg applies to a torch.autograd.Function only")
    factory = callable(obj) and not isinstance(obj, torch.nn.Module) and _no_arguments(obj)
    if (isinstance(obj, type) and issubclass(obj, torch.nn.Module)) or factory:
        try:
            obj = obj()
        except TypeError as exc:
            raise InputError(f"cannot build {target} without arguments ({exc}); name a "
                             f"function that returns the module instead") from None
    return check_module(obj, shapes, parameters=parameters, **options)


def _no_arguments(f) -> bool:
    """Whether ``f`` is called with no arguments (a factory of a module or function)."""
    try:
        params = inspect.signature(f).parameters.values()
    except (TypeError, ValueError):
        return False
    return not any(p.default is p.empty and p.kind in (p.POSITIONAL_ONLY,
                                                        p.POSITIONAL_OR_KEYWORD)
                   for p in params)

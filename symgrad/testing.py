"""Assertions for ordinary test files: a wrong VJP rule fails the test like any other
assertion, with the counterexample as its message.

>>> import symgrad as sg
>>> from symgrad.testing import assert_vjp
>>> r = assert_vjp(sg.fn.tanh, lambda g, y, x: (g * (1 - y * y),), shapes=[(2, 3)])
>>> r.verdict
<Verdict.PROVED: 'proved'>
>>> assert_vjp(sg.fn.tanh, lambda g, y, x: (g * y,), shapes=[(2,)])
Traceback (most recent call last):
    ...
AssertionError: REFUTED vjp rule <lambda> at shapes [(2,)] — the cotangent of x[0] is wrong
...

With the pytest plugin installed (it is, with symgrad), the ``symgrad_check`` fixture is
this function, for tests parametrised over shapes.
"""
from __future__ import annotations

from .api import check_vjp
from .prove.result import Result, Verdict

#: the verdicts that pass, per evidence asked for
_PASSING = {"exact": {Verdict.PROVED},
            "auto": {Verdict.PROVED, Verdict.VERIFIED},
            "randomized": {Verdict.PROVED, Verdict.VERIFIED}}


def _where(f) -> str | None:
    """``module:qualname`` of a function a one-line reproduction can import, else None."""
    module, qualname = getattr(f, "__module__", None), getattr(f, "__qualname__", "")
    if not module or not qualname or "<" in qualname or module == "__main__":
        return None
    return f"{module}:{qualname}"


def reproduction(forward, vjp, shapes, evidence: str) -> str:
    """A shell line that checks the same rule again, when both functions are importable
    by name; else a hint to call check_vjp."""
    f, v = _where(forward), _where(vjp)
    shown = repr([tuple(s) for s in shapes])
    option = "" if evidence == "exact" else f", evidence={evidence!r}"
    if f is None or v is None:
        return (f"sg.check_vjp(forward, vjp, shapes={shown}{option}) — name both "
                f"functions at module level for a one-line reproduction")
    fm, fq = f.split(":")
    vm, vq = v.split(":")
    imports = ", ".join(sorted({fm, vm}))
    return (f"python -c \"import symgrad as sg, {imports}; print(sg.check_vjp({fm}.{fq}, "
            f"{vm}.{vq}, shapes={shown}{option}))\"")


def assert_vjp(forward, vjp, shapes, *, evidence: str = "exact", name: str | None = None,
               **options) -> Result:
    """Check a VJP rule (as :func:`symgrad.check_vjp`, same options) and return the
    Result; raise AssertionError unless it is PROVED (or, with ``evidence`` ``auto`` or
    ``randomized``, VERIFIED). The message is the refutation — which rule, which input
    and entry, expected against got, the point — or why no verdict was reached, and a
    line that reproduces it."""
    __tracebackhide__ = True     # pytest shows the caller's line, not this function's
    shapes = [tuple(s) if not isinstance(s, int) else (s,) for s in shapes]
    label = name or f"vjp rule {getattr(vjp, '__name__', 'rule')}"
    result = check_vjp(forward, vjp, shapes, name=label, evidence=evidence, **options)
    if result.verdict in _PASSING.get(evidence, {Verdict.PROVED}):
        return result
    head = f"{result.verdict.value.upper()} {label} at shapes {shapes}"
    if result.witness is not None:
        first, *rest = result.witness.lines()
        lines = [f"{head} — {first.removeprefix('counterexample: ')}"] + rest
    else:
        lines = [head] + result.findings()
    lines.append(f"reproduce: {reproduction(forward, vjp, shapes, evidence)}")
    raise AssertionError("\n".join(lines))

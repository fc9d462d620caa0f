"""One obligation, end to end: build it, normal-form every entry, search a witness.

The statement for ``f : R^Γ → R^τ`` with rule ``vjp``: for all x in the domain, all ẋ, ḡ,

    ⟨ḡ, Df(x)[ẋ]⟩ = Σ_i ⟨vjp_i(ḡ, f(x), x), ẋ_i⟩.

Both sides are linear in ẋ and ẋ's entries are independent indeterminates, so the identity
holds iff, for every input entry e, the coefficients of ẋ_e agree:
``(Jᵀḡ)_e = Σ_k ḡ_k ∂f_k/∂x_e`` (from differentiating the forward, never from the rule) equals
``vjp(ḡ)_e``. symgrad checks the identity in this split form — one smaller scalar identity
per input entry — which also localises a failure to an input entry.
"""
from __future__ import annotations

import contextlib
import math
import random
import re
from fractions import Fraction
import resource
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import symengine as se
import sympy as sp
from flint import arb, ctx as flint_ctx

from .. import fn
from ..errors import InputError, InternalError, RuleError, ShapeError
from ..scalar import Relation, canonical, ieee_division, recording_divisors, unwrap, \
    unwrap_value, user_line, wrap
from ..tensor import as_symengine, entry_name, shape_tuple, symbols
from .isolate import DEFAULT_MEMORY_MB, LIMITS, fork_map, workers
from .notation import readable
from .normal_form import Atoms, Condition, EntryForm, TooLarge, Unsupported, _smaller_than, \
    _is_step, holds_everywhere, innermost, nodes_under as _nodes, steps_under, to_fraction
from . import grid, sparse
from .result import UNDEFINED, Result, SideCondition, Verdict, Witness
from .symmetry import InferredOrbits, Orbits
from .witness import CannotEvaluate, Evaluator, ball_bounds, condition_holds, \
    distinct_texts, sample_point, sample_value, scale_of, to_arb

#: entries per tensor above which a check is refused (``SYMGRAD_MAX_ENTRIES`` overrides)
DEFAULT_MAX_ENTRIES = LIMITS["SYMGRAD_MAX_ENTRIES"][1]


@dataclass
class Spec:
    """Everything one obligation depends on."""

    name: str
    forward: Callable
    vjp: Callable
    inputs: list                      #: [(name, shape)] of the distinct inputs
    reads: tuple | None = None        #: input index read by each forward argument
    assumptions: Callable | None = None  #: (*args) -> [(expr, "> 0" | "!= 0")] or relationals
    params: dict = field(default_factory=dict)   #: for display only
    backend: str = "symengine"
    max_entries: int = DEFAULT_MAX_ENTRIES
    witness_points: int = 24
    symmetry: bool = True             #: prove one entry per verified-symmetry orbit
    param_arrays: list = field(default_factory=list)  #: symbolic parameter tensors
    seed: int = 0
    relation_budget: int = 2_000_000
    #: a first pass keeps sums unexpanded: True for the output's, or (*inputs) -> values
    abstract_sums: bool | Callable = False
    #: a first pass with tape values as indeterminates: (arrays, g) -> a
    #: :class:`symgrad.prove.layered.Layered` (``sides(i, index)`` [(expected, got)],
    #: ``restate``, ``restated``, ``steps``, ``forwards``, ``split``)
    layered: Callable | None = None
    axis_labels: list | None = None   #: per input, a label per axis (whole-tape obligations)
    blocks: list | None = None        #: sizes of the output's blocks (tape values), in order
    #: forward and vjp are a user's code: each call gets fresh wrapped arrays (floats
    #: exact, no shared mutable state); symgrad's own tape evaluation opts out (it shares
    #: one evaluation between both sides)
    user_code: bool = True


def validate_shapes(inputs, max_entries):
    for name, shape in inputs:
        for d in shape:
            if not isinstance(d, (int, np.integer)) or isinstance(d, bool) or d <= 0:
                raise ShapeError(f"input {name} has shape {shape_tuple(shape)}; every dimension must "
                                 f"be a positive integer")
        n = math.prod(shape)
        if n > max_entries:
            raise ShapeError(f"input {name} has shape {shape_tuple(shape)} with {n} entries, more "
                             f"than the limit of {max_entries} (set SYMGRAD_MAX_ENTRIES or "
                             f"--max-entries to raise it)")


# ----- building the two sides --------------------------------------------------------------

def _as_object_array(value, what):
    if value is None:
        return None
    if isinstance(value, (str, bytes)):
        raise RuleError(f"{what} is a {type(value).__name__} ({value!r:.40}), not an array")
    try:
        arr = np.asarray(value, dtype=object)
    except Exception as exc:  # ragged lists and the like
        raise RuleError(f"{what} is not an array: {exc}") from None
    return arr


def _call(fun, args, what, inputs):
    """``fun(*args)``; an exception from the user's code becomes a RuleError naming the
    function, the user's line and the exception (a RuleError of symgrad's own — control
    flow on a symbolic value, say — passes through: it names the line already)."""
    try:
        return fun(*args)
    except RuleError:
        raise
    except Exception as exc:
        raise user_error(exc, what, inputs) from None


def user_error(exc: BaseException, what: str, inputs) -> RuleError:
    """The RuleError for an exception the user's ``what`` raised: its type, message and
    the user's line, with the input shapes."""
    if isinstance(exc, RecursionError):
        return RuleError(f"the {what} recursed too deeply")
    shapes = ", ".join(f"{n} {shape_tuple(s)}" for n, s in inputs)
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return RuleError(f"the {what} raised {type(exc).__name__}: {msg} (at "
                     f"{user_line(exc.__traceback__)}; inputs were {shapes})")


def _exact_sympy(e):
    """A SymPy expression with its floats exact and every Heaviside(u, H0) as symgrad's
    step: H(u) with H(0) = 0, plus H0 where u = 0 (SymPy's default H0 is 1/2)."""
    e = sp.sympify(e)
    floats = e.atoms(sp.Float)
    e = e.xreplace({f: sp.Rational(f) for f in floats}) if floats else e
    repl = {}
    for h in e.atoms(sp.Heaviside):
        u, h0 = h.args[0], (h.args[1] if len(h.args) > 1 else sp.S.Half)
        if h0 != 0:
            H = lambda a: sp.Heaviside(a, 0)  # noqa: E731
            repl[h] = H(u) + h0 * (1 - H(u) - H(-u))
    return e.xreplace(repl) if repl else e


def _user_array(value, what, backend):
    """What a user's function returned, as an object array of expressions (floats exact,
    non-numbers a RuleError naming ``what``)."""
    arr = _as_object_array(value, what)
    if arr is None:
        return None
    return unwrap(arr, what, backend)


def _canonical_arrays(arrays, what):
    """:func:`symgrad.scalar.canonical` over several arrays at once (one walk over their
    shared DAG): the arrays rebuilt, and the steps they hold."""
    flat, steps = canonical([e for a in arrays for e in a.flat], what)
    out, pos = [], 0
    for a in arrays:
        part = np.empty(a.shape, dtype=object)
        part.flat[:] = flat[pos:pos + a.size] if a.size else []
        out.append(part)
        pos += a.size
    return out, steps


def build_sides(spec: Spec):
    """Symbols, forward, rule and reference: returns a dict with, per input entry, the
    expected (Jᵀḡ)_e and the rule's cotangent, both SymEngine expressions.

    The symbols are the checker's own (SymEngine dummies: a user's constant named
    ``g[0]`` is another symbol). User code (``spec.user_code``) gets freshly wrapped
    arrays on every call (see :mod:`symgrad.scalar`): nothing it writes into reaches the
    other side, and every float it uses is read exactly."""
    backend = spec.backend
    names = [n for n, _ in spec.inputs]
    gname = "g"
    while gname in names:
        gname += "_"
    # user code gets dummies (a constant it names g[0] is another symbol); symgrad's own
    # tape evaluation has no constants of its own and keeps plain symbols, whose
    # name-ordered canonical forms the end-to-end normal form was tuned on
    unique = spec.user_code
    arrays = [symbols(n, s, backend, unique=unique) for n, s in spec.inputs]
    reads = spec.reads if spec.reads is not None else tuple(range(len(arrays)))
    arg_names = [names[r] for r in reads]
    give = wrap if spec.user_code else (lambda a: a)

    def fresh_args():
        return [give(arrays[r]) for r in reads]

    out = _user_array(_call(spec.forward, fresh_args(), "forward rule", spec.inputs),
                      "the forward rule's result", backend)
    if out is None:
        raise RuleError("the forward rule returned None; it must return an array")
    if backend == "sympy" and out.size:
        out = np.vectorize(_exact_sympy, otypes=[object])(out)
    validate_shapes([("output", out.shape)], spec.max_entries * 16)
    g = symbols(gname, out.shape, backend, unique=unique)
    steps = set()
    if backend == "symengine":
        (out,), steps = _canonical_arrays([as_symengine(out)], "the forward rule's result")

    # what user code divides by (symgrad's own tapes are not looked at: not recorded)
    with recording_divisors() if spec.user_code else contextlib.nullcontext([]) as divisors:
        cots = _call(spec.vjp, [give(g), give(out)] + fresh_args(), "vjp rule", spec.inputs)
    if isinstance(cots, np.ndarray) or not isinstance(cots, (tuple, list)):
        raise RuleError(f"the vjp rule must return a tuple of {len(reads)} cotangent(s) "
                        f"(one per input: {', '.join(arg_names)}), got {type(cots).__name__}")
    if len(cots) != len(reads):
        raise RuleError(f"the vjp rule returned {len(cots)} cotangent(s), expected "
                        f"{len(reads)} (one per input: {', '.join(arg_names)})")
    rhs = [np.zeros(a.shape, dtype=object) for a in arrays]
    for k, (c, r) in enumerate(zip(cots, reads)):
        c = _user_array(c, f"the vjp rule's cotangent for input {arg_names[k]}", backend)
        if c is None:
            continue
        if c.shape != arrays[r].shape:
            raise RuleError(f"the vjp rule's cotangent for input {arg_names[k]} has shape "
                            f"{shape_tuple(c.shape)} but {arg_names[k]} has shape "
                            f"{shape_tuple(arrays[r].shape)}")
        rhs[r] = rhs[r] + c

    if backend == "sympy":
        rhs = [np.vectorize(_exact_sympy, otypes=[object])(r) if r.size else r for r in rhs]
    rhs = [as_symengine(r) for r in rhs]
    if backend == "symengine":
        rhs, _ = _canonical_arrays(rhs, "the vjp rule's result")
    out_se = as_symengine(out)
    declared = []
    if spec.assumptions is not None:
        items = _call(spec.assumptions, fresh_args(), "assumptions", spec.inputs)
        for item in (items if isinstance(items, (list, tuple)) else [items]):
            declared.append(_condition(item))
    seen, divided = set(), []
    for kind, d in divisors:
        try:
            d = se.sympify(d)
        except Exception:  # noqa: BLE001 - a SymPy value SymEngine cannot read: skip it
            continue
        if (kind, d) not in seen:
            seen.add((kind, d))
            divided.append((kind, d))
    return dict(arrays=arrays, names=names, g=g, out=out, out_se=out_se, rhs=rhs,
                declared=declared, gname=gname, backend=backend, steps=steps,
                divisors=divided)


def reference(sides, wanted):
    """(Jᵀḡ)_e = Σ_k ḡ_k ∂f_k/∂x_e for the input entries ``wanted`` [(input, index)],
    differentiating the forward (SymEngine, or SymPy's ``diff`` on the reference path).
    The forward holds no float: build_sides made each exact before this."""
    backend, out, g = sides["backend"], sides["out"], sides["g"]
    targets = {sides["arrays"][i][index]: (i, index) for i, index in wanted}
    contributions: dict = {key: [] for key in targets.values()}
    diff = se.diff if backend == "symengine" else sp.diff
    for k in np.ndindex(out.shape):
        f = out[k]
        for s in f.free_symbols:
            key = targets.get(s)
            if key is not None:
                contributions[key].append(g[k] * f)
    # One diff per input entry of φ_e = Σ_k ḡ_k f_k (over the f_k that depend on x_e):
    # the derivatives of subexpressions shared between output entries are computed once
    # and shared, where one diff per output entry would build equal but distinct copies
    # (and comparing those, which SymEngine does tree-wise, is exponential in depth).
    add = se.Add if backend == "symengine" else sp.Add
    steps = sides.get("steps", ())
    return {key: step_frozen_diff(add(*contributions[key]), s, steps, diff)
            if contributions[key] else se.Integer(0) for s, key in targets.items()}


def step_frozen_diff(phi, s, steps, diff=se.diff):
    """∂φ/∂s with every step H(u) of ``steps`` held constant: it is locally constant
    wherever u ≠ 0 — the side condition it carries — so it is replaced by a fresh symbol
    while φ is differentiated, and put back after."""
    if not steps:
        return se.sympify(diff(phi, s))
    frozen = {h: se.Dummy("H") for h in steps}
    thawed = {v: k for k, v in frozen.items()}
    return se.sympify(diff(phi.xreplace(frozen), s)).xreplace(thawed)


def _condition(item) -> Condition:
    """A declared assumption: ``(expr, "> 0" | "!= 0")``, a comparison of symbolic values
    (``x > 0``, ``x != 0``) or a SymEngine relational."""
    if isinstance(item, tuple) and len(item) == 2 and item[1] in ("> 0", "!= 0"):
        return Condition(se.sympify(unwrap_value(item[0], "an assumption")), item[1],
                         "declared")
    if isinstance(item, Relation):
        if item.op == ">":
            return Condition(se.expand(se.sympify(item.u)), "> 0", "declared")
        if item.op == "!=":
            return Condition(se.expand(se.sympify(item.u)), "!= 0", "declared")
        raise RuleError(f"an assumption must be a strict inequality (x > 0) or x != 0, got "
                        f"{item}")
    if isinstance(item, (bool, np.bool_)):
        raise RuleError(f"an assumption evaluated to the truth value {item}, not a condition "
                        f"on the inputs")
    rel = se.sympify(unwrap_value(item, "an assumption"))
    if isinstance(rel, se.StrictLessThan):          # a < b
        return Condition(se.expand(rel.args[1] - rel.args[0]), "> 0", "declared")
    if isinstance(rel, se.Unequality):
        return Condition(se.expand(rel.args[0] - rel.args[1]), "!= 0", "declared")
    raise RuleError(f"an assumption must be a strict inequality (x > 0) or x != 0 "
                    f"(Ne(x, 0)), got {item!r}")


# ----- the verdict --------------------------------------------------------------------------

#: node budget of the expansion fast path (polynomial entries only)
SMALL_POLYNOMIAL = 2000


def small_polynomial(expr, limit: int = SMALL_POLYNOMIAL) -> bool:
    """A polynomial in the symbols over Q (no function, root, reciprocal or float) with
    fewer than ``limit`` nodes."""
    stack, count = [expr], 0
    while stack:
        node = stack.pop()
        count += 1
        if count >= limit:
            return False
        if isinstance(node, (se.Add, se.Mul)):
            stack.extend(node.args)
        elif isinstance(node, se.Pow):
            base, e = node.args
            if not isinstance(e, se.Integer) or int(e) < 0 or base == se.E:
                return False
            stack.append(base)
        elif not isinstance(node, (se.Symbol, se.Integer, se.Rational)):
            return False
    return True


def _terms(e) -> int:
    return len(e.args) if isinstance(e, se.Add) else (0 if e == 0 else 1)


def _known_positive(conditions):
    return [c.expr for c in conditions if c.relation == "> 0" and c.reason == "declared"]


def _positive_symbols(conditions):
    return frozenset(c.expr for c in conditions
                     if c.relation == "> 0" and isinstance(c.expr, se.Symbol))


def _whole_tape(spec: Spec) -> bool:
    """Whether ``spec`` is a whole tape's end to end, every value seeded (several blocks)."""
    return bool(spec.blocks) and len(spec.blocks) > 1


def check(spec: Spec) -> Result:
    """Run one obligation in this process (see :func:`symgrad.check_vjp` for the isolated,
    time-limited entry point)."""
    t0 = time.perf_counter()
    phases = {}
    validate_shapes(spec.inputs, spec.max_entries)
    if sparse.eligible(spec):   # a polynomial obligation at a large shape: every entry
        found = sparse.prove(spec)   # compared as a sparse polynomial, or None
        if found is not None:
            return found
    sides = build_sides(spec)
    phases["build"] = time.perf_counter() - t0
    empty_domain(sides["declared"])
    declared = sides["declared"] = [c for c in sides["declared"] if c.expr.free_symbols]
    atoms = Atoms(positive=_positive_symbols(declared), known_positive=_known_positive(declared))
    atoms.memory_bytes = memory_limit()
    if not _whole_tape(spec):
        # (a whole tape too large is split by seed block first, each block a process of
        # its own with the whole memory budget: tape.by_seed_block)
        atoms.groups = [(n, frozenset(as_symengine(a).flat)) for n, a in
                        zip(sides["names"], sides["arrays"])] + \
            [("the seed", frozenset(as_symengine(sides["g"]).flat))]
    arrays_se = [as_symengine(a) for a in sides["arrays"]]
    total = sum(a.size for a in arrays_se)
    result = Result(name=spec.name, verdict=Verdict.UNKNOWN, backend=spec.backend,
                    shapes=[list(s) for _, s in spec.inputs],
                    params={k: str(v) for k, v in spec.params.items()}, entries=total)
    orbits = None
    if spec.symmetry and spec.axis_labels is not None:
        orbits = InferredOrbits(arrays_se, as_symengine(sides["g"]), sides["out_se"],
                                sides["rhs"], spec.axis_labels, spec.blocks,
                                [(c.expr, c.relation) for c in declared])
        wanted = orbits.representatives()
    elif spec.symmetry:
        orbits = Orbits(arrays_se, as_symengine(sides["g"]), sides["out_se"], sides["rhs"],
                        [as_symengine(p) for p in spec.param_arrays],
                        [(c.expr, c.relation) for c in declared])
        wanted = orbits.representatives()
    else:
        wanted = [(i, index) for i, a in enumerate(arrays_se) for index in np.ndindex(a.shape)]
    phases["symmetry"] = time.perf_counter() - t0 - sum(phases.values())
    suspects = orbits.suspects if orbits is not None else None
    if suspects:   # the rule breaks a symmetry of its forward at a few entries: look there
        found = _screen(spec, sides, suspects, declared)
        if found is not None:
            witness, domain = found
            result.verdict, result.witness, result.checked = Verdict.REFUTED, witness, \
                len(suspects)
            result.method = ("certified witness at an entry where the rule breaks an index "
                             "symmetry of the forward")
            result.side_conditions = _listed(domain, _positive_symbols(domain), False)
            result.seconds = time.perf_counter() - t0
            phases["verdict"] = result.seconds - sum(phases.values())
            result.phases = {k: round(v, 4) for k, v in phases.items()}
            return result
    result.checked = len(wanted)
    layered = None
    nonzero = []           # (entry, residual text)
    early = None
    if spec.layered is not None:
        layered = _layered_pass(spec, sides, atoms, wanted)
        phases["layered"] = time.perf_counter() - t0 - sum(phases.values())
        result.terms += layered.terms
        early = layered.witness
        nonzero = layered.nonzero if early is not None else []
        # composed, an entry too large with tape values kept whole is larger still
        wanted = [] if early is not None or layered.too_large else \
            [w for w in wanted if w not in layered.settled]
    lhs = reference(sides, wanted)
    phases["derivative"] = time.perf_counter() - t0 - sum(phases.values())

    entries = [(i, index, lhs[(i, index)], sides["rhs"][i][index]) for i, index in wanted]
    unsupported = None
    too_large = layered.too_large if layered is not None and early is None else None
    relations_used = layered is not None and layered.relations
    opaque = None
    if not entries:
        outcomes = []
    elif spec.abstract_sums:   # a first pass with the forward's values as indeterminates
        opaque = atoms.sibling()
        values = sides["out_se"] if spec.abstract_sums is True else \
            as_symengine(spec.abstract_sums(*sides["arrays"]))
        opaque.abstract(values.flat)
        first, early = _outcomes(spec, sides, opaque, entries, OPAQUE_RELATION_BUDGET)
        # an entry too large with its sums kept whole is larger still expanded: no retry
        rest = [] if early else [k for k, o in enumerate(first)
                                 if o[0] not in ("zero", "relations", "too large", "skipped")]
        if rest:
            outcomes, early = _outcomes(spec, sides, atoms, [entries[k] for k in rest])
            for k, o in zip(rest, outcomes):
                first[k] = o
        outcomes = first
    else:
        outcomes, early = _outcomes(spec, sides, atoms, entries)
    grids = set(layered.grids) if layered is not None else set()
    for entry, (kind, terms, detail) in zip(entries, outcomes):
        result.terms += terms
        name = entry_name(sides["names"][entry[0]], entry[1])
        if kind in ("zero", "relations"):
            relations_used |= kind == "relations"
            grids.update(detail or ())
        elif kind == "nonzero":
            nonzero.append((entry, detail))
        elif kind == "unsupported":
            unsupported = f"{name}: {detail}"
        elif kind == "too large" and too_large is None:
            too_large = f"{name}: {detail}"

    phases["normal form"] = time.perf_counter() - t0 - sum(phases.values())
    if layered is None or entries:
        for h in sides["steps"]:   # every jump of the forward is excluded, even one the
            atoms.scan(h)          # derivative does not show (a forward H(x) has derivative 0)
    conditions = declared + atoms.side_conditions()
    shown = list(conditions)       # what the result lists: the layered pass's over tape values
    for extra in ([opaque] if opaque is not None else []) + \
            ([layered.atoms] if layered is not None else []):
        seen = {(c.expr, c.relation) for c in shown}
        new = [c for c in extra.side_conditions() if (c.expr, c.relation) not in seen]
        shown += new
        conditions += [layered.composed(c) for c in new] if extra is not opaque else new
    layered_settled = layered is not None and bool(layered.settled)
    try:
        empty_domain(conditions)
    except InputError:
        if not layered_settled:
            raise
        # a step of a tape value whose argument is 0 outright (relu after a zero column):
        # the composed check states the domain over the inputs
        return _without_layered(spec)
    positive = _positive_symbols(conditions)
    symmetric = orbits is not None and orbits.generators and result.checked < total
    result.side_conditions = _listed(shown, _positive_symbols(shown), symmetric)
    result.atoms = max(len(atoms.info), len(opaque.info) if opaque is not None else 0,
                       len(layered.atoms.info) if layered is not None else 0)

    if too_large is not None:
        result.reason = f"too large: the normal form of entry {too_large}"
        result.advice = ("check smaller shapes; for a graph, its node obligations and the DAG "
                         "corollary prove it compositionally")
        result.method = "normal form"
    elif unsupported is None and not nonzero:
        result.method = "normal form" + (" + atom relations" if relations_used else "")
        if layered is not None and layered.settled:
            result.method += (" with tape values as indeterminates" + (
                " per seed block" if layered.split else "") +
                ("" if not entries else f" ({len(layered.settled)} entries; the rest composed)"))
        if grids:
            result.method += f" ({grid.RESTRICTED} {', '.join(sorted(grids))})"
        if result.checked < total:
            result.method += f" ({result.checked} of {total} entries; the rest by symmetry)"
        t_alarm = time.perf_counter()
        try:
            checked = soundness_alarm(spec, sides, conditions) or soundness_alarm(
                spec, sides, witness_domain(Atoms(positive=positive), sides, declared),
                seed=104729)
        except (VanishesOnOpenSet, InternalError) as exc:
            if layered_settled:   # what the layered pass assumed does not hold here: the
                return _without_layered(spec)   # composed check decides (and explains)
            if isinstance(exc, InternalError):
                raise
            checked = False
            result.reason = (f"the normal form is zero under the side condition "
                             f"{exc.condition.text()}, but that step argument is 0 on a whole "
                             f"region (around {_point_text(exc.point, exc.condition)}), which "
                             f"the condition would silently cut out of the domain")
            result.advice = ("write the rule's comparisons as the forward writes them (the same "
                             "step arguments), or declare an assumption that excludes the "
                             "region")
        # (raises on a disagreement; the second call knows every entry's conditions, for
        # points in a domain such as x > 3 that the orbit representatives' do not cover)
        phases["alarm"] = time.perf_counter() - t_alarm
        singular = singular_witness(spec, sides, declared, positive) if checked else None
        if singular is not None:   # the rule's code is undefined where the forward is not
            result.verdict = Verdict.REFUTED
            result.method = "normal form zero where the rule is defined; certified witness"
            result.witness = singular
        elif checked:
            result.verdict = Verdict.PROVED
        elif not result.reason:   # an identity on an empty set proves nothing
            result.reason = ("the normal form is zero, but no point satisfying every side "
                             "condition was found, so the domain may be empty")
            result.advice = ("check that the declared assumptions and the side conditions "
                             "below can hold together")
    elif unsupported is not None:
        result.reason = f"the normal form cannot represent an entry ({unsupported})"
        result.advice = ("write the function with symgrad.fn (exp, log, tanh, sqrt, erf, "
                         "relu, where, …) on both sides")
        result.method = "normal form"
    else:
        (i, index, _, _), (result.residual, result.legend) = nonzero[0]
        witness = early or search_witness(spec, sides, [e for e, _ in nonzero],
                                          witness_domain(atoms, sides, declared), positive)
        if witness is not None:
            result.verdict = Verdict.REFUTED
            result.method = "normal form ≠ 0; certified witness"
            result.witness = witness
        else:
            result.method = "normal form ≠ 0; no witness"
            result.reason = (f"the normal form of {len(nonzero)} entr"
                             f"{'y' if len(nonzero) == 1 else 'ies'} is not zero (first: "
                             f"{entry_name(sides['names'][i], index)}) and no certified "
                             f"counterexample was found at {spec.witness_points} points")
            result.advice = ("the rule may be right through an identity the normal form does "
                             "not know (see the residual and its legend); write it closer to "
                             "the forward's own expressions, or look for the bug at the first "
                             "entry named")
    result.seconds = time.perf_counter() - t0
    phases["verdict"] = result.seconds - sum(phases.values())
    result.phases = {k: round(v, 4) for k, v in phases.items()}
    return result


def _point_text(point, condition) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(point.items(), key=lambda kv: str(kv[0]))
                     if k in condition.expr.free_symbols)


def _listed(conditions, positive, symmetric) -> list:
    """The side conditions of a result: every one, whole (the CLI may abbreviate)."""
    listed, seen = [], set()
    for c in conditions:   # a declared x ≠ 0 is not listed again as a step's x ≠ 0
        folded = readable(c.expr)
        text = c.text(limit=SIDE_CONDITION_NODES) if folded is None else \
            f"{folded} {'≠' if c.relation == '!= 0' else '>'} 0"
        if text not in seen:
            seen.add(text)
            listed.append(SideCondition(text, c.reason, c.reason != "declared" and
                                        holds_everywhere(c, positive)))
    if symmetric and conditions:
        listed.append(SideCondition("… and their images under the verified index symmetries",
                                    "summary", all(c.discharged for c in listed)))
    return listed


#: a side condition is printed whole up to this many nodes (a LayerNorm radicand deep in a
#: composed graph is a DAG that prints as a tree of gigabytes: past this, it is summarised)
SIDE_CONDITION_NODES = 20_000


def empty_domain(conditions):
    """An InputError when a side condition without symbols is false (a declared ``eps > 0``
    with eps = −1, the log of a negative constant): the domain is empty, and a statement
    "for all x in the domain" would be true of nothing."""
    ev = Evaluator({}, 128)
    for c in conditions:
        if c.expr.free_symbols:
            continue
        try:
            v = ev(c.expr)
        except CannotEvaluate:
            continue
        false = (not v > 0 and (v < 0 or v == 0)) if c.relation == "> 0" else v == 0
        if false:
            what = "the declared assumption" if c.reason == "declared" else \
                f"the side condition ({c.reason})"
            raise InputError(f"{what} {c.text()} is false, so the domain is empty and nothing "
                             f"could be proved")


def _screen(spec, sides, suspects, declared):
    """A quick certified witness among ``suspects`` — the entries where the rule breaks a
    symmetry its forward has — before any other entry is differentiated: (witness,
    domain conditions) or None."""
    lhs = reference(sides, suspects)
    entries = [(i, ix, lhs[(i, ix)], sides["rhs"][i][ix]) for i, ix in suspects]
    domain = witness_domain(Atoms(positive=_positive_symbols(declared)), sides, declared)
    witness = search_witness(spec, sides, entries, domain, _positive_symbols(domain),
                             points=QUICK_POINTS)
    return None if witness is None else (witness, domain)


#: points of the numeric cross-check after a PROVED, input entries its direction moves
#: (chosen at random each time), and the bits it works at (h = 2⁻⁶⁰ cancels 60 of them)
ALARM_POINTS, ALARM_SUPPORT, ALARM_PRECISION = 2, 8, 160
#: points drawn, at most, to find those in the domain; at least this many are drawn for
#: the test of step conditions that vanish on a region (each half of a half-space split is
#: then missed with probability 2⁻¹²)
ALARM_ATTEMPTS, OPEN_ZERO_POINTS = 32, 12


class VanishesOnOpenSet(Exception):
    """A step's argument is 0 on a whole region: its condition u ≠ 0 would cut the region
    out of the domain (the step rule H(−u) = 1 − H(u) does not hold there)."""

    def __init__(self, condition, point):
        self.condition, self.point = condition, point
        super().__init__(condition.text())


_STEP_REASONS = ("step function at its jump", "is not differentiable at 0")


def _open_zero(conditions, point, ev, rng):
    """Raise VanishesOnOpenSet when a step's condition u ≠ 0 is exactly 0 at ``point`` and
    still exactly 0 after a random small move of every symbol in it — a kink is a
    hypersurface that such a move leaves; a region where u vanishes is not."""
    for c in conditions:
        if c.relation != "!= 0" or not any(r in c.reason for r in _STEP_REASONS):
            continue
        try:
            if not _zero_like(ev(c.expr)):
                continue
        except CannotEvaluate:
            continue
        moved = dict(point)
        for sym in c.expr.free_symbols:
            if sym in moved:
                moved[sym] = moved[sym] + Fraction(rng.choice([-1, 1]) * rng.randint(1, 1024),
                                                   2 ** 24)
        try:
            still = _zero_like(Evaluator(moved, ev.prec)(c.expr))
        except CannotEvaluate:
            continue
        if still:
            raise VanishesOnOpenSet(c, point)


def _zero_like(v) -> bool:
    """Exactly 0, or a ball around 0 far narrower than any kink a random point could be
    near (a root evaluated by exp/log is never exact)."""
    return v.is_zero() or (v.contains(0) and v.rad() < to_arb(Fraction(1, 2 ** 100)))


def soundness_alarm(spec, sides, conditions, seed: int = 7919) -> bool:
    """Defence in depth after a zero normal form: at random points of the domain, the
    directional derivative of the forward along a random direction on a few input entries
    (a central difference at 160 bits, h = 2⁻⁵⁰, and again at 2⁻⁶⁰ before an alarm, so a
    truncation error — it shrinks with h — is not taken for a bug) paired with ḡ must
    match the rule's cotangents paired with the direction. A
    disagreement far beyond the difference's error is a bug in symgrad — an InternalError,
    never a PROVED. Returns whether a point of the domain was found (without one the
    verdict is UNKNOWN: the domain may be empty)."""
    rng = random.Random(spec.seed + seed)
    arrays = [as_symengine(a) for a in sides["arrays"]]   # SymPy backend: its symbols too
    g = as_symengine(sides["g"])
    inputs = [v for a in arrays for v in a.flat]
    cot = frozenset(g.flat)
    symbols_ = set(inputs) | set(g.flat)
    for c in conditions:
        symbols_ |= c.expr.free_symbols
    reads = [(gk, f, f.free_symbols) for gk, f in zip(g.flat, sides["out_se"].flat)]
    for _, _, free in reads:
        symbols_ |= free
    positive = _positive_symbols(conditions)
    single = _single_symbol_conditions(conditions, cot)
    h = Fraction(1, 2 ** 50)
    old_prec = flint_ctx.prec
    flint_ctx.prec = ALARM_PRECISION   # the difference quotients cancel 50 and 60 bits
    try:
        return _alarm_points(spec, sides, conditions, rng, inputs, cot, symbols_, positive,
                             single, h, reads)
    finally:
        flint_ctx.prec = old_prec


def _alarm_points(spec, sides, conditions, rng, inputs, cot, symbols_, positive, single,
                  h, reads) -> bool:
    arrays = [as_symengine(a) for a in sides["arrays"]]
    found = 0
    for attempt in range(ALARM_ATTEMPTS):
        if found >= ALARM_POINTS and attempt >= OPEN_ZERO_POINTS:
            break
        scale = scale_of(attempt)
        point = sample_point(sorted(symbols_, key=str), rng, positive, cot, scale=scale)
        # before the point is moved into the domain: a region a condition cuts away is
        # where the move would take it from
        _open_zero(conditions, point, Evaluator(point, ALARM_PRECISION), rng)
        if found >= ALARM_POINTS:
            continue
        _into_domain(point, single, rng, positive, scale, conditions, cot)
        # a direction on a few input entries: only the outputs that read them are
        # differenced, and only their cotangent entries evaluated
        support = set(rng.sample(inputs, min(len(inputs), ALARM_SUPPORT)))
        direction = {x: Fraction(rng.choice([-8, -5, -3, -2, 2, 3, 5, 8]), 8) for x in support}
        ev = Evaluator(point, ALARM_PRECISION)
        if not all(condition_holds(c, ev) for c in conditions):
            continue
        reading = [(gk, f) for gk, f, free in reads if not free.isdisjoint(support)]

        def difference(step):
            sides_of = []
            for sign in (1, -1):
                moved = dict(point)
                for x, d in direction.items():
                    moved[x] = point[x] + sign * step * d
                em = Evaluator(moved, ALARM_PRECISION)
                if not all(condition_holds(c, em) for c in conditions):
                    raise CannotEvaluate("the difference leaves the domain")
                total = arb(0)
                for gk, f in reading:
                    total += ev(gk) * em(f)
                sides_of.append(total)
            return (sides_of[0] - sides_of[1]) / (2 * to_arb(step))

        try:
            fd = difference(h)
            rule = arb(0)
            for a, r in zip(arrays, sides["rhs"]):
                for index in np.ndindex(a.shape):
                    d = direction.get(a[index])
                    if d:
                        rule += ev(r[index]) * to_arb(d)
        except CannotEvaluate:
            continue
        found += 1
        tolerance = (1 + abs(fd) + abs(rule)) * to_arb(Fraction(1, 2 ** 40))
        first_gap = abs(fd - rule)
        if not first_gap > tolerance:
            continue
        try:   # a truncation error shrinks 2²⁰-fold with a 2¹⁰-fold smaller step; a bug not
            fd = difference(h / 2 ** 10)
        except CannotEvaluate:
            continue
        gap = abs(fd - rule)
        if gap > tolerance and gap > first_gap / 4:
            raise InternalError(
                f"soundness alarm in {spec.name}: the normal form is zero, but at a point of "
                f"the domain the forward's directional derivative is {fd.str(12)} and the "
                f"rule gives {rule.str(12)} — a bug in symgrad; please report it with this "
                f"obligation")
    return found > 0


@dataclass
class LayeredPass:
    """What the pass with tape values as indeterminates settled (see :func:`_layered_pass`)."""

    settled: set
    atoms: Atoms
    restate: Callable             #: an expression over tape values -> over the inputs
    terms: int = 0
    relations: bool = False
    split: bool = False
    witness: Witness | None = None
    nonzero: list = field(default_factory=list)   #: (entry, residual text)
    too_large: str | None = None   #: the first entry too large with tape values kept whole
    grids: set = field(default_factory=set)   #: groups entries were split over (grid.py)

    def composed(self, c: Condition) -> Condition:
        """A side condition over tape values, restated over the inputs (what the soundness
        alarm and the witness search evaluate)."""
        return Condition(self.restate(c.expr), c.relation, c.reason)


def _layered_pass(spec, sides, atoms, wanted) -> LayeredPass:
    """Normal forms of each wanted entry's seed-block identities with tape values as
    indeterminates (:mod:`symgrad.prove.layered`); an entry is settled when every one of
    its identities is zero. Where one is not zero as a polynomial, the quick witness search
    runs on it restated over the inputs (a refuted engine needs no relations, nor the
    composed normal form); the rest go to the composed check."""
    lay = spec.layered(sides["arrays"], sides["g"])
    own = atoms.sibling()
    per_entry = [[(i, index, lhs, rhs) for lhs, rhs in lay.sides(i, index)]
                 for i, index in wanted]
    # the blocks nearest the output first: the largest, so one too large stops early
    items = [entry[b] for b in reversed(range(max(map(len, per_entry), default=0)))
             for entry in per_entry if b < len(entry)]
    out = LayeredPass(settled=set(), atoms=own, restate=lay.restate, split=lay.split)

    def composed(item):
        i, index, lhs, rhs = item
        return i, index, lay.restate(lhs), lay.restate(rhs)

    outcomes, out.witness = _outcomes(spec, sides, own, items, restate=composed)
    unsettled = set()
    for item, (kind, terms, detail) in zip(items, outcomes):
        out.terms += terms
        if kind in ("zero", "relations"):
            out.relations |= kind == "relations"
            out.grids.update(detail or ())
        else:
            unsettled.add(item[:2])
            if kind == "nonzero":
                out.nonzero.append((item, detail))
            elif kind == "too large" and out.too_large is None:
                out.too_large = f"{entry_name(sides['names'][item[0]], item[1])}: {detail}"
    out.settled = {w for w in wanted if w not in unsettled}
    try:   # every node's forward, over the tape values: its jumps, roots, logs and
        for e in lay.steps + lay.forwards:   # denominators bound the domain too
            own.scan(e)
    except Unsupported:
        out.settled = set()
    if out.settled and not _engine_consistent(spec, sides, lay, sorted(out.settled)):
        out.settled = set()
    return out


def _engine_consistent(spec, sides, lay, wanted, scales=(3, 60, 2400)) -> bool:
    """Whether the engine computed the same on the tape values as indeterminates as on the
    composed values — the assumption of the layered pass, which an engine that compares or
    memoises its saved values breaks: its cotangents restated over the inputs and its
    cotangents on the composed values, at random points, in ball arithmetic. False on a
    certain disagreement (the composed check then decides). Sampling: a disagreement
    confined to a region none of the points reaches is not seen (docs/method.md §8)."""
    rng = random.Random(spec.seed + 4099)
    pairs = [(lay.restated(i, index), sides["rhs"][i][index]) for i, index in wanted]
    free = set()
    for a, b in pairs:
        free |= a.free_symbols | b.free_symbols
    free = sorted(free, key=str)
    for scale in scales:   # small, moderate and large magnitudes
        point = {v: Fraction(rng.randint(-32 * scale, 32 * scale), 32) for v in free}
        ev = Evaluator(point, 128)
        for a, b in pairs:
            try:
                d = ev(a) - ev(b)
            except CannotEvaluate:
                continue
            if not d.contains(0):
                return False
    return True


def _without_layered(spec):
    """The obligation checked again without the layered pass."""
    from dataclasses import replace
    return check(replace(spec, layered=None))


#: relation-stage budget (terms) of the pass with sums kept whole: it is speculative
OPAQUE_RELATION_BUDGET = 200_000
#: points a quick witness search tries before the atom relations are applied
QUICK_POINTS = 4


def _outcomes(spec, sides, atoms, entries, budget=None, restate=None):
    """Normal forms of every entry, then — only for residuals not zero as polynomials — a
    quick certified witness search (a refuted rule needs no relations), and the atom
    relations where it finds none. Returns (outcomes, witness or None). ``restate``: the
    entry as the witness search evaluates it (over the inputs only)."""
    atoms.prepare_exponents([e for entry in entries for e in entry[2:]])
    keep: dict = {}
    outcomes = normal_forms(atoms, entries, spec, reduce=False, keep=keep)
    if _whole_tape(spec) and any(o[0] == "too large" for o in outcomes):
        # a whole tape too large as one identity is checked again by seed block, each
        # block with its relations and witness search (tape.by_seed_block): not here
        return outcomes, None
    # "nonzero" here: an entry split over a grid, its restrictions reduced in full
    pending = [k for k, o in enumerate(outcomes) if o[0] in ("unreduced", "nonzero")]
    if restate is not None:
        # the layered pass: a right engine's residuals mostly vanish by the cheap relations
        # (pairs, plain inverses divided out), and the witness search's domain is scanned
        # over the composed tape — on a deep block the costliest step: try those first
        quick = []
        for k in pending:
            kept = keep.get(id(entries[k]))
            try:
                zero = kept is not None and kept[0].reduce(
                    kept[1], budget or spec.relation_budget, quick=True) is not None
            except TooLarge:
                zero = False
            if zero:
                outcomes[k] = ("relations", outcomes[k][1], None)
            else:
                quick.append(k)
        pending = quick
    if not pending:
        return outcomes, None
    declared = sides["declared"]
    domain = witness_domain(Atoms(positive=_positive_symbols(declared)), sides, declared)
    witness = search_witness(spec, sides, [(restate or (lambda e: e))(entries[k])
                                           for k in pending], domain,
                             _positive_symbols(domain), points=QUICK_POINTS)
    if witness is not None:
        for k in pending:
            kept = keep.get(id(entries[k]))
            outcomes[k] = ("nonzero", outcomes[k][1], residual_text(*kept) if kept else
                           outcomes[k][2] or ("(not kept: computed in a worker)", {}))
        return outcomes, witness
    pending = [k for k in pending if outcomes[k][0] == "unreduced"]
    kept = [k for k in pending if id(entries[k]) in keep]
    for k in kept:
        form, residual = keep[id(entries[k])]
        # the layered pass divided the inverses out already (not zero that way)
        outcomes[k] = _reduced(form, residual, outcomes[k][1], budget or spec.relation_budget,
                               entries[k], divide=restate is None)
    rest = [k for k in pending if id(entries[k]) not in keep]
    if rest:
        for k, o in zip(rest, normal_forms(atoms, [entries[k] for k in rest], spec,
                                           budget=budget)):
            outcomes[k] = o
    return outcomes, None


#: entries from which the normal forms are computed in several processes
PARALLEL_ENTRIES = 16


def entry_normal_form(atoms: Atoms, entry, budget: int, reduce: bool = True, keep=None,
                      fallback: bool = True, groups=None):
    """(outcome, terms, detail) of one entry (input, index, expected, got): outcome is
    "zero", "relations" (zero after the atom relations), "nonzero" (detail: the residual),
    "unsupported" or "too large" (detail: why). With ``reduce=False`` a non-zero residual
    comes back "unreduced" (its form kept in ``keep`` by entry id, when given). An entry
    too large to expand is split over the grid of one of ``groups`` (default
    ``atoms.groups``; :func:`_on_grid`)."""
    _, _, lhs, rhs = entry
    if small_polynomial(lhs) and small_polynomial(rhs):
        # no atoms, hence no side conditions: SymEngine's expansion is a canonical
        # polynomial normal form, computed in C++ without building a FLINT context
        a, b = se.expand(lhs), se.expand(rhs)
        if a == b:
            return "zero", _terms(a) + _terms(b), None
    groups = atoms.groups if groups is None else groups
    try:
        variables = atoms.scan(lhs) | atoms.scan(rhs)
        try:   # past GRID_TERMS, restrictions to a grid are cheaper (and far smaller)
            form = EntryForm(atoms, (lhs, rhs), variables,
                             limit=GRID_TERMS if groups else None)
        except TooLarge as exc:
            split = _on_grid(atoms, entry, budget, fallback, groups) if groups else None
            if split is not None:
                return split
            if exc.limit < GRID_TERMS:   # the memory's limit, not the grid's: no retry
                raise
            form = EntryForm(atoms, (lhs, rhs), variables)   # no grid: expand in full
    except Unsupported as exc:
        return "unsupported", 0, str(exc)
    except TooLarge as exc:
        return "too large", 0, str(exc)
    p_lhs, p_rhs = form.polys
    terms = len(p_lhs) + len(p_rhs)
    residual = p_lhs - p_rhs
    if residual.is_zero():
        return "zero", terms, None
    if not reduce:
        if keep is not None:
            keep[id(entry)] = (form, residual)
        return "unreduced", terms, None
    return _reduced(form, residual, terms, budget, entry if fallback else None)


#: terms an entry's expansion may hold before it is restricted to the points of a grid
GRID_TERMS = 1_000_000


def _on_grid(atoms: Atoms, entry, budget: int, fallback: bool, groups: list):
    """The outcome of an entry too large to expand, from its restrictions to the points of
    a grid (:mod:`symgrad.prove.grid`) of the group :func:`grid.choose` finds cheapest —
    each restriction split again over the other groups when it is too large itself — or
    None when no group has a degree from 1 to grid.MAX_DEGREE. Zero when every restriction is; else the first
    restriction's outcome that is not, its point named. A zero's detail: the groups split
    over."""
    i, index, lhs, rhs = entry
    found = grid.choose(lhs, rhs, groups)
    if found is None:
        return None
    name, variables, d = found
    rest = [g for g in groups if g[0] != name]
    kind, terms, over = "zero", 0, [name]
    for point in grid.grid(variables, d):
        part = (i, index, lhs.xreplace(point), rhs.xreplace(point))
        o = entry_normal_form(atoms, part, budget, fallback=fallback, groups=rest)
        terms += o[1]
        if o[0] in ("zero", "relations"):
            kind = "relations" if o[0] == "relations" else kind
            over += [g for g in o[2] or () if g not in over]
        else:
            at = f"at {grid.point_text(point)}"
            if o[0] == "nonzero":
                text, legend = o[2]
                return "nonzero", terms, (f"{at}: {text}", legend)
            return o[0], terms, f"{at}: {o[2]}"
    return kind, terms, tuple(over)


def _reduced(form, residual, terms, budget, entry=None, divide=True):
    try:
        reduced = form.reduce(residual, budget, divide=divide)
    except TooLarge:
        reduced = None
    if reduced is not None and reduced.is_zero():
        return "relations", terms, None
    if entry is not None and _settled_by_fallbacks(form.atoms, entry, budget):
        return "relations", terms, None
    return "nonzero", terms, residual_text(form, reduced if reduced is not None else residual)


def residual_text(form, residual) -> tuple:
    """(the residual as text, at most 400 characters; {atom name: what it stands for} of
    the atoms it shows)."""
    text = str(residual)
    text = (text[:400] + " …") if len(text) > 400 else text
    shown = set(re.findall(r"\bA\d+(?:inv)?\b", text))
    legend = {k: v for k, v in form.legend().items() if k in shown}
    # the shown atoms renumbered A0, A1, … in order of appearance: the registry's numbers
    # follow its discovery order, which hash order can shift from run to run
    order: dict = {}
    for m in re.finditer(r"\bA(\d+)(?:inv)?\b", text):
        order.setdefault(m.group(1), str(len(order)))
    rename = lambda m: "A" + order[m.group(1)] + (m.group(2) or "")  # noqa: E731
    pattern = re.compile(r"\bA(\d+)(inv)?\b")
    return pattern.sub(rename, text), {pattern.sub(rename, k): v for k, v in legend.items()}


def _inner_step(exprs):
    """A step H(c) that sits inside the argument of another step or function, with no step
    inside its own argument (clamp = min(max(x, lo), hi) nests max's step in min's), or
    None."""
    seen, inner, stack = set(), [], [(e, False) for e in exprs]
    while stack:
        node, inside = stack.pop()
        if (node, inside) in seen:
            continue
        seen.add((node, inside))
        is_step = _is_step(node)
        if is_step and inside and innermost(node):
            inner.append(node)
        # inside anything but a polynomial operation: a step's or function's argument,
        # an exponent, a root or a reciprocal (exp(−|x|) in a stable softplus)
        opaque = not (isinstance(node, (se.Add, se.Mul)) or (
            isinstance(node, se.Pow) and isinstance(node.args[1], se.Integer)
            and int(node.args[1]) >= 0 and node.args[0] != se.E))
        stack.extend((a, inside or opaque) for a in node.args)
    return min(inner, key=str) if inner else None


#: nested steps split into cases at most this deep
CASE_DEPTH = 4


def _cases_settle(atoms, entry, budget, depth=0) -> bool:
    """Whether the entry's residual vanishes in both cases of a step H(c) — an inner one, or
    one of several side by side: with H(c) = 1 everywhere (c > 0) and with H(c) = 0
    (c < 0). The residual r equals
    H(c)·r|₁ + (1 − H(c))·r|₀ wherever c ≠ 0 (a side condition the step carries), so both
    cases zero as normal forms prove r zero. A step of ±c is set to the same case."""
    if depth >= CASE_DEPTH:
        return False
    i, index, lhs, rhs = entry
    steps = steps_under(lhs) + steps_under(rhs)
    h = _inner_step([lhs, rhs])
    if h is None:   # side by side, steps may still decide each other (x > hi > lo)
        distinct = {atoms._sign_normal(n.args[0])[0]: n for n in steps}
        if len(distinct) < 2:
            return False
        h = distinct[min(distinct, key=str)]
    c, _ = atoms._sign_normal(h.args[0])
    atoms.scan(h)   # registers c ≠ 0
    for value in (1, 0):
        repl = atoms.in_case(steps, c, value)
        case = (i, index, lhs.xreplace(repl), rhs.xreplace(repl))
        kind = entry_normal_form(atoms, case, budget)[0]
        if kind not in ("zero", "relations") and not _cases_settle(atoms, case, budget,
                                                                   depth + 1):
            return False
    return True


#: entries larger than this (nodes of either side) skip the case splits and rewrites: they
#: are for the nested steps and atom identities of single rules, not for composed graphs
FALLBACK_NODES = 5000


def _settled_by_fallbacks(atoms, entry, budget) -> bool:
    """Whether a small entry's residual vanishes by cases of its inner steps or after the
    tanh/log rewrites (both register the side conditions they use in ``atoms``)."""
    return _smaller_than(entry[2], FALLBACK_NODES) and _smaller_than(
        entry[3], FALLBACK_NODES) and (_cases_settle(atoms, entry, budget)
                                       or _rewrites_settle(atoms, entry, budget))


def _exp_forms(exprs) -> dict:
    """Rewrites that are identities on the domain, for identities between atoms the normal
    form keeps independent: tanh u = 1 − 2/(e^{2u} + 1) (so 1/cosh² u = 1 − tanh² u and
    4σ(2u)σ(−2u) meet it), and log(Π f_i^k_i) = Σ k_i log f_i (each f_i > 0 then becomes
    a side condition: log(x/(1 − x)) = log x − log(1 − x))."""
    repl = {}
    for n in set().union(*(_nodes(e) for e in exprs)):
        name = n.get_name() if isinstance(n, se.FunctionSymbol) else type(n).__name__
        if name == "tanh":
            repl[n] = 1 - 2 / (se.exp(2 * n.args[0]) + 1)
        elif name == "log" and isinstance(n.args[0], se.Mul):
            parts = []
            for f in n.args[0].args:
                b, k = (f.args[0], f.args[1]) if isinstance(f, se.Pow) and \
                    isinstance(f.args[1], se.Integer) else (f, se.Integer(1))
                parts.append(k * se.log(b))
            repl[n] = se.Add(*parts)
    return repl


def _rewrites_settle(atoms, entry, budget) -> bool:
    """Whether the entry's residual vanishes after the rewrites of :func:`_exp_forms`."""
    i, index, lhs, rhs = entry
    repl = _exp_forms([lhs, rhs])
    if not repl:
        return False
    case = (i, index, lhs.xreplace(repl), rhs.xreplace(repl))
    return entry_normal_form(atoms, case, budget)[0] in ("zero", "relations")


def _run(atoms, entries, budget, reduce=True, keep=None, fallback=True):
    out = []
    for entry in entries:
        out.append(entry_normal_form(atoms, entry, budget, reduce, keep, fallback))
        if out[-1][0] == "too large":  # the other entries are as large: stop here
            break
    return out + [("skipped", 0, None)] * (len(entries) - len(out))


def normal_forms(atoms: Atoms, entries, spec, reduce=True, keep=None, budget=None) -> list:
    """The outcome of every entry; with many entries, in ``workers()`` forked processes
    (each takes every k-th entry). Every atom and side condition is registered here
    first, so the children only convert. ``keep`` (see :func:`entry_normal_form`) is
    filled in this process only."""
    k = min(workers(), len(entries) // PARALLEL_ENTRIES)
    if k <= 1:
        return _run(atoms, entries, budget or spec.relation_budget, reduce, keep)
    for _, _, lhs, rhs in entries:
        try:
            atoms.scan(lhs), atoms.scan(rhs)
        except Unsupported:
            pass
    budget = budget or spec.relation_budget
    whole = atoms.memory_bytes

    def share(part):   # k processes at once: each expands within its share of the memory
        atoms.memory_bytes = None if whole is None else whole // k
        try:
            return _run(atoms, part, budget, reduce, fallback=False)
        finally:
            atoms.memory_bytes = whole

    parts = fork_map(share, [entries[w::k] for w in range(k)])
    out = [None] * len(entries)
    for w, part in enumerate(parts):
        out[w::k] = part
    # the fallbacks register side conditions (log f > 0 for a split log): only in this
    # process, whose atoms the verdict reads — a child's conditions would be lost
    for j, (kind, terms, _) in enumerate(out):
        if kind == "nonzero" and _settled_by_fallbacks(atoms, entries[j], budget):
            out[j] = ("relations", terms, None)
    return out


def memory_limit() -> int:
    """Bytes this process may allocate: its address-space limit when one is set (a
    checking process has one), else ``SYMGRAD_MEMORY_MB``."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return soft if soft != resource.RLIM_INFINITY else DEFAULT_MEMORY_MB * 1024 * 1024


def witness_domain(atoms: Atoms, sides, declared) -> list:
    """Every side condition of the obligation — the forward's own (a denominator the
    residual never sees still bounds the domain) and every entry's, not only those of the
    entries that were normal-formed — so a witness lies in the whole domain."""
    for f in sides["out_se"].flat:
        try:
            atoms.scan(f)
        except Unsupported:
            pass
    for cot in sides["rhs"]:
        for e in cot.flat:
            try:
                atoms.scan(e)
            except Unsupported:
                pass
    return declared + atoms.side_conditions()


def _single_symbol_conditions(conditions, cot) -> dict:
    """symbol → the conditions that involve it alone (a log(x − 3) domain, say): a point
    redraws that symbol until they hold, instead of hoping every symbol lands inside."""
    out: dict = {}
    for c in conditions:
        free = c.expr.free_symbols
        if len(free) == 1:
            (sym,) = free
            if sym not in cot:
                out.setdefault(sym, []).append(c)
    return out


#: conditions of several symbols a point is repaired against (redrawing one symbol of
#: each failing condition, a few rounds), at most
REPAIR_CONDITIONS = 64


def _between_anchors(sym, conds, rng):
    """Dyadic values strictly between (and just outside) the roots of the conditions that
    are linear in ``sym``: a narrow interval domain is hit on purpose, not by luck."""
    roots = set()
    for c in conds:
        terms = se.expand(c.expr).as_coefficients_dict()
        if set(terms) <= {sym, se.Integer(1)} and sym in terms:
            roots.add(-to_fraction(terms.get(se.Integer(1), 0)) / to_fraction(terms[sym]))
    roots = sorted(roots)
    if not roots:
        return []
    ends = [(roots[0] - 1, roots[0])] + list(zip(roots, roots[1:])) + [(roots[-1],
                                                                         roots[-1] + 1)]
    out = []
    for lo, hi in ends:
        t = Fraction(rng.randint(1, 255), 256)
        mid = lo + (hi - lo) * t
        for bits in range(8, 80, 8):      # the coarsest dyadic strictly inside (lo, hi)
            d = Fraction(round(mid * 2 ** bits), 2 ** bits)
            if lo < d < hi:
                out.append(d)
                break
    rng.shuffle(out)
    return out


def _into_domain(point, single, rng, positive, scale, conditions=(), cot=frozenset()):
    """Move ``point`` into the domain where that is cheap: symbols with conditions of
    their own are redrawn until those hold; then, for a few rounds, one symbol of each
    failing condition (hi − lo > 0 of a clamp between tensor bounds) is redrawn."""
    for sym, conds in single.items():
        if sym not in point:
            continue
        inside = list(_between_anchors(sym, conds, rng))
        for tries in range(24 + len(inside)):
            if all(condition_holds(c, Evaluator({sym: point[sym]}, 64)) for c in conds):
                break
            if inside:   # between the roots of linear conditions (3 < x < 3.25)
                point[sym] = inside.pop()
                continue
            # further out, or closer in, as the tries go on
            point[sym] = sample_value(rng, scale * Fraction(2) ** (tries // 2 * (
                1 if tries % 2 else -1)), sym in positive)
    several = [c for c in conditions if len(c.expr.free_symbols) > 1]
    if not several or len(conditions) > REPAIR_CONDITIONS:
        return
    for _ in range(8):
        ev = Evaluator(point, 64)
        failing = [c for c in several if not condition_holds(c, ev)]
        if not failing:
            return
        for c in failing:
            free = sorted((s for s in c.expr.free_symbols if s in point and s not in cot),
                          key=str)
            if free:
                sym = rng.choice(free)
                point[sym] = sample_value(rng, scale, sym in positive)


def search_witness(spec, sides, entries, conditions, positive, points=None):
    """A rational point in the domain where some entry's residual ball excludes 0, drawn
    at several magnitudes (see ``witness.SCALES``), confirmed by running the user's code
    again at that point (:func:`recheck`) before it is returned."""
    cot = frozenset(sides["g"].flat)
    rng = random.Random(spec.seed)
    wanted = set()
    for _, _, lhs, rhs in entries:
        wanted |= lhs.free_symbols | rhs.free_symbols
    for c in conditions:
        wanted |= c.expr.free_symbols
    wanted = sorted(wanted, key=str)
    single = _single_symbol_conditions(conditions, cot)
    for attempt in range(spec.witness_points if points is None else points):
        scale = scale_of(attempt)
        point = sample_point(wanted, rng, positive, cot, scale=scale)
        _into_domain(point, single, rng, positive, scale, conditions, cot)
        for prec in (64, 256):
            ev = Evaluator(point, prec)
            if not all(condition_holds(c, ev) for c in conditions):
                break
            undecided = False
            for i, index, lhs, rhs in entries:
                try:
                    expected, got = ev(lhs), ev(rhs)
                except CannotEvaluate:
                    undecided = True
                    continue
                diff = expected - got
                if diff.contains(0):
                    undecided = undecided or diff.rad() > 0
                    continue
                confirmed = recheck(spec, sides, point, i, index, prec)
                if confirmed is None:
                    undecided = True
                    continue
                expected, got = confirmed
                e_text, g_text, digits = distinct_texts(expected, got)
                return _witness(sides, i, index, point, e_text, g_text,
                                ball_bounds(expected - got), prec, _close_call(digits))
            if not undecided:
                break
    return None


#: what the rule's code divides by (or takes a root or logarithm of) tried for a point
#: outside its domain at most, the points tried for each, the symbols of each solved for
#: (or set to 0, ±1: only for arguments of at most that many symbols), and the seconds
#: the whole search may take
SINGULAR_DIVISORS = 64
SINGULAR_POINTS = 4
SINGULAR_SYMBOLS = 4
SINGULAR_SECONDS = 3.0
#: runs of the rule at candidate points, at most (each runs the whole rule on numbers)
SINGULAR_RUNS = 8

#: the value each kind of recorded argument is set to: where the code is undefined
_TARGET = {"zero": 0, "negative": -1, "nonpositive": -1}


def singular_witness(spec, sides, declared, positive):
    """A point where the rule's code divides by zero, or takes the root or logarithm of a
    negative number — or, guarded by ``where``, picks a value that is wrong — while the
    forward is defined there: a REFUTED the normal form cannot see, because SymEngine
    cancels ``(x·y)/x`` to ``y`` and ``√x·√x`` to ``x`` before it looks (PyTorch's ``prod``
    backward as ``grad·prod/x``, ``cumprod``'s by division). For each such argument A the
    code used (recorded as it ran), points of the forward's domain where A is 0 (or −1)
    are found — A linear in a symbol, solved for it; else a symbol set to 0 or ±1 — and the
    rule runs again there with IEEE semantics (∞ and NaN, not an error). An undefined
    entry (Jᵀḡ being finite there), or one that differs from Jᵀḡ (confirmed by
    :func:`recheck`), is the witness."""
    if not sides.get("divisors"):
        return None
    cot = frozenset(sides["g"].flat)
    domain = None   # the forward's conditions, scanned at the first candidate point
    symbols_ = sorted({s for a in sides["arrays"] for s in a.flat} | set(cot), key=str)
    rng = random.Random(spec.seed + 7919)
    deadline = time.perf_counter() + SINGULAR_SECONDS
    runs = 0
    for kind, D in sides["divisors"][:SINGULAR_DIVISORS]:
        target = _TARGET[kind]
        for point in _points_at(D, target, symbols_, rng, positive, cot):
            if time.perf_counter() > deadline or runs >= SINGULAR_RUNS:
                return None
            if domain is None:
                domain = _forward_domain(sides, declared, positive)
                if domain is None:
                    return None
            try:
                ev = Evaluator(point, 64)
                if not all(condition_holds(c, ev) for c in domain):
                    continue
            except Exception:  # noqa: BLE001 - a condition not decidable here
                continue
            runs += 1
            found = _singular_at(spec, sides, point, deadline)
            if found is not None:
                return found
    return None


def _forward_domain(sides, declared, positive):
    """The forward's own side conditions (and the declared ones), or None."""
    fwd = Atoms(positive=positive)
    try:
        for f in sides["out_se"].flat:
            fwd.scan(f)
        for h in sides["steps"]:
            fwd.scan(h)
    except Unsupported:
        return None
    return declared + fwd.side_conditions()


def _points_at(D, target, symbols_, rng, positive, cot):
    """Rational points where D equals ``target`` exactly: D linear in a symbol, solved for
    it at random values of the others; else one symbol at 0, 1 or −1 (D = tanh(x), D =
    relu(x)), kept where D comes out as ``target``."""
    free = sorted(D.free_symbols, key=str)
    linear = []
    for s in free[:SINGULAR_SYMBOLS]:
        slope = se.diff(D, s)
        if s not in slope.free_symbols:
            linear.append((s, slope, D.xreplace({s: se.Integer(0)}) - target))
    few = free if len(free) <= SINGULAR_SYMBOLS else []
    if not linear and not few:
        return
    for attempt in range(SINGULAR_POINTS):
        base = sample_point(symbols_, rng, positive, cot, scale=scale_of(attempt))
        for s, slope, rest in linear:
            point = {k: v for k, v in base.items() if k != s}
            root = _root(slope, rest, point)
            if root is not None:
                point[s] = root
                yield point
        for s in few:
            for v in (0, 1, -1):
                point = dict(base)
                point[s] = Fraction(v)
                if _equals_at(D, point, target):
                    yield point


def _equals_at(D, point, target) -> bool:
    """Whether D is exactly ``target`` at ``point`` (its steps of numbers evaluated)."""
    try:
        with ieee_division():
            value = se.expand(_steps_of_numbers(D.xreplace(_exact(point))))
        return value == target
    except Exception:  # noqa: BLE001 - not decidable here
        return False


def _steps_of_numbers(e):
    for _ in range(16):   # innermost first: steps of steps
        inner = {h: se.Integer(1 if to_fraction(h.args[0]) > 0 else 0)
                 for h in e.atoms(se.FunctionSymbol) if h.get_name() == "Heaviside"
                 and isinstance(h.args[0], (se.Integer, se.Rational))}
        if not inner:
            return e
        e = e.xreplace(inner)
    return e


def _root(slope, rest, point):
    """The rational s with slope·s + rest = 0 at ``point``, or None (no rational root, or
    a slope of 0)."""
    try:
        b = se.expand(rest.xreplace(_exact(point)))
        if b == 0:
            a = se.expand(slope.xreplace(_exact(point)))
            return None if a == 0 else Fraction(0)
        a = to_fraction(se.expand(slope.xreplace(_exact(point))))
        return None if a == 0 else -to_fraction(b) / a
    except Exception:  # noqa: BLE001 - an irrational or unevaluable root: try elsewhere
        return None


def _exact(point) -> dict:
    return {k: se.Rational(v.numerator, v.denominator) for k, v in point.items()}


def _agrees(value, proved, point) -> bool:
    """Whether the rule's value at ``point`` is exactly the proved expression's there (which
    the normal form showed equal to Jᵀḡ wherever both are defined — away from its steps'
    jumps, so an expression with a step is left to the recheck)."""
    if any(h.get_name() == "Heaviside" for h in proved.atoms(se.FunctionSymbol)):
        return False
    try:
        with ieee_division():
            here = _steps_of_numbers(proved.xreplace(_exact(point)))
        return se.expand(value - here) == 0
    except Exception:  # noqa: BLE001 - not decidable exactly: the recheck decides
        return False


def _singular_at(spec, sides, point, deadline):
    """Run the rule at ``point`` with IEEE division: the first entry that is undefined
    (while Jᵀḡ there is finite), else the first that differs from Jᵀḡ (confirmed)."""
    _, xs, gs, _, reads = _point_inputs(spec, sides, point)
    undecided = fn.UNDECIDED[0]
    try:
        with ieee_division():
            out = unwrap(np.asarray(spec.forward(*[wrap(xs[r]) for r in reads]), dtype=object),
                         "the forward rule's result", "symengine")
            cots = spec.vjp(wrap(gs), wrap(out), *[wrap(xs[r]) for r in reads])
    except Exception:  # noqa: BLE001 - the code fails otherwise at this point: not a witness
        return None
    # a guard of constants not decided exactly (x > √2 at x = 1) keeps both branches in the
    # value: an undefined one then says nothing about the branch the code takes
    trust_undefined = fn.UNDECIDED[0] == undecided
    undefined = {se.zoo, se.nan, se.oo, -se.oo}
    if any(_undefined(se.sympify(v), undefined) for v in out.flat):
        return None   # the forward's code divides by zero here too
    checked = 0
    for c, r in zip(cots, reads):
        if c is None:
            continue
        c = unwrap(np.asarray(c, dtype=object), "the vjp rule's result", "symengine")
        for index in np.ndindex(c.shape):
            if time.perf_counter() > deadline:
                return None
            value = se.sympify(c[index])
            bad = _undefined(value, undefined)
            if bad and not trust_undefined:
                continue
            if not bad and (checked >= 64 or _agrees(value, sides["rhs"][r][index], point)):
                continue   # the value the proved expression has here: right
            with ieee_division():
                confirmed = recheck(spec, sides, point, r, index, 64) if not bad else None
            if bad:
                expected = _expected_at(spec, sides, point, r, index)
                if expected is None:
                    continue
                return _witness(
                    sides, r, index, point, expected.str(12, radius=False),
                    "undefined: the rule divides by zero, or takes the root or logarithm "
                    "of a negative number, here (the forward does not)", UNDEFINED, 64,
                    "as expressions the division or root cancels (SymEngine's (x·y)/x = y, "
                    "√x·√x = x), which is why only a point shows it")
            checked += 1
            if confirmed is not None:
                expected, got = confirmed
                e_text, g_text, _ = distinct_texts(expected, got)
                return _witness(sides, r, index, point, e_text, g_text,
                                ball_bounds(expected - got), 64,
                                "at a zero of a value the rule divides by (its guarded "
                                "branch)")
    return None


def _undefined(v, undefined) -> bool:
    return v in undefined or bool(v.atoms(type(se.zoo))) or bool(v.atoms(type(se.nan)))


def _expected_at(spec, sides, point, i, index):
    """Jᵀḡ at ``point`` for one input entry, as an arb ball, or None."""
    try:
        return Evaluator(point, 64)(_expected_expr(spec, sides, point, i, index)[0])
    except Exception:  # noqa: BLE001 - not computable here: no witness from it
        return None


def _witness(sides, i, index, point, expected, got, residual, precision, note) -> Witness:
    """The counterexample at input entry (i, index) of ``point``, along its unit tangent."""
    name = sides["names"][i]
    return Witness(input=name, entry=tuple(int(k) for k in index), point=_point_names(point),
                   tangent=f"unit vector at {entry_name(name, index)} (all other tangent "
                           f"entries 0)",
                   expected=expected, got=got, residual=residual, precision=precision,
                   note=note)


def _point_names(point) -> dict:
    """The witness point by symbol name; a user's symbol named like one of the checker's
    (a parameter called ``x[0]``) gets a mark, so neither value hides the other."""
    out = {}
    for k, v in sorted(point.items(),
                       key=lambda kv: (str(kv[0]), not isinstance(kv[0], se.Dummy))):
        name = str(k)
        while name in out:
            name += " (a symbol of the rule's own)"
        out[name] = str(v)
    return out


def _close_call(digits: int) -> str:
    if digits <= 12:
        return ""
    return (f"expected and got agree to about {digits - 1} digits: a float constant in the "
            f"rule differs from the forward's (every float is read as the exact value of "
            f"its double, e.g. 3*0.044715 is rounded before it meets x; write such "
            f"constants the same way on both sides, or exactly with sg.fn.rational)")


def recheck(spec, sides, point, i, index, prec):
    """Expected and got at ``point`` for input entry (i, index), from the user's forward
    and rule run again on numbers — every input exact at the point, only the entry's own
    value a symbol t to differentiate in — or None when this does not confirm that they
    differ. A witness is never reported from the symbolic expressions alone."""
    try:
        return _recheck(spec, sides, point, i, index, prec)
    except Exception:  # noqa: BLE001 - unconfirmed: at worst UNKNOWN, never a wrong REFUTED
        return None


def _point_inputs(spec, sides, point):
    """At ``point`` (exact): the inputs and the seed as arrays, the reads, and how user code
    gets arrays (fresh Scalars, or as they are)."""
    arrays = [as_symengine(a) for a in sides["arrays"]]   # the point's keys are SymEngine's
    values = _exact(point)

    def at_point(a):
        out = np.empty(a.shape, dtype=object)
        for ix in np.ndindex(a.shape):
            out[ix] = values.get(a[ix], se.Integer(0))
        return out
    give = wrap if spec.user_code else (lambda a: a)
    reads = spec.reads if spec.reads is not None else tuple(range(len(arrays)))
    return arrays, [at_point(a) for a in arrays], at_point(as_symengine(sides["g"])), give, \
        reads


def _expected_expr(spec, sides, point, i, index):
    """Jᵀḡ at ``point`` for input entry (i, index) as an expression: the forward run again
    at the point with that entry a symbol t, differentiated in t; with what the recheck
    reuses (the point's inputs, the forward there)."""
    arrays, xs, gs, give, reads = _point_inputs(spec, sides, point)
    t = se.Dummy("t")
    xs_t = [x.copy() for x in xs]
    xs_t[i][index] = t
    out_t = unwrap(np.asarray(spec.forward(*[give(xs_t[r]) for r in reads]), dtype=object),
                   "the forward rule's result", "symengine")
    flat, steps = canonical(as_symengine(out_t).flat, "the forward rule's result")
    phi = se.Add(*[gk * f for gk, f in zip(gs.flat, flat)])
    t_value = point.get(arrays[i][index], Fraction(0))
    at_t = {t: se.Rational(t_value.numerator, t_value.denominator)}
    expr = step_frozen_diff(phi, t, steps).xreplace(at_t)
    return expr, (xs, gs, give, reads, flat, at_t, out_t.shape)


def _recheck(spec, sides, point, i, index, prec):
    backend = "symengine"
    expected_expr, (xs, gs, give, reads, flat, at_t, shape) = \
        _expected_expr(spec, sides, point, i, index)
    out_point = np.array([f.xreplace(at_t) for f in flat] + [None], dtype=object)[:-1] \
        .reshape(shape)
    cots = spec.vjp(give(gs), give(out_point), *[give(xs[r]) for r in reads])
    got_expr = se.Integer(0)
    for c, r in zip(cots, reads):
        if c is not None and r == i:
            c = unwrap(np.asarray(c, dtype=object), "the vjp rule's result", backend)
            got_expr = got_expr + canonical([se.sympify(c[index])], "the vjp rule's result")[0][0]
    ev = Evaluator(point, prec)   # symbols of parameters (a symbolic bias) take the point's
    expected, got = ev(expected_expr), ev(got_expr)
    return None if (expected - got).contains(0) else (expected, got)

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

import math
import random
import resource
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import symengine as se
import sympy as sp

from ..errors import RuleError, ShapeError
from ..tensor import as_symengine, entry_name, exact, shape_tuple, symbols
from .isolate import DEFAULT_MEMORY_MB, fork_map, workers
from .normal_form import Atoms, Condition, EntryForm, TooLarge, Unsupported, holds_everywhere
from .result import Result, SideCondition, Verdict, Witness
from .symmetry import InferredOrbits, Orbits
from .witness import CannotEvaluate, Evaluator, ball_bounds, ball_text, condition_holds, \
    sample_point

#: entries per tensor above which a check is refused (``SYMGRAD_MAX_ENTRIES`` overrides)
DEFAULT_MAX_ENTRIES = 65536
#: side conditions listed one by one in a result; the rest are summarised
MAX_LISTED_CONDITIONS = 24


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
    axis_labels: list | None = None   #: per input, a label per axis (whole-tape obligations)
    blocks: list | None = None        #: sizes of the output's blocks (tape values), in order


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
    try:
        arr = np.asarray(value, dtype=object)
    except Exception as exc:  # ragged lists and the like
        raise RuleError(f"{what} is not an array: {exc}") from None
    return arr


def _call(fun, args, what, inputs):
    try:
        return fun(*args)
    except (ValueError, IndexError, TypeError) as exc:
        shapes = ", ".join(f"{n} {shape_tuple(s)}" for n, s in inputs)
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RuleError(f"the {what} raised {type(exc).__name__}: {msg} "
                        f"(inputs were {shapes})") from None


def _exact_sympy(e):
    e = sp.sympify(e)
    floats = e.atoms(sp.Float)
    return e.xreplace({f: sp.Rational(f) for f in floats}) if floats else e


def build_sides(spec: Spec):
    """Symbols, forward, rule and reference: returns a dict with, per input entry, the
    expected (Jᵀḡ)_e and the rule's cotangent, both SymEngine expressions."""
    backend = spec.backend
    names = [n for n, _ in spec.inputs]
    gname = "g"
    while gname in names:
        gname += "_"
    arrays = [symbols(n, s, backend) for n, s in spec.inputs]
    reads = spec.reads if spec.reads is not None else tuple(range(len(arrays)))
    args = [arrays[r] for r in reads]
    arg_names = [names[r] for r in reads]

    out = _as_object_array(_call(spec.forward, args, "forward rule", spec.inputs),
                           "the forward rule's result")
    if out is None:
        raise RuleError("the forward rule returned None; it must return an array")
    if backend == "sympy" and out.size:
        out = np.vectorize(_exact_sympy, otypes=[object])(out)
    elif backend == "symengine":
        out = as_symengine(out)
    validate_shapes([("output", out.shape)], spec.max_entries * 16)
    g = symbols(gname, out.shape, backend)

    cots = _call(spec.vjp, [g, out] + args, "vjp rule", spec.inputs)
    if isinstance(cots, np.ndarray) or not isinstance(cots, (tuple, list)):
        raise RuleError(f"the vjp rule must return a tuple of {len(args)} cotangent(s) "
                        f"(one per input: {', '.join(arg_names)}), got {type(cots).__name__}")
    if len(cots) != len(args):
        raise RuleError(f"the vjp rule returned {len(cots)} cotangent(s), expected "
                        f"{len(args)} (one per input: {', '.join(arg_names)})")
    rhs = [np.zeros(a.shape, dtype=object) for a in arrays]
    for k, (c, r) in enumerate(zip(cots, reads)):
        if c is None:
            continue
        c = _as_object_array(c, f"the cotangent for input {arg_names[k]}")
        if c.shape != arrays[r].shape:
            raise RuleError(f"the vjp rule's cotangent for input {arg_names[k]} has shape "
                            f"{shape_tuple(c.shape)} but {arg_names[k]} has shape "
                            f"{shape_tuple(arrays[r].shape)}")
        rhs[r] = rhs[r] + c

    # Floats are read as their exact binary values: by the normal form and the witness
    # evaluator wherever they appear, and by exact() before the forward is differentiated.
    rhs = [as_symengine(r) for r in rhs]
    out_se = as_symengine(out)
    declared = []
    if spec.assumptions is not None:
        for item in _call(spec.assumptions, args, "assumptions", spec.inputs):
            declared.append(_condition(item))
    return dict(arrays=arrays, names=names, g=g, out=out, out_se=out_se, rhs=rhs,
                declared=declared, gname=gname, backend=backend)


def reference(sides, wanted, floats=True):
    """(Jᵀḡ)_e = Σ_k ḡ_k ∂f_k/∂x_e for the input entries ``wanted`` [(input, index)],
    differentiating the forward (SymEngine, or SymPy's ``diff`` on the reference path).
    ``floats=False`` says the forward is known to hold no float (skips the search)."""
    backend, out, g = sides["backend"], sides["out"], sides["g"]
    targets = {sides["arrays"][i][index]: (i, index) for i, index in wanted}
    contributions: dict = {key: [] for key in targets.values()}
    diff = se.diff if backend == "symengine" else sp.diff
    make_exact = exact if backend == "symengine" else _exact_sympy
    if not floats:
        make_exact = _same
    exact_out = {}
    for k in np.ndindex(out.shape):
        f = out[k]
        for s in f.free_symbols:
            key = targets.get(s)
            if key is not None:
                if k not in exact_out:  # floats become exact before they are differentiated
                    exact_out[k] = make_exact(f)
                contributions[key].append(g[k] * exact_out[k])
    # One diff per input entry of φ_e = Σ_k ḡ_k f_k (over the f_k that depend on x_e):
    # the derivatives of subexpressions shared between output entries are computed once
    # and shared, where one diff per output entry would build equal but distinct copies
    # (and comparing those, which SymEngine does tree-wise, is exponential in depth).
    add = se.Add if backend == "symengine" else sp.Add
    out_ref = {}
    for s, key in targets.items():
        terms = contributions[key]
        out_ref[key] = se.sympify(diff(add(*terms), s)) if terms else se.Integer(0)
    return out_ref


def _same(e):
    return e


def _condition(item) -> Condition:
    """A declared assumption: ``(expr, "> 0" | "!= 0")`` or a relational like ``x > 0``."""
    if isinstance(item, tuple) and len(item) == 2 and item[1] in ("> 0", "!= 0"):
        return Condition(se.sympify(item[0]), item[1], "declared")
    rel = se.sympify(item)
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


def _positive_symbols(conditions):
    return frozenset(c.expr for c in conditions
                     if c.relation == "> 0" and isinstance(c.expr, se.Symbol))


def check(spec: Spec) -> Result:
    """Run one obligation in this process (see :func:`symgrad.check_vjp` for the isolated,
    time-limited entry point)."""
    t0 = time.perf_counter()
    phases = {}
    validate_shapes(spec.inputs, spec.max_entries)
    sides = build_sides(spec)
    phases["build"] = time.perf_counter() - t0
    declared = sides["declared"]
    atoms = Atoms(positive=_positive_symbols(declared))
    atoms.memory_bytes = memory_limit()
    arrays_se = [as_symengine(a) for a in sides["arrays"]]
    total = sum(a.size for a in arrays_se)
    result = Result(name=spec.name, verdict=Verdict.UNKNOWN, backend=spec.backend,
                    shapes=[list(s) for _, s in spec.inputs],
                    params={k: str(v) for k, v in spec.params.items()}, entries=total)
    orbits = None
    if spec.symmetry and spec.axis_labels is not None:
        orbits = InferredOrbits(arrays_se, as_symengine(sides["g"]), sides["out_se"],
                                sides["rhs"], spec.axis_labels, spec.blocks)
        wanted = orbits.representatives()
    elif spec.symmetry:
        orbits = Orbits(arrays_se, as_symengine(sides["g"]), sides["out_se"], sides["rhs"],
                        [as_symengine(p) for p in spec.param_arrays])
        wanted = orbits.representatives()
    else:
        wanted = [(i, index) for i, a in enumerate(arrays_se) for index in np.ndindex(a.shape)]
    phases["symmetry"] = time.perf_counter() - t0 - sum(phases.values())
    lhs = reference(sides, wanted, floats=orbits is None or orbits.floats)
    result.checked = len(wanted)
    phases["derivative"] = time.perf_counter() - t0 - sum(phases.values())

    entries = [(i, index, lhs[(i, index)], sides["rhs"][i][index]) for i, index in wanted]
    nonzero = []           # (entry, residual text)
    unsupported = too_large = None
    relations_used = False
    opaque = None
    if spec.abstract_sums:   # a first pass with the forward's values as indeterminates
        opaque = Atoms(positive=atoms.positive)
        opaque.memory_bytes = atoms.memory_bytes
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
    for entry, (kind, terms, detail) in zip(entries, outcomes):
        result.terms += terms
        name = entry_name(sides["names"][entry[0]], entry[1])
        if kind == "relations":
            relations_used = True
        elif kind == "nonzero":
            nonzero.append((entry, detail))
        elif kind == "unsupported":
            unsupported = f"{name}: {detail}"
        elif kind == "too large" and too_large is None:
            too_large = f"{name}: {detail}"

    phases["normal form"] = time.perf_counter() - t0 - sum(phases.values())
    conditions = declared + atoms.side_conditions()
    if opaque is not None:
        seen = {(c.expr, c.relation) for c in conditions}
        conditions += [c for c in opaque.side_conditions() if (c.expr, c.relation) not in seen]
    positive = _positive_symbols(conditions)
    result.side_conditions = [
        SideCondition(c.text(), c.reason,
                      c.reason != "declared" and holds_everywhere(c, positive))
        for c in conditions[:MAX_LISTED_CONDITIONS]]
    symmetric = orbits is not None and orbits.generators and len(wanted) < total
    more = len(conditions) - MAX_LISTED_CONDITIONS
    notes = ([f"… and {more} more of these forms"] if more > 0 else []) + (
        ["… and their images under the verified index symmetries"]
        if symmetric and conditions else [])
    if notes:
        result.side_conditions.append(SideCondition(
            "; ".join(notes), "summary", all(c.discharged for c in result.side_conditions)))
    result.atoms = max(len(atoms.info), len(opaque.info) if opaque is not None else 0)

    if too_large is not None:
        result.reason = (f"too large: the normal form of entry {too_large}; split the "
                         f"obligation (smaller shapes, or the compositional proof)")
        result.method = "normal form"
    elif unsupported is None and not nonzero:
        result.verdict = Verdict.PROVED
        result.method = "normal form" + (" + atom relations" if relations_used else "")
        if len(wanted) < total:
            result.method += f" ({len(wanted)} of {total} entries; the rest by symmetry)"
    elif unsupported is not None:
        result.reason = f"the normal form cannot represent an entry ({unsupported})"
        result.method = "normal form"
    else:
        (i, index, _, _), text = nonzero[0]
        result.residual = (text[:400] + " …") if len(text) > 400 else text
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
                             f"counterexample was found at {spec.witness_points} points; the "
                             f"rule may be right through an identity the atoms miss")
    result.seconds = time.perf_counter() - t0
    phases["verdict"] = result.seconds - sum(phases.values())
    result.phases = {k: round(v, 4) for k, v in phases.items()}
    return result


#: relation-stage budget (terms) of the pass with sums kept whole: it is speculative
OPAQUE_RELATION_BUDGET = 200_000
#: points a quick witness search tries before the atom relations are applied
QUICK_POINTS = 4


def _outcomes(spec, sides, atoms, entries, budget=None):
    """Normal forms of every entry, then — only for residuals not zero as polynomials — a
    quick certified witness search (a refuted rule needs no relations), and the atom
    relations where it finds none. Returns (outcomes, witness or None)."""
    atoms.prepare_exponents([e for entry in entries for e in entry[2:]])
    keep: dict = {}
    outcomes = normal_forms(atoms, entries, spec, reduce=False, keep=keep)
    pending = [k for k, o in enumerate(outcomes) if o[0] == "unreduced"]
    if not pending:
        return outcomes, None
    declared = sides["declared"]
    domain = witness_domain(Atoms(positive=_positive_symbols(declared)), sides, declared)
    witness = search_witness(spec, sides, [entries[k] for k in pending], domain,
                             _positive_symbols(domain), points=QUICK_POINTS)
    if witness is not None:
        for k in pending:
            kept = keep.get(id(entries[k]))
            text = str(kept[1]) if kept is not None else "(not kept: computed in a worker)"
            outcomes[k] = ("nonzero", outcomes[k][1],
                           (text[:400] + " …") if len(text) > 400 else text)
        return outcomes, witness
    kept = [k for k in pending if id(entries[k]) in keep]
    for k in kept:
        form, residual = keep[id(entries[k])]
        outcomes[k] = _reduced(form, residual, outcomes[k][1], budget or spec.relation_budget)
    rest = [k for k in pending if id(entries[k]) not in keep]
    if rest:
        for k, o in zip(rest, normal_forms(atoms, [entries[k] for k in rest], spec,
                                           budget=budget)):
            outcomes[k] = o
    return outcomes, None


#: entries from which the normal forms are computed in several processes
PARALLEL_ENTRIES = 16


def entry_normal_form(atoms: Atoms, entry, budget: int, reduce: bool = True, keep=None):
    """(outcome, terms, detail) of one entry (input, index, expected, got): outcome is
    "zero", "relations" (zero after the atom relations), "nonzero" (detail: the residual),
    "unsupported" or "too large" (detail: why). With ``reduce=False`` a non-zero residual
    comes back "unreduced" (its form kept in ``keep`` by entry id, when given)."""
    _, _, lhs, rhs = entry
    if small_polynomial(lhs) and small_polynomial(rhs):
        # no atoms, hence no side conditions: SymEngine's expansion is a canonical
        # polynomial normal form, computed in C++ without building a FLINT context
        a, b = se.expand(lhs), se.expand(rhs)
        if a == b:
            return "zero", _terms(a) + _terms(b), None
    try:
        form = EntryForm(atoms, (lhs, rhs), atoms.scan(lhs) | atoms.scan(rhs))
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
    return _reduced(form, residual, terms, budget)


def _reduced(form, residual, terms, budget):
    try:
        reduced = form.reduce(residual, budget)
    except TooLarge:
        reduced = None
    if reduced is not None and reduced.is_zero():
        return "relations", terms, None
    text = str(reduced if reduced is not None else residual)
    return "nonzero", terms, (text[:400] + " …") if len(text) > 400 else text


def _run(atoms, entries, budget, reduce=True, keep=None):
    out = []
    for entry in entries:
        out.append(entry_normal_form(atoms, entry, budget, reduce, keep))
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
    parts = fork_map(lambda part: _run(atoms, part, budget or spec.relation_budget, reduce),
                     [entries[w::k] for w in range(k)])
    out = [None] * len(entries)
    for w, part in enumerate(parts):
        out[w::k] = part
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


def search_witness(spec, sides, entries, conditions, positive, points=None):
    """A rational point in the domain where some entry's residual ball excludes 0."""
    cot = frozenset(sides["g"].flat)
    rng = random.Random(spec.seed)
    wanted = set()
    for _, _, lhs, rhs in entries:
        wanted |= lhs.free_symbols | rhs.free_symbols
    for c in conditions:
        wanted |= c.expr.free_symbols
    wanted = sorted(wanted, key=str)
    for attempt in range(spec.witness_points if points is None else points):
        point = sample_point(wanted, rng, positive, cot, scale=4 + attempt // 8 * 4)
        for prec in (64, 256):
            ev = Evaluator(point, prec)
            if not all(condition_holds(c, ev) for c in conditions):
                break
            undecided = False
            for i, index, lhs, rhs in entries[:64]:
                try:
                    expected, got = ev(lhs), ev(rhs)
                except CannotEvaluate:
                    undecided = True
                    continue
                diff = expected - got
                if diff.contains(0):
                    undecided = undecided or diff.rad() > 0
                    continue
                name = sides["names"][i]
                return Witness(
                    input=name, entry=tuple(int(k) for k in index),
                    point={str(k): str(v) for k, v in point.items()},
                    tangent=f"unit vector at {entry_name(name, index)} (all other tangent "
                            f"entries 0)",
                    expected=ball_text(expected), got=ball_text(got),
                    residual=ball_bounds(diff), precision=prec)
            if not undecided:
                break
    return None

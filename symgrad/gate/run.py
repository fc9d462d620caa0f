"""Running the gate: each obligation checked, compared with its expectation, and the
gate's exit code.

:func:`run_all` checks obligations (cached ones are not re-run) on an executor
(:mod:`symgrad.gate.executors`) and :func:`exit_code` gives the gate's answer.
"""
from __future__ import annotations

import os
import time

from ..errors import InputError
from ..prove.isolate import stop_checks
from . import executors
from .cache import Cache
from .schema import (EXIT_OK, EXIT_REGRESSION, EXIT_UNKNOWN, EXIT_USAGE, DIMS, Obligation,
                     Outcome, outcome_of, parse_params)


def run_one(ob: Obligation) -> Outcome:
    """Check one obligation (in this process; its checks fork as usual)."""
    from ..api import check_vjp, verify, verify_node
    from ..frameworks.targets import load
    from ..mutants import verify_mutant
    t0 = time.perf_counter()
    s = ob.spec
    try:
        if ob.kind == "graph":
            graph, backprop = graph_of(ob)
            g = verify(graph, end_to_end=s.get("end_to_end", True), timeout=ob.timeout,
                       evidence=s.get("evidence", "auto"), backprop=backprop)
            verdict, results = g.verdict, g.obligations
        elif ob.kind == "node" and "forward" in s:
            r = check_vjp(load(s["forward"]), load(s["vjp"]), s["shapes"],
                          reads=s.get("reads"), timeout=ob.timeout, name=ob.title,
                          symmetry=s.get("symmetry", True))
            verdict, results = r.verdict, [r]
        elif ob.kind == "node":
            if "rule" in s:
                load(s["rule"])   # registers the op in this process (a fresh worker's too)
            r = verify_node(s["op"], s["shapes"], params=parse_params(s.get("params", {})),
                            reads=s.get("reads"), timeout=ob.timeout,
                            symmetry=s.get("symmetry", True))
            verdict, results = r.verdict, [r]
        else:
            r = verify_mutant(s["mutant"], timeout=ob.timeout)
            verdict, results = r.verdict, [r]
    except InputError as exc:
        return outcome_of(ob, "error", time.perf_counter() - t0,
                        reason=f"{ob.file}:{ob.line}: {exc}")
    except Exception as exc:  # a bug in symgrad: keep going, report it, exit 3
        return _internal(ob, exc, time.perf_counter() - t0)
    return _outcome(ob, verdict, results, time.perf_counter() - t0)


def _outcome(ob: Obligation, verdict, results: list, seconds: float) -> Outcome:
    """The outcome of a verdict and the results behind it; the reason is the first of
    theirs that has the verdict."""
    reason = next((r.reason for r in results if r.verdict is verdict and r.reason), "")
    return outcome_of(ob, verdict.value, seconds, reason=reason,
                      results=[r.to_json() for r in results])


def graph_of(ob: Obligation):
    """(the Graph a [[graph]] entry names, its engine or None)."""
    from ..frameworks.targets import load
    from ..models.catalog import OPTIONAL_DIMS, build_graph
    from ..mutants import ENGINE_MUTANTS
    s = ob.spec
    if "builder" in s:
        return load(s["builder"])(**s.get("args", {})), None
    graph = build_graph(s["graph"], dict({d: s[d] for d in DIMS}, layers=s.get("layers", 2),
                                         **{d: s[d] for d in OPTIONAL_DIMS if d in s}),
                        s.get("layout", "pytorch"), s.get("form", "whole"),
                        s.get("fixed_weights", False))
    return graph, ENGINE_MUTANTS.get(s.get("backprop"))


def graph_tasks(ob: Obligation, fan_out=None):
    """A graph entry split for a cluster: (jobs, labels, combine) — each job one node
    obligation or the end to end (:func:`symgrad.api.graph_parts`; ``fan_out`` runs the
    seed blocks of an exact end to end too large as one identity), and ``combine(done,
    seconds)`` the entry's Outcome from their results in job order. None for other
    entries."""
    from ..api import graph_parts, graph_verdict
    if ob.kind != "graph":
        return None
    s = ob.spec
    graph, backprop = graph_of(ob)
    end_to_end = s.get("end_to_end", True)
    jobs, labels, _ = graph_parts(graph, end_to_end=end_to_end, timeout=ob.timeout,
                                  backprop=backprop, evidence=s.get("evidence", "auto"),
                                  fan_out=fan_out)

    def combine(done, seconds):
        g = graph_verdict(graph, done, end_to_end)
        return _outcome(ob, g.verdict, g.obligations, seconds)
    return jobs, labels, combine


def _internal(ob: Obligation, exc: BaseException, seconds: float = 0.0) -> Outcome:
    text = str(exc).strip().splitlines()
    return outcome_of(ob, "internal", seconds, reason=f"internal error: {type(exc).__name__}: "
                                                    f"{text[0] if text else ''}")


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`run_all`; ``outcomes`` are those finished before it, in order."""

    def __init__(self, outcomes: list):
        super().__init__()
        self.outcomes = outcomes



def _lost(ob: Obligation, exc: BaseException) -> Outcome:
    """A task whose Dask workers died (memory, a crash): UNKNOWN, with why."""
    text = str(exc).strip().splitlines()
    return outcome_of(ob, "unknown", 0.0, reason=f"the worker running it died "
                      f"({type(exc).__name__}: {text[0] if text else ''}); run it again, "
                      f"or give the workers more memory")


def run_all(obligations, jobs: int | None = None, cache: Cache | None = None,
            progress=None, executor: str = "local", scheduler: str | None = None) -> list:
    """Outcomes in the order of ``obligations``; cached ones are not re-run. ``executor``:
    ``local`` (this process, or a pool of ``jobs`` forked workers) or ``dask`` (the
    cluster at ``scheduler``, else a LocalCluster of ``jobs`` workers). A Ctrl-C stops
    every process this started and raises :class:`Interrupted` with the outcomes
    finished so far."""
    outcomes: list = [None] * len(obligations)
    done = 0

    def finish(k, outcome):
        nonlocal done
        outcomes[k] = outcome
        done += 1
        if cache is not None:
            cache.put(obligations[k], outcome)
        if progress:
            progress(f"[{done}/{len(obligations)}] {outcome.verdict:<8} {outcome.title}")

    try:
        todo = []
        for k, ob in enumerate(obligations):
            hit = cache.get(ob) if cache else None
            if hit is not None:
                outcomes[k] = hit
            else:
                todo.append(k)
        done = len(obligations) - len(todo)
        if executor == "dask":
            if todo:
                executors.dask_cluster(obligations, todo, finish, run_one, _internal,
                                       max(1, jobs or os.cpu_count() or 1), scheduler, _lost,
                                       graph_tasks)
            return outcomes
        jobs = max(1, min(jobs or os.cpu_count() or 1, len(todo) or 1))
        if jobs == 1:
            executors.serial(obligations, todo, finish, run_one, _internal)
        else:
            executors.local_pool(obligations, todo, finish, run_one, _internal, jobs)
    except KeyboardInterrupt:
        stop_checks()
        raise Interrupted([o for o in outcomes if o is not None]) from None
    return outcomes



def exit_code(outcomes, input_errors=()) -> int:
    """0 every expectation met; 1 a regression (a verdict contradicting its expectation);
    4 only UNKNOWNs (or VERIFIED where PROVED was expected) fell short; 2 bad input (the valid obligations still ran); 3 an
    internal error of symgrad on some obligation."""
    if any(o.verdict == "internal" for o in outcomes):
        return 3
    if input_errors or any(o.verdict == "error" for o in outcomes):
        return EXIT_USAGE
    missed = [o for o in outcomes if not o.met]
    if not missed:
        return EXIT_OK
    if all(o.verdict == "unknown" or (o.verdict, o.expect) == ("verified", "proved")
           for o in missed):
        return EXIT_UNKNOWN
    return EXIT_REGRESSION


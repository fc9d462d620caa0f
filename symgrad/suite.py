"""Obligation files (obligations/*.toml), the proof cache, and the CI gate.

An obligation file holds tables of three kinds (schema: obligations/README.md)::

    [[graph]]                      [[node]]                    [[mutant]]
    graph = "mha"                  op = "softmax"              mutant = "softmax_no_sum"
    n = 2                          shapes = ["2x3"]            expect = "refuted"
    expect = "proved"              params = { c = "1/2" }

Each entry is one obligation; :func:`run_all` checks them (a local process pool), compares
each verdict with its expectation, and :func:`exit_code` gives the gate's answer.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from .errors import InputError

PACKAGE = Path(__file__).resolve().parent
EXPECTATIONS = ("proved", "refuted")
DIMS = ("n", "d_model", "heads", "head_dim", "d_ff")
DEFAULT_DIMS = dict(n=2, d_model=2, heads=1, head_dim=2, d_ff=4)
KEYS = {
    "graph": {"graph", "name", *DIMS, "layout", "form", "fixed_weights", "end_to_end",
              "backprop", "timeout", "expect"},
    "node": {"op", "name", "shapes", "params", "reads", "symmetry", "timeout", "expect"},
    "mutant": {"mutant", "name", "timeout", "expect"},
}
EXIT_OK, EXIT_REGRESSION, EXIT_USAGE, EXIT_UNKNOWN = 0, 1, 2, 4


@dataclass
class Obligation:
    """One entry of an obligation file."""

    kind: str                  #: graph, node or mutant
    spec: dict                 #: the entry's keys, defaults filled in
    file: str
    line: int
    expect: str = "proved"
    timeout: float | None = None

    @property
    def title(self) -> str:
        s = self.spec
        if "name" in s:
            return s["name"]
        if self.kind == "graph":
            from .cli import GRAPHS
            used = GRAPHS[s["graph"]][1]
            dims = ", ".join(f"{d}={s[d]}" for d in DIMS if d in used)
            defaults = {"layout": "pytorch", "form": "whole", "fixed_weights": False,
                        "end_to_end": True}
            extra = "".join(f" {k}={str(s[k]).lower() if isinstance(s[k], bool) else s[k]}"
                            for k in ("layout", "form", "fixed_weights", "end_to_end",
                                      "backprop")
                            if k in s and s[k] != defaults.get(k))
            return f"graph {s['graph']} ({dims}){extra}"
        if self.kind == "node":
            shapes = ", ".join("x".join(map(str, sh)) for sh in s["shapes"])
            params = "".join(f" {k}={v}" for k, v in sorted(s.get("params", {}).items()))
            return f"node {s['op']}({shapes}){params}"
        return f"mutant {s['mutant']}"

    @property
    def id(self) -> str:
        return f"{self.file}::{self.title}"


@dataclass
class Outcome:
    """What running one obligation gave, against what it expected. JSON-ready."""

    id: str
    kind: str
    title: str
    file: str
    expect: str
    verdict: str
    seconds: float
    cached: bool = False
    reason: str = ""
    results: list = field(default_factory=list)   #: Result.to_json() of every part
    spec: dict = field(default_factory=dict)

    @property
    def met(self) -> bool:
        return self.verdict == self.expect

    def to_json(self) -> dict:
        d = dict(self.__dict__)
        d["met"] = self.met
        return d


# ----- loading ------------------------------------------------------------------------------

def _entry_lines(text: str, kind: str) -> list:
    """Line numbers of the ``[[kind]]`` headers, in order."""
    pattern = re.compile(rf"^\s*\[\[\s*{kind}\s*\]\]")
    return [k + 1 for k, line in enumerate(text.splitlines()) if pattern.match(line)]


def _fail(where: str, message: str):
    raise InputError(f"{where}: {message}")


def _known(where, value, valid, what):
    if value not in valid:
        _fail(where, f"unknown {what} {value!r}; valid {what}s are: {', '.join(sorted(valid))}")


def _validate(kind: str, entry: dict, where: str) -> Obligation:
    from .cli import GRAPHS, parse_shape
    from .mutants import ENGINE_MUTANTS, MUTANTS
    from .ops import OPS
    unknown = sorted(set(entry) - KEYS[kind])
    if unknown:
        _fail(where, f"unknown key {unknown[0]!r} in a [[{kind}]] entry; valid keys are: "
                     f"{', '.join(sorted(KEYS[kind]))}")
    spec = dict(entry)
    expect = spec.pop("expect", "proved")
    if expect not in EXPECTATIONS:
        _fail(where, f"expect must be \"proved\" or \"refuted\", got {expect!r}")
    timeout = spec.get("timeout")
    if timeout is not None and (not isinstance(timeout, (int, float)) or isinstance(
            timeout, bool) or timeout <= 0):
        _fail(where, f"timeout must be a positive number of seconds, got {timeout!r}")
    if kind == "graph":
        if "graph" not in spec:
            _fail(where, "a [[graph]] entry needs graph = \"…\" (one of "
                         f"{', '.join(sorted(GRAPHS))})")
        _known(where, spec["graph"], GRAPHS, "graph")
        for d in DIMS:
            v = spec.setdefault(d, DEFAULT_DIMS[d])
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                _fail(where, f"{d} must be a positive integer, got {v!r}")
        if spec.get("layout", "pytorch") not in ("pytorch", "torchlean"):
            _fail(where, f"layout must be \"pytorch\" or \"torchlean\", got {spec['layout']!r}")
        if spec.get("form", "whole") not in ("whole", "decomposed"):
            _fail(where, f"form must be \"whole\" or \"decomposed\", got {spec['form']!r}")
        if "backprop" in spec:
            _known(where, spec["backprop"], ENGINE_MUTANTS, "engine mutant")
    elif kind == "node":
        if "op" not in spec:
            _fail(where, "a [[node]] entry needs op = \"…\" (see `symgrad list`)")
        _known(where, spec["op"], OPS, "op")
        shapes = spec.get("shapes")
        if not isinstance(shapes, list) or not shapes:
            _fail(where, "shapes must be a list with one shape per input, like [\"2x3\"] or "
                         "[[2, 3]]")
        parsed = []
        for sh in shapes:
            if isinstance(sh, str):
                try:
                    parsed.append(list(parse_shape(sh)))
                except InputError as exc:
                    _fail(where, str(exc))
            elif isinstance(sh, list) and sh and all(
                    isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in sh):
                parsed.append(sh)
            else:
                _fail(where, f"cannot read the shape {sh!r}; write \"2x3\" or [2, 3]")
        spec["shapes"] = parsed
        if not isinstance(spec.get("params", {}), dict):
            _fail(where, "params must be a table, like params = { c = \"1/2\" }")
    else:
        if "mutant" not in spec:
            _fail(where, "a [[mutant]] entry needs mutant = \"…\" (see `symgrad verify "
                         "mutant`)")
        _known(where, spec["mutant"], MUTANTS, "mutant")
    return Obligation(kind, spec, "", 0, expect, timeout)


def load_file(path: Path, shown: str | None = None) -> tuple[list, list]:
    """(obligations, errors) of one file; an error is one sentence naming file:line."""
    shown = shown or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [], [f"{shown}: cannot read the file ({exc.__class__.__name__}: {exc})"]
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        where = f"{shown}:{m.group(1)}" if m else shown
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        return [], [f"{where}: malformed TOML: {msg}"]
    out, errors = [], []
    for key in data:
        if key not in KEYS:
            errors.append(f"{shown}: unknown table [[{key}]]; an obligation file holds "
                          f"[[graph]], [[node]] and [[mutant]] entries")
    for kind in KEYS:
        entries = data.get(kind, [])
        if not isinstance(entries, list):
            errors.append(f"{shown}: {kind} must be an array of tables ([[{kind}]])")
            continue
        lines = _entry_lines(text, kind)
        for k, entry in enumerate(entries):
            line = lines[k] if k < len(lines) else 1
            try:
                ob = _validate(kind, entry, f"{shown}:{line}")
            except InputError as exc:
                errors.append(str(exc))
                continue
            ob.file, ob.line = shown, line
            out.append(ob)
    return out, errors


def collect(paths) -> tuple[list, list]:
    """Every obligation under ``paths`` (files, or directories searched for *.toml)."""
    files = []
    errors = []
    for p in paths or ["obligations"]:
        path = Path(p)
        if path.is_dir():
            found = sorted(path.rglob("*.toml"))
            if not found:
                errors.append(f"{p}: no obligation files (*.toml) in this directory")
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            errors.append(f"{p}: no such file or directory" + (
                " (run symgrad check where obligations/ is, or name the files)"
                if not paths else ""))
    obligations, seen = [], {}
    for f in files:
        obs, errs = load_file(f)
        errors.extend(errs)
        for ob in obs:
            if ob.id in seen:
                errors.append(f"{ob.file}:{ob.line}: the same obligation as line "
                              f"{seen[ob.id]} ({ob.title}); give one a name = \"…\"")
                continue
            seen[ob.id] = ob.line
            obligations.append(ob)
    return obligations, errors


# ----- running ------------------------------------------------------------------------------

def _params(raw: dict) -> dict:
    from .api import parse_param
    return {k: parse_param(v) if isinstance(v, str) else v for k, v in raw.items()}


def run_one(ob: Obligation) -> Outcome:
    """Check one obligation (in this process; its checks fork as usual)."""
    from .api import verify_node
    from .mutants import ENGINE_MUTANTS, verify_mutant
    t0 = time.perf_counter()
    s = ob.spec
    try:
        if ob.kind == "graph":
            from .cli import build_graph
            from .prove.tape import verify
            graph = build_graph(s["graph"], {d: s[d] for d in DIMS}, s.get("layout", "pytorch"),
                                s.get("form", "whole"), s.get("fixed_weights", False))
            g = verify(graph, end_to_end=s.get("end_to_end", True), timeout=ob.timeout,
                       backprop=ENGINE_MUTANTS.get(s.get("backprop")))
            verdict, results = g.verdict, g.obligations
        elif ob.kind == "node":
            r = verify_node(s["op"], s["shapes"], params=_params(s.get("params", {})),
                            reads=s.get("reads"), timeout=ob.timeout,
                            symmetry=s.get("symmetry", True))
            verdict, results = r.verdict, [r]
        else:
            r = verify_mutant(s["mutant"], timeout=ob.timeout)
            verdict, results = r.verdict, [r]
    except InputError as exc:
        return Outcome(ob.id, ob.kind, ob.title, ob.file, ob.expect, "error",
                       time.perf_counter() - t0, reason=f"{ob.file}:{ob.line}: {exc}",
                       spec=s)
    except Exception as exc:  # a bug in symgrad: keep going, report it, exit 3
        return _internal(ob, exc, time.perf_counter() - t0)
    reason = next((r.reason for r in results if r.verdict is verdict and r.reason), "")
    return Outcome(ob.id, ob.kind, ob.title, ob.file, ob.expect, verdict.value,
                   time.perf_counter() - t0, reason=reason,
                   results=[r.to_json() for r in results], spec=s)


def _internal(ob: Obligation, exc: BaseException, seconds: float = 0.0) -> Outcome:
    text = str(exc).strip().splitlines()
    return Outcome(ob.id, ob.kind, ob.title, ob.file, ob.expect, "internal", seconds,
                   reason=f"internal error: {type(exc).__name__}: "
                          f"{text[0] if text else ''}", spec=ob.spec)


def _run_in_worker(ob: Obligation) -> Outcome:
    os.environ["SYMGRAD_WORKERS"] = "1"   # the pool already uses every core
    return run_one(ob)


def run_all(obligations, jobs: int | None = None, cache: "Cache | None" = None,
            progress=None) -> list:
    """Outcomes in the order of ``obligations``; cached ones are not re-run."""
    outcomes: list = [None] * len(obligations)
    todo = []
    for k, ob in enumerate(obligations):
        hit = cache.get(ob) if cache else None
        if hit is not None:
            outcomes[k] = hit
        else:
            todo.append(k)
    done = len(obligations) - len(todo)
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(todo) or 1))

    def finish(k, outcome):
        nonlocal done
        outcomes[k] = outcome
        done += 1
        if cache is not None:
            cache.put(obligations[k], outcome)
        if progress:
            progress(f"[{done}/{len(obligations)}] {outcome.verdict:<8} {outcome.title}")

    if jobs == 1:
        for k in todo:
            finish(k, run_one(obligations[k]))
    else:
        import multiprocessing as mp
        with ProcessPoolExecutor(jobs, mp_context=mp.get_context("fork")) as pool:
            futures = {pool.submit(_run_in_worker, obligations[k]): k for k in todo}
            from concurrent.futures import as_completed
            for fut in as_completed(futures):
                k = futures[fut]
                try:
                    outcome = fut.result()
                except Exception as exc:  # a worker died: this obligation only
                    outcome = _internal(obligations[k], exc)
                finish(k, outcome)
    return outcomes


def exit_code(outcomes, input_errors=()) -> int:
    """0 every expectation met; 1 a regression (a verdict contradicting its expectation);
    4 only UNKNOWNs fell short; 2 bad input (the valid obligations still ran); 3 an
    internal error of symgrad on some obligation."""
    if any(o.verdict == "internal" for o in outcomes):
        return 3
    if input_errors or any(o.verdict == "error" for o in outcomes):
        return EXIT_USAGE
    missed = [o for o in outcomes if not o.met]
    if not missed:
        return EXIT_OK
    if all(o.verdict == "unknown" for o in missed):
        return EXIT_UNKNOWN
    return EXIT_REGRESSION


# ----- the proof cache ----------------------------------------------------------------------

def versions() -> dict:
    import flint
    import numpy
    import symengine
    import sympy
    from . import __version__
    return {"symgrad": __version__, "sympy": sympy.__version__,
            "symengine": symengine.__version__, "python-flint": flint.__version__,
            "numpy": numpy.__version__,
            "python": sys.version.split()[0]}


_SOURCE_CACHE: dict = {}


def _sources(kind: str) -> str:
    """Digest of the source a verdict of this kind depends on: the checker (prove/), the
    tensors and elementwise math, the op registry and every op family (a rule's source and
    what it calls), plus the graph builders and tape for graphs and the mutants for
    mutants. Editing any of them invalidates the entries that depend on it."""
    if kind not in _SOURCE_CACHE:
        parts = ["prove", "ops", "fn.py", "tensor.py", "api.py"]
        parts += {"graph": ["graph.py", "models", "mutants.py", "cli.py"],
                  "mutant": ["mutants.py"], "node": []}[kind]
        h = hashlib.sha256()
        for part in parts:
            p = PACKAGE / part
            for f in sorted(p.rglob("*.py")) if p.is_dir() else [p]:
                h.update(str(f.relative_to(PACKAGE)).encode())
                h.update(f.read_bytes())
        _SOURCE_CACHE[kind] = h.hexdigest()
    return _SOURCE_CACHE[kind]


def cache_key(ob: Obligation) -> str:
    payload = {"kind": ob.kind, "spec": ob.spec, "timeout": ob.timeout,
               "versions": versions(), "source": _sources(ob.kind)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


class Cache:
    """Verdicts by content hash in SQLite (``.symgrad-cache/proofs.sqlite``). Only PROVED
    and REFUTED are stored (an UNKNOWN may be a timeout). A cache that cannot be read is
    ignored with a warning — never trusted — and the run goes on without it."""

    def __init__(self, directory=".symgrad-cache"):
        self.path = Path(directory) / "proofs.sqlite"
        self.db = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path)
            db.execute("create table if not exists proofs (key text primary key, "
                       "outcome text not null, created real not null)")
            db.execute("select count(*) from proofs").fetchone()
            db.commit()
            self.db = db
        except (sqlite3.Error, OSError) as exc:
            warnings.warn(f"ignoring the proof cache {self.path}: {exc}", stacklevel=2)

    def get(self, ob: Obligation) -> Outcome | None:
        if self.db is None:
            return None
        try:
            row = self.db.execute("select outcome from proofs where key = ?",
                                  (cache_key(ob),)).fetchone()
            if row is None:
                return None
            d = json.loads(row[0])
            d.pop("met", None)
            out = Outcome(**d)
        except (sqlite3.Error, ValueError, TypeError) as exc:
            warnings.warn(f"ignoring a damaged proof-cache entry in {self.path}: {exc}",
                          stacklevel=2)
            return None
        if out.id != ob.id or out.verdict not in ("proved", "refuted"):
            return None
        out.cached = True
        return out

    def put(self, ob: Obligation, outcome: Outcome):
        if self.db is None or outcome.verdict not in ("proved", "refuted"):
            return
        try:
            self.db.execute("insert or replace into proofs values (?, ?, ?)",
                            (cache_key(ob), json.dumps(outcome.to_json()), time.time()))
            self.db.commit()
        except sqlite3.Error as exc:
            warnings.warn(f"could not write the proof cache {self.path}: {exc}", stacklevel=2)


# ----- outputs ------------------------------------------------------------------------------

def write_json(path, outcomes, input_errors=()):
    doc = {"versions": versions(), "exit_code": exit_code(outcomes, input_errors),
           "input_errors": list(input_errors),
           "obligations": [o.to_json() for o in outcomes]}
    Path(path).write_text(json.dumps(doc, indent=2), encoding="utf-8")


def write_junit(path, outcomes, seconds: float):
    """JUnit XML the way pytest's xunit2 family writes it: testsuites/testsuite/testcase,
    a failure element for every unmet expectation, properties with versions and shapes."""
    from xml.etree import ElementTree as ET
    import platform
    from datetime import datetime, timezone
    failures = sum(1 for o in outcomes if not o.met and o.verdict not in ("error", "internal"))
    errors = sum(1 for o in outcomes if o.verdict in ("error", "internal"))
    root = ET.Element("testsuites")
    suite = ET.SubElement(root, "testsuite", name="symgrad", errors=str(errors),
                          failures=str(failures), skipped="0", tests=str(len(outcomes)),
                          time=f"{seconds:.3f}",
                          timestamp=datetime.now(timezone.utc).isoformat(),
                          hostname=platform.node())
    props = ET.SubElement(suite, "properties")
    for k, v in versions().items():
        ET.SubElement(props, "property", name=k, value=v)
    for o in outcomes:
        case = ET.SubElement(suite, "testcase", classname=o.file.replace("/", ".").removesuffix(
            ".toml"), name=o.title, time=f"{o.seconds:.3f}")
        cp = ET.SubElement(case, "properties")
        for k, v in (("kind", o.kind), ("expect", o.expect), ("verdict", o.verdict),
                     ("cached", str(o.cached).lower()),
                     ("shapes", json.dumps(o.spec.get("shapes") or {d: o.spec[d] for d in DIMS
                                                                    if d in o.spec}))):
            ET.SubElement(cp, "property", name=k, value=v)
        if o.verdict in ("error", "internal"):
            ET.SubElement(case, "error", message=o.reason).text = o.reason
        elif not o.met:
            el = ET.SubElement(case, "failure", message=f"expected {o.expect}, got {o.verdict}"
                               + (f": {o.reason}" if o.reason else ""), type=o.verdict)
            el.text = failure_text(o)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def failure_text(o: Outcome) -> str:
    """What a person needs to see for an unmet expectation: the verdict, why, the witness."""
    lines = [f"{o.title}: expected {o.expect}, got {o.verdict}"]
    for r in o.results:
        if r["verdict"] == o.verdict and r["verdict"] != "proved":
            lines.append(f"  {r['name']}: {r['verdict']} — {r['method']}")
            if r.get("reason"):
                lines.append(f"    reason: {r['reason']}")
            w = r.get("witness")
            if w:
                lines.append(f"    witness: {w['input']}{list(w['entry'])}; expected {w['expected']}, "
                             f"got {w['got']}; residual in [{w['residual'][0]}, "
                             f"{w['residual'][1]}]")
                point = ", ".join(f"{k}={v}" for k, v in list(w["point"].items())[:12])
                lines.append(f"    at {point}{' …' if len(w['point']) > 12 else ''}")
    return "\n".join(lines)

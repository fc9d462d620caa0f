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

import difflib
import hashlib
import json
import os
import re
import signal
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
EXIT_OK, EXIT_REGRESSION, EXIT_USAGE, EXIT_UNKNOWN, EXIT_INTERRUPTED = 0, 1, 2, 4, 130


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
            from .models.catalog import GRAPHS
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

class InputProblem(str):
    """One input error: the sentence ``file:line: message`` (``file: message`` where no
    line applies), carrying its ``file``, ``line`` and ``message`` for JUnit and JSON."""

    def __new__(cls, file: str, line: int | None, message: str):
        self = super().__new__(cls, f"{file}:{line}: {message}" if line else
                               f"{file}: {message}")
        self.file, self.line, self.message = file, line, message
        return self

    def __getnewargs__(self):
        return self.file, self.line, self.message


class _EntryError(InputError):
    """What is wrong with one entry, and the key it is wrong at (None: the entry)."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


def _fail(message: str, key: str | None = None):
    raise _EntryError(message, key)


def did_you_mean(value, valid) -> str:
    """`` (did you mean 'x'?)`` with the valid name closest to ``value``, or nothing."""
    close = difflib.get_close_matches(str(value), [str(v) for v in valid], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown(value, valid, what: str, where: str = "") -> str:
    """The sentence for a name not among ``valid``, with the closest valid one if any."""
    return (f"unknown {what} {value!r}{where}{did_you_mean(value, valid)}; valid {what}s "
            f"are: {', '.join(sorted(valid))}")


def _known(value, valid, what: str, key: str):
    if value not in valid:
        _fail(unknown(value, valid, what), key)


def _shown(value) -> str:
    """A value as TOML spells it (true, "no", {"c": true})."""
    return json.dumps(value, default=str)


_TEXT, _FLAG, _DIM = (str, "a string"), (bool, "true or false"), (int, "a positive integer")
#: the type every key's value must have, and how to say it
TYPES = {
    "name": (str, "a non-empty string"), "graph": _TEXT, "op": _TEXT, "mutant": _TEXT,
    "backprop": _TEXT, "layout": _TEXT, "form": _TEXT, "expect": _TEXT,
    "fixed_weights": _FLAG, "end_to_end": _FLAG, "symmetry": _FLAG,
    "params": (dict, 'a table, like params = { c = "1/2" }'),
    "shapes": (list, 'a list with one shape per input, like ["2x3"] or [[2, 3]]'),
    "reads": (list, "a list of input indices, like [0, 0]"),
    **{d: _DIM for d in DIMS},
}
#: the key that names what an entry checks
SUBJECT = {"graph": "graph", "node": "op", "mutant": "mutant"}


def _validate(kind: str, entry) -> Obligation:
    """The obligation of one ``[[kind]]`` entry; raises _EntryError naming the key."""
    from .models.catalog import GRAPHS, graph_option_error
    from .tensor import parse_shape
    from .mutants import ENGINE_MUTANTS, MUTANTS
    from .ops import OPS
    from .prove.isolate import timeout_seconds
    if not isinstance(entry, dict):
        _fail(f"a [[{kind}]] entry must be a table, got {_shown(entry)}")
    for key, value in entry.items():
        if key not in KEYS[kind]:
            _fail(unknown(key, KEYS[kind], "key", f" in a [[{kind}]] entry"), key)
        typ, what = TYPES.get(key, (object, ""))
        if not isinstance(value, typ) or (isinstance(value, bool) and typ is not bool) or (
                typ is int and value <= 0) or (key == "name" and not value.strip()):
            _fail(f"{key} must be {what}, got {_shown(value)}", key)
    spec = dict(entry)
    expect = spec.pop("expect", "proved")
    if expect not in EXPECTATIONS:
        _fail(f"expect must be \"proved\" or \"refuted\", got {_shown(expect)}", "expect")
    timeout = spec.get("timeout")
    if timeout is not None:
        try:
            timeout_seconds(timeout, "timeout")
        except InputError as exc:
            _fail(str(exc), "timeout")
    subject, names = SUBJECT[kind], {"graph": GRAPHS, "node": OPS, "mutant": MUTANTS}[kind]
    if subject not in spec:
        _fail(f"a [[{kind}]] entry needs {subject} = \"…\" (one of "
              f"{', '.join(sorted(names))})")
    _known(spec[subject], names, subject, subject)
    if kind == "graph":
        for key in entry:
            message = graph_option_error(key, spec["graph"])
            if message:
                _fail(message, key)
        for d in DIMS:
            spec.setdefault(d, DEFAULT_DIMS[d])
        for key, valid in (("layout", ("pytorch", "torchlean")), ("form", ("whole",
                                                                          "decomposed"))):
            if spec.get(key, valid[0]) not in valid:
                _fail(f"{key} must be \"{valid[0]}\" or \"{valid[1]}\", got "
                      f"{_shown(spec[key])}", key)
        if "backprop" in spec:
            _known(spec["backprop"], ENGINE_MUTANTS, "engine mutant", "backprop")
    elif kind == "node":
        if not spec.get("shapes"):
            _fail(f"a [[node]] entry needs shapes = [...], {TYPES['shapes'][1]}", "shapes")
        spec["shapes"] = [_shape(sh, parse_shape) for sh in spec["shapes"]]
        _check_params(OPS[spec["op"]], spec.get("params", {}))
        reads = spec.get("reads", [])
        if not all(isinstance(r, int) and not isinstance(r, bool) and r >= 0 for r in reads):
            _fail(f"reads must be {TYPES['reads'][1]}, got {_shown(reads)}", "reads")
    return Obligation(kind, spec, "", 0, expect, timeout)


def _shape(sh, parse_shape) -> list:
    if isinstance(sh, str):
        try:
            return list(parse_shape(sh))
        except InputError as exc:
            _fail(str(exc), "shapes")
    if isinstance(sh, list) and sh and all(
            isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in sh):
        return sh
    _fail(f"cannot read the shape {_shown(sh)}; write \"2x3\" or [2, 3]", "shapes")


def _check_params(op, params: dict):
    from .api import parse_param
    names = [p.name for p in op.params]
    for k, v in params.items():
        if k not in names:
            _fail(unknown(k, names, "parameter", f" of {op.name}") if names else
                  f"{op.name} takes no parameters, got params.{k}", "params")
        if isinstance(v, bool) or not isinstance(v, (str, int)):
            _fail(f"params.{k} must be a string like \"1/2\", \"3x2\" or a symbol name, or "
                  f"an integer, got {_shown(v)}", "params")
        if isinstance(v, str):
            try:
                parse_param(v)
            except InputError as exc:
                _fail(f"params.{k}: {exc}", "params")


_HEADER = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.\"' -]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"""^\s*(?:"([^"]*)"|'([^']*)'|([A-Za-z0-9_-]+))\s*[=.]""")


def _entry_lines(text: str, kind: str) -> list:
    """For every ``[[kind]]`` header in order: (its line, {key: line of the key})."""
    out, current = [], None
    for k, line in enumerate(text.splitlines(), 1):
        header = _HEADER.match(line)
        if header:
            current = {} if header.group(1).strip("\"' ") == kind and line.lstrip().startswith(
                "[[") else None
            if current is not None:
                out.append((k, current))
        elif current is not None:
            m = _KEY.match(line)
            if m:
                current.setdefault(next(g for g in m.groups() if g is not None), k)
    return out


def _read(path: Path, shown: str):
    """The text of an obligation file, or the InputProblem saying why it cannot be read."""
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        return InputProblem(shown, None, "is a directory, not an obligation file")
    except OSError as exc:
        return InputProblem(shown, None, f"cannot read the file: "
                                         f"{(exc.strerror or str(exc)).lower()}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return InputProblem(shown, data[:exc.start].count(b"\n") + 1,
                            f"not UTF-8 text (the byte 0x{data[exc.start]:02x}); save the "
                            f"file as UTF-8")


def load_file(path: Path, shown: str | None = None) -> tuple[list, list]:
    """(obligations, errors) of one file; an error is an InputProblem, one sentence naming
    file:line."""
    shown = shown or str(path)
    text = _read(path, shown)
    if isinstance(text, InputProblem):
        return [], [text]
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        return [], [InputProblem(shown, int(m.group(1)) if m else None,
                                 f"malformed TOML: {msg}")]
    out, errors = [], []
    for key in data:
        if key not in KEYS:
            errors.append(InputProblem(shown, None, f"unknown table [[{key}]]"
                                       f"{did_you_mean(key, KEYS)}; an obligation file "
                                       f"holds [[graph]], [[node]] and [[mutant]] entries"))
    for kind in KEYS:
        entries = data.get(kind, [])
        if not isinstance(entries, list):
            errors.append(InputProblem(shown, None, f"{kind} must be an array of tables "
                                                    f"([[{kind}]])"))
            continue
        lines = _entry_lines(text, kind)
        for k, entry in enumerate(entries):
            line, keys = lines[k] if k < len(lines) else (None, {})
            try:
                ob = _validate(kind, entry)
            except _EntryError as exc:
                errors.append(InputProblem(shown, keys.get(exc.key, line), str(exc)))
                continue
            ob.file, ob.line = shown, line or 1
            out.append(ob)
    if not out and not errors:
        errors.append(InputProblem(shown, None, "no obligations: the file has no [[graph]], "
                                                "[[node]] or [[mutant]] entries"))
    return out, errors


def collect(paths) -> tuple[list, list]:
    """Every obligation under ``paths`` (files, or directories searched for *.toml)."""
    files = []
    errors = []
    for p in paths or ["obligations"]:
        path = Path(p)
        if path.is_dir():
            found = sorted(f for f in path.rglob("*.toml") if f.is_file())
            if not found:
                errors.append(InputProblem(p, None, "no obligation files (*.toml) in this "
                                                    "directory"))
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            errors.append(InputProblem(p, None, "no such file or directory" + (
                " (run symgrad check where obligations/ is, or name the files)"
                if not paths else "")))
    obligations, seen = [], {}
    for f in files:
        obs, errs = load_file(f)
        errors.extend(errs)
        for ob in obs:
            if ob.id in seen:
                errors.append(InputProblem(ob.file, ob.line, f"the same obligation as line "
                                           f"{seen[ob.id]} ({ob.title}); give one a "
                                           f"name = \"…\""))
                continue
            seen[ob.id] = ob.line
            obligations.append(ob)
    return obligations, errors


# ----- running ------------------------------------------------------------------------------

def _params(raw: dict) -> dict:
    from .api import parse_param
    return {k: parse_param(v) if isinstance(v, str) else v for k, v in raw.items()}


def _outcome(ob: Obligation, verdict: str, seconds: float, **more) -> Outcome:
    """The outcome of ``ob`` — compared with its current ``expect``."""
    return Outcome(ob.id, ob.kind, ob.title, ob.file, ob.expect, verdict, seconds, spec=ob.spec,
                   **more)


def run_one(ob: Obligation) -> Outcome:
    """Check one obligation (in this process; its checks fork as usual)."""
    from .api import verify_node
    from .mutants import ENGINE_MUTANTS, verify_mutant
    t0 = time.perf_counter()
    s = ob.spec
    try:
        if ob.kind == "graph":
            from .models.catalog import build_graph
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
        return _outcome(ob, "error", time.perf_counter() - t0,
                        reason=f"{ob.file}:{ob.line}: {exc}")
    except Exception as exc:  # a bug in symgrad: keep going, report it, exit 3
        return _internal(ob, exc, time.perf_counter() - t0)
    reason = next((r.reason for r in results if r.verdict is verdict and r.reason), "")
    return _outcome(ob, verdict.value, time.perf_counter() - t0, reason=reason,
                    results=[r.to_json() for r in results])


def _internal(ob: Obligation, exc: BaseException, seconds: float = 0.0) -> Outcome:
    text = str(exc).strip().splitlines()
    return _outcome(ob, "internal", seconds, reason=f"internal error: {type(exc).__name__}: "
                                                    f"{text[0] if text else ''}")


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`run_all`; ``outcomes`` are those finished before it, in order."""

    def __init__(self, outcomes: list):
        super().__init__()
        self.outcomes = outcomes


def _worker_start():
    """A pool worker: its obligation's entries stay in it (the pool already uses every
    core); a Ctrl-C is the parent's to handle; SIGTERM (the parent stopping the pool) kills
    the checks it runs and ends it without a traceback."""
    os.environ["SYMGRAD_WORKERS"] = "1"
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _worker_stop)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})


def _worker_stop(signum, frame):
    from .prove.isolate import stop_checks
    stop_checks()
    os._exit(128 + signum)


def run_all(obligations, jobs: int | None = None, cache: "Cache | None" = None,
            progress=None) -> list:
    """Outcomes in the order of ``obligations``; cached ones are not re-run. A Ctrl-C
    stops every process this started and raises :class:`Interrupted` with the outcomes
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
        jobs = max(1, min(jobs or os.cpu_count() or 1, len(todo) or 1))
        if jobs == 1:
            for k in todo:
                finish(k, run_one(obligations[k]))
        else:
            _run_pool(obligations, todo, jobs, finish)
    except KeyboardInterrupt:
        from .prove.isolate import stop_checks
        stop_checks()
        raise Interrupted([o for o in outcomes if o is not None]) from None
    return outcomes


def _run_pool(obligations, todo, jobs, finish):
    import multiprocessing as mp
    from concurrent.futures import as_completed
    # The workers are forked with SIGINT blocked, until they ignore it (_worker_start).
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        pool = ProcessPoolExecutor(jobs, mp_context=mp.get_context("fork"),
                                   initializer=_worker_start)
        futures = {pool.submit(run_one, obligations[k]): k for k in todo}
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    try:
        for fut in as_completed(futures):
            k = futures[fut]
            try:
                outcome = fut.result()
            except Exception as exc:  # a worker died: this obligation only
                outcome = _internal(obligations[k], exc)
            finish(k, outcome)
    except KeyboardInterrupt:
        # Python 3.14 has pool.terminate_workers(); before it, the workers are _processes.
        for worker in list((getattr(pool, "_processes", None) or {}).values()):
            worker.terminate()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


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


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Cache:
    """Verdicts by content hash in SQLite (``.symgrad-cache/proofs.sqlite``). Only PROVED
    and REFUTED are stored (an UNKNOWN may be a timeout), with the results behind them —
    never whether they met an expectation: that is compared afresh with the entry's current
    ``expect``. Each row carries a SHA-256 of its payload; a row that does not match it is
    ignored (the obligation runs again and overwrites it). A damaged database file is moved
    aside to ``proofs.sqlite.damaged`` and started afresh, with one warning; a cache that
    cannot be used at all is ignored with a warning — never trusted — and the run goes on
    without it."""

    SCHEMA = 2   #: ``pragma user_version``; a database of another version is emptied

    def __init__(self, directory=".symgrad-cache"):
        self.path = Path(directory) / "proofs.sqlite"
        self.db = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = self._open()
        except (sqlite3.Error, OSError) as exc:
            self._trouble(exc)

    def _open(self):
        db = sqlite3.connect(self.path)
        try:
            if db.execute("pragma quick_check").fetchone()[0] != "ok":
                raise sqlite3.DatabaseError("database disk image is malformed")
            if db.execute("pragma user_version").fetchone()[0] != self.SCHEMA:
                db.executescript(
                    "drop table if exists proofs; create table proofs (key text primary key, "
                    "payload text not null, sha256 text not null, created real not null); "
                    f"pragma user_version = {self.SCHEMA};")
            return db
        except BaseException:
            db.close()
            raise

    def _trouble(self, exc: Exception):
        """Stop using a database that failed; one that is damaged (not SQLite, truncated)
        is moved aside and started afresh."""
        if self.db is not None:
            self.db.close()
            self.db = None
        if type(exc) is not sqlite3.DatabaseError:   # locked, unwritable, …: not damage
            warnings.warn(f"ignoring the proof cache {self.path}: {exc}", stacklevel=3)
            return
        aside = self.path.with_name(self.path.name + ".damaged")
        try:
            os.replace(self.path, aside)
            for suffix in ("-journal", "-wal", "-shm"):   # they belong to the damaged file
                self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)
            self.db = self._open()
        except (sqlite3.Error, OSError) as again:
            warnings.warn(f"ignoring the proof cache {self.path}: {exc}; starting a new one "
                          f"failed too: {again}", stacklevel=3)
            return
        warnings.warn(f"the proof cache {self.path} was damaged ({exc}); moved it to "
                      f"{aside.name} and started a new one", stacklevel=3)

    def get(self, ob: Obligation) -> Outcome | None:
        if self.db is None:
            return None
        try:
            row = self.db.execute("select payload, sha256 from proofs where key = ?",
                                  (cache_key(ob),)).fetchone()
        except sqlite3.Error as exc:
            self._trouble(exc)
            return None
        if row is None:
            return None
        try:
            if not isinstance(row[0], str) or _sha256(row[0]) != row[1]:
                raise ValueError("its content does not match its hash")
            d = json.loads(row[0])
            out = _outcome(ob, d["verdict"], float(d["seconds"]), cached=True,
                           reason=str(d["reason"]), results=list(d["results"]))
        except (ValueError, TypeError, KeyError) as exc:
            warnings.warn(f"ignoring a damaged proof-cache entry in {self.path} for "
                          f"{ob.title} ({exc}); checking it again", stacklevel=2)
            return None
        return out if out.verdict in ("proved", "refuted") else None

    def put(self, ob: Obligation, outcome: Outcome):
        if self.db is None or outcome.verdict not in ("proved", "refuted"):
            return
        payload = json.dumps({"verdict": outcome.verdict, "seconds": outcome.seconds,
                              "reason": outcome.reason, "results": outcome.results},
                             sort_keys=True)
        try:
            self.db.execute("insert or replace into proofs values (?, ?, ?, ?)",
                            (cache_key(ob), payload, _sha256(payload), time.time()))
            self.db.commit()
        except sqlite3.Error as exc:
            self._trouble(exc)


# ----- outputs ------------------------------------------------------------------------------

def write_json(path, outcomes, input_errors=(), code: int | None = None):
    """Every outcome and input error, and the exit code (``code``, else the gate's)."""
    doc = {"versions": versions(),
           "exit_code": exit_code(outcomes, input_errors) if code is None else code,
           "input_errors": list(input_errors),
           "obligations": [o.to_json() for o in outcomes]}
    Path(path).write_text(json.dumps(doc, indent=2), encoding="utf-8")


def _classname(file: str) -> str:
    return file.replace("/", ".").removesuffix(".toml")


def write_junit(path, outcomes, seconds: float, input_errors=()):
    """JUnit XML the way pytest's xunit2 family writes it: testsuites/testsuite/testcase,
    a failure element for every unmet expectation, properties with versions and shapes,
    and an error element for every input error (as pytest does for a collection error)."""
    from xml.etree import ElementTree as ET
    import platform
    from datetime import datetime, timezone
    failures = sum(1 for o in outcomes if not o.met and o.verdict not in ("error", "internal"))
    errors = sum(1 for o in outcomes if o.verdict in ("error", "internal")) + len(input_errors)
    root = ET.Element("testsuites")
    suite = ET.SubElement(root, "testsuite", name="symgrad", errors=str(errors),
                          failures=str(failures), skipped="0",
                          tests=str(len(outcomes) + len(input_errors)),
                          time=f"{seconds:.3f}",
                          timestamp=datetime.now(timezone.utc).isoformat(),
                          hostname=platform.node())
    props = ET.SubElement(suite, "properties")
    for k, v in versions().items():
        ET.SubElement(props, "property", name=k, value=v)
    for e in input_errors:
        line = getattr(e, "line", None)
        case = ET.SubElement(suite, "testcase", classname=_classname(getattr(e, "file", "")),
                             name="input error" + (f" at line {line}" if line else ""),
                             time="0.000")
        ET.SubElement(case, "error", message=str(e), type="input").text = str(e)
    for o in outcomes:
        case = ET.SubElement(suite, "testcase", classname=_classname(o.file), name=o.title,
                             time=f"{o.seconds:.3f}")
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

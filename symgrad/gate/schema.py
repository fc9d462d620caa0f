"""Obligation files (obligations/*.toml): the schema, loading and validation.

An obligation file holds tables of three kinds (schema: obligations/README.md)::

    [[graph]]                      [[node]]                    [[mutant]]
    graph = "mha"                  op = "softmax"              mutant = "softmax_no_sum"
    n = 2                          shapes = ["2x3"]            expect = "refuted"
    expect = "proved"              params = { c = "1/2" }

Each entry is one :class:`Obligation`; :func:`collect` reads them with every input error
as one sentence naming file:line (:class:`InputProblem`).
"""
from __future__ import annotations

import difflib
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from ..errors import InputError

EXPECTATIONS = ("proved", "verified", "refuted")
DIMS = ("n", "d_model", "heads", "head_dim", "d_ff")
DEFAULT_DIMS = dict(n=2, d_model=2, heads=1, head_dim=2, d_ff=4)
KEYS = {
    "graph": {"graph", "name", *DIMS, "kv_heads", "layout", "form", "fixed_weights", "layers",
              "end_to_end", "evidence", "backprop", "timeout", "expect", "builder", "args"},
    "node": {"op", "name", "shapes", "params", "reads", "symmetry", "timeout", "expect",
             "rule", "forward", "vjp"},
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
        if self.kind == "graph" and "builder" in s:
            args = ", ".join(f"{k}={v}" for k, v in sorted(s.get("args", {}).items()))
            return f"graph {s['builder']}({args})"
        if self.kind == "node" and ("rule" in s or "forward" in s):
            shapes = ", ".join("x".join(map(str, sh)) for sh in s["shapes"])
            return f"node {s.get('rule') or s['forward']}({shapes})"
        if self.kind == "graph":
            from ..models.catalog import GRAPHS, OPTIONAL_DIMS
            dims = ", ".join(f"{d}={s.get(d, OPTIONAL_DIMS.get(d))}"
                             for d in GRAPHS[s["graph"]][1])
            defaults = {"layout": "pytorch", "form": "whole", "fixed_weights": False,
                        "end_to_end": True, "evidence": "auto"}
            extra = "".join(f" {k}={str(s[k]).lower() if isinstance(s[k], bool) else s[k]}"
                            for k in ("layout", "form", "fixed_weights", "layers",
                                      "end_to_end", "evidence", "backprop")
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
        """The verdict is the expected one — or stronger: PROVED meets "verified"."""
        return self.verdict == self.expect or (self.expect, self.verdict) == ("verified",
                                                                                "proved")

    def to_json(self) -> dict:
        d = dict(self.__dict__)
        d["met"] = self.met
        return d


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
    "backprop": _TEXT, "layout": _TEXT, "form": _TEXT, "expect": _TEXT, "evidence": _TEXT,
    "fixed_weights": _FLAG, "end_to_end": _FLAG, "symmetry": _FLAG,
    "params": (dict, 'a table, like params = { c = "1/2" }'),
    "shapes": (list, 'a list with one shape per input, like ["2x3"] or [[2, 3]]'),
    "reads": (list, "a list of input indices, like [0, 0]"),
    "rule": _TEXT, "forward": _TEXT, "vjp": _TEXT, "builder": _TEXT,
    "args": (dict, "a table of the builder's keyword arguments, like args = { n = 4 }"),
    **{d: _DIM for d in DIMS}, "layers": _DIM, "kv_heads": _DIM,
}
#: the key that names what an entry checks
SUBJECT = {"graph": "graph", "node": "op", "mutant": "mutant"}


def _validate(kind: str, entry) -> Obligation:
    """The obligation of one ``[[kind]]`` entry; raises _EntryError naming the key."""
    from ..models.catalog import GRAPHS, graph_option_error
    from ..tensor import parse_shape
    from ..mutants import ENGINE_MUTANTS, MUTANTS
    from ..ops import OPS
    from ..prove.isolate import timeout_seconds
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
        _fail(f"expect must be \"proved\", \"verified\" or \"refuted\", got {_shown(expect)}",
              "expect")
    timeout = spec.get("timeout")
    if timeout is not None:
        try:
            timeout_seconds(timeout, "timeout")
        except InputError as exc:
            _fail(str(exc), "timeout")
    user = _user_code(kind, spec)
    if user == "builder":
        return _builder_entry(spec, expect, timeout)
    subject, names = SUBJECT[kind], {"graph": GRAPHS, "node": OPS, "mutant": MUTANTS}[kind]
    if user == "pair":
        subject, names = "forward", {spec["forward"]: None}
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
        _check_evidence(spec, expect)
        if "backprop" in spec:
            _known(spec["backprop"], ENGINE_MUTANTS, "engine mutant", "backprop")
    elif expect == "verified":
        _fail(f"expect = \"verified\" applies to graphs (their randomized end to end); a "
              f"[[{kind}]] entry is checked exactly: expect \"proved\" or \"refuted\"",
              "expect")
    if kind == "node":
        if not spec.get("shapes"):
            _fail(f"a [[node]] entry needs shapes = [...], {TYPES['shapes'][1]}", "shapes")
        spec["shapes"] = [_shape(sh, parse_shape) for sh in spec["shapes"]]
        if user == "pair":
            if "params" in spec:
                _fail("params apply to an op (op = … or rule = …); a forward/vjp pair "
                      "takes none", "params")
        else:
            _check_params(OPS[spec["op"]], spec.get("params", {}))
        reads = spec.get("reads", [])
        if not all(isinstance(r, int) and not isinstance(r, bool) and r >= 0 for r in reads):
            _fail(f"reads must be {TYPES['reads'][1]}, got {_shown(reads)}", "reads")
    return Obligation(kind, spec, "", 0, expect, timeout)


def load_user(ref: str, key: str):
    """The object ``module.path:name`` names (the import root: see :func:`import_root`);
    an _EntryError at ``key`` when it cannot be imported or found."""
    from ..frameworks.targets import load
    try:
        return load(ref)
    except InputError as exc:
        _fail(f"{key} = {_shown(ref)}: {exc}", key)


def _user_code(kind: str, spec: dict) -> str | None:
    """Which user code an entry names: "rule" (an op made by symgrad.define_op), "pair"
    (forward and vjp functions), "builder" (a function returning a Graph), or None. Loads
    it here, so a bad reference is an input error at its line."""
    from ..ops import Op
    if kind == "graph" and "builder" in spec:
        if "graph" in spec:
            _fail("a [[graph]] entry names graph = … (a built-in graph) or builder = … "
                  "(yours), not both", "builder")
        return "builder"
    if kind == "graph" and "args" in spec:
        _fail("args are the keyword arguments of builder = …, which this entry lacks", "args")
    if kind != "node" or not {"rule", "forward", "vjp"} & set(spec):
        return None
    named = [k for k in ("op", "rule") if k in spec] + (["forward/vjp"] if {"forward", "vjp"}
                                                         & set(spec) else [])
    if len(named) > 1:
        _fail(f"a [[node]] entry names one of op = …, rule = … or forward = … with vjp = …; "
              f"this one has {' and '.join(named)}", "rule" if "rule" in spec else "forward")
    if "rule" in spec:
        op = load_user(spec["rule"], "rule")
        if not isinstance(op, Op):
            _fail(f"rule = {_shown(spec['rule'])} is a {type(op).__name__}, not an op made by "
                  f"symgrad.define_op; for two functions write forward = … and vjp = …",
                  "rule")
        spec["op"] = op.name
        return "rule"
    for key in ("forward", "vjp"):
        if key not in spec:
            _fail(f"a [[node]] entry with {'vjp' if key == 'forward' else 'forward'} = … "
                  f"needs {key} = \"module.path:function\" too")
        if not callable(load_user(spec[key], key)):
            _fail(f"{key} = {_shown(spec[key])} is not a function", key)
    return "pair"


def _builder_entry(spec: dict, expect: str, timeout) -> Obligation:
    """A [[graph]] entry with builder = …: the builder is called with args here, and must
    return a symgrad Graph."""
    from ..graph import Graph
    for key in spec:
        if key in DIMS or key in ("layout", "form", "fixed_weights", "layers", "kv_heads",
                                  "backprop"):
            _fail(f"{key} applies to a built-in graph; pass what your builder takes in "
                  f"args = {{ … }}", key)
    build = load_user(spec["builder"], "builder")
    if not callable(build):
        _fail(f"builder = {_shown(spec['builder'])} is not a function", "builder")
    try:
        graph = build(**spec.get("args", {}))
    except InputError as exc:
        _fail(f"builder {spec['builder']}: {exc}", "builder")
    except Exception as exc:   # noqa: BLE001 - the user's builder failed
        _fail(f"builder {spec['builder']}(…) raised {type(exc).__name__}: {exc}", "args")
    if not isinstance(graph, Graph):
        _fail(f"builder {spec['builder']} returned a {type(graph).__name__}, not a "
              f"symgrad Graph", "builder")
    _check_evidence(spec, expect)
    return Obligation("graph", spec, "", 0, expect, timeout)


def import_root(path: Path) -> Path:
    """Where an obligation file's ``module.path:name`` references are imported from: the
    project the file belongs to — the directory holding its ``obligations/`` directory,
    else the file's own directory. It goes first on the import path."""
    path = Path(path).resolve()
    for parent in path.parents:
        if parent.name == "obligations":
            return parent.parent
    return path.parent


def _check_evidence(spec: dict, expect: str):
    """A graph entry's evidence, end_to_end and expect agree."""
    if spec.get("evidence", "auto") not in ("auto", "exact", "randomized"):
        _fail(f"evidence must be \"auto\", \"exact\" or \"randomized\", got "
              f"{_shown(spec['evidence'])}", "evidence")
    if "evidence" in spec and spec.get("end_to_end", True) is False:
        _fail("evidence applies to the end-to-end obligation, which end_to_end = false "
              "skips", "evidence")
    if spec.get("evidence") == "randomized" and expect == "proved":
        _fail("evidence = \"randomized\" can give VERIFIED, never PROVED: write "
              "expect = \"verified\" (or \"refuted\")", "evidence")
    if expect == "verified" and (spec.get("evidence") == "exact" or
                                 spec.get("end_to_end", True) is False):
        _fail("expect = \"verified\" needs a randomized end to end (evidence = "
              "\"auto\" or \"randomized\")", "expect")


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
    from ..api import parse_param
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
        root = str(import_root(path))
        if root not in sys.path and any(
                isinstance(e, dict) and {"rule", "forward", "vjp", "builder"} & set(e)
                for e in entries):
            sys.path.insert(0, root)
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


def parse_params(raw: dict) -> dict:
    """An entry's ``params`` table with its strings read as parameter values."""
    from ..api import parse_param
    return {k: parse_param(v) if isinstance(v, str) else v for k, v in raw.items()}


def outcome_of(ob: Obligation, verdict: str, seconds: float, **more) -> Outcome:
    """The outcome of ``ob`` — compared with its current ``expect``."""
    return Outcome(ob.id, ob.kind, ob.title, ob.file, ob.expect, verdict, seconds, spec=ob.spec,
                   **more)

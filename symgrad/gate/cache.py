"""The proof cache: verdicts by content hash in SQLite, never trusted when damaged.

The key of an obligation is the SHA-256 of its entry, its timeout, the versions of symgrad
and the libraries a verdict rests on, and the digest of the source it depends on.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import sys
import time
import warnings
from pathlib import Path

import flint
import numpy
import symengine
import sympy

from ..version import __version__
from .schema import Obligation, Outcome, outcome_of

PACKAGE = Path(__file__).resolve().parent.parent
#: the verdicts the cache keeps: an UNKNOWN may be a timeout; VERIFIED is kept with its
#: error bound (the same trial's evidence, not a new one)
STORED = ("proved", "verified", "refuted")


def versions() -> dict:
    """The versions a verdict rests on (part of every cache key, and of every report)."""
    return {"symgrad": __version__, "sympy": sympy.__version__,
            "symengine": symengine.__version__, "python-flint": flint.__version__,
            "numpy": numpy.__version__,
            "python": sys.version.split()[0]}


_SOURCE_CACHE: dict = {}


def _sources(kind: str) -> str:
    """Digest of the source a verdict of this kind depends on: the checker (prove/), the
    tensors, the exact scalars user code computes with and elementwise math, the op
    registry and every op family (a rule's source and what it calls), plus the tape, the
    graph builders and the engine mutants for graphs, the mutants (and the tape they run
    on) for mutants. Editing any of them invalidates the entries that depend on it."""
    if kind not in _SOURCE_CACHE:
        parts = ["prove", "ops", "fn.py", "scalar.py", "tensor.py", "errors.py", "api.py"]
        parts += {"graph": ["graph.py", "models", "mutants.py"],
                  "mutant": ["graph.py", "mutants.py"], "node": []}[kind]
        h = hashlib.sha256()
        for part in parts:
            p = PACKAGE / part
            for f in sorted(p.rglob("*.py")) if p.is_dir() else [p]:
                h.update(str(f.relative_to(PACKAGE)).encode())
                h.update(f.read_bytes())
        _SOURCE_CACHE[kind] = h.hexdigest()
    return _SOURCE_CACHE[kind]


#: the keys of an entry that name user code (module.path:name)
USER_KEYS = ("rule", "forward", "vjp", "builder")


def user_sources(refs) -> str:
    """Digest of the user code ``refs`` (``module.path:name``) name: every ``*.py`` file of
    the top-level package each module belongs to (or the module's own file). What is not
    tracked: code outside that package (other packages the rule imports, data files)."""
    import importlib.util
    h = hashlib.sha256()
    for top in sorted({ref.partition(":")[0].split(".")[0] for ref in refs}):
        try:
            found = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            found = None
        if found is None:
            h.update(f"{top}: not found".encode())
            continue
        places = list(found.submodule_search_locations or [])
        files = sorted(f for d in places for f in Path(d).rglob("*.py")) if places else \
            ([Path(found.origin)] if found.origin and Path(found.origin).is_file() else [])
        for f in files:
            h.update(f"{top}/{f.name}".encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def cache_key(ob: Obligation) -> str:
    payload = {"kind": ob.kind, "spec": ob.spec, "timeout": ob.timeout,
               "versions": versions(), "source": _sources(ob.kind)}
    refs = [ob.spec[k] for k in USER_KEYS if k in ob.spec]
    if refs:   # a user's rule or builder: its package's source too
        payload["user"] = user_sources(refs)
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Cache:
    """Verdicts by content hash in SQLite (``.symgrad-cache/proofs.sqlite``). Only PROVED,
    VERIFIED and REFUTED are stored (an UNKNOWN may be a timeout), with the results behind them —
    never whether they met an expectation: that is compared afresh with the entry's current
    ``expect``. Each row carries a SHA-256 of its payload; a row that does not match it is
    ignored (the obligation runs again and overwrites it; one warning per run). A damaged database file is moved
    aside to ``proofs.sqlite.damaged`` and started afresh, with one warning; a cache that
    cannot be used at all is ignored with a warning — never trusted — and the run goes on
    without it."""

    SCHEMA = 2   #: ``pragma user_version``; a database of another version is emptied

    def __init__(self, directory=".symgrad-cache"):
        self.path = Path(directory) / "proofs.sqlite"
        self.db = None
        self.damaged = 0   #: entries found damaged (and checked again) in this run
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
            out = outcome_of(ob, d["verdict"], float(d["seconds"]), cached=True,
                           reason=str(d["reason"]), results=list(d["results"]))
        except (ValueError, TypeError, KeyError) as exc:
            self.damaged += 1
            if self.damaged == 1:   # one warning per run, however many entries are damaged
                warnings.warn(f"ignoring damaged proof-cache entries in {self.path} (the "
                              f"first: {ob.title}, {exc}); checking them again", stacklevel=2)
            return None
        return out if out.verdict in STORED else None

    def put(self, ob: Obligation, outcome: Outcome):
        if self.db is None or outcome.verdict not in STORED:
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


"""Readable side conditions: a sum whose terms are one term at every index of an axis range
is printed in Σ notation (``exp(x[0,0]) + exp(x[0,1]) + exp(x[0,2])`` reads
``Σ_{j<3} exp(x[0,j])``), innermost sums first, so a LayerNorm radicand reads as a sum of
squared deviations from a row sum instead of its expansion.

Only the text changes: a sum is folded when every term is, structurally, the folded term
with the index put back — nothing is simplified, so the condition printed is the
condition checked.

>>> import symengine as se
>>> x = [se.Symbol(f"x[0,{j}]") for j in range(3)]
>>> readable(se.exp(x[0]) + se.exp(x[1]) + se.exp(x[2]))
'Σ_{j<3} exp(x[0,j])'
>>> s = sum(x)
>>> readable(sum((xj - s / 3) ** 2 for xj in x) / 3 + se.Rational(1, 100000))
'1/100000 + (1/3)*(Σ_{k<3} ((-1/3)*(Σ_{j<3} x[0,j]) + x[0,k])**2)'
"""
from __future__ import annotations

import re

import symengine as se

from .budget import _smaller_than

_ENTRY = re.compile(r"^([A-Za-z_][\w.]*)\[(\d+(?:,\d+)*)\]$")
_LETTERS = "jklmpqrs"
_USED = re.compile(r"[\[,]([a-z])(?=[\],])")
#: conditions larger than this many nodes are printed as they are
FOLD_NODES = 5000


def readable(expr) -> str | None:
    """The text of ``expr`` with sums over index ranges folded, or None when it is too
    large to fold."""
    if not _smaller_than(expr, FOLD_NODES):
        return None
    text = str(_fold(expr, {}))
    if text.startswith("(Σ_") and _closing(text) == len(text) - 1:
        text = text[1:-1]
    return text


def _closing(text: str) -> int:
    """The index of the parenthesis that closes the one at 0."""
    depth = 0
    for k, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0:
            return k
    return -1


def _entry(sym):
    m = _ENTRY.match(str(sym))
    return (m.group(1), tuple(int(i) for i in m.group(2).split(","))) if m else None


def _fold(e, memo: dict):
    if e in memo:
        return memo[e]
    out = e
    if e.args:
        args = [_fold(a, memo) for a in e.args]
        if any(a is not b for a, b in zip(args, e.args)):
            try:
                out = e.func(*args)
            except Exception:  # noqa: BLE001 - a display aid: keep the node as it is
                out = e
        if isinstance(out, se.Add):
            out = _fold_sum(out)
    memo[e] = out
    return out


def _fold_sum(add):
    terms = list(add.args)
    groups: dict = {}
    for t in terms:
        by_array: dict = {}
        for s in t.free_symbols:
            entry = _entry(s)
            if entry:
                by_array.setdefault(entry[0], []).append((s, entry[1]))
        for name, syms in by_array.items():
            rank = len(syms[0][1])
            if any(len(idx) != rank for _, idx in syms):
                continue
            for p in range(rank):
                values = {idx[p] for _, idx in syms}
                if len(values) == 1:
                    rest = tuple(sorted(idx[:p] + idx[p + 1:] for _, idx in syms))
                    groups.setdefault((name, p, rest), []).append((values.pop(), t))
    used: set = set()
    folded = []
    for (name, p, _), members in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        by_value: dict = {}
        for v, t in members:
            if t not in used:
                by_value.setdefault(v, []).append(t)
        if len(by_value) < 2 or 0 not in by_value:
            continue
        sigma, taken = _sigma(name, p, by_value)
        if sigma is not None:
            used.update(taken)
            folded.append(sigma)
    if not folded:
        return add
    return se.Add(*folded, *[t for t in terms if t not in used])


def _sigma(name: str, p: int, by_value: dict):
    """(a symbol printing as ``(Σ_{j<m} term)``, the m terms it stands for): the longest
    run of index values 0, 1, …, m−1 (m ≥ 2) at each of which a term of ``by_value`` (index
    value → candidate terms) is, structurally, a term at value 0 with its index replaced;
    (None, []) when there is none."""
    for first in by_value[0]:
        letters = set(_USED.findall(str(first)))
        letter = next((c for c in _LETTERS if c not in letters), None)
        if letter is None:
            continue
        base = _at(first, name, p, 0)
        holders = {}
        for rest in base:
            shown = [str(i) for i in rest]
            shown.insert(p, letter)
            holders[rest] = se.Dummy(f"{name}[{','.join(shown)}]")
        generic = first.xreplace({s: holders[rest] for rest, s in base.items()})
        taken = [first]
        for v in range(1, len(by_value) + 1):
            match = next((term for term in by_value.get(v, ()) if _is_at(
                term, generic, holders, name, p, v)), None)
            if match is None:
                break
            taken.append(match)
        if len(taken) >= 2:
            body = f"({generic})" if isinstance(generic, se.Add) else str(generic)
            return se.Dummy(f"(Σ_{{{letter}<{len(taken)}}} {body})"), taken
    return None, []


def _at(term, name: str, p: int, v: int) -> dict:
    """{an entry's index without position p: its symbol} of the entries of array ``name``
    in ``term`` whose index has value ``v`` at position ``p``."""
    out = {}
    for s in term.free_symbols:
        entry = _entry(s)
        if entry and entry[0] == name and len(entry[1]) > p and entry[1][p] == v:
            out[entry[1][:p] + entry[1][p + 1:]] = s
    return out


def _is_at(term, generic, holders: dict, name: str, p: int, v: int) -> bool:
    """Whether ``term`` is ``generic`` with the index value ``v`` put back."""
    here = _at(term, name, p, v)
    return set(here) == set(holders) and generic.xreplace(
        {holders[rest]: s for rest, s in here.items()}) == term

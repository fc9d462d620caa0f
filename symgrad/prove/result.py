"""Verdicts, witnesses and results: plain data, picklable, JSON-ready."""
from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field


class Verdict(str, enum.Enum):
    """The outcome of one obligation."""

    PROVED = "proved"      #: the residual's normal form is zero (under the side conditions)
    VERIFIED = "verified"  #: a randomized identity test passed; ``error_bound`` bounds the
    #: probability that the identity is false (never called proved)
    REFUTED = "refuted"    #: a certified counterexample inside the domain
    UNKNOWN = "unknown"    #: neither; ``reason`` says why

    def __str__(self) -> str:
        return self.value

    @property
    def exit_code(self) -> int:
        return {"proved": 0, "verified": 0, "refuted": 1, "unknown": 4}[self.value]


@dataclass
class SideCondition:
    """A domain condition the verdict is stated under."""

    text: str              #: e.g. ``x[0,0] > 0``
    reason: str            #: denominator, radicand, logarithm argument, declared, …
    discharged: bool = False  #: implied by the declared assumptions alone (a sum of
    #: positive terms: exponentials, even powers, positive constants and symbols)


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


#: how a summary names the conditions of each reason
_NOUNS = {"step function at its jump": "step argument"}


def conditions_summary(conditions, counts: bool = True) -> str:
    """Side conditions counted by kind, and how they are met: ``2 denominators ≠ 0 (all
    discharged), 1 declared``; the symmetry images are named, not counted. Without
    ``counts``, the kinds the obligation adds to its declared ones: ``denominator ≠ 0
    (discharged)``."""
    kinds: dict = {}
    images = False
    for c in conditions:
        if c.reason == "summary":
            images = True
            continue
        relation = "> 0" if c.text.endswith("> 0") else "≠ 0" if c.text.endswith("≠ 0") else ""
        key = (c.reason, relation)
        n, done = kinds.get(key, (0, 0))
        kinds[key] = (n + 1, done + bool(c.discharged))
    parts = []
    for (reason, relation), (n, done) in kinds.items():
        noun = _NOUNS.get(reason, reason)
        if not counts:   # kinds only: "denominator ≠ 0 (discharged)"
            if reason != "declared":
                how = " (discharged)" if done == n else "" if done == 0 else \
                    " (discharged where implied)"
                parts.append(f"{noun}{' ' + relation if relation else ''}{how}")
            continue
        if reason == "declared":
            parts.append(f"{n} declared")
            continue
        how = " (all discharged)" if done == n else " (stated)" if done == 0 else \
            f" ({done} discharged)"
        parts.append(f"{n} {noun}{'s' if n > 1 else ''}{' ' + relation if relation else ''}"
                     f"{how}")
    if not counts:
        return ", ".join(parts)
    text = ", ".join(parts) or "none"
    return text + (" + their images under the index symmetries" if images else "")


#: the residual of a witness where the rule is undefined (it divides by zero there)
UNDEFINED = ("undefined", "undefined")


@dataclass
class Witness:
    """A certified counterexample to the adjoint identity.

    With ẋ the unit tangent at ``entry`` of ``input``, the identity
    ⟨ḡ, Df(x)[ẋ]⟩ = Σ⟨vjp_i(ḡ), ẋ_i⟩ reads ``expected = got``; at ``point`` the ball
    ``residual`` (expected − got, certified by ball arithmetic) excludes 0.
    """

    input: str                 #: the input whose cotangent is wrong
    entry: tuple               #: its index
    point: dict                #: symbol name → exact rational (as a string), x and ḡ
    tangent: str               #: description of ẋ
    expected: str              #: enclosure of (Jᵀḡ) at the entry, from the derivative
    got: str                   #: enclosure of the rule's cotangent at the entry
    residual: tuple            #: (lower, upper) bounds of expected − got, excluding 0
    precision: int = 64        #: bits of the ball arithmetic
    note: str = ""             #: e.g. why expected and got look alike

    def lines(self, points: int = 12) -> list:
        """The counterexample as a person reads it (the first ``points`` coordinates)."""
        idx = ",".join(map(str, self.entry))
        shown = list(self.point.items())
        text = ", ".join(f"{k}={v}" for k, v in shown[:points])
        more = f", … ({len(shown) - points} more)" if len(shown) > points else ""
        residual = (f"  residual in [{self.residual[0]}, {self.residual[1]}] (excludes 0, "
                    f"{self.precision}-bit ball arithmetic)")
        if tuple(self.residual) == UNDEFINED:
            residual = "  residual undefined: the rule's value does not exist at this point"
        lines = [f"counterexample: the cotangent of {self.input}[{idx}] is wrong",
                 f"  expected (Jᵀḡ) {self.expected}", f"  rule gave       {self.got}",
                 residual, f"  at {text}{more}", f"  tangent: {self.tangent}"]
        if self.note:
            lines.append(f"  note: {self.note}")
        return lines


@dataclass
class Result:
    """The verdict on one obligation, with its evidence."""

    name: str
    verdict: Verdict
    method: str = ""
    seconds: float = 0.0
    terms: int = 0              #: terms of both sides' normal forms, summed over entries
    atoms: int = 0              #: distinct atoms abstracted
    entries: int = 0            #: scalar identities (one per input entry)
    checked: int = 0            #: of which normal-formed (one per symmetry orbit)
    side_conditions: list = field(default_factory=list)
    witness: Witness | None = None
    reason: str = ""            #: for UNKNOWN: why
    advice: str = ""            #: for UNKNOWN: what the user can do next
    residual: str = ""          #: for a non-zero normal form: a sample of it
    legend: dict = field(default_factory=dict)  #: atom in ``residual`` → what it stands for
    shapes: list = field(default_factory=list)
    params: dict = field(default_factory=dict)
    backend: str = "symengine"
    #: what the verdict rests on: "exact" (a normal form, a certified witness) or
    #: "randomized" (a polynomial identity test; its error bound in ``error_bound``)
    evidence: str = "exact"
    error_bound: str = ""       #: for randomized evidence: "2^-k", the chance it is wrong
    peak_memory_mb: float = 0.0
    phases: dict = field(default_factory=dict)  #: seconds per pipeline phase
    #: a split end-to-end identity: one row per seed block (value, verdict, terms, seconds)
    blocks: list = field(default_factory=list)
    #: a graph's corollary and end-to-end results: the node obligations' side conditions
    #: stated over the tape values they constrain (node, op, text, reason, discharged)
    tape_conditions: list = field(default_factory=list)

    @property
    def proved(self) -> bool:
        return self.verdict is Verdict.PROVED

    def __str__(self) -> str:
        return "\n".join([self.headline()] + ["  " + line for line in self.details()])

    def __repr__(self) -> str:
        extra = f"{len(self.side_conditions)} side condition" + (
            "" if len(self.side_conditions) == 1 else "s")
        if self.witness is not None:
            w = self.witness
            extra = f"witness {w.input}[{','.join(map(str, w.entry))}]"
        elif self.verdict is Verdict.UNKNOWN:
            extra = _short(self.reason, 60)
        return (f"<Result {self.name}: {self.verdict.value.upper()}, "
                f"{_short(self.method, 60)}, {extra}>")

    def headline(self) -> str:
        """One line: verdict, what, how, how long."""
        how = f" — {self.method}" if self.method else ""
        return f"{self.verdict.value.upper()} {self.name}{how} ({self.seconds:.2f} s)"

    def details(self, conditions: int | None = 3) -> list:
        """What a person reads under the headline: :meth:`findings`, then the side
        conditions (the first ``conditions`` of them and a count; None: every one)."""
        return self.findings() + self.conditions_lines(conditions)

    def findings(self) -> list:
        """For UNKNOWN why and what to do next, for REFUTED the counterexample, and a
        non-zero residual with a legend of its atoms."""
        lines = []
        if self.verdict is Verdict.UNKNOWN and self.reason:
            lines.append(f"unknown: {self.reason}")
            if self.advice:
                lines.append(f"next: {self.advice}")
        if self.witness is not None:
            lines.extend(self.witness.lines())
        if self.residual and self.verdict is not Verdict.PROVED:
            lines.append(f"non-zero normal form (sample): {self.residual}")
            if self.legend:
                lines.append("  where " + "; ".join(f"{k} = {v}"
                                                    for k, v in self.legend.items()))
        return lines

    def conditions_lines(self, limit: int | None = None) -> list:
        """The side conditions, each whole, the first ``limit`` of them (None: all)."""
        if not self.side_conditions:
            return []
        listed = [c for c in self.side_conditions if c.reason != "summary"]
        shown = listed if limit is None else listed[:limit]
        lines = [f"side conditions ({self.conditions_summary()}):"]
        lines += [f"  {c.text}" + ("  [discharged]" if c.discharged else "") for c in shown]
        if len(shown) < len(listed):
            lines.append(f"  … and {len(listed) - len(shown)} more")
        return lines

    def conditions_summary(self) -> str:
        """The side conditions by kind and how they are met: ``2 denominators ≠ 0
        (all discharged), 1 declared``."""
        return conditions_summary(self.side_conditions)

    def _repr_html_(self) -> str:
        """A small table for Jupyter."""
        from html import escape
        rows = [("verdict", self.verdict.value.upper()), ("obligation", self.name),
                ("method", self.method), ("seconds", f"{self.seconds:.2f}"),
                ("entries", (f"{self.entries} tested" if self.evidence == "randomized" else
                             f"{self.checked} of {self.entries} normal-formed")
                 if self.entries else "")]
        if self.evidence == "randomized":
            rows.append(("evidence", f"randomized, error ≤ {self.error_bound or '—'}"))
        if self.side_conditions:
            rows.append(("side conditions", self.conditions_summary()))
        if self.verdict is Verdict.UNKNOWN:
            rows += [("why", self.reason), ("next", self.advice)]
        if self.witness is not None:
            rows.append(("counterexample", "\n".join(self.witness.lines())))
        body = "".join(f"<tr><th style='text-align:left'>{escape(k)}</th>"
                       f"<td style='text-align:left;white-space:pre-wrap'>{escape(v)}</td></tr>"
                       for k, v in rows if v)
        return f"<table class='symgrad-result'>{body}</table>"

    @classmethod
    def from_json(cls, d: dict) -> "Result":
        """The Result of :meth:`to_json`'s dict (a cached or JSON-read result)."""
        d = dict(d)
        d["verdict"] = Verdict(d["verdict"])
        d["side_conditions"] = [SideCondition(**c) for c in d.get("side_conditions", [])]
        if d.get("witness"):
            w = dict(d["witness"])
            w["entry"], w["residual"] = tuple(w["entry"]), tuple(w["residual"])
            d["witness"] = Witness(**w)
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in known})

    def to_json(self) -> dict:
        d = asdict(self)
        d["verdict"] = self.verdict.value
        if self.witness is not None:
            d["witness"]["entry"] = list(self.witness.entry)
            d["witness"]["residual"] = list(self.witness.residual)
        return d


@dataclass
class GraphResult:
    """Everything symgrad established about one graph."""

    graph: str
    verdict: Verdict
    obligations: list = field(default_factory=list)   #: Results: nodes, corollary, e2e
    info: dict = field(default_factory=dict)

    @property
    def proved(self) -> bool:
        return self.verdict is Verdict.PROVED

    def __str__(self) -> str:
        lines = [f"{self.verdict.value.upper()} {self.graph}: {len(self.obligations)} "
                 f"obligations"]
        for r in self.obligations:
            lines.append("  " + r.headline())
            lines += ["    " + line for line in r.findings()]
        return "\n".join(lines)

    def __repr__(self) -> str:
        counts = {v: sum(r.verdict is v for r in self.obligations) for v in Verdict}
        shown = ", ".join(f"{n} {v.value}" for v, n in counts.items() if n)
        return f"<GraphResult {self.graph}: {self.verdict.value.upper()} ({shown})>"

    def _repr_html_(self) -> str:
        return "".join(r._repr_html_() for r in self.obligations)

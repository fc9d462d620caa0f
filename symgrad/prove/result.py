"""Verdicts, witnesses and results: plain data, picklable, JSON-ready."""
from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field


class Verdict(str, enum.Enum):
    """The outcome of one obligation."""

    PROVED = "proved"      #: the residual's normal form is zero (under the side conditions)
    REFUTED = "refuted"    #: a certified counterexample inside the domain
    UNKNOWN = "unknown"    #: neither; ``reason`` says why

    def __str__(self) -> str:
        return self.value

    @property
    def exit_code(self) -> int:
        return {"proved": 0, "refuted": 1, "unknown": 4}[self.value]


@dataclass
class SideCondition:
    """A domain condition the verdict is stated under."""

    text: str              #: e.g. ``x[0,0] > 0``
    reason: str            #: denominator, radicand, logarithm argument, declared, …
    discharged: bool = False  #: implied by the declared assumptions alone (a sum of
    #: positive terms: exponentials, even powers, positive constants and symbols)


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
    residual: str = ""          #: for a non-zero normal form: a sample of it
    shapes: list = field(default_factory=list)
    params: dict = field(default_factory=dict)
    backend: str = "symengine"
    peak_memory_mb: float = 0.0
    phases: dict = field(default_factory=dict)  #: seconds per pipeline phase

    @property
    def proved(self) -> bool:
        return self.verdict is Verdict.PROVED

    def conditions_text(self) -> str:
        """The side conditions, one string (discharged ones marked)."""
        if not self.side_conditions:
            return "none"
        parts = [c.text + (" (discharged)" if c.discharged else "")
                 for c in self.side_conditions]
        return "; ".join(parts)

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

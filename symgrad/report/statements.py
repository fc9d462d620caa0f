"""What each obligation page states: the theorem its verdict is about, in MathML built here
from escaped names (op and input names come from user graphs and obligation files).

* a node obligation: the adjoint identity of that op at those shapes and parameters;
* the DAG corollary: backprop = (D eval)ᵀ for the tape semantics, from the node obligations;
* end to end: the composed identity for the engine that was run, with its evidence.

>>> print(space((2, 3)))
<msup><mi>ℝ</mi><mrow><mn>2</mn><mo>×</mo><mn>3</mn></mrow></msup>
>>> "&lt;b&gt;" in adjoint_identity("f<b>", ["x"], [0])
True
"""
from __future__ import annotations

from html import escape

# ----- a few MathML constructors ----------------------------------------------------------


def mi(name: str) -> str:
    """An identifier (MathML draws one letter italic, several upright: an op name)."""
    return f"<mi>{escape(name)}</mi>"


def mo(op: str) -> str:
    return f"<mo>{escape(op)}</mo>"


def row(*parts: str) -> str:
    return "<mrow>" + "".join(parts) + "</mrow>"


def sub(base: str, script: str) -> str:
    return f"<msub>{base}{script}</msub>"


def over(base: str, mark: str) -> str:
    return f"<mover>{base}<mo>{mark}</mo></mover>"


def dotted(base: str) -> str:
    """The tangent of a value: ẋ (a full stop above: U+02D9 draws too small to see)."""
    return over(base, ".")


G_BAR = over("<mi>g</mi>", "‾")
D = '<mi>D</mi><mspace width="0.17em"/>'   # the derivative, set apart from what follows


def joined(items, sep: str) -> list:
    """items with sep (markup) between them."""
    out = []
    for k, item in enumerate(items):
        out += [sep] * (k > 0) + [item]
    return out


def listed(items, open_="(", close=")") -> str:
    return row(mo(open_), *joined(items, mo(",")), mo(close))


def call(fun: str, *args: str) -> str:
    return row(fun, mo("\u2061"), listed(args))


def inner(a: str, b: str) -> str:
    return row(mo("⟨"), a, mo(","), b, mo("⟩"))


def space(shape) -> str:
    """ℝ^{2×3} (ℝ for a scalar)."""
    if not shape:
        return "<mi>ℝ</mi>"
    dims = [f"<mn>{int(d)}</mn>" for d in shape]
    return f"<msup><mi>ℝ</mi>{row(*joined(dims, mo('×')))}</msup>"


def math(*parts: str, display: bool = False) -> str:
    kind = "block" if display else "inline"
    return (f'<math xmlns="http://www.w3.org/1998/Math/MathML" display="{kind}">'
            + row(*parts) + "</math>")


# ----- node obligations -------------------------------------------------------------------

def adjoint_identity(op: str, names, reads) -> str:
    """⟨ḡ, Df(u)[u̇]⟩ = Σ_i ⟨Σ_{j reads i} vjp_j(ḡ, y, u), ẋ_i⟩ for an op reading the distinct
    inputs ``names`` through ``reads`` (one input index per argument), as display MathML."""
    args = [mi(names[i]) for i in reads]
    repeated = len(set(reads)) < len(reads)
    f = mi(op)
    lhs = inner(G_BAR, row(call(row(D, f), *args), listed(
        [dotted(mi(names[i])) for i in reads], "[", "]")))
    terms = []
    for i, name in enumerate(names):
        rules = [call(sub(mi("vjp"), f"<mn>{j + 1}</mn>" if repeated else mi(names[r])),
                      G_BAR, mi("y"), *args) for j, r in enumerate(reads) if r == i]
        terms.append(inner(row(*joined(rules, mo("+"))), dotted(mi(name))))
    return math(lhs, mo("="), *joined(terms, mo("+")), display=True)


def node_statement(op_view: dict, r: dict, tape_uses=None) -> dict:
    """The adjoint identity of ``op_view``'s op at ``r``'s shapes, with its quantifiers."""
    names = list(op_view["args"])[:len(r["shapes"])]
    reads = op_view["reads"] or list(range(len(names)))
    domain = [math(mi(n), mo("∈"), space(s)) for n, s in zip(names, r["shapes"])]
    if op_view["out_shape"] is not None:
        domain.append(math(G_BAR, mo("∈"), space(op_view["out_shape"])))
    return {"kind": "node", "identity": adjoint_identity(op_view["name"], names, reads),
            "domain": domain, "tangents": [math(dotted(mi(n))) for n in names],
            "saved": math(mi("y"), mo("="), call(mi(op_view["name"]),
                                                  *[mi(names[i]) for i in reads])),
            "params": r["params"], "uses": tape_uses or []}


# ----- graph obligations ------------------------------------------------------------------

_XI = "<mi>ξ</mi>"
_S = "<mi>s</mi>"


def corollary_statement(graph_view: dict, parts: list) -> dict:
    """The DAG theorem instantiated for this tape, citing the node obligations (pages)."""
    ident = math(inner(_S, row(call(row(D, mi("eval")), _XI), listed([dotted(_XI)], "[", "]"))),
                 mo("="), inner(call(mi("backprop"), _XI, _S), dotted(_XI)), display=True)
    return {"kind": "corollary", "identity": ident, **_tape_quantifiers(graph_view),
            "rests_on": [dict(p, uses=graph_view["uses"].get(k, []))
                         for k, p in enumerate(parts) if p["name"].startswith("node ")]}


def end_to_end_statement(graph_view: dict, r: dict) -> dict:
    """backprop(ξ, s) = (D eval(ξ))ᵀ s for the engine that was run, entry by entry; with
    the seed blocks when the check was split by seed block."""
    ident = math(call(mi("backprop"), _XI, _S), mo("="), row(
        f"<msup>{row(mo('('), call(row(D, mi('eval')), _XI), mo(')'))}<mi>T</mi></msup>",
        _S), display=True)
    x_e = row(mi("x"), mo("["), mi("e"), mo("]"))
    entry = math(sub(call(mi("backprop"), _XI, _S), x_e), mo("="), row(
        sub(mo("∑"), mi("v")), inner(sub(_S, mi("v")), f"<mfrac>{row(mo('∂'), mi('v'))}"
                                     f"{row(mo('∂'), x_e)}</mfrac>")))
    return {"kind": "end-to-end", "identity": ident, "entrywise": entry,
            **_tape_quantifiers(graph_view), "blocks": r.get("blocks") or []}


def _tape_quantifiers(graph_view: dict) -> dict:
    """ξ, the inputs, and its space; the whole-tape seed s; counts of the tape."""
    inputs = [s for s in graph_view["saved"] if s["op"] == "input"]
    return {"inputs": math(_XI, mo("="), listed([mi(s["name"]) for s in inputs])),
            "input_space": math(_XI, mo("∈"), *joined([space(s["dims"]) for s in inputs],
                                                      mo("×"))),
            "seed": math(_S, mo("="), sub(listed([sub(_S, mi("v"))]), row(
                mi("v"), mo("∈"), mi("tape"))), mo(","), sub(_S, mi("v")), mo("∈"),
                f"<msup><mi>ℝ</mi>{row(mi('shape'), mo('('), mi('v'), mo(')'))}</msup>"),
            "n_values": len(graph_view["saved"]), "n_inputs": len(inputs),
            "n_nodes": len(graph_view["saved"]) - len(inputs),
            "n_seeds": sum(s["size"] for s in graph_view["saved"])}

"""Stage 2 of the normal form, exponent classes: one atom for a whole group of monomials.

Before an obligation is converted, :func:`exponent_classes` groups the monomials of all its
exponents into classes that occur in fixed proportion in every one of them; when an
exponent then holds a whole class, :func:`whole_classes` takes it out as one power of
``exp(class polynomial)`` (see :meth:`symgrad.prove.atoms.Atoms.prepare_exponents`).
"""
from __future__ import annotations

import symengine as se

from .budget import function_name
from .flint_poly import _se_rational, to_fraction


def exponent_classes(exprs, canon) -> dict:
    """Group the monomials of every exponent in ``exprs`` (expanded by ``canon``) into
    classes that occur in fixed proportion in all of them; each exponent is then an exact
    rational combination of the class polynomials b, and exp(Σ c·b) = Π exp(b)^c uses one
    atom per class instead of one per monomial (an attention score of 32 monomials is one
    atom). Returns monomial → (its class polynomial, its coefficient there); classes of one
    monomial, ``1`` and logarithms are left out."""
    exponents, seen, stack = [], set(), list(exprs)
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if isinstance(node, se.Pow) and node.args[0] == se.E:
            exponents.append(canon(node.args[1]).as_coefficients_dict())
        stack.extend(node.args)
    columns: dict = {}
    for t, d in enumerate(exponents):
        for m, c in d.items():
            if m != 1 and function_name(m) != "log":
                columns.setdefault(m, []).append((t, to_fraction(c)))
    classes: dict = {}
    for m, col in columns.items():
        first = col[0][1]
        signature = tuple((t, c / first) for t, c in col)
        classes.setdefault(signature, []).append((m, first))
    out: dict = {}
    for members in classes.values():
        if len(members) < 2:
            continue
        base = members[0][1]
        poly = se.Add(*[_se_rational(c / base) * m for m, c in members])
        for m, c in members:
            out[m] = (poly, c / base)
    return out


def whole_classes(terms: dict, classes: dict) -> list:
    """The classes (from :func:`exponent_classes`) that the exponent with ``terms``
    (monomial → Fraction coefficient) holds whole, in their fixed proportion: a list of
    (class polynomial, c) with those terms = c · polynomial. Their monomials are removed
    from ``terms``; the rest fall back to one atom per monomial."""
    grouped: dict = {}
    for m, c in terms.items():
        cls = classes.get(m)
        if cls is not None:
            grouped.setdefault(cls[0], []).append(c / cls[1])
    out = []
    for poly, ratios in grouped.items():
        if len(ratios) == len(poly.args) and len(set(ratios)) == 1:
            out.append((poly, ratios[0]))
            for m in [m for m in terms if classes.get(m, (None,))[0] == poly]:
                del terms[m]
    return out

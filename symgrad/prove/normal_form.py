"""Normal forms of residuals: abstract the transcendental atoms, expand over Q in FLINT.

A residual is a SymEngine expression built from symbols, rationals, ``+ * **`` and functions.
Each non-polynomial piece becomes an *atom*, an indeterminate of a ``fmpq_mpoly``:

* ``exp(u)``: u is expanded, ``exp(Σ c_m·m) = Π E_m^(c_m·q_m)`` with ``E_m = exp(m/q_m)``
  (q_m the common denominator of m's coefficients), so ``exp(x)² = exp(2x)`` holds
  syntactically. Negative powers use a second indeterminate ``E_m⁻`` (``E·E⁻ = 1``).
* ``A**(p/q)`` and ``A**(-k)``: A is expanded and made primitive (positive content moved
  out, primes of numeric radicands split), ``R_A = A^(1/q_A)`` and ``V_A = A^(-1/q_A)``
  with the relations ``R_A^q_A = A`` and ``R_A·V_A = 1``. A reciprocal ``1/D`` is ``V_D``.
* ``tanh(u)``, ``erf(u)``, ``log(u)``, ``H(u)`` (step) and other functions: one atom per
  function and expanded argument, odd functions with a canonical sign.

Soundness: every rewrite is an identity on the domain (the side conditions the atoms record:
denominators ≠ 0, radicands and log arguments > 0, no step function at its jump), and a
polynomial that is zero with its atoms as independent indeterminates is zero at every value
they take. So a zero normal form proves the residual zero on the domain. The converse fails
(the atoms are not independent: ``R_A^2 = A``); :meth:`EntryForm.reduce` applies the known
relations — pair cancellation, step idempotence, and clearing every ``V_A`` by multiplying
with powers of ``A`` — which decides identities among rational functions of the atoms.

The stages, each importing only the ones before it: :mod:`.budget` (what is refused, size
limits), :mod:`.flint_poly` (exact coefficients, the memory of a term), :mod:`.exponents`
(exponent classes), :mod:`.atoms` (the atom table and side conditions), and here
:class:`EntryForm`, the polynomials of one entry and the reduction by the relations.
"""
from __future__ import annotations

import math
from fractions import Fraction

import symengine as se
from flint import fmpq, fmpq_mpoly_ctx

from .atoms import Atoms, Condition, Rewrite, _is_step, holds_everywhere, innermost, \
    nodes_under, steps_under
from .budget import MEMO_TERMS, TooLarge, Unsupported, _smaller_than, function_name
from .flint_poly import _balanced, term_limit, to_fraction

# the names the checker and the tests import from here, whichever stage defines them
__all__ = ["Atoms", "Condition", "EntryForm", "TooLarge", "Unsupported", "_is_step",
           "_smaller_than", "holds_everywhere", "innermost", "nodes_under", "steps_under",
           "to_fraction"]


#: a division may grow the polynomial to this many times its budget on its way to its
#: remainder (one relation's step makes terms the next one cancels)
GROWTH = 2
#: terms up to which the plain inverses are divided out before the full reduction
QUICK_DIVISION_TERMS = 200_000


# ----- one entry: context, conversion, relations ----------------------------------------

class EntryForm:
    """Polynomials over Q in the symbols and atoms of some expressions (one entry's lhs and
    rhs). Entries with the same variables share a context and a conversion memo."""

    def __init__(self, atoms: Atoms, exprs, variables: frozenset, limit: int | None = None):
        self.atoms = atoms
        syms = sorted((v[1] for v in variables if v[0] == "sym"), key=str)
        keys = sorted((v for v in variables if v[0] != "sym"), key=lambda k: atoms.info[k].ident)
        names = [str(s) for s in syms]
        self.index: dict = {("sym", s): i for i, s in enumerate(syms)}
        for key in keys:
            info = atoms.info[key]
            if key[0] != "pow" or info.q > 1 or info.opaque:
                self.index[(key, +1)] = len(names)
                names.append(f"A{info.ident}")
            if info.neg:
                self.index[(key, -1)] = len(names)
                names.append(f"A{info.ident}inv")
        self.keys = keys
        # graded-lex: the order the inverse relations are divided in (_divide_inverses);
        # a polynomial carried over from another order costs a Python dict per term
        self.ctx = fmpq_mpoly_ctx.get(tuple(names), "deglex")
        self.gens = self.ctx.gens()
        # the root indices are part of the layout: a memo entry converted while q_A was 1
        # must not be reused once q_A is 2 (the variable then stands for another power)
        memo_key = (self.ctx, tuple(sorted(self.index.items(), key=lambda kv: kv[1])),
                    tuple(atoms.info[k].q for k in keys))
        if memo_key not in atoms.memos and sum(atoms.memo_terms.values()) > MEMO_TERMS:
            # other variable layouts' memos (other seed blocks, say) are not reused here
            atoms.memos.clear()
            atoms.memo_terms.clear()
        self.memo = atoms.memos.setdefault(memo_key, {})
        if atoms.memo_terms.get(memo_key, 0) > MEMO_TERMS:
            # the memo mostly holds earlier entries' derivative polynomials: start afresh
            # rather than let a many-entry obligation grow without bound
            self.memo.clear()
            atoms.memo_terms[memo_key] = 0
        self.memo_key = memo_key
        full = None if atoms.memory_bytes is None else term_limit(atoms.memory_bytes,
                                                                  len(names))
        # a lower limit of the caller's bounds the expansion below, not the relations'
        self.limit = full if limit is None else limit if full is None else min(limit, full)
        self.held = 0   # terms of the polynomials this entry has memoised
        try:
            self.polys = [self.convert(e) for e in exprs]
        except TooLarge:   # what was expanded of an entry too large is no use to the next
            self.memo.clear()
            atoms.memo_terms[memo_key] = 0
            raise
        self.limit = full

    def _mul(self, a, b):
        if self.limit is not None and self.held + len(a) * len(b) > self.limit:
            raise TooLarge(self.held, len(a), len(b), self.limit, len(self.gens))
        return a * b

    def _pow(self, a, k: int):
        if self.limit is not None and k > 1 and len(a) > 1 and \
                self.held + math.comb(len(a) + k - 1, k) > self.limit:
            raise TooLarge(self.held, len(a), math.comb(len(a) + k - 1, k) // len(a), self.limit,
                           len(self.gens))
        return a ** k

    def convert(self, node):
        p = self.memo.get(node)
        if p is not None:
            return p
        ctx = self.ctx
        if isinstance(node, se.Symbol):
            p = self.gens[self.index[("sym", node)]]
        elif isinstance(node, se.Number):
            f = to_fraction(node)
            p = ctx.constant(fmpq(f.numerator, f.denominator))
        elif isinstance(node, se.Add) and self.atoms.linear(node) is not None:
            scale, key = self.atoms.linear(node)
            p = self.gens[self.index[(key, +1)]] * fmpq(scale.numerator, scale.denominator)
        elif node in self.atoms.opaque:
            p = self._base(self.atoms.opaque_key(node))
        elif isinstance(node, se.Add):
            p = _balanced((self.convert(a) for a in node.args), lambda a, b: a + b, ctx.constant(0))
        elif isinstance(node, se.Mul):
            p = _balanced((self.convert(a) for a in node.args), self._mul, ctx.constant(1))
        elif isinstance(node, se.Pow) and isinstance(node.args[1], se.Integer) \
                and int(node.args[1]) >= 0 and node.args[0] != se.E:
            p = self._pow(self.convert(node.args[0]), int(node.args[1]))
        else:
            f = self.atoms.factor(node)
            if isinstance(f, Rewrite):
                p = self.convert(f.expr)
            else:
                p = ctx.constant(fmpq(f.coeff.numerator, f.coeff.denominator))
                for b, k in f.polys:
                    p = self._mul(p, self._pow(self.convert(b), k))
                for key, ex in f.atoms:
                    p = self._mul(p, self._atom_power(key, ex))
        self.memo[node] = p
        self.held += len(p)
        self.atoms.memo_terms[self.memo_key] = self.atoms.memo_terms.get(self.memo_key, 0) + len(p)
        return p

    def _base(self, key):
        """The base A of a pow atom as a polynomial (an opaque sum: its variable, R^q)."""
        info = self.atoms.info[key]
        if info.opaque:
            return self.gens[self.index[(key, +1)]] ** info.q
        return self.convert(info.base)

    def _atom_power(self, key, ex: Fraction):
        info = self.atoms.info[key]
        k = ex * info.q
        assert k.denominator == 1, (key, ex, info.q)
        k = int(k)
        if k < 0:
            return self.gens[self.index[(key, -1)]] ** (-k)
        if key[0] == "pow":
            whole, rest = divmod(k, info.q)
            p = self._base(key) ** whole if whole else self.ctx.constant(1)
            if rest:
                p = p * self.gens[self.index[(key, +1)]] ** rest
            return p
        return self.gens[self.index[(key, +1)]] ** k

    # -- relations
    def _pairs(self):
        """(positive index, inverse index) pairs that multiply to 1."""
        out = []
        for key in self.keys:
            a, b = self.index.get((key, +1)), self.index.get((key, -1))
            if a is not None and b is not None:
                out.append((a, b))
        return out

    def _steps(self):
        return [self.index[(k, +1)] for k in self.keys
                if k[0] == "fn" and function_name(k[1]) == "Heaviside"]

    def _from_terms(self, terms: dict):
        return self.ctx.from_dict(terms) if terms else self.ctx.constant(0)

    def _numeric_roots(self):
        """(R index or None, V index or None, q, p) for the roots p^(1/q) of primes p."""
        out = []
        for key in self.keys:
            if key[0] == "pow" and isinstance(key[1], se.Integer):
                out.append((self.index.get((key, +1)), self.index.get((key, -1)),
                            self.atoms.info[key].q, int(key[1])))
        return out

    def cancel_pairs(self, poly):
        """Apply ``P·P⁻ = 1`` to every term, ``H² = H`` for step atoms, and ``r^q = p`` for
        roots of primes (so numeric radicals end with exponents below q; with both r and
        r⁻¹ present, r⁻¹ = r^(q−1)/p, everything in r). Each relation is a remainder of
        python-flint's division by its binomial (P·P⁻ − 1, H² − H, r^q − p), whose leading
        monomial is the first one in any order; no two share a variable, so one division
        each is the whole reduction."""
        pairs, steps, roots = self._pairs(), self._steps(), self._numeric_roots()
        if poly.is_zero() or (not pairs and not steps and not roots):
            return poly
        gens, one = self.gens, self.ctx.constant(1)
        in_r = set()
        for ri, vi, q, p in roots:
            if ri is not None and vi is not None:
                in_r.add((ri, vi))
                if poly.degrees()[vi]:
                    images = list(gens)
                    images[vi] = gens[ri] ** (q - 1) * fmpq(1, p)
                    poly = poly.compose(*images)
        # a division leaves the other relations' variables' degrees as they were (no two
        # share one), so the degrees are read once
        degrees = poly.degrees()
        for a, b in pairs:
            if (a, b) not in in_r and degrees[a] and degrees[b]:
                poly = divmod(poly, gens[a] * gens[b] - one)[1]
        for h in steps:
            if degrees[h] > 1:
                poly = divmod(poly, gens[h] ** 2 - gens[h])[1]
        for ri, vi, q, p in roots:
            k = ri if ri is not None else vi
            if degrees[k] >= q:
                poly = divmod(poly, gens[k] ** q - (p if ri is not None else fmpq(1, p)))[1]
        return poly

    def expand_linear(self, poly):
        """Substitute every abstracted linear form by its polynomial in the symbols."""
        lins = [k for k in self.keys if k[0] == "lin"]
        if not lins:
            return poly
        images = list(self.gens)
        for key in lins:
            terms = {}
            for m, c in key[1].as_coefficients_dict().items():
                e = [0] * len(self.gens)
                if isinstance(m, se.Symbol):
                    e[self.index[("sym", m)]] = 1
                elif m != 1:
                    raise Unsupported(f"a linear form with the term {m}")
                f = to_fraction(c)
                terms[tuple(e)] = fmpq(f.numerator, f.denominator)
            images[self.index[(key, +1)]] = self._from_terms(terms)
        return poly.compose(*images)

    def reduce(self, poly, budget: int = 2_000_000, quick: bool = False,
               divide: bool = True):
        """The relation-reduced normal form (zero iff ``poly`` vanishes as a rational
        function of the algebraic atoms), or None when the estimate exceeds ``budget``
        terms. Multiplies by powers of each base A to clear ``V_A`` and rewrites
        ``R_A^k`` with ``R_A^q = A``, outermost bases first.

        First, the plain inverses V = 1/A (a sigmoid's 1/(1 + e^{−a}), say) are divided out
        instead (:meth:`_divide_inverses`): a zero from that is a zero of the same class,
        and clearing every V by multiplying every term by A^c — one factor per atom, over
        all the terms — is what grows past memory on a block with many of them. A result
        that is not zero that way is reduced again the full way (``quick``: it is returned
        as None instead; ``divide=False``: the division is skipped, when a quick call has
        already found it is not zero)."""
        poly = self.cancel_pairs(poly)
        if not poly.is_zero() and any(k[0] == "lin" for k in self.keys):
            poly = self.cancel_pairs(self.expand_linear(poly))
        rules = self._inverse_rules() if divide else []
        if rules and not poly.is_zero():
            # a division that grows past this many terms is not the cheap step it is meant
            # to be: the full reduction below decides
            divided = self._divide_inverses(poly, rules, min(budget, QUICK_DIVISION_TERMS))
            if divided is not None:
                fast = self._clear(divided, budget, skip={key for key, *_ in rules})
                if fast is not None and fast.is_zero():
                    return fast
        if quick:
            return poly if poly.is_zero() else None
        return self._clear(poly, budget)

    def _inverse_rules(self) -> list:
        """Per pow atom with q = 1 (V = 1/A, A a polynomial with two or more terms, not
        constant in graded-lex order and free of V): (the atom, V's index, A's terms) — the
        relation V·A = 1, whose leading monomial is V times A's."""
        rules = []
        for key in self.keys:
            info = self.atoms.info[key]
            vi = self.index.get((key, -1))
            if key[0] != "pow" or info.q != 1 or info.opaque or vi is None:
                continue
            terms = self.expand_linear(self._base(key)).to_dict()
            if len(terms) < 2:
                continue
            lead = max(terms, key=lambda e: (sum(e), e))
            if sum(lead) == 0 or lead[vi]:
                continue
            rules.append((key, vi, terms))
        return rules

    def _divide_inverses(self, poly, rules, budget: int):
        """``poly`` reduced by the relations V·A − 1 (:meth:`_inverse_rules`): no term is
        left divisible by V·m. Each step is python-flint's multivariate division with
        remainder in the context's graded-lex order (V·m the relation's leading monomial),
        so the result is ``poly`` minus a multiple of a relation (the same function
        wherever V = 1/A); the divisions repeat until none changes the remainder. None past
        ``budget`` terms."""
        ctx, one, gens = self.ctx, self.ctx.constant(1), self.gens
        relations = [gens[vi] * ctx.from_dict(terms) - one for _, vi, terms in rules]
        f = poly
        changed = True
        while changed and not f.is_zero():
            changed = False
            for g in relations:
                q, r = divmod(f, g)
                if not q.is_zero():
                    changed = True
                    f = r
                    if len(f) > GROWTH * budget:
                        return None
        return None if len(f) > budget else f

    def _clear(self, poly, budget: int, skip=frozenset()):
        """:meth:`reduce`'s clearing of inverses and roots, bases outermost first (the
        atoms in ``skip`` left as they are)."""
        order = sorted((k for k in self.keys if k[0] == "pow" and k not in skip),
                       key=lambda k: -self._depth(k))
        for key in order:
            if poly.is_zero():
                return poly
            info = self.atoms.info[key]
            q = info.q
            ri, vi = self.index.get((key, +1)), self.index.get((key, -1))
            terms = poly.to_dict()
            vmax = max((e[vi] for e in terms), default=0) if vi is not None else 0
            rmax = max((e[ri] for e in terms), default=0) if ri is not None else 0
            if vmax == 0 and (rmax < q or info.opaque):
                continue
            c = -(-vmax // q)
            base = self.expand_linear(self._base(key))
            top = (c * q + rmax) // q
            if len(terms) * max(len(base), 1) ** top > budget:
                return None
            groups: dict = {}
            for exps, coeff in terms.items():
                e = list(exps)
                a = e[ri] if ri is not None else 0
                b = e[vi] if vi is not None else 0
                s, t = divmod(a - b + c * q, q)
                if ri is not None:
                    e[ri] = t
                if vi is not None:
                    e[vi] = 0
                groups.setdefault(s, {})[tuple(e)] = coeff
            poly = _balanced(
                (self._from_terms(g) * base ** s for s, g in groups.items()),
                lambda a, b: a + b, self.ctx.constant(0))
            poly = self.cancel_pairs(poly)
        return poly

    def _depth(self, key) -> int:
        info = self.atoms.info[key]
        if info.opaque:
            return 1
        inner = [k for k in self.atoms.scan(info.base) if k[0] == "pow"] \
            if info.base is not None else []
        return 1 + max((self._depth(k) for k in inner), default=0)

    def legend(self) -> dict:
        """Variable name → what it stands for (for displaying a residual)."""
        out = {}
        for key in self.keys:
            info = self.atoms.info[key]
            if key[0] == "pow":
                root = f"^(1/{info.q})" if info.q > 1 else ""
                if (key, +1) in self.index:
                    out[f"A{info.ident}"] = f"{info.label}{root}"
                out[f"A{info.ident}inv"] = f"{info.label}^(-1{'/' + str(info.q) if info.q > 1 else ''})"
            elif key[0] == "lin":
                out[f"A{info.ident}"] = info.label
            elif key[0] == "exp":
                m = key[1] if info.q == 1 else f"({key[1]})/{info.q}"
                out[f"A{info.ident}"] = f"exp({m})"
                out[f"A{info.ident}inv"] = f"exp(-{m})"
            else:
                out[f"A{info.ident}"] = info.label
        return out

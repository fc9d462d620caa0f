"""Stage 3 of the normal form, atoms: every non-polynomial subterm becomes an indeterminate.

:class:`Atoms` is the atom table of one obligation. It factors each power, exponential,
function and constant node into a coefficient, polynomial powers and rational powers of
atoms (:class:`Factored`), or rewrites it to an equal expression (:class:`Rewrite`);
abstracts linear forms and opaque sums; and records the side conditions (:class:`Condition`)
under which every rewrite is an identity. Steps ``H(u)`` get helpers of their own: the
factors of a step of a switched value, the value of a step in a case, the steps under a
node.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import symengine as se
import sympy as sp
from symengine.lib.symengine_wrapper import Constant as _Constant

from .budget import SMALL_BASE, Unsupported, _smaller_than, brief, function_name
from .exponents import exponent_classes, whole_classes
from .flint_poly import _se_rational, to_fraction


# ----- side conditions ---------------------------------------------------------------

@dataclass(frozen=True)
class Condition:
    """A domain condition ``expr != 0`` or ``expr > 0`` and why it is needed."""

    expr: se.Basic
    relation: str  # "!= 0" or "> 0"
    reason: str

    def text(self, limit: int = 400) -> str:
        op = "≠" if self.relation == "!= 0" else ">"
        return f"{brief(self.expr, limit)} {op} 0"


def holds_everywhere(cond: Condition, positive: frozenset) -> bool:
    """True when ``cond`` holds at every real point: its expression is a sum of positive
    terms (positive constants, exponentials, even powers, symbols assumed positive) with at
    least one strictly positive. Used to discharge e.g. softmax denominators and
    LayerNorm radicands with ε > 0."""
    terms = cond.expr.args if isinstance(cond.expr, se.Add) else (cond.expr,)
    strict = False
    for t in terms:
        sign = _term_sign(t, positive)
        if sign is None or sign < 0:
            return False
        strict = strict or sign > 0
    return strict


def _term_sign(t, positive):
    """+1 strictly positive, 0 non-negative, None unknown."""
    if isinstance(t, se.Number):
        return 1 if t > 0 else (0 if t == 0 else None)
    if isinstance(t, se.Symbol):
        return 1 if t in positive else None
    if t == se.pi or t == se.E:
        return 1
    if isinstance(t, se.Pow):
        b, e = t.args
        if b == se.E and not e.has(se.I):
            return 1
        if isinstance(e, se.Integer) and int(e) % 2 == 0:
            return 0
        s = _term_sign(b, positive)
        return 1 if s == 1 else None
    if isinstance(t, se.Mul):
        sign = 1
        for f in t.args:
            s = _term_sign(f, positive)
            if s is None:
                return None
            sign = min(sign, s)
        return sign
    if isinstance(t, se.Add):
        signs = [_term_sign(a, positive) for a in t.args]
        if any(s is None or s < 0 for s in signs):
            return None
        return max(signs)
    return None


# ----- steps H(u) ----------------------------------------------------------------------

def _is_step(node) -> bool:
    return isinstance(node, se.FunctionSymbol) and node.get_name() == "Heaviside"


def _step_factors(arg):
    """H(arg) as H(a)·Π H(b_j) when arg = a·Π H(b_j)^k_j (a step of a value that is itself
    switched by steps: PyTorch's relu backward ``grad * (result > 0)`` reads H(relu(x)) =
    H(x·H(x))), else None. With H(0) = 0 — a step is 1 where its argument is > 0, as the
    comparison ``> 0`` it comes from — this holds at every point: where some H(b_j) = 0 both
    sides are H(0) = 0. The side conditions become a ≠ 0 and b_j ≠ 0: where b_j < 0 the
    argument vanishes on a neighbourhood, so H(arg) is locally constant there too."""
    if _is_step(arg):
        return arg                                     # H(H(b)) = H(b)
    if isinstance(arg, se.Add):    # a step common to every term: a·H(b) expanded
        common = None
        for t in arg.args:
            fs = {f for f in (t.args if isinstance(t, se.Mul) else (t,)) if _is_step(f)}
            common = fs if common is None else common & fs
            if not common:
                return None
        factor = se.Mul(*common)
        rest = se.expand(se.Add(*[t / factor for t in arg.args]))
        return se.function_symbol("Heaviside", rest) * factor
    if not isinstance(arg, se.Mul):
        return None
    steps, rest = [], []
    for f in arg.args:
        base = f.args[0] if isinstance(f, se.Pow) and isinstance(f.args[1], se.Integer) \
            and int(f.args[1]) > 0 else f
        (steps if _is_step(base) else rest).append(base if _is_step(base) else f)
    if not steps:
        return None
    return se.function_symbol("Heaviside", se.Mul(*rest)) * se.Mul(*steps)


def nodes_under(e) -> set:
    """Every node of the DAG under ``e`` (``e`` included)."""
    seen, stack = set(), [e]
    while stack:
        n = stack.pop()
        if n not in seen:
            seen.add(n)
            stack.extend(n.args)
    return seen


def step_in_case(arg, c, value, known_positive=frozenset()):
    """H(arg) in the case c > 0 (value 1) or c < 0 (value 0), when the case decides it:
    arg = ±c + k with k of the right sign — a constant, or an expression declared > 0 (in
    the case d > 0 of a smooth L1 loss, d + β > 0 for β > 0; with hi − lo > 0 declared,
    x − hi > 0 gives x − lo > 0); else None."""
    for sign in (1, -1):
        k = se.expand(arg - sign * c)
        if isinstance(k, se.Number):
            k_sign = (to_fraction(k) > 0) - (to_fraction(k) < 0)
        elif k in known_positive:
            k_sign = 1
        elif se.expand(-k) in known_positive:
            k_sign = -1
        else:
            continue
        positive = sign * (1 if value else -1)   # the sign of sign·c in this case
        if positive > 0 and k_sign >= 0:
            return 1          # arg = (a positive value) + k ≥ … > 0
        if positive < 0 and k_sign <= 0:
            return 0          # arg = (a negative value) + k < 0
    return None


def innermost(h) -> bool:
    """Whether the step ``h`` has no step inside its own argument."""
    return not any(_is_step(n) for n in nodes_under(h.args[0]))


def steps_under(e) -> list:
    """The steps H(·) in the DAG under ``e``."""
    return [n for n in nodes_under(e) if _is_step(n)]


# ----- atom keys and factorisations ----------------------------------------------------
#
# Keys: ("exp", m)  — exp(m), m a monomial (1 for the constant e)
#       ("pow", A)  — A a canonical base (primitive expanded polynomial, or a prime)
#       ("fn", F)   — a function application with canonical argument, or a constant (pi)

@dataclass(frozen=True)
class Factored:
    """``coeff · Π poly_i^k_i · Π atom_j^f_j`` (k_i ≥ 0 integers, f_j rationals)."""

    coeff: Fraction = Fraction(1)
    polys: tuple = ()
    atoms: tuple = ()


@dataclass(frozen=True)
class Rewrite:
    """The node equals ``expr`` on the domain (e.g. ``cosh u = (e^u + e^-u)/2``)."""

    expr: se.Basic


ZERO = Factored(Fraction(0))
_NONSMOOTH_AT_ZERO = {"Abs", "sign", "Heaviside"}


@dataclass
class AtomInfo:
    key: tuple
    ident: int
    label: str
    base: se.Basic | None = None  # the base A of a ("pow", A) atom
    q: int = 1                    # the common root index q_A or exp denominator q_m
    neg: bool = False             # a negative power occurs (needs the inverse variable)
    opaque: bool = False          # a sum kept unexpanded (see Atoms.abstract)


class Atoms:
    """The atom table of one obligation: canonical keys, their root indices, side
    conditions. Shared by every entry of the obligation so atoms are named consistently."""

    def __init__(self, positive=(), known_positive=()):
        self.positive = frozenset(positive)
        #: expanded expressions declared > 0 (hi − lo for a clamp): a step of one is 1
        self.known_positive = frozenset(se.expand(e) for e in known_positive)
        self.memory_bytes = None    #: products that would not fit raise TooLarge
        #: (name, symbols) groups an entry too large to expand may be split over
        #: (:mod:`symgrad.prove.grid`)
        self.groups: list = []
        self.opaque: dict = {}      #: sum node -> its ("pow", A) key (see :meth:`abstract`)
        self.info: dict[tuple, AtomInfo] = {}
        self.conditions: dict[tuple, Condition] = {}
        self._factored: dict = {}
        self._canon: dict = {}
        self._scan: dict = {}
        self._degree: dict = {}
        self._exp_class: dict = {}   # monomial -> (class polynomial, ratio in it)
        self._linear: dict = {}
        self.memos: dict = {}  # conversion memos, one per variable layout
        self.memo_terms: dict = {}  # terms each memo holds

    # -- registration
    def _atom(self, key, label, base=None) -> AtomInfo:
        info = self.info.get(key)
        if info is None:
            info = self.info[key] = AtomInfo(key, len(self.info), label, base)
        return info

    def _condition(self, expr, relation, reason, key=None):
        """Record ``expr relation`` (deduplicated by the canonical ``key`` of expr)."""
        if key is None:
            key = self._sign_normal(expr)[0] if relation == "!= 0" else expr
        k = (key, relation)
        if k not in self.conditions:
            self.conditions[k] = Condition(expr, relation, reason)

    def _use(self, key, f: Fraction):
        info = self.info[key]
        info.q = info.q * f.denominator // math.gcd(info.q, f.denominator)
        if f < 0:
            info.neg = True

    # -- canonical forms
    def canon(self, u) -> se.Basic:
        c = self._canon.get(u)
        if c is None:
            c = self._canon[u] = se.expand(u)
        return c

    def _sign_normal(self, u):
        """(u', s) with u = s·u' and u' the canonical one of ±u."""
        u = self.canon(u)
        v = self.canon(-u)
        su, sv = str(u), str(v)
        return (u, 1) if (su.startswith("-"), su) <= (sv.startswith("-"), sv) else (v, -1)

    def _numeric_power(self, c: Fraction, r: Fraction) -> Factored:
        """c**r for a positive rational c, split into primes."""
        if r.denominator == 1:
            return Factored(c ** int(r))
        coeff, atoms = Fraction(1), []
        for n, sign in ((c.numerator, 1), (c.denominator, -1)):
            for p, e in sp.factorint(n).items():
                f = sign * e * r
                whole = math.floor(f)
                coeff *= Fraction(p) ** whole
                if f != whole:
                    key = ("pow", se.Integer(p))
                    self._atom(key, f"{p}", se.Integer(p))
                    atoms.append((key, f - whole))
        return Factored(coeff, (), tuple(atoms))

    @staticmethod
    def _flatten(b):
        """b = b0**m with m odd (so b > 0 iff b0 > 0): returns (b0, m)."""
        m = 1
        while isinstance(b, se.Pow) and isinstance(b.args[1], se.Integer) \
                and int(b.args[1]) % 2 != 0 and b.args[0] != se.E:
            m *= int(b.args[1])
            b = b.args[0]
        return b, m

    # -- factorisation of one Pow / function / constant node (memoised)
    def factor(self, node):
        f = self._factored.get(node)
        if f is None:
            f = self._factored[node] = self._factor(node)
        return f

    def _factor(self, node):
        if isinstance(node, se.Pow):
            b, e = node.args
            if b == se.E:
                return self._exp(e)
            if isinstance(e, (se.Integer, se.Rational)):
                return self._power(b, to_fraction(e))
            if isinstance(b, se.Number) and b > 0:
                return Rewrite(se.exp(e * se.log(b)))
            return self._generic(node)
        if node == se.E:
            return self._exp(se.Integer(1))
        if isinstance(node, _Constant):
            return self._generic(node)
        if isinstance(node, se.Derivative):
            fun = node.args[0]
            if function_name(fun) == "Heaviside":
                self._condition(self.canon(fun.args[0]), "!= 0", "step function at its jump")
                return ZERO
            raise Unsupported(f"cannot represent the derivative {node}")
        name = function_name(node)
        args = node.args
        if name == "DiracDelta" and len(args) == 1:
            self._condition(self.canon(args[0]), "!= 0", "step function at its jump")
            return ZERO
        if name in ("cosh", "sinh") and len(args) == 1:
            u = args[0]
            s = 1 if name == "cosh" else -1
            return Rewrite((se.exp(u) + s * se.exp(-u)) / 2)
        if name == "Heaviside":
            small = _smaller_than(args[0], SMALL_BASE)
            constant = args[0] if isinstance(args[0], se.Number) else \
                self.canon(args[0]) if small else None
            if isinstance(constant, se.Number):   # a step of a constant: 1 if > 0, else 0
                return Factored(Fraction(1 if to_fraction(constant) > 0 else 0))
            split = _step_factors(args[0])
            if split is None and small:
                split = _step_factors(self.canon(args[0]))
            if split is None:
                split = self._split_inner(args[0])
            if split is not None:    # H(a·H(b)) = H(a)·H(b), as H(0) = 0 (see below)
                return Rewrite(split)
            u, s = self._sign_normal(args[0])
            if isinstance(u, se.Number):          # a large argument that expands to one
                return Factored(Fraction(1 if s * to_fraction(u) > 0 else 0))
            if self.known_positive and (u in self.known_positive
                                        or self.canon(-u) in self.known_positive):
                sign = 1 if u in self.known_positive else -1
                return Factored(Fraction(1 if sign * s > 0 else 0))
            self._condition(u, "!= 0", "step function at its jump")
            canonical = se.function_symbol("Heaviside", u)
            if s < 0:
                return Rewrite(1 - canonical)
            if canonical != node:
                return Rewrite(canonical)
            return self._fn_atom(node)
        if len(args) == 1:
            # small arguments are keyed by their expansion, large ones by structure
            # (expanding tanh(k·(h + c·h³)) for a LayerNorm output h is hopeless)
            u = self.canon(args[0]) if _smaller_than(args[0], SMALL_BASE) else args[0]
            # SymEngine itself moves the sign out of odd functions: tanh(-u) = -tanh(u).
            canonical = se.function_symbol(name, u) if isinstance(node, se.FunctionSymbol) \
                else node.func(u)
            if name == "log":
                self._condition(u, "> 0", "logarithm argument")
            elif name in _NONSMOOTH_AT_ZERO:
                self._condition(u, "!= 0", f"{name} is not differentiable at 0")
            if canonical != node:
                return Rewrite(canonical)
            return self._fn_atom(node)
        return self._generic(node)

    def in_case(self, steps, c, value) -> dict:
        """The steps among ``steps`` that the case c > 0 (value 1) or c < 0 (value 0)
        decides, each → its value (see :func:`step_in_case`)."""
        out = {}
        for n in steps:
            known = step_in_case(self.canon(n.args[0]), c, value, self.known_positive)
            if known is not None:
                out[n] = se.Integer(known)
        return out

    def _split_inner(self, arg):
        """H(arg) for an argument that holds steps, by the cases of its innermost one H(c):
        H(c)·H(arg|c>0) + (1 − H(c))·H(arg|c<0), an identity wherever c ≠ 0 (a side
        condition H(c) carries). Without it, x − max(x, z) = (x − z)(1 − H(x − z)) — zero on
        a whole half-space — would meet the sign rule H(−u) = 1 − H(u), which needs u ≠ 0,
        and its condition would cut that half-space away."""
        steps = steps_under(arg)
        inner = [h for h in steps if innermost(h)]
        if not inner:
            return None
        c, _ = self._sign_normal(min(inner, key=str).args[0])
        cases = [se.function_symbol("Heaviside", arg.xreplace(self.in_case(steps, c, value)))
                 for value in (1, 0)]
        h = se.function_symbol("Heaviside", c)
        return h * cases[0] + (1 - h) * cases[1]

    def _fn_atom(self, node) -> Factored:
        key = ("fn", node)
        self._atom(key, brief(node))
        return Factored(Fraction(1), (), ((key, Fraction(1)),))

    _generic = _fn_atom

    def prepare_exponents(self, exprs):
        """Record the exponent classes of ``exprs`` (see
        :func:`~symgrad.prove.exponents.exponent_classes`). Exponents met later that do not
        hold a whole class fall back to monomials."""
        self._exp_class.update(exponent_classes(exprs, self.canon))

    def _exp(self, e) -> Factored:
        u = self.canon(e)
        coeff, polys, atoms = Fraction(1), (), []
        terms = {m: to_fraction(c) for m, c in u.as_coefficients_dict().items()}
        for poly, c in whole_classes(terms, self._exp_class):
            # a whole class, in its fixed proportion: one atom exp(poly)^c
            key = ("exp", poly)
            self._atom(key, f"exp({poly})")
            atoms.append((key, c))
        for m, c in terms.items():
            if function_name(m) == "log" and len(m.args) == 1:  # exp(c·log v) = v^c
                self._condition(self.canon(m.args[0]), "> 0", "logarithm argument")
                f = self._power(m.args[0], c)
                coeff, polys = coeff * f.coeff, polys + f.polys
                atoms.extend(f.atoms)
                continue
            key = ("exp", m)
            self._atom(key, f"exp({m})")
            atoms.append((key, c))
        return Factored(coeff, polys, tuple(atoms))

    def _power(self, b, r: Fraction) -> Factored:
        root = r.denominator != 1
        b, m = self._flatten(b)
        r = r * m
        if isinstance(b, se.Number):
            c = to_fraction(b)
            if c == 0:
                raise Unsupported("a power of zero")
            if c < 0 and r.denominator != 1:
                raise Unsupported(f"a root of the negative number {b}")
            sign = (-1) ** r.numerator if c < 0 else 1
            num = self._numeric_power(abs(c), r)
            return Factored(sign * num.coeff, (), num.atoms)
        # Small bases are keyed by their expansion; large ones by their structure
        # (SymEngine's structural equality): expanding a LayerNorm radicand at (16, 64)
        # costs more than the whole proof. Large bases equal only after expansion are
        # reconciled by clearing denominators in reduce().
        A = self.canon(b) if _smaller_than(b, SMALL_BASE) else b
        if root:
            self._condition(b, "> 0", "radicand", key=A)
            if r.denominator != 1:
                key = ("pow", A)
                self._atom(key, f"({brief(b)})", A)
                return Factored(Fraction(1), (), ((key, r),))
        if r > 0:  # a polynomial power
            return Factored(Fraction(1), ((A, int(r)),), ())
        key = ("pow", A)
        self._atom(key, f"({brief(b)})", A)
        self._condition(b, "!= 0", "denominator", key=A)
        return Factored(Fraction(1), (), ((key, r),))

    # -- linear forms: abstracted as atoms keyed by their canonical form
    def degree(self, node):
        """Polynomial degree in the symbols, or None if ``node`` holds an atom."""
        d = self._degree.get(node, -1)
        if d != -1:
            return d
        if isinstance(node, se.Symbol):
            d = 1
        elif isinstance(node, se.Number):
            d = 0
        elif isinstance(node, (se.Add, se.Mul)):
            ds = [self.degree(a) for a in node.args]
            d = None if None in ds else (max(ds) if isinstance(node, se.Add) else sum(ds))
        elif isinstance(node, se.Pow) and isinstance(node.args[1], se.Integer) \
                and int(node.args[1]) >= 0 and node.args[0] != se.E:
            b = self.degree(node.args[0])
            d = None if b is None else b * int(node.args[1])
        else:
            d = None
        self._degree[node] = d
        return d

    def sibling(self) -> "Atoms":
        """A fresh table with this one's positivity, memory limit and grid groups: for a
        pass over other atoms (sums kept whole, tape values as indeterminates)."""
        out = Atoms(positive=self.positive, known_positive=self.known_positive)
        out.memory_bytes, out.groups = self.memory_bytes, self.groups
        return out

    def linear(self, node):
        """For a sum of degree 1 in ≥ 2 symbols: (scale, key) with node = scale·L̂ and L̂ the
        canonical form (first symbol's coefficient 1). Abstracting L̂ as one indeterminate is
        sound (any subexpression may be), and keeps products of sums such as
        (x_k − μ)(x_e − μ) from expanding; :meth:`EntryForm.reduce` substitutes it back."""
        if node in self._linear:
            return self._linear[node]
        out = None
        if isinstance(node, se.Add) and self.degree(node) == 1:
            terms = self.canon(node).as_coefficients_dict()
            syms = sorted((m for m in terms if isinstance(m, se.Symbol)), key=str)
            if len(syms) >= 2 or (syms and terms.get(se.Integer(1), 0) != 0):
                lead = to_fraction(terms[syms[0]])
                L = self.canon(node / _se_rational(lead))
                key = ("lin", L)
                self._atom(key, f"({L})", L)
                out = (lead, key)
        self._linear[node] = out
        return out

    # -- opaque sums
    def abstract(self, values) -> int:
        """Keep the given values that are sums holding an atom (a tape value such as an FFN
        pre-activation u, whose u² and u³ would otherwise expand) unexpanded: the sum A
        becomes the base of a ``("pow", A)`` atom whose variable is A itself (A·A⁻¹ = 1
        still cancels). Sound as every abstraction — a polynomial that is zero with A free
        is zero at A's value — but incomplete where the identity needs what is inside A;
        :func:`symgrad.prove.check.check` then normal-forms the entry without it. Only the
        values themselves are marked, not their subexpressions. Returns how many."""
        for node in values:
            if isinstance(node, se.Add) and self.degree(node) is None:
                self.opaque[node] = None
                self.opaque_key(node)   # before any power of it is met
        return len(self.opaque)

    def opaque_key(self, node):
        key = self.opaque[node]
        if key is None:
            A = self.canon(node) if _smaller_than(node, SMALL_BASE) else node
            key = self.opaque[node] = ("pow", A)
            if A is not node:
                self.opaque[A] = key
            self._atom(key, f"({brief(node)})", A).opaque = True
        return key

    # -- the variables an expression needs (memoised over shared subtrees)
    def scan(self, node) -> frozenset:
        """Symbols and atom keys under ``node``; registers atoms and root indices."""
        got = self._scan.get(node)
        if got is not None:
            return got
        if isinstance(node, se.Symbol):
            got = frozenset((("sym", node),))
        elif isinstance(node, se.Number):
            if not isinstance(node, (se.Integer, se.Rational, se.RealNumber)):
                raise Unsupported(f"the number {node} is not real")
            got = frozenset()
        elif isinstance(node, se.Add) and self.linear(node) is not None:
            key = self.linear(node)[1]
            got = frozenset(((key,),)) | frozenset(("sym", v) for v in key[1].free_symbols)
            got = frozenset(g if g[0] == "sym" else g[0] for g in got)
        elif node in self.opaque:
            key = self.opaque_key(node)
            for a in node.args:  # registers the side conditions inside
                self.scan(a)
            got = frozenset((key,))
        elif isinstance(node, (se.Add, se.Mul)):
            got = frozenset().union(*(self.scan(a) for a in node.args))
        elif isinstance(node, se.Pow) and isinstance(node.args[1], se.Integer) \
                and int(node.args[1]) >= 0 and node.args[0] != se.E:
            got = self.scan(node.args[0])
        else:
            f = self.factor(node)
            if isinstance(f, Rewrite):
                got = self.scan(f.expr)
            else:
                parts = [self.scan(b) for b, _ in f.polys]
                for key, ex in f.atoms:
                    self._use(key, ex)
                    info = self.info[key]
                    parts.append(frozenset((key,)))
                    if info.base is not None and not isinstance(info.base, se.Number):
                        parts.append(self.scan(info.base))
                    elif key[0] == "fn":
                        parts.extend(self.scan(a) for a in key[1].args)
                    elif key[0] == "exp":
                        parts.append(self.scan(key[1]))
                got = frozenset().union(*parts)
        self._scan[node] = got
        return got

    def side_conditions(self) -> list[Condition]:
        return list(self.conditions.values())

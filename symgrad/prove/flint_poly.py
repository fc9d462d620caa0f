"""Stage 1 of the normal form, the arithmetic of its FLINT polynomials.

Coefficients are exact: :func:`to_fraction` reads a SymEngine number as a Fraction (and
:func:`_se_rational` writes one back); :func:`term_limit` is the memory model of an
``fmpq_mpoly`` term, which bounds the products a checking process may form; and
:func:`_balanced` folds sums and products pairwise, so operands grow evenly.
"""
from __future__ import annotations

import os
from fractions import Fraction

import symengine as se
import sympy as sp

from .budget import Unsupported

#: bytes one term of an fmpq_mpoly takes per 8 variables (one packed 8-bit exponent word)
#: and on top (coefficient, bookkeeping); a product is refused when it and the polynomials
#: already held would not fit 3 times (operands, result, FLINT's work space)
BYTES_PER_8_VARS, BYTES_PER_TERM, HEADROOM = 8, 48, 3


def term_limit(memory_bytes: int, nvars: int) -> int:
    """How many terms a product may have in a process with ``memory_bytes`` — of which what
    the process's address space already holds (earlier stages, freed memory the allocator
    keeps) is not available."""
    per_term = BYTES_PER_8_VARS * -(-max(nvars, 1) // 8) + BYTES_PER_TERM
    free = max(memory_bytes - address_space_bytes(), memory_bytes // 8)
    return max(free // (per_term * HEADROOM), 1)


def address_space_bytes() -> int:
    """This process's virtual size (what RLIMIT_AS limits), 0 where /proc has none."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def to_fraction(n) -> Fraction:
    """An exact Fraction from a SymEngine number (floats exactly)."""
    if isinstance(n, int):
        return Fraction(n)
    if isinstance(n, se.Integer):
        return Fraction(int(n))
    if isinstance(n, se.Rational):
        p, q = n.get_num_den()
        return Fraction(int(p), int(q))
    if isinstance(n, se.RealDouble):
        return Fraction(float(n))
    if isinstance(n, se.RealNumber):
        return Fraction(str(sp.Rational(n._sympy_())))
    raise Unsupported(f"the number {n} is not rational")


def _se_rational(f: Fraction) -> se.Basic:
    return se.Rational(f.numerator, f.denominator)


def _balanced(items, op, unit):
    items = list(items)
    if not items:
        return unit
    while len(items) > 1:
        nxt = [op(items[i], items[i + 1]) for i in range(0, len(items) - 1, 2)]
        if len(items) % 2:
            nxt.append(items[-1])
        items = nxt
    return items[0]

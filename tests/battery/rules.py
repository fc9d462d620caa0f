"""Every rule of the battery, and the table of their sources."""
from __future__ import annotations

from . import rules_autograd, rules_jax, rules_tinygrad, rules_torch
from .registry import REPOS

RULES = rules_torch.RULES + rules_autograd.RULES + rules_jax.RULES + rules_tinygrad.RULES

#: rule name -> (library, repository, "file: op — formula"), the citation of every rule
SOURCES = {r.name: (r.library, REPOS[r.library], r.source) for r in RULES}

#: (rule, twin) pairs: every twin must be REFUTED with a confirmed witness
TWINS = [(r, t) for r in RULES for t in r.twins]


def twin_id(rule, twin) -> str:
    return f"{rule.name}~{twin.label}"

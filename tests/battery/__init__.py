"""A battery of real VJP rules, as PyTorch, HIPS autograd, JAX and tinygrad write them.

Every rule is written once, against a namespace ``F`` that is either symbolic
(:data:`namespaces.SYMBOLIC`, symgrad's elementwise functions) or numeric
(:data:`namespaces.NUMERIC`, mpmath at high precision). symgrad must PROVE each correct
rule and REFUTE each wrong twin; every refutation's witness is then confirmed by a finite
difference computed with mpmath, independently of symgrad's symbolic machinery.
The sources are listed in ``docs/battery.md``.
"""

"""A block built from symgrad's ops and this project's rms_norm: x ↦ rms_norm(x W) + x."""
import symgrad as sg

from . import rules  # noqa: F401  (registers rms_norm)


def norm_block(n: int = 2, d: int = 3) -> sg.Graph:
    g = sg.Graph([("x", (n, d)), ("W", (d, d)), ("w", (d,))], name="norm_block")
    h = g.add("matmul", 0, 1, name="h")
    r = g.add("my_rms_norm", h, 2, name="normed")
    g.add("add", r, 0, name="out")
    return g

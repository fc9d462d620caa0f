"""Row reductions (linear): row_sum, row_mean over the last axis of a 2-D input."""
import numpy as np

from . import defop, need_rank


def _row_sum(x):
    """Σ_j x[i,j]: (m,n) -> (m,)."""
    return x.sum(axis=1)


def _row_sum_vjp(g, out, x):
    return (np.repeat(g[:, None], x.shape[1], axis=1),)


def _row_mean(x):
    """(1/n)·Σ_j x[i,j]: (m,n) -> (m,)."""
    return x.sum(axis=1) / x.shape[1]


def _row_mean_vjp(g, out, x):
    return (np.repeat(g[:, None], x.shape[1], axis=1) / x.shape[1],)


def _rows(op):
    def rule(s, **_):
        need_rank(op, "x", s, (2,))
        return (s[0],)
    return rule


defop("row_sum", _row_sum, _row_sum_vjp, args=("x",), signature="x (m,n) -> (m,)",
      linearity="linear", out_shape=_rows("row_sum"), examples=[[(2, 3)], [(3, 1)]])
defop("row_mean", _row_mean, _row_mean_vjp, args=("x",), signature="x (m,n) -> (m,)",
      linearity="linear", out_shape=_rows("row_mean"), examples=[[(2, 3)], [(1, 4)]])

"""tinygrad's rules: the ``pm_gradient`` table of tinygrad/mixin/gradient.py (``ctx`` is the
output's cotangent, ``ret`` the op's value), translated op by op."""
from __future__ import annotations

import math

import numpy as np

from .registry import Table, Twin, arr, expand, nonzero, positive

G = Table("tinygrad")
PM = "tinygrad/mixin/gradient.py: pm_gradient"
V2 = [(2,)]
V3 = [(3,)]

G.add("tinygrad_reciprocal", f"{PM} RECIPROCAL — (-ctx * ret * ret,)", V2,
      lambda F, x: 1 / x,
      lambda F, ctx, ret, x: (-ctx * ret * ret,),
      lambda F, ctx, ret, x: (ctx * ret * ret,), "sign flip")

G.add("tinygrad_sin", f"{PM} SIN — ((math.pi/2 - ret.src[0]).sin() * ctx,)", V2,
      lambda F, x: F.sin(x),
      lambda F, ctx, ret, x: (F.sin(F.pi / 2 - x) * ctx,),
      lambda F, ctx, ret, x: (F.sin(x - F.pi / 2) * ctx,), "x - pi/2 (sign)",
      note="pi/2 written exactly; math.pi / 2 inside sin makes the rule one ulp off",
      extra=[Twin("math.pi / 2 as a double inside sin",
                  lambda F, ctx, ret, x: (F.sin(math.pi / 2 - x) * ctx,), ulp=True,
                  label="one_ulp")])

G.add("tinygrad_log2", f"{PM} LOG2 — (ctx / (ret.src[0] * math.log(2)),)", V2,
      lambda F, x: F.log(x) / F.log(2),
      lambda F, ctx, ret, x: (ctx / (x * F.log(2)),),
      lambda F, ctx, ret, x: (ctx / x,), "drops log 2", domain=positive,
      extra=[Twin("math.log(2) as a double", lambda F, ctx, ret, x: (ctx / (x * math.log(2)),),
                  ulp=True, label="one_ulp")])

G.add("tinygrad_exp2", f"{PM} EXP2 — (ret * ctx * math.log(2),)", V2,
      lambda F, x: 2 ** x,
      lambda F, ctx, ret, x: (ret * ctx * F.log(2),),
      lambda F, ctx, ret, x: (ret * ctx / F.log(2),), "divides by log 2",
      extra=[Twin("math.log(2) as a double", lambda F, ctx, ret, x: (ret * ctx * math.log(2),),
                  ulp=True, label="one_ulp")])

G.add("tinygrad_sqrt", f"{PM} SQRT — (ctx / (ret*2),)", V2,
      lambda F, x: F.sqrt(x),
      lambda F, ctx, ret, x: (ctx / (ret * 2),),
      lambda F, ctx, ret, x: (ctx / ret,), "drops the 2", domain=positive)


def _pow_vjp(mode):
    def vjp(F, ctx, ret, b, e):
        d_base = ctx * F.where(F.eq(e, 0), e, e * b ** (e - 1))
        if mode == "as written":
            log2_b = F.log(b) / F.log(2)                 # tinygrad's b.log2()
            d_exp = ctx * (ret * log2_b * math.log(2.0))
        elif mode == "wrong":
            d_exp = ctx * (ret * F.log(b) / F.log(2))
        else:
            d_exp = ctx * (ret * (F.log(b) / F.log(2)) * F.log(2))
        return (d_base, d_exp)
    return vjp


G.add("tinygrad_pow", f"{PM} POW — ctx * e.eq(0).where(e, e*b.pow(e-1)), "
      "ctx * ret * b.log2() * math.log(2.0)", [(2,), (2,)],
      lambda F, b, e: b ** e, _pow_vjp("exact"), _pow_vjp("wrong"), "log2 without the ln 2 factor",
      names=("b", "e"), domain=lambda b, e: positive(b),
      note="the b == 0 branch (with its -inf constant) is outside the declared domain b > 0 and "
           "left out; math.log(2.0) written exactly, the double is the one-ulp twin",
      extra=[Twin("math.log(2.0) as a double", _pow_vjp("as written"), ulp=True, label="one_ulp")])


def _max_vjp(swap=False):
    def vjp(F, ctx, ret, x, y):
        half = ctx * 0.5
        dx = F.where(F.gt(x, y), ctx, F.where(F.eq(x, y), half, 0 * ctx))
        dy = F.where(F.lt(x, y), ctx, F.where(F.eq(x, y), half, 0 * ctx))
        return (dy, dx) if swap else (dx, dy)
    return vjp


G.add("tinygrad_max", f"{PM} MAX — (x>y).where(ctx, x.eq(y).where(ctx * 0.5, 0)), and for y",
      [(2,), (2,)],
      lambda F, x, y: F.maximum(x, y), _max_vjp(), _max_vjp(True), "cotangents swapped")

G.add("tinygrad_mul", f"{PM} MUL — (ret.src[1]*ctx, ret.src[0]*ctx)", [(2,), (2,)],
      lambda F, x, y: x * y,
      lambda F, ctx, ret, x, y: (y * ctx, x * ctx),
      lambda F, ctx, ret, x, y: (x * ctx, y * ctx), "operands swapped")

G.add("tinygrad_add", f"{PM} ADD — (ctx, ctx)", [(2,), (2,)],
      lambda F, x, y: x + y,
      lambda F, ctx, ret, x, y: (ctx, ctx),
      lambda F, ctx, ret, x, y: (ctx, -ctx), "the SUB rule")

_COND = arr([True, False, True]).astype(bool)

G.add("tinygrad_where", f"{PM} WHERE — (None, c.where(ctx, 0), c.where(0, ctx))", [(3,), (3,)],
      lambda F, x, y: np.where(_COND, x, y),
      lambda F, ctx, ret, x, y: (np.where(_COND, ctx, 0), np.where(_COND, 0, ctx)),
      lambda F, ctx, ret, x, y: (np.where(_COND, 0, ctx), np.where(_COND, ctx, 0)),
      "branches swapped", note="a fixed condition")

G.add("tinygrad_reduce_add", f"{PM} REDUCE (Ops.ADD) — ctx._broadcast_to(src.shape), axis=1 "
      "keepdim",
      [(2, 3)],
      lambda F, x: x.sum(axis=1, keepdims=True),
      lambda F, ctx, ret, x: (expand(ctx, x.shape),),
      lambda F, ctx, ret, x: (expand(ctx, x.shape) / 3,), "mean instead of sum")


def _reduce_max_vjp(F, ctx, ret, x):
    mask = F.where(F.eq(x, ret), 1, 0)
    return ((mask / mask.sum()) * expand(ctx, x.shape),)


G.add("tinygrad_reduce_max", f"{PM} REDUCE (Ops.MAX) — (mask / mask.sum()) * ctx, mask = "
      "src.eq(ret)",
      V3, lambda F, x: arr([F.maximum(F.maximum(x[0], x[1]), x[2])]),
      _reduce_max_vjp,
      lambda F, ctx, ret, x: (expand(ctx, x.shape),), "no mask")


def _reduce_mul_vjp(F, ctx, ret, x):
    is_zero = F.eq(x, 0)
    safe_x = F.where(is_zero, 1, x)
    zero_count = F.where(is_zero, 1, 0).sum()
    others = arr([safe_x[0] * safe_x[1] * safe_x[2]])
    return (expand(ctx, x.shape) * F.where(is_zero, F.where(F.eq(zero_count, 1), others, 0),
                                           ret / safe_x),)


G.add("tinygrad_reduce_mul", f"{PM} REDUCE (Ops.MUL) — reduce_gradient: ctx * is_zero.where(..., "
      "ret/safe_x)",
      V3, lambda F, x: arr([x[0] * x[1] * x[2]]),
      _reduce_mul_vjp,
      lambda F, ctx, ret, x: (expand(ctx * ret, x.shape),), "drops / safe_x",
      domain=nonzero)

G.add("tinygrad_permute", f"{PM} PERMUTE — ctx.permute(argsort(ret.marg))", [(2, 2, 2)],
      lambda F, x: x.transpose(1, 2, 0).copy(),
      lambda F, ctx, ret, x: (ctx.transpose(tuple(np.argsort((1, 2, 0)))),),
      lambda F, ctx, ret, x: (ctx.transpose(1, 2, 0),), "marg instead of argsort(marg)")

G.add("tinygrad_flip", f"{PM} FLIP — ctx.flip([i for i, x in enumerate(ret.marg) if x])", [(2, 3)],
      lambda F, x: x[:, ::-1].copy(),
      lambda F, ctx, ret, x: (ctx[:, ::-1],),
      lambda F, ctx, ret, x: (ctx[::-1, :],), "flipped along the other axis")

G.add("tinygrad_reshape", f"{PM} RESHAPE — ctx.reshape(ret.src[0].shape)", [(2, 3)],
      lambda F, x: x.reshape(3, 2),
      lambda F, ctx, ret, x: (ctx.reshape(2, 3),),
      lambda F, ctx, ret, x: (ctx.T,), "transpose instead of reshape")

G.add("tinygrad_pad", f"{PM} PAD — ctx.shrink((p[0], s+p[0]))", V3,
      lambda F, x: np.concatenate([arr([0]), x, arr([0, 0])]),
      lambda F, ctx, ret, x: (ctx[1:1 + 3],),
      lambda F, ctx, ret, x: (ctx[0:3],), "shrink window off by one",
      note="pad (1, 2) with zeros")


def _shrink_vjp(offset):
    def vjp(F, ctx, ret, x):
        out = np.zeros(4, dtype=object)
        out[offset:offset + 2] = ctx
        return (out,)
    return vjp


G.add("tinygrad_shrink", f"{PM} SHRINK — ctx.pad((p[0], s-p[0]-p[1]))", [(4,)],
      lambda F, x: x[1:3].copy(), _shrink_vjp(1), _shrink_vjp(0), "padded at the wrong offset",
      note="shrink to [1, 3) of 4")

G.add("tinygrad_expand", "tinygrad/gradient.py: pm_gradient EXPAND — ctx.r(Ops.ADD, axes where "
      "s != n)",
      [(3, 1)],
      lambda F, x: expand(x, (3, 2)),
      lambda F, ctx, ret, x: (ctx.sum(axis=1, keepdims=True),),
      lambda F, ctx, ret, x: (ctx.sum(axis=1, keepdims=True) / 2,), "mean instead of sum",
      note="the reduce is the older gradient.py spelling; mixin/gradient.py leaves it to "
           "the range machinery")


def _sigmoid_forward(F, x):       # Tensor.sigmoid: (1 + (x * (-1/math.log(2))).exp2()).reciprocal()
    return 1 / (1 + 2 ** (x * (-1 / math.log(2))))


def _sigmoid_chain(ln2):
    """The VJP tinygrad derives for Tensor.sigmoid: RECIPROCAL, ADD, EXP2 and MUL chained."""
    def vjp(F, ctx, ret, x):
        c = -1 / math.log(2)
        e = 2 ** (x * c)
        ct_den = -ctx * ret * ret                  # RECIPROCAL
        ct_e = ct_den                              # ADD
        ct_arg = e * ct_e * ln2(F)                 # EXP2
        return (ct_arg * c,)                       # MUL by the constant
    return vjp


G.add("tinygrad_sigmoid", "tinygrad/tensor.py: Tensor.sigmoid, differentiated through "
      f"{PM} RECIPROCAL, ADD, EXP2, MUL", V2,
      _sigmoid_forward, _sigmoid_chain(lambda F: F.log(2)),
      lambda F, ctx, ret, x: (-ctx * ret * 2 ** (x * (-1 / math.log(2))) * F.log(2)
                              * (-1 / math.log(2)),),
      "RECIPROCAL's ret² dropped to ret",
      note="-1/math.log(2) is the same double in forward and rule (fine); EXP2's math.log(2) "
           "is written exactly and the double is the one-ulp twin",
      extra=[Twin("EXP2's math.log(2) as a double", _sigmoid_chain(lambda F: math.log(2)),
                  ulp=True, label="one_ulp")])

RULES = G.rules

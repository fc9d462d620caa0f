"""symgrad.torch: custom autograd.Functions and PyTorch's own backward, proved or refuted.

* Function pairs: each correct backward is PROVED, its wrong twin REFUTED with a witness
  naming the input whose gradient is wrong.
* Bad input: not a Function, untraceable (value-dependent) code, an op missing from the table.
* check_module: PyTorch's own derivative formulas (Linear, LayerNorm, GELU, softmax,
  attention, MultiheadAttention) PROVED.
* Table faithfulness: the ATen table (symgrad/frameworks/aten.py), run on floats, computes
  what the real kernels compute — forward and backward graphs alike.
* Teeth: a wrong entry for native_layer_norm_backward makes LayerNorm REFUTED.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is an optional extra: pip install 'symgrad[torch]'")

import torch.nn.functional as F  # noqa: E402

import symgrad as sg  # noqa: E402
import symgrad.torch  # noqa: E402,F401  (sg.torch)
from symgrad.frameworks import aten  # noqa: E402
from symgrad.frameworks.torch import _trace, interpret  # noqa: E402

PROVED, REFUTED = sg.Verdict.PROVED, sg.Verdict.REFUTED


# --------------------------------------------------------------------------------------
# custom autograd.Functions: (correct, wrong twin, shapes, args, input the twin gets wrong)

class Tanh(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        y = torch.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * (1 - y * y)


class TanhWrong(Tanh):
    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * (1 - y)                      # should be 1 − y²


class Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w)
        return x @ w.t() + b

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        return g @ w, g.t() @ x, g.sum(0)


class LinearWrong(Linear):
    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        return g @ w, g.t() @ x, g.mean(0)      # the bias gradient sums over the batch


class ProdSum(torch.autograd.Function):
    """Two outputs: (x·y, x + y)."""
    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(x, y)
        return x * y, x + y

    @staticmethod
    def backward(ctx, g_prod, g_sum):
        x, y = ctx.saved_tensors
        return g_prod * y + g_sum, g_prod * x + g_sum


class ProdSumWrong(ProdSum):
    @staticmethod
    def backward(ctx, g_prod, g_sum):
        x, y = ctx.saved_tensors
        return g_prod * y + g_sum, g_prod * x   # drops the second output's share for y


class Scale(torch.autograd.Function):
    """A non-tensor argument: y = x·scale (scale passed through args=)."""
    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x * scale

    @staticmethod
    def backward(ctx, g):
        return g * ctx.scale, None


class ScaleWrong(Scale):
    @staticmethod
    def backward(ctx, g):
        return g, None                          # forgets the scale


class LayerNorm(torch.autograd.Function):
    """LayerNorm over the last dim with weight and bias, backward written by hand."""
    @staticmethod
    def forward(ctx, x, weight, bias):
        mean = x.mean(-1, keepdim=True)
        var = ((x - mean) ** 2).mean(-1, keepdim=True)
        rstd = torch.rsqrt(var + 1e-5)
        xhat = (x - mean) * rstd
        ctx.save_for_backward(x, weight, xhat, rstd)
        return xhat * weight + bias

    @staticmethod
    def backward(ctx, g):
        x, weight, xhat, rstd = ctx.saved_tensors
        gh = g * weight
        dx = rstd * (gh - gh.mean(-1, keepdim=True) - xhat * (gh * xhat).mean(-1, keepdim=True))
        return dx, (g * xhat).sum(0), g.sum(0)


class LayerNormWrongWeight(LayerNorm):
    """The weight gradient from x·rstd instead of x̂ = (x − mean)·rstd. With
    normalized_shape (1,), x̂ ≡ 0 and the right weight gradient is Σ g·x̂ = 0, so this
    differs; cf. https://github.com/pytorch/pytorch/issues/188375 (LayerNorm with
    normalized_shape of size 1 and its weight gradient)."""
    @staticmethod
    def backward(ctx, g):
        x, weight, xhat, rstd = ctx.saved_tensors
        gh = g * weight
        dx = rstd * (gh - gh.mean(-1, keepdim=True) - xhat * (gh * xhat).mean(-1, keepdim=True))
        return dx, (g * x * rstd).sum(0), g.sum(0)


FUNCTION_PAIRS = {
    "tanh": (Tanh, TanhWrong, [(2, 3)], (), "x"),
    "linear": (Linear, LinearWrong, [(2, 3), (4, 3), (4,)], (), "b"),
    "two-outputs": (ProdSum, ProdSumWrong, [(3,), (3,)], (), "y"),
    "scale-arg": (Scale, ScaleWrong, [(2, 2)], (2.5,), "x"),
    "layernorm-d1": (LayerNorm, LayerNormWrongWeight, [(2, 1), (1,), (1,)], (), "weight"),
}


@pytest.mark.parametrize("case", FUNCTION_PAIRS, ids=list(FUNCTION_PAIRS))
def test_function_correct_is_proved_and_wrong_twin_refuted(case):
    right, wrong, shapes, args, bad_input = FUNCTION_PAIRS[case]
    r = sg.torch.check_function(right, shapes=shapes, args=args)
    assert r.verdict is PROVED, r
    r = sg.torch.check_function(wrong, shapes=shapes, args=args)
    assert r.verdict is REFUTED, r
    assert r.witness is not None and r.witness.input == bad_input, r.witness
    assert r.witness.expected != r.witness.got


def test_layernorm_function_d4_is_proved():
    r = sg.torch.check_function(LayerNorm, shapes=[(2, 4), (4,), (4,)])
    assert r.verdict is PROVED, r


def test_names_default_to_the_forward_signature_and_can_be_given():
    r = sg.torch.check_function(LinearWrong, shapes=[(2, 3), (4, 3), (4,)],
                                names=["inp", "weight", "bias"])
    assert r.verdict is REFUTED and r.witness.input == "bias"


# --------------------------------------------------------------------------------------
# bad input

class NotAFunction:
    @staticmethod
    def forward(ctx, x):
        return x


class Branches(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        if x.sum() > 0:                         # depends on the values: not traceable
            return x * 2
        return x

    @staticmethod
    def backward(ctx, g):
        return g


class CumMax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.cummax(x, 0).values

    @staticmethod
    def backward(ctx, g):
        return g


def test_not_a_function_class_is_input_error():
    with pytest.raises(sg.InputError, match="not a torch.autograd.Function"):
        sg.torch.check_function(NotAFunction, shapes=[(2,)])
    with pytest.raises(sg.InputError):
        sg.torch.check_function(torch.tanh, shapes=[(2,)])


def test_value_dependent_branch_is_input_error():
    with pytest.raises(sg.InputError, match="cannot trace"):
        sg.torch.check_function(Branches, shapes=[(3,)])


def test_op_missing_from_the_table_is_rule_error_naming_it():
    assert not any(k.startswith("cummax.") for k in aten.ATEN)   # the premise of this test
    with pytest.raises(sg.RuleError, match=r"aten\.cummax"):
        sg.torch.check_function(CumMax, shapes=[(3,)])


# --------------------------------------------------------------------------------------
# PyTorch's own backward: check_module

class SelfAttention(torch.nn.Module):
    """nn.MultiheadAttention as self-attention, so its parameters become inputs."""
    def __init__(self, batch_first):
        super().__init__()
        self.mha = torch.nn.MultiheadAttention(4, 2, batch_first=batch_first)

    def forward(self, x):
        return self.mha(x, x, x)[0]


def _module(factory):
    torch.manual_seed(0)
    return factory()


def gelu(x):
    return F.gelu(x)


def gelu_tanh(x):
    return F.gelu(x, approximate="tanh")


def softmax(x):
    return torch.softmax(x, -1)


def log_softmax(x):
    return torch.log_softmax(x, -1)


def sdpa(q, k, v):
    return F.scaled_dot_product_attention(q, k, v)


def sdpa_causal(q, k, v):
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


QKV = [(1, 2, 3, 2)] * 3

#: id → (module factory or function, input shapes, options)
MODULE_CASES = {
    "linear": (lambda: torch.nn.Linear(3, 4), [(2, 3)], {}),
    "layernorm": (lambda: torch.nn.LayerNorm(4), [(2, 4)], {}),
    "layernorm-d1": (lambda: torch.nn.LayerNorm(1), [(2, 1)], {}),   # x̂ ≡ 0 (issue 188375)
    "gelu": (gelu, [(5,)], {}),
    "gelu-tanh": (gelu_tanh, [(5,)], {}),
    "softmax": (softmax, [(2, 3)], {}),
    "log-softmax": (log_softmax, [(2, 3)], {}),
    "sdpa": (sdpa, QKV, {}),
    "sdpa-causal": (sdpa_causal, QKV, {}),
    "mha-batch-first": (lambda: SelfAttention(True), [(1, 3, 4)], {"timeout": 120}),
    "mha-seq-first": (lambda: SelfAttention(False), [(3, 1, 4)], {"timeout": 120}),
}


def _target(case):
    make, shapes, options = MODULE_CASES[case]
    target = _module(make) if make.__name__ == "<lambda>" else make
    return target, shapes, options


@pytest.mark.parametrize("case", MODULE_CASES, ids=list(MODULE_CASES))
def test_check_module_proves_pytorch_backward(case):
    target, shapes, options = _target(case)
    r = sg.torch.check_module(target, shapes=shapes, **options)
    assert r.verdict is PROVED, r


def test_check_module_leaves_the_users_module_alone():
    m = _module(lambda: torch.nn.Linear(3, 4))
    before = m.weight.detach().clone()
    m.train()
    assert sg.torch.check_module(m, shapes=[(2, 3)]).verdict is PROVED
    assert m.weight.dtype == torch.float32 and m.training and torch.equal(m.weight, before)


# --------------------------------------------------------------------------------------
# table faithfulness: the ATen table run on floats agrees with the real kernels

def _primal_and_inputs(target, shapes):
    """(primal(*tensors), example tensors) as check_module builds them: a module's
    parameters are inputs after the data."""
    gen = torch.Generator().manual_seed(1)
    data = [torch.randn(*s, dtype=torch.float64, generator=gen) for s in shapes]
    if not isinstance(target, torch.nn.Module):
        return target, data
    module = target.double().eval()
    named = list(module.named_parameters())
    names = [n for n, _ in named]
    n = len(data)

    def primal(*tensors):
        return torch.func.functional_call(module, dict(zip(names, tensors[n:])),
                                          tuple(tensors[:n]))
    return primal, data + [p.detach().clone() for _, p in named]


def _floats(t):
    return np.array(t.detach().numpy().tolist(), dtype=object)


def _max_error(got, want):
    value = np.vectorize(float, otypes=[float])(np.asarray(got, dtype=object))
    assert value.shape == tuple(want.shape)
    return float(np.max(np.abs(value - want.detach().numpy()))) if value.size else 0.0


def _table_errors(case) -> list:
    """Max abs errors, output by output, of the forward and VJP graphs of ``case`` run by
    the ATen table on Python floats against the real float64 kernels."""
    target, shapes, _ = _target(case)
    primal, xs = _primal_and_inputs(target, shapes)
    n = len(xs)
    outs = primal(*xs)
    outs = list(outs) if isinstance(outs, (tuple, list)) else [outs]
    gen = torch.Generator().manual_seed(2)
    gs = [torch.randn(*o.shape, dtype=torch.float64, generator=gen) for o in outs]

    def vjp_fn(*xs_and_gs):
        leaves = [x.detach().requires_grad_(True) for x in xs_and_gs[:n]]
        got = primal(*leaves)
        got = list(got) if isinstance(got, (tuple, list)) else [got]
        grads = torch.autograd.grad(got, leaves, list(xs_and_gs[n:]), allow_unused=True)
        return tuple(torch.zeros_like(x) if d is None else d for d, x in zip(grads, leaves))

    want_vjp = vjp_fn(*xs, *gs)
    assert any(float(d.abs().max()) > 0 for d in want_vjp)   # a non-trivial comparison

    forward_gm = _trace(primal, xs, f"{case} (forward)")
    got = interpret(forward_gm, [_floats(x) for x in xs])
    assert len(got) == len(outs)
    errors = [_max_error(a, b) for a, b in zip(got, outs)]

    vjp_gm = _trace(vjp_fn, xs + gs, f"{case} (backward)")
    got = interpret(vjp_gm, [_floats(t) for t in xs + gs])
    assert len(got) == n
    return errors + [_max_error(a, b) for a, b in zip(got, want_vjp)]


@pytest.mark.parametrize("case", MODULE_CASES, ids=list(MODULE_CASES))
def test_aten_table_matches_the_real_kernels(case):
    errors = _table_errors(case)
    assert max(errors) < 1e-9, errors


# --------------------------------------------------------------------------------------
# teeth: a wrong table entry is caught

def _layer_norm_backward_without_projection(grad, x, normalized_shape, mean, rstd, weight,
                                            bias, mask):
    """native_layer_norm_backward with dx missing its −x̂·mean(ĝ·x̂) term."""
    g, a = np.asarray(grad), np.asarray(x)
    axes = tuple(range(a.ndim - len(normalized_shape), a.ndim))
    lead = tuple(range(a.ndim - len(axes)))
    count = int(np.prod([a.shape[d] for d in axes]))
    xhat = (a - np.asarray(mean)) * np.asarray(rstd)
    gh = g * np.asarray(weight) if weight is not None else g
    dx = np.asarray(rstd) * (gh - gh.sum(axis=axes, keepdims=True) / count)
    return (aten._sym(dx) if mask[0] else None,
            aten._sym((g * xhat).sum(axis=lead)) if mask[1] and weight is not None else None,
            aten._sym(g.sum(axis=lead)) if mask[2] and bias is not None else None)


def test_a_wrong_table_entry_is_refuted(monkeypatch):
    key = "native_layer_norm_backward.default"
    assert key in aten.ATEN
    monkeypatch.setitem(aten.ATEN, key, _layer_norm_backward_without_projection)
    r = sg.torch.check_module(_module(lambda: torch.nn.LayerNorm(4)), shapes=[(2, 4)])
    assert r.verdict is REFUTED, r
    assert r.witness.input == "x"
    # and the faithfulness check sees the same entry disagree with the real kernel
    assert max(_table_errors("layernorm")) > 1e-3


def test_verify_torch_on_the_command_line_with_a_report(tmp_path, monkeypatch):
    from click.testing import CliRunner
    from symgrad.cli import main
    (tmp_path / "mine.py").write_text(
        "import torch\n"
        "class Twice(torch.autograd.Function):\n"
        "    @staticmethod\n"
        "    def forward(ctx, x, s):\n"
        "        ctx.s = s\n"
        "        return s * x * x\n"
        "    @staticmethod\n"
        "    def backward(ctx, g):\n"
        "        return g, None\n")      # wrong: the derivative is 2·s·x
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["verify", "torch", "mine:Twice", "--shape", "2",
                                       "--arg", "1.5", "--report", "rep"])
    assert result.exit_code == 1 and "REFUTED" in result.output, result.output
    assert "refuted" in (tmp_path / "rep" / "index.html").read_text()
    bad = CliRunner().invoke(main, ["verify", "torch", "mine:Nothing", "--shape", "2"])
    assert bad.exit_code == 2 and "has no attribute" in bad.output

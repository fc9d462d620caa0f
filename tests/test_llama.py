"""The LLaMA-style block (symgrad.models.llama_block) and its ops — rms_norm, rope,
repeat_kv, swiglu: the node obligations and the DAG corollary are PROVED, the block in
float64 equals PyTorch's (outputs and every input gradient), RoPE's transcendental tables
are atoms the randomized test can draw, and bad sizes are one sentence."""
import numpy as np
import pytest

import symgrad as sg
from symgrad.intervals.interval import floats, nums

DEFAULT = dict(n=2, d_model=4, heads=2, kv_heads=1, head_dim=2, d_ff=4)
WIDER = dict(n=4, d_model=8, heads=4, kv_heads=2, head_dim=2, d_ff=16)


@pytest.mark.parametrize("dims", [DEFAULT, WIDER], ids=["default", "wider"])
def test_every_node_obligation_and_the_corollary_are_proved(dims):
    g = sg.models.llama_block(**dims)
    r = sg.verify(g, end_to_end=False)
    assert r.verdict is sg.Verdict.PROVED, [(o.name, o.reason) for o in r.obligations
                                            if o.verdict is not sg.Verdict.PROVED]
    ops = {n.op for n in g.nodes}
    assert {"rms_norm", "rope", "swiglu", "hard_masked_softmax"} <= ops
    assert ("repeat_kv" in ops) == (dims["heads"] != dims["kv_heads"])


def _values(g, seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in g.inputs:
        if name.startswith("g_"):
            out[name] = 1 + 0.1 * rng.standard_normal(shape)
        else:
            out[name] = rng.standard_normal(shape) / (np.sqrt(shape[0]) if name != "x" else 1)
    return out


def _ours(g, values, seed):
    """The block's output and the gradient of Σ out ⊙ seed for every input, in float64."""
    inputs = [nums(values[name]) for name, _ in g.inputs]
    vals = g.eval(inputs)
    cot = g.backprop(vals, {g.output: nums(seed)})
    return floats(vals[g.output]), {name: floats(c) for (name, _), c in
                                    zip(g.inputs, cot[:len(g.inputs)])}


def _torch_block(t, dims, eps=1e-6, base=10000.0):
    F = t.nn.functional
    n, H, kv, hd = dims["n"], dims["heads"], dims["kv_heads"], dims["head_dim"]

    def rms(x, w):
        return x * t.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w

    def rope(x):   # (heads, n, hd), rotate-half, LLaMA's tables
        inv = 1.0 / base ** (t.arange(0, hd, 2, dtype=t.float64) / hd)
        freqs = t.outer(t.arange(n, dtype=t.float64), inv)
        emb = t.cat([freqs, freqs], dim=-1)
        half = hd // 2
        rotated = t.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * emb.cos() + rotated * emb.sin()

    def block(x, Wq, Wk, Wv, Wo, g_attn, g_ffn, W_gate, W_up, W_down):
        h1 = rms(x, g_attn)
        q = (h1 @ Wq).view(n, H, hd).transpose(0, 1)
        k = (h1 @ Wk).view(n, kv, hd).transpose(0, 1)
        v = (h1 @ Wv).view(n, kv, hd).transpose(0, 1)
        q, k = rope(q), rope(k)
        k = k.repeat_interleave(H // kv, dim=0)
        v = v.repeat_interleave(H // kv, dim=0)
        a = F.scaled_dot_product_attention(q[None], k[None], v[None], is_causal=True)[0]
        h = x + a.transpose(0, 1).reshape(n, H * hd) @ Wo
        h2 = rms(h, g_ffn)
        return h + (F.silu(h2 @ W_gate) * (h2 @ W_up)) @ W_down
    return block


@pytest.mark.parametrize("dims", [DEFAULT, WIDER], ids=["default", "wider"])
def test_the_block_equals_pytorch_outputs_and_gradients(dims):
    t = pytest.importorskip("torch", reason="the PyTorch reference is an optional extra: "
                                            "pip install 'symgrad[torch]'")
    g = sg.models.llama_block(**dims)
    values = _values(g)
    seed = np.random.default_rng(1).standard_normal(g.shape(g.output))
    out, grads = _ours(g, values, seed)
    args = [t.tensor(values[name], dtype=t.float64, requires_grad=True) for name, _ in g.inputs]
    ref = _torch_block(t, dims)(*args)
    (ref * t.tensor(seed)).sum().backward()
    assert np.allclose(out, ref.detach().numpy(), rtol=1e-10, atol=1e-12)
    for (name, _), a in zip(g.inputs, args):
        assert np.allclose(grads[name], a.grad.numpy(), rtol=1e-9, atol=1e-12), name


def test_rope_tables_are_atoms_the_randomized_test_draws():
    g = sg.Graph([("x", (2, 3, 4))], name="rope")
    g.add("rope", 0, name="out")
    r = sg.verify(g, evidence="randomized")
    assert r.verdict is sg.Verdict.VERIFIED, r.obligations[-1].reason
    drawn = r.obligations[-1]
    assert drawn.evidence == "randomized"


@pytest.mark.parametrize("dims,words", [
    (dict(DEFAULT, kv_heads=3, heads=2), "must be a multiple of kv_heads"),
    (dict(DEFAULT, head_dim=3), "must be even"),
    (dict(DEFAULT, kv_heads=0), "kv_heads must be a positive integer"),
])
def test_bad_sizes_are_one_sentence(dims, words):
    with pytest.raises(sg.InputError, match=words):
        sg.models.llama_block(**dims)


def _swiglu_ffn():
    """x ↦ x + W_down(swiglu(RMSNorm(x) W_gate, RMSNorm(x) W_up)): the block's second half."""
    g = sg.Graph([("x", (2, 4)), ("g_ffn", (4,)), ("W_gate", (4, 4)), ("W_up", (4, 4)),
                  ("W_down", (4, 4))], name="swiglu_ffn")
    h = g.add("rms_norm", 0, 1, name="rms")
    act = g.add("swiglu", g.add("matmul", h, 2, name="gate"), g.add("matmul", h, 3, name="up"),
                name="act")
    g.add("add", 0, g.add("matmul", act, 4, name="down"), name="out")
    return g


def test_the_swiglu_half_is_proved_end_to_end_and_a_wrong_engine_refuted():
    """Eight sigmoids 1/(1 + e^{−a}) in one identity: their inverses are divided out
    (V·(1 + E) = 1) instead of cleared by multiplying every term by every 1 + E."""
    from symgrad.mutants import ENGINE_MUTANTS
    from symgrad.prove.tape import end_to_end
    g = _swiglu_ffn()
    r, _ = end_to_end(g, evidence="exact", timeout=120)
    assert r.verdict is sg.Verdict.PROVED, r.reason
    assert "atom relations" in r.method
    wrong, _ = end_to_end(g, ENGINE_MUTANTS["backprop_drops_fanout_accumulation"],
                          evidence="exact", timeout=120)
    assert wrong.verdict is sg.Verdict.REFUTED


def test_dividing_out_an_inverse_is_zero_only_for_the_relation():
    import symengine as se
    from symgrad.prove.normal_form import Atoms, EntryForm
    a = se.Symbol("a")
    sig = 1 / (1 + se.exp(-a))
    atoms = Atoms()
    right = sig * se.exp(-a) + sig - 1          # V·E + V − 1 = 0
    wrong = 2 * sig * se.exp(-a) + sig - 1      # 2V·E + V − 1 ≠ 0
    for expr, zero in ((right, True), (wrong, False)):
        variables = frozenset(atoms.scan(expr))
        form = EntryForm(atoms, [expr], variables)
        assert not form.polys[0].is_zero() and form._inverse_rules()
        reduced = form.reduce(form.polys[0])
        assert (reduced is not None and reduced.is_zero()) is zero
        quick = form.reduce(form.polys[0], quick=True)
        assert (quick is not None) is zero


def test_verify_llama_on_the_command_line():
    from click.testing import CliRunner
    from symgrad.cli import main
    out = CliRunner().invoke(main, ["verify", "llama", "--json"])
    assert out.exit_code == 0, out.output
    import json
    results = json.loads(out.output)["obligations"]
    e2e = [r for r in results if r["name"] == "llama: end to end"][0]
    assert e2e["verdict"] == "verified" and e2e["evidence"] == "randomized"
    assert all(r["verdict"] == "proved" for r in results if r is not e2e)
    assert len([r for r in results if r["name"].startswith("node ")]) >= 15
    exact = CliRunner().invoke(main, ["verify", "llama", "--d-model", "2", "--heads", "1",
                                      "--evidence", "exact"])
    assert exact.exit_code == 0 and "verdict: PROVED" in exact.output, exact.output
    for args, words in ((["verify", "llama", "--kv-heads", "3"], "multiple of kv_heads"),
                        (["verify", "mha", "--kv-heads", "2"], "applies to the llama graph"),
                        (["bounds", "encoder", "--kv-heads", "2"], "applies to the llama")):
        bad = CliRunner().invoke(main, args)
        assert bad.exit_code == 2 and words in bad.output and "Traceback" not in bad.output

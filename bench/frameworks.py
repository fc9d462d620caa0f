"""Proving the backward PyTorch runs: per module or Function at a small shape, the time to
trace its forward and backward to ATen graphs, the time to check the one against the
transposed derivative of the other with the default evidence (auto: exact within 10 s,
else the randomized identity test) and the verdict; the randomized test alone (its time
includes tracing again); beside torch.autograd.gradcheck on the same function and shapes
(float64, default tolerances) in the same run.

    python bench/frameworks.py

gradcheck compares finite differences with the backward at one random point, to a
tolerance; the proof holds at every point, exactly. Needs the torch extra.
"""
from __future__ import annotations

import time


def cases(torch):
    F = torch.nn.functional

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

    class SelfAttention(torch.nn.Module):
        def __init__(self, d, heads):
            super().__init__()
            self.mha = torch.nn.MultiheadAttention(d, heads, batch_first=True)

        def forward(self, x):
            return self.mha(x, x, x, need_weights=False)[0]

    def encoder(**kw):   # n = 4, d = 8, H = 2, d_ff = 16
        return torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True, **kw)

    class Decoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0,
                                                          batch_first=True)

        def forward(self, x, memory):
            mask = torch.nn.Transformer.generate_square_subsequent_mask(x.shape[1],
                                                                         dtype=x.dtype)
            return self.layer(x, memory, tgt_mask=mask, tgt_is_causal=True)

    return [
        ("custom Function tanh", Tanh, [(4, 8)], "function"),
        ("nn.Linear(8, 8)", torch.nn.Linear(8, 8), [(4, 8)], "module"),
        ("nn.LayerNorm(8)", torch.nn.LayerNorm(8), [(4, 8)], "module"),
        ("F.gelu", lambda x: F.gelu(x), [(4, 8)], "module"),
        ("F.gelu tanh", lambda x: F.gelu(x, approximate="tanh"), [(4, 8)], "module"),
        ("F.softmax", lambda x: F.softmax(x, -1), [(4, 8)], "module"),
        ("F.log_softmax", lambda x: F.log_softmax(x, -1), [(4, 8)], "module"),
        ("SDPA (1,2,4,4)", lambda q, k, v: F.scaled_dot_product_attention(q, k, v),
         [(1, 2, 4, 4)] * 3, "module"),
        ("SDPA causal (1,2,4,4)", lambda q, k, v: F.scaled_dot_product_attention(
            q, k, v, is_causal=True), [(1, 2, 4, 4)] * 3, "module"),
        ("MHA self-attn n=4 d=8 H=2", SelfAttention(8, 2), [(1, 4, 8)], "module"),
        ("MHA self-attn n=3 d=4 H=2", SelfAttention(4, 2), [(1, 3, 4)], "module"),
        ("EncoderLayer post-norm", encoder(), [(1, 4, 8)], "module"),
        ("EncoderLayer pre-norm", encoder(norm_first=True), [(1, 4, 8)], "module"),
        ("EncoderLayer gelu", encoder(activation="gelu"), [(1, 4, 8)], "module"),
        ("DecoderLayer causal", Decoder(), [(1, 4, 8), (1, 3, 8)], "module"),
    ]


def main():
    try:
        import torch
    except ImportError:
        print("PyTorch is not installed (pip install 'symgrad[torch]'): nothing to measure")
        return
    import symgrad as sg
    head = (f"{'case':<28} {'trace s':>8} {'check s':>8} {'total s':>8} {'verdict':<8} "
            f"{'randomized s':>12} {'verdict':<8} {'gradcheck s':>11} {'gradcheck':<9}")
    print(head)
    print("-" * len(head))
    for name, target, shapes, kind in cases(torch):
        examples = [torch.randn(*s, dtype=torch.float64) for s in shapes]
        if kind == "function":
            def f(*xs, _t=target):
                return _t.apply(*xs)
        elif isinstance(target, torch.nn.Module):
            mod = target.double().eval()

            def f(*xs, _m=mod):
                return _m(*xs)
        else:
            f = target
        check = sg.torch.check_function if kind == "function" else sg.torch.check_module
        t = time.perf_counter()
        r = check(target, shapes, timeout=300)            # evidence="auto"
        t_all = time.perf_counter() - t
        t_trace = r.phases.get("trace", 0.0)
        t = time.perf_counter()
        rr = check(target, shapes, timeout=300, evidence="randomized")
        t_rand = time.perf_counter() - t
        inputs = tuple(e.clone().requires_grad_(True) for e in examples)
        t = time.perf_counter()
        ok = torch.autograd.gradcheck(f, inputs)
        t_grad = time.perf_counter() - t
        print(f"{name:<28} {t_trace:>8.2f} {r.seconds:>8.2f} {t_all:>8.2f} "
              f"{r.verdict.value:<8} {t_rand:>12.2f} {rr.verdict.value:<8} {t_grad:>11.3f} "
              f"{'passed' if ok else 'failed':<9}")


if __name__ == "__main__":
    main()

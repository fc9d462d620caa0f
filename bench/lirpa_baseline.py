"""auto_LiRPA baseline: IBP and CROWN output enclosures of symgrad's ``mha`` and ``encoder``
graphs under an L∞ ball on x, the other inputs fixed.

    python bench/lirpa_baseline.py

``lirpa_bounds(graph_name, dims, values, radius)`` writes the graph as a float64 PyTorch
module in symgrad's conventions — weights on the right (x @ W), no projection bias, heads
split PyTorch's way (view(n, H, hd).transpose), scores scaled by 1/√hd, post-norm encoder
h = LN₁(x + MHA(x)), out = LN₂(h + FFN(h)), FFN = affine → GELU (tanh form, written out
as x/2·(1 + tanh(√(2/π)(x + 0.044715x³)))) → affine, LayerNorm with biased variance and
ε = 1e-5 inside the root — and bounds it with auto_LiRPA's BoundedModule (default bound
options). The module for each graph matches ``g.evaluate`` to 1e-10 (``_check`` below).

torch and auto_LiRPA are imported inside the functions: importing this module needs numpy
only, and ``lirpa_bounds`` raises ImportError when either is missing (callers skip).
Setup (auto_LiRPA 0.7.1 pins torch<2.9 but runs with torch 2.13):
    pip install torch==2.13.0
    pip install --no-deps <auto_LiRPA 0.7.1 source, e.g. a clone of its git repository>
    pip install packaging appdirs pyyaml tqdm graphviz
The demo also reports an inner range — elementwise min/max of the model over the centre,
2000 uniform points and 2000 random corners of the box — and each method's width ratio to
it (the true range lies between the inner range and each enclosure).
"""
from __future__ import annotations

import math
import time

import numpy as np

EPS = 1e-5            # symgrad's DEFAULT_EPS = 1/100000, as a double
GELU_C = 0.044715     # symgrad's GELU_TANH_C


def _imports():
    try:
        import torch
    except ImportError as e:
        raise ImportError("lirpa_baseline needs torch: pip install torch==2.13.0") from e
    try:
        import auto_LiRPA
    except ImportError as e:
        raise ImportError("lirpa_baseline needs auto_LiRPA: pip install --no-deps "
                          "<auto_LiRPA 0.7.1>, then packaging appdirs pyyaml tqdm "
                          "graphviz") from e
    return torch, auto_LiRPA


def _module(torch, graph_name, dims, values):
    """The graph as a torch module of x (batch, n, d_model); the rest fixed as buffers."""
    if graph_name == "mha":
        n, d, heads, hd = dims
    elif graph_name == "encoder":
        n, d, heads, hd, _ = dims
    else:
        raise ValueError(f"unknown graph {graph_name!r}; use mha or encoder")
    F = torch.nn.functional

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            for k, v in values.items():
                if k != "x":
                    self.register_buffer(k, torch.tensor(np.asarray(v, dtype=np.float64)))

        def split(self, t):                     # (B, n, H·hd) → (B, H, n, hd)
            return t.reshape(-1, n, heads, hd).transpose(1, 2)

        def mha(self, x):
            q, k, v = (self.split(x @ w) for w in (self.Wq, self.Wk, self.Wv))
            s = (q @ k.transpose(2, 3)) * (1.0 / math.sqrt(hd))
            o = (torch.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(-1, n, heads * hd)
            return o @ self.Wo

        def forward(self, x):
            if graph_name == "mha":
                return self.mha(x)
            h = F.layer_norm(x + self.mha(x), (d,), self.gamma1, self.beta1, EPS)
            u = h @ self.W1 + self.b1
            a = 0.5 * u * (1 + torch.tanh(math.sqrt(2 / math.pi) * (u + GELU_C * u * u * u)))
            return F.layer_norm(h + a @ self.W2 + self.b2, (d,), self.gamma2, self.beta2, EPS)

    return Net().double().eval()


def lirpa_bounds(graph_name: str, dims: tuple, values: dict, radius: float,
                 perturb: str = "x", methods=("IBP", "CROWN")) -> dict:
    """auto_LiRPA enclosures of the output of ``graph_name`` ("mha" or "encoder") at
    ``dims`` over x ∈ values["x"] ± radius (L∞), the other inputs fixed at ``values``:
    {method: {"lower": ndarray (n, d_model), "upper": ndarray, "seconds": float}}; the
    seconds include building the BoundedModule. Only ``perturb="x"`` is supported."""
    torch, _ = _imports()
    from auto_LiRPA import BoundedModule, BoundedTensor
    from auto_LiRPA.perturbations import PerturbationLpNorm
    if perturb != "x":
        raise ValueError("only x can be perturbed")
    net = _module(torch, graph_name, dims, values)
    x0 = torch.tensor(np.asarray(values["x"], dtype=np.float64))[None]
    out, dtype = {}, torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)   # auto_LiRPA builds some relaxation tensors
    # in the default dtype; float32 there fails a float64 model (Double/Float mismatch)
    try:
        for method in methods:
            t0 = time.perf_counter()
            bm = BoundedModule(net, torch.zeros_like(x0), device="cpu").double()
            xb = BoundedTensor(x0, PerturbationLpNorm(norm=float("inf"), eps=radius))
            lb, ub = bm.compute_bounds(x=(xb,), method=method)
            out[method] = {"lower": lb[0].detach().numpy().copy(),
                           "upper": ub[0].detach().numpy().copy(),
                           "seconds": time.perf_counter() - t0}
    finally:
        torch.set_default_dtype(dtype)
    return out


def inner_range(graph_name, dims, values, radius, samples=2000, seed=1):
    """Elementwise min and max of the model over the centre, ``samples`` uniform points
    and ``samples`` random corners of the box: an inner approximation of the range."""
    torch, _ = _imports()
    net = _module(torch, graph_name, dims, values)
    x0 = np.asarray(values["x"], dtype=np.float64)
    rng = np.random.default_rng(seed)
    pts = np.concatenate([x0[None],
                          x0 + rng.uniform(-radius, radius, (samples,) + x0.shape),
                          x0 + radius * rng.choice([-1.0, 1.0], (samples,) + x0.shape)])
    with torch.no_grad():
        y = net(torch.tensor(pts)).numpy()
    return y.min(axis=0), y.max(axis=0)


def random_values(graph_name, dims, seed=0):
    """The graph and symgrad's default values for it (``symgrad.intervals.default_values``:
    x ~ N(0,1); weights N(0,1)/√fan_in; γ = 1 + 0.1N, β and biases 0.1N)."""
    import symgrad as sg
    from symgrad.intervals import default_values
    g = sg.models.mha(*dims) if graph_name == "mha" else sg.models.encoder_block(*dims)
    return g, default_values(g, seed)


def _check(g, graph_name, dims, vals):
    """max |torch module − symgrad's g.evaluate| at vals."""
    torch, _ = _imports()
    with torch.no_grad():
        y = _module(torch, graph_name, dims, vals)(torch.tensor(vals["x"])[None])[0].numpy()
    return float(np.abs(y - g.evaluate(vals)[g.values[-1]]).max())


def main():
    for graph_name, dims in (("mha", (4, 8, 2, 4)), ("encoder", (4, 8, 2, 4, 16))):
        g, vals = random_values(graph_name, dims)
        print(f"{graph_name} {dims}: max |torch - symgrad| = "
              f"{_check(g, graph_name, dims, vals):.1e}")
        for radius in (0.1, 0.01):
            lo, hi = inner_range(graph_name, dims, vals, radius)
            inner = float((hi - lo).mean())
            print(f"  radius {radius}: inner range mean width {inner:.4g}")
            for method, r in lirpa_bounds(graph_name, dims, vals, radius).items():
                w = r["upper"] - r["lower"]
                sound = bool((r["lower"] <= lo).all() and (hi <= r["upper"]).all())
                print(f"    {method:<6} mean width {w.mean():.4g} ({w.mean() / inner:.3g}x "
                      f"inner)  {r['seconds']:.3f} s  encloses samples: {sound}")


if __name__ == "__main__":
    main()

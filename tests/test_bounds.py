"""Interval bounds (symgrad/intervals): every enclosure contains every value the graph takes
at sampled points, box corners and gradient-ascent points; the op rules are exact where the
theorems say; bad input is one sentence and exit 2."""
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

import symgrad as sg
from symgrad.cli import main
from symgrad.intervals import default_values
from symgrad.intervals.enclose import Box
from symgrad.intervals.interval import Interval, as_interval, interval_array, bounds_arrays
from symgrad.intervals.rules import RULES, elementwise_range
from symgrad.intervals.sample import inner_range

GRAPHS = {
    "mha": lambda: sg.models.mha(3, 4, 2, 2),
    "encoder": lambda: sg.models.encoder_block(3, 4, 2, 2, 6),
    "prenorm": lambda: sg.models.prenorm_encoder_block(3, 4, 2, 2, 6),
    "decoder": lambda: sg.models.gpt_decoder_block(3, 4, 2, 2, 6),
    "stack": lambda: sg.models.encoder_stack(2, 4, 2, 2, 4, layers=2),
    "llama": lambda: sg.models.llama_block(2, 4, 2, 1, 2, 4),
}


def _outside(graph, found, inner):
    """(tape value, entry, value, enclosure) of every found value outside its enclosure."""
    bad = []
    for name, lo_i, hi_i in zip(graph.values, inner.lo, inner.hi):
        lo, hi = found.values[name]
        for index in zip(*np.nonzero((lo_i < lo) | (hi_i > hi))):
            bad.append((name, index, lo_i[index], hi_i[index], lo[index], hi[index]))
    return bad


@pytest.mark.parametrize("name", sorted(GRAPHS))
@pytest.mark.parametrize("method", ["ibp", "ops", "centered", "taylor", "cubic", "subdivide"])
def test_every_found_value_is_inside_every_enclosure(name, method):
    graph = GRAPHS[name]()
    values = default_values(graph, seed=3)
    radius = 0.05
    try:
        found = sg.bounds(graph, values, radius, method=method, budget=1.0)
    except sg.InputError as exc:   # naive IBP can meet a division by an interval with 0
        assert method == "ibp" and "contains 0" in str(exc)
        return
    box = Box(graph, values, radius, [0])
    inner = inner_range(graph, box, samples=16, corners=16, ascent=2, seed=1)
    bad = _outside(graph, found, inner)
    assert not bad, f"{len(bad)} values outside; first: {bad[0]} (point {inner.points[0]})"


def test_tighter_methods_are_tighter_and_all_contain_the_centre():
    graph = GRAPHS["encoder"]()
    values = default_values(graph, seed=0)
    found = sg.bounds(graph, values, 0.01, method="subdivide", budget=2.0)
    widths = {m: float(np.mean(hi - lo)) for m, (lo, hi) in found.per_method.items()}
    assert widths["ops"] < widths["ibp"] / 100     # LayerNorm as a whole, softmax ≤ 1
    assert widths["centered"] <= widths["ops"] and widths["taylor"] < 0.95 * widths["centered"]
    assert widths["cubic"] < widths["taylor"] and widths["subdivide"] <= widths["cubic"]
    centre = graph.evaluate(values)["out"]
    lo, hi = found.values["out"]
    assert np.all(lo <= centre) and np.all(centre <= hi)


def test_the_gradient_enclosure_contains_the_gradient_at_sampled_points():
    graph = GRAPHS["mha"]()
    values = default_values(graph, seed=1)
    found = sg.bounds(graph, values, 0.05, method="centered", grad=True)
    lo, hi = found.jacobian["x"]
    rng = np.random.default_rng(0)
    for _ in range(4):
        point = dict(values, x=values["x"] + rng.uniform(-0.05, 0.05, values["x"].shape))
        for k in np.ndindex(lo.shape[:2]):
            seed = np.zeros(lo.shape[:2])
            seed[k] = 1
            grad = graph.vjp(point, seed)["x"]
            assert np.all(lo[k] <= grad) and np.all(grad <= hi[k]), k


def test_softmax_by_cancellation_is_exact_on_a_box_of_scores_and_never_above_one():
    lo, hi = np.array([[0.0, -1.0, 2.0]]), np.array([[3.0, 0.5, 2.5]])
    got_lo, got_hi = bounds_arrays(RULES["softmax"]([interval_array(lo, hi)], {}))
    # y_0 is least where x_0 is least and the others greatest, and the other way round
    exact_lo = 1 / (1 + math.exp(0.5 - 0.0) + math.exp(2.5 - 0.0))
    exact_hi = 1 / (1 + math.exp(-1.0 - 3.0) + math.exp(2.0 - 3.0))
    assert got_lo[0, 0] <= exact_lo <= got_lo[0, 0] + 1e-12
    assert got_hi[0, 0] - 1e-12 <= exact_hi <= got_hi[0, 0]
    assert np.all(got_hi <= 1)
    naive_lo, naive_hi = bounds_arrays(sg.get_op("softmax").forward(interval_array(lo, hi)))
    assert naive_hi.max() > 1      # what naive interval arithmetic gives


def test_layer_norm_as_a_whole_stays_within_the_root_of_d_minus_one():
    x = interval_array(np.full((1, 4), -10.0), np.full((1, 4), 10.0))
    one, zero = interval_array(np.ones(4), np.ones(4)), interval_array(np.zeros(4), np.zeros(4))
    lo, hi = bounds_arrays(RULES["layer_norm"]([x, one, zero], {"eps": sg.fn.rational(1, 10**5)}))
    assert np.all(hi <= math.sqrt(3) + 1e-12) and np.all(lo >= -math.sqrt(3) - 1e-12)


def test_an_elementwise_range_is_exact_on_monotone_pieces():
    # GELU has its minimum near −0.75: the range over [−2, 1] is [gelu(x*), gelu(1)]
    r = elementwise_range("gelu_erf", Interval(-2.0, 1.0), {})
    assert -0.1701 <= r.lo <= -0.1699 and 0.8413 <= r.hi <= 0.8414 + 1e-9
    e = elementwise_range("exp", Interval(0.0, 1.0), {})
    assert e.lo <= 1 <= e.lo + 1e-15 and e.hi >= math.e >= e.hi - 4e-15


def test_one_over_root_dk_is_a_tight_rational_enclosure():
    import symengine as se
    from decimal import Decimal
    c = as_interval(1 / se.sqrt(se.Integer(3)))
    true = Decimal("0.5773502691896257645091487805019574556476")   # 1/√3
    assert Decimal(c.lo) < true < Decimal(c.hi) and c.hi - c.lo < 1e-15


def test_cli_json_maps_every_tape_value_to_its_shape(tmp_path):
    graph = GRAPHS["mha"]()
    values = default_values(graph, seed=2)
    path = tmp_path / "v.npz"
    np.savez(path, **values)
    result = CliRunner().invoke(main, ["bounds", "mha", "--n", "3", "--d-model", "4",
                                       "--head-dim", "2", "--values", str(path), "--radius",
                                       "0.02", "--method", "centered", "--grad", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data["values"]) == set(graph.values)
    for i, name in enumerate(graph.values):
        lo = np.array(data["values"][name]["lower"])
        hi = np.array(data["values"][name]["upper"])
        assert lo.shape == hi.shape == graph.shape(i) and np.all(lo <= hi)
    assert data["method"] == "centered" and data["seconds"] >= 0 and "widths" in data
    assert np.array(data["jacobian"]["x"]["lower"]).shape == (3, 4, 3, 4)


@pytest.mark.parametrize("args, message", [
    (["--radius", "-1"], "radius must be a finite number"),
    (["--radius", "nan"], "radius must be a finite number"),
    (["--radius", "abc"], "is not a number"),
    (["--perturb", "y"], "has no input 'y'"),
    (["--values", "/no/such.npz"], "no such file"),
])
def test_bad_input_is_one_sentence_and_exit_2(args, message):
    result = CliRunner().invoke(main, ["bounds", "mha", "--method", "ops"] + args)
    assert result.exit_code == 2 and message in result.output
    assert "Traceback" not in result.output


def test_a_values_file_missing_an_input_or_with_a_wrong_shape(tmp_path):
    graph = sg.models.mha(4, 8, 2, 4)
    values = default_values(graph)
    missing = tmp_path / "missing.npz"
    np.savez(missing, **{k: v for k, v in values.items() if k != "Wo"})
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, **dict(values, Wq=np.zeros((3, 3))))
    for path, message in [(missing, "no value for input 'Wo'"), (wrong, "input 'Wq' has shape")]:
        result = CliRunner().invoke(main, ["bounds", "mha", "--values", str(path)])
        assert result.exit_code == 2 and message in result.output, result.output


def test_the_report_plots_each_method_against_the_sampled_range(tmp_path):
    result = CliRunner().invoke(main, ["bounds", "mha", "--n", "2", "--d-model", "4",
                                       "--head-dim", "2", "--radius", "0.02", "--budget", "1",
                                       "--report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "index.html").read_text()
    assert "<svg" in page and "values outside an enclosure:\n<b>0</b>" in page
    for method in ("ibp", "ops", "centered", "subdivide"):
        assert method in page


def test_several_perturbed_inputs_and_the_attention_core():
    graph = sg.models.mha(3, 4, 2, 2)
    values = default_values(graph, seed=4)
    found = sg.bounds(graph, values, 0.02, perturb=("x", "Wq"), method="centered", grad=True)
    assert set(found.jacobian) == {"x", "Wq"}
    names = [n for n, _ in graph.inputs]
    box = Box(graph, values, 0.02, [names.index("x"), names.index("Wq")])
    inner = inner_range(graph, box, samples=16, corners=16, ascent=2)
    assert not _outside(graph, found, inner)
    core = sg.models.masked_core(3, 2, 2, causal=True)
    found = sg.bounds(core, default_values(core), 0.05, method="subdivide", budget=0.5)
    assert found.perturb == [core.inputs[0][0]]     # no x: the first input
    box = Box(core, default_values(core), 0.05, [0])
    assert not _outside(core, found, inner_range(core, box, samples=16, corners=16, ascent=2))


def _chain_graph(*weights):
    g = sg.Graph([("x", (1, weights[0].shape[0]))], name="chain")
    v = 0
    for k, W in enumerate(weights):
        v = g.add("matmul_const", v, W=W, name="out" if k == len(weights) - 1 else f"h{k}")
    return g


@pytest.mark.parametrize("method", ["ibp", "ops", "centered", "taylor", "cubic", "subdivide"])
def test_red_team_regressions_gradients_subnormals_long_doubles(method):
    # two float matrices in a row: dy/dx = 1 exactly, the float product cancels to 0
    g = _chain_graph(np.array([[1.0, 1.0, 1.0]]), np.array([[1e16], [1.0], [-1e16]]))
    found = sg.bounds(g, {"x": np.array([[0.5]])}, 0.1, method=method, grad=True, budget=0.3)
    lo, hi = found.jacobian["x"]
    assert lo[0, 0, 0, 0] <= 1 <= hi[0, 0, 0, 0]
    # coefficients below the normal range: the value at the corner stays inside
    r = 163 * 2.0 ** -1074
    g = _chain_graph(np.full((40, 40), 0.3), np.full((40, 1), 0.01))
    found = sg.bounds(g, {"x": np.zeros((1, 40))}, r, method=method, budget=0.3)
    from fractions import Fraction
    exact = Fraction(r) * 40 * Fraction(0.3) * 40 * Fraction(0.01)
    lo, hi = found.values["out"]
    assert Fraction(float(lo[0, 0])) <= exact <= Fraction(float(hi[0, 0]))
    # a long double input is enclosed, not rounded
    g = _chain_graph(np.array([[2.0]]))
    x = np.array([[np.longdouble(1) + np.longdouble(2) ** -60]])
    found = sg.bounds(g, {"x": x}, 0.0, method=method, budget=0.3)
    lo, hi = found.values["x"]
    assert lo[0, 0] <= x[0, 0] <= hi[0, 0] or np.longdouble(1) == x[0, 0]


def test_layer_norm_with_eps_not_positive_is_refused():
    g = sg.Graph([("x", (1, 2)), ("g", (2,)), ("b", (2,))], name="ln")
    g.add("layer_norm", 0, 1, 2, eps=sg.fn.rational(-1, 100), name="out")
    with pytest.raises(sg.InputError, match="eps > 0"):
        sg.bounds(g, {"x": np.array([[1.6, 0.0]]), "g": np.ones(2), "b": np.zeros(2)}, 0.3)


@pytest.mark.parametrize("method", ["centered", "subdivide"])
def test_products_of_two_perturbed_values_stay_inside(method):
    g = sg.Graph([("x", (3, 4)), ("W", (4, 2))], name="product")
    h = g.add("matmul", 0, 1, name="h")
    s = g.add("mul", h, h, name="square")
    g.add("mul", h, s, name="out")
    rng = np.random.default_rng(5)
    values = {"x": rng.standard_normal((3, 4)), "W": rng.standard_normal((4, 2))}
    found = sg.bounds(g, values, 0.2, perturb=("x", "W"), method=method, budget=0.5)
    box = Box(g, values, 0.2, [0, 1])
    inner = inner_range(g, box, samples=64, corners=64, ascent=3)
    assert not _outside(g, found, inner)

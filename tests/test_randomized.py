"""Randomized end-to-end evidence: VERIFIED with an error bound ≤ 2^-64 for every right
engine, REFUTED only with a certified witness, UNKNOWN when the model drops a relation the
engine needs — and never called proved."""
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

import symgrad as sg
from symgrad import fn
from symgrad.cli import main
from symgrad.graph import Graph
from symgrad.models.catalog import GRAPHS, build_graph
from symgrad.mutants import ENGINE_MUTANTS
from symgrad.prove.randomized import certified_witness, identity_test, randomized_end_to_end

DIMS = dict(n=2, d_model=2, heads=1, head_dim=2, d_ff=4)
CASES = [(name, form, fixed) for name in sorted(GRAPHS)
         for form in (("whole", "decomposed") if name == "layernorm" else ("whole",))
         for fixed in ((False, True) if name == "decoder" else (False,))]


def _bound(r) -> int:
    assert r.error_bound.startswith("2^")
    return int(r.error_bound[2:])


@pytest.mark.parametrize("name,form,fixed", CASES)
def test_every_catalog_graph_is_verified_with_an_error_bound(name, form, fixed):
    g = build_graph(name, DIMS, "pytorch", form, fixed)
    r = randomized_end_to_end(g, seed=11)
    assert r.verdict is sg.Verdict.VERIFIED, r.reason
    assert r.evidence == "randomized" and _bound(r) <= -64
    assert "proved" not in r.method and r.witness is None


@pytest.mark.parametrize("mutant", sorted(ENGINE_MUTANTS))
@pytest.mark.parametrize("dims", [DIMS, dict(n=4, d_model=8, heads=2, head_dim=4, d_ff=16)])
def test_engine_mutants_are_refuted_with_a_certified_witness(mutant, dims):
    g = build_graph("decoder", dims, "pytorch", "whole", False)
    r = randomized_end_to_end(g, ENGINE_MUTANTS[mutant], seed=5)
    assert r.verdict is sg.Verdict.REFUTED
    w = r.witness
    lo, hi = float(w.residual[0]), float(w.residual[1])
    assert lo * hi > 0 and w.input in [n for n, _ in g.inputs]
    assert "random.Random(" in w.point["…"]        # the point can be regenerated


def test_a_wrong_node_rule_inside_the_graph_is_refuted(monkeypatch):
    import dataclasses
    from symgrad.ops import OPS
    wrong = lambda g, y, x: (y * g,)   # noqa: E731 - softmax without the subtraction
    monkeypatch.setitem(OPS, "softmax", dataclasses.replace(OPS["softmax"], vjp=wrong))
    r = randomized_end_to_end(sg.models.mha(2, 2, 1, 2), seed=3)
    assert r.verdict is sg.Verdict.REFUTED


def test_an_engine_right_only_through_a_relation_is_unknown_not_refuted():
    def detour(graph, vals, seed):   # multiplies by exp(x)·exp(−x) = 1: right, but the
        cot = Graph.backprop(graph, vals, seed)   # model's atoms are independent
        x = vals[0]
        cot[0] = cot[0] * fn.exp(x) * fn.exp(-x)
        return cot

    g = sg.models.mha(2, 2, 1, 2)
    r = randomized_end_to_end(g, detour, seed=3)
    assert r.verdict is sg.Verdict.UNKNOWN
    assert "relation" in r.advice and "no certified counterexample" in r.reason
    failing = identity_test(g, detour, seed=3)[0]
    assert failing and certified_witness(g, detour, failing) is None


def test_the_same_seed_gives_the_same_trial_and_the_bound_is_below_2_to_the_64():
    g = sg.models.gpt_decoder_block(2, 2, 1, 2, 4)
    a, b = identity_test(g, None, seed=9), identity_test(g, None, seed=9)
    assert a == b and a[0] == [] and a[1] < -64 and a[2] > 0


def test_control_flow_on_computed_values_is_a_clear_error_or_unknown():
    g = sg.models.mha(2, 2, 1, 2)

    def branching(graph, vals, seed):
        if vals[0][0, 0] > 0:   # a comparison's truth value: an error, as in exact checks
            pass
        return Graph.backprop(graph, vals, seed)

    with pytest.raises(sg.RuleError, match="control flow on a symbolic comparison"):
        randomized_end_to_end(g, branching, seed=1)

    def floating(graph, vals, seed):
        float(vals[0][0, 0])
        return Graph.backprop(graph, vals, seed)

    r = randomized_end_to_end(g, floating, seed=1)
    assert r.verdict is sg.Verdict.UNKNOWN and "cannot run this tape" in r.reason
    assert "--evidence exact" in r.advice


def test_verify_evidence_policy_and_the_weakest_verdict():
    g = sg.models.mha(2, 2, 1, 2)
    exact = sg.verify(g, evidence="exact")
    assert exact.verdict is sg.Verdict.PROVED
    assert exact.obligations[-1].evidence == "exact"
    auto = sg.verify(g)                       # small enough: exact, as before
    assert auto.verdict is sg.Verdict.PROVED
    rnd = sg.verify(g, evidence="randomized")
    assert rnd.verdict is sg.Verdict.VERIFIED
    e2e = rnd.obligations[-1]
    assert e2e.evidence == "randomized" and e2e.side_conditions   # the tape conditions
    assert all(o.verdict is sg.Verdict.PROVED and o.evidence == "exact"
               for o in rnd.obligations[:-1])
    big = sg.models.gpt_decoder_block(4, 8, 2, 4, 16)
    assert sg.verify(big, end_to_end=True).obligations[-1].evidence == "randomized"
    with pytest.raises(sg.InputError, match="unknown evidence"):
        sg.verify(g, evidence="sure")
    with pytest.raises(sg.InputError, match="end_to_end=False skips"):
        sg.verify(g, evidence="exact", end_to_end=False)


def test_auto_falls_back_to_randomized_when_exact_is_out_of_reach(monkeypatch):
    import symgrad.prove.tape as tape
    monkeypatch.setattr(tape, "check", lambda spec: sg.Result(
        spec.name, sg.Verdict.UNKNOWN, reason="too large: (forced by the test)"))
    g = sg.models.mha(2, 2, 1, 2)
    r = sg.verify(g)
    e2e = r.obligations[-1]
    assert r.verdict is sg.Verdict.VERIFIED and e2e.evidence == "randomized"
    assert "the exact check: too large" in e2e.method


def test_cli_prints_verified_exits_0_and_json_says_which_evidence():
    out = CliRunner().invoke(main, ["verify", "mha", "--evidence", "randomized"])
    assert out.exit_code == 0, out.output
    assert "mha: end to end" in out.output and "VERIFIED" in out.output
    assert "verdict: VERIFIED (randomized evidence, error ≤ 2^-" in out.output
    assert "for the end-to-end identity; every other obligation proved exactly)" in out.output
    js = CliRunner().invoke(main, ["verify", "mha", "--evidence", "randomized", "--json"])
    doc = json.loads(js.output)
    assert doc["verdict"] == "verified"
    e2e = doc["obligations"][-1]
    assert e2e["evidence"] == "randomized" and e2e["error_bound"].startswith("2^-")
    assert all(o["evidence"] == "exact" for o in doc["obligations"][:-1])
    exact = CliRunner().invoke(main, ["verify", "mha", "--evidence", "exact", "--json"])
    assert json.loads(exact.output)["obligations"][-1]["evidence"] == "exact"
    bad = CliRunner().invoke(main, ["verify", "mha", "--no-end-to-end", "--evidence", "exact"])
    assert bad.exit_code == 2 and "--no-end-to-end" in bad.output


def test_the_gate_expects_verified_and_proved_meets_it(tmp_path):
    d = tmp_path / "ob"
    d.mkdir()
    (d / "a.toml").write_text('[[graph]]\ngraph = "mha"\nexpect = "verified"\n\n'
                              '[[graph]]\ngraph = "mha"\nevidence = "randomized"\n'
                              'expect = "verified"\n')
    out = CliRunner().invoke(main, ["check", str(d), "--no-cache", "-j", "1", "--json",
                                    str(tmp_path / "o.json")])
    doc = json.loads((tmp_path / "o.json").read_text())
    assert [(o["verdict"], o["met"]) for o in doc["obligations"]] == [("proved", True),
                                                                       ("verified", True)]
    assert out.exit_code == 0, out.output


@pytest.mark.parametrize("entry,needle", [
    ('[[graph]]\ngraph = "mha"\nevidence = "sure"\n',
     'evidence must be "auto", "exact" or "randomized"'),
    ('[[graph]]\ngraph = "mha"\nevidence = "randomized"\n',
     'can give VERIFIED, never PROVED: write expect = "verified"'),
    ('[[graph]]\ngraph = "mha"\nevidence = "exact"\nexpect = "verified"\n',
     'expect = "verified" needs a randomized end to end'),
    ('[[graph]]\ngraph = "mha"\nend_to_end = false\nevidence = "exact"\n',
     "evidence applies to the end-to-end obligation"),
    ('[[node]]\nop = "exp"\nshapes = ["2"]\nexpect = "verified"\n',
     'expect = "verified" applies to graphs'),
])
def test_obligation_files_say_which_evidence_combinations_make_no_sense(tmp_path, entry,
                                                                        needle):
    d = tmp_path / "ob"
    d.mkdir()
    (d / "a.toml").write_text(entry)
    bad = CliRunner().invoke(main, ["check", str(d), "--no-cache"])
    assert bad.exit_code == 2 and needle in bad.output, bad.output


def test_verified_short_of_an_expected_proved_is_counted_and_exits_4():
    from symgrad.gate import Outcome, exit_code
    short = Outcome("a", "graph", "graph x", "a.toml", "proved", "verified", 1.0)
    assert not short.met and exit_code([short]) == 4
    assert Outcome("a", "graph", "g", "a.toml", "verified", "proved", 1.0).met


def test_randomized_agrees_with_the_exact_verdicts_where_both_run():
    for name in ("mha", "residual", "masked-mha", "postnorm"):
        g = build_graph(name, DIMS, "pytorch", "whole", False)
        exact = sg.verify(g, evidence="exact").obligations[-1]
        rnd = randomized_end_to_end(g, seed=21)
        assert (exact.verdict, rnd.verdict) == (sg.Verdict.PROVED, sg.Verdict.VERIFIED)
        for bp in ENGINE_MUTANTS.values():
            assert randomized_end_to_end(g, bp, seed=21).verdict is sg.Verdict.REFUTED


def test_the_error_bound_accounts_for_the_degree():
    g = sg.models.mha(2, 2, 1, 2)
    failing, log2_error, degree, atoms = identity_test(g, None, seed=4)
    assert not failing and degree >= 4 and atoms > 0
    # the Schwartz–Zippel term alone is degree/p with p ≥ 2^126
    assert log2_error >= math.log2(degree) - 127
    assert np.isfinite(log2_error)


def test_verified_needs_the_error_bound_reached(monkeypatch):
    import symgrad.prove.randomized as R
    g = sg.models.mha(2, 2, 1, 2)
    monkeypatch.setattr(R, "identity_test", lambda *a, **k: ([], -10.0, 5, 3))
    r = R.randomized_end_to_end(g, seed=1)      # 4 trials of 2^-10: 2^-40 > 2^-64
    assert r.verdict is sg.Verdict.UNKNOWN and "above 2^-64" in r.reason
    monkeypatch.setattr(R, "identity_test", lambda *a, **k: ([], -40.0, 5, 3))
    r = R.randomized_end_to_end(g, seed=1)      # independent trials multiply: 2^-80
    assert r.verdict is sg.Verdict.VERIFIED and r.error_bound == "2^-80"
    assert "2 trials" in r.method


# ----- red-team regressions -------------------------------------------------------------------

import symengine as se  # noqa: E402


def _scale_graph(c):
    g = Graph([("x", (2,))])
    g.add("scale", 0, c=c)
    return g


def test_constants_computed_on_the_fly_are_not_mistaken_for_dead_ones():
    # 1/(2·√3) ≠ 1/3: tables keyed by id() must not see a freed constant's address again
    wrong = lambda gr, v, s: [s[0] + s[1] / (2 * fn.sqrt(3))]   # noqa: E731
    for seed in range(6):
        assert randomized_end_to_end(_scale_graph(se.Rational(1, 3)), wrong,
                                     seed=seed).verdict is sg.Verdict.REFUTED


def test_roots_of_constants_keep_their_relations_and_signs():
    g = Graph([("x", (1,))])
    g.add("scale", 0, c=se.sqrt(8))
    right = lambda gr, v, s: [s[0] + 2 * se.sqrt(2) * s[1]]     # noqa: E731 - √8 = 2√2
    wrong = lambda gr, v, s: [s[0] - 2 * se.sqrt(2) * s[1]]     # noqa: E731
    for seed in range(8):
        assert randomized_end_to_end(g, right, seed=seed).verdict is sg.Verdict.VERIFIED
        assert randomized_end_to_end(g, wrong, seed=seed).verdict is sg.Verdict.REFUTED
    neg = Graph([("x", (1,))])
    neg.add("scale", 0, c=se.Integer(-2))
    cube = lambda gr, v, s: [s[0] + se.Integer(-8) ** se.Rational(1, 3) * s[1]]  # noqa
    assert randomized_end_to_end(neg, cube, seed=1).verdict is sg.Verdict.UNKNOWN


def test_an_engine_cannot_change_what_it_is_compared_with():
    g = Graph([("x", (2,))])
    g.add("exp", 0)

    def accumulate_in_place(gr, vals, seed):   # right: uses the seeds as its buffers
        cot = dict(seed)
        for k in range(len(gr.nodes) - 1, -1, -1):
            node = gr.nodes[k]
            grads = sg.get_op(node.op).vjp(cot[1 + k], vals[1 + k],
                                            *[vals[r] for r in node.reads])
            for r, gr_ in zip(node.reads, grads):
                cot[r] += gr_
        return [cot[0]]

    def zero_after(gr, vals, seed):          # wrong: its buffers are zeroed afterwards
        out = Graph.backprop(gr, vals, seed)
        for c in out:
            c *= 0
        return out

    for evidence in ("randomized", "exact"):
        r = sg.verify(g, backprop=accumulate_in_place, evidence=evidence).obligations[-1]
        assert r.verdict in (sg.Verdict.VERIFIED, sg.Verdict.PROVED), (evidence, r.reason)
        w = sg.verify(g, backprop=zero_after, evidence=evidence).obligations[-1]
        assert w.verdict is sg.Verdict.REFUTED, evidence


@pytest.mark.parametrize("engine,needle", [
    (lambda gr, v, s: [], "returned 0 cotangent(s)"),
    (lambda gr, v, s: Graph.backprop(gr, v, s)[:1], "returned 1 cotangent(s)"),
    (lambda gr, v, s: [Graph.backprop(gr, v, s)[0], 0], "cotangent of W has shape ()"),
])
def test_cotangents_are_one_per_input_of_its_shape(engine, needle):
    g = Graph([("x", (2, 2)), ("W", (2, 2))])
    g.add("tanh", g.add("matmul", 0, 1))
    with pytest.raises(sg.RuleError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        randomized_end_to_end(g, engine, seed=1)
    none = lambda gr, v, s: [Graph.backprop(gr, v, s)[0], None]   # noqa: E731 - W gets 0
    assert randomized_end_to_end(g, none, seed=1).verdict is sg.Verdict.REFUTED


def test_equality_of_computed_values_is_control_flow_too():
    g = sg.models.mha(2, 2, 1, 2)

    def skip_equal(gr, vals, seed):
        if vals[0][0, 0] == vals[0][0, 1]:
            return [np.zeros(s, dtype=object) for _, s in gr.inputs]
        return Graph.backprop(gr, vals, seed)

    r = randomized_end_to_end(g, skip_equal, seed=1)
    assert r.verdict is sg.Verdict.UNKNOWN and "equality test" in r.reason


def test_the_library_gelu_erf_rule_is_verified():
    g = Graph([("x", (4, 4)), ("W", (4, 4))])
    g.add("gelu_erf", g.add("matmul", 0, 1))
    assert randomized_end_to_end(g, seed=3).verdict is sg.Verdict.VERIFIED


@pytest.mark.parametrize("rule,verdict", [
    (lambda g, out, x: (g * fn.step(out),), sg.Verdict.VERIFIED),       # PyTorch: masked by
    (lambda g, out, x: (fn.where(sg.scalar.wrap(x) > 0, g, 0),), sg.Verdict.VERIFIED),
    (lambda g, out, x: (g * fn.step(out - 1),), sg.Verdict.REFUTED),
    (lambda g, out, x: (2 * g * fn.step(out),), sg.Verdict.REFUTED),
])
def test_relu_backward_as_people_write_it(monkeypatch, rule, verdict):
    import dataclasses
    from symgrad.ops import OPS
    monkeypatch.setitem(OPS, "relu", dataclasses.replace(OPS["relu"], vjp=rule))
    g = Graph([("x", (2, 3)), ("W", (3, 3))])
    g.add("relu", g.add("matmul", 0, 1))
    assert randomized_end_to_end(g, seed=1).verdict is verdict


# ----- division is the field's -----------------------------------------------------------------

def _unary(op):
    g = Graph([("x", (3,))])
    g.add(op, 0)
    return g


def test_a_rule_that_needs_one_over_u_times_u_is_verified_and_its_twin_refuted():
    # σ = 1/(1 + e^(−x)): its derivative σ(1 − σ) holds only through (1/u)·u = 1
    def rule(factor):
        def engine(graph, vals, seeds):
            y = vals[1]
            return [seeds[0] + seeds[1] * y * factor(y)]
        return engine
    g = _unary("sigmoid")
    for seed in range(4):
        r = randomized_end_to_end(g, rule(lambda y: 1 - y), seed=seed)
        assert r.verdict is sg.Verdict.VERIFIED and _bound(r) <= -64, r.reason
        assert randomized_end_to_end(g, rule(lambda y: y), seed=seed).verdict is \
            sg.Verdict.REFUTED
    for op in ("silu", "sigmoid", "tanh"):
        assert randomized_end_to_end(_unary(op), seed=2).verdict is sg.Verdict.VERIFIED


@pytest.mark.parametrize("dims", [(2, 4, 2, 1, 2, 4), (4, 8, 4, 2, 2, 16)])
def test_the_llama_block_is_verified_and_every_engine_mutant_refuted(dims):
    g = sg.models.llama_block(*dims)
    r = randomized_end_to_end(g, seed=7)
    assert r.verdict is sg.Verdict.VERIFIED and _bound(r) <= -64, r.reason
    for bp in ENGINE_MUTANTS.values():
        assert randomized_end_to_end(g, bp, seed=7).verdict is sg.Verdict.REFUTED


def test_only_a_value_known_positive_is_inverted_exactly():
    # relu(x)/relu(x) is 1 as a rational function, but NaN for every x < 0 (a step is 0 on a
    # whole region): a value not known positive is inverted as an independent atom
    wrong = lambda g, y, x: (3 * g * fn.relu(x) / fn.relu(x),)      # noqa: E731
    masked = lambda g, y, x: (fn.where(x > 0, -g / (x * fn.relu(x)), 0 * x),)   # noqa: E731
    rooted = lambda g, y, x: (3 * g * fn.sqrt(fn.relu(x)) / fn.sqrt(fn.relu(x)),)  # noqa
    for forward, rule in ((lambda x: 3 * x, wrong), (lambda x: 1 / x, masked),
                          (lambda x: 3 * x, rooted)):
        r = sg.check_vjp(forward, rule, shapes=[(2,)], evidence="randomized")
        assert r.verdict is not sg.Verdict.VERIFIED, r
        assert sg.check_vjp(forward, rule, shapes=[(2,)]).verdict is sg.Verdict.REFUTED
    # 1 + e^(−x), Σ e^x, √(mean(x²) + ε) are positive: (1/u)·u = 1 is kept for them
    from symgrad.prove.randomized import POSITIVE, ModRun, _running
    import random
    run = ModRun((1 << 127) - 1, random.Random(0))
    with _running(run):
        x = run.variable()
        one_plus = 1 + fn.exp(-x)
        assert one_plus.sg == POSITIVE and (1 / one_plus).sg == POSITIVE
        assert (x * x + fn.exp(x)).sg == POSITIVE and (x - x).sg != POSITIVE
        assert fn.sqrt(x * x + 1).sg == POSITIVE and fn.sqrt(x * x).sg != POSITIVE


def test_shared_denominators_keep_the_degree_bound_small():
    # a softmax row's entries share 1/Σ e: a sum of them is over that one denominator, so
    # the degree bound grows with the tape, not with the number of terms it adds
    failing, log2_error, degree, _ = identity_test(sg.models.mha(4, 8, 2, 4), None, seed=4)
    assert not failing and degree < 10 ** 4 and log2_error <= -64

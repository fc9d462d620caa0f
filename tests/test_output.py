"""What people read: str/repr/_repr_html_ of results, UNKNOWN reasons with a next step,
residual legends, side-condition summaries, progress only on a terminal, and counts that
agree between the terminal, JSON, JUnit and the report."""
import json
import math
import re
import sys
from html.parser import HTMLParser
from xml.etree import ElementTree as ET

import pytest
from click.testing import CliRunner

import symgrad as sg
from symgrad import fn
from symgrad.cli import _progress_printer, main
from symgrad.prove.result import Result


def softmax(x):
    e = fn.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def softmax_right(g, y, x):
    return (y * (g - (g * y).sum(axis=-1, keepdims=True)),)


def softmax_wrong(g, y, x):
    return (y * g,)


BETA = math.sqrt(2 / math.pi)


def gelu(x):
    return 0.5 * x * (1 + fn.tanh(BETA * (x + 0.044715 * x ** 3)))


def gelu_vjp(g, y, x):   # the constant one ulp off: expected and got agree to ~16 digits
    k = 0.044715000000000004
    t = fn.tanh(BETA * (x + k * x ** 3))
    return (g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * BETA * (1 + k * x ** 2 * 3)),)


class _Table(HTMLParser):
    def __init__(self):
        super().__init__()
        self.cells, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)

    def handle_data(self, data):
        if data.strip():
            self.cells.append(data.strip())


def test_a_proved_result_prints_short_and_readable():
    r = sg.check_vjp(softmax, softmax_right, [(2, 3)], name="softmax rule")
    text = str(r)
    lines = text.splitlines()
    assert lines[0].startswith("PROVED softmax rule — normal form")
    assert len(lines) <= 6 and "Result(" not in text and "SideCondition(" not in text
    assert "1 denominator ≠ 0 (all discharged)" in text
    assert "Σ_{j<3} exp(x[0,j]) ≠ 0" in text
    rep = repr(r)
    assert rep.startswith("<Result softmax rule: PROVED") and "\n" not in rep and len(rep) < 200


def test_a_refuted_result_shows_input_entry_expected_got_point_and_a_legend():
    r = sg.check_vjp(softmax, softmax_wrong, [(2, 3)])
    text = str(r)
    assert text.startswith("REFUTED rule")
    for needle in ("the cotangent of x[", "expected (Jᵀḡ)", "rule gave", "residual in [",
                   "at g[0,0]=", "tangent: unit vector"):
        assert needle in text, needle
    atoms = set(re.findall(r"\bA\d+(?:inv)?\b", r.residual))
    assert atoms and atoms == set(r.legend)     # every atom shown is explained, no other
    assert r.legend["A0"].startswith("exp(x[")
    assert "where A0 = exp(x[" in text
    assert "witness x[" in repr(r)


def test_expected_and_got_alike_at_print_precision_say_so_and_show_both_exactly():
    r = sg.check_vjp(gelu, gelu_vjp, [(1,)])
    assert r.verdict is sg.Verdict.REFUTED
    w = r.witness
    assert "float constant" in w.note and "note: expected and got agree to about" in str(r)
    # both are printed to the digits where they differ
    assert w.expected != w.got
    common = len(next(iter(re.findall(r"\d\.\d+", w.expected))))
    assert common > 15


def test_an_unknown_result_says_why_first_and_what_to_do_next():
    r = sg.verify_node("layer_norm", [(8, 16), (16,), (16,)], timeout=0.05)
    assert r.verdict is sg.Verdict.UNKNOWN
    lines = str(r).splitlines()
    assert lines[0].startswith("UNKNOWN layer_norm(8x16, 16, 16)")
    assert lines[1] == "  unknown: timeout: no verdict within 0.05 s"
    assert lines[2].startswith("  next: allow more time (--timeout")
    assert "unknown" not in repr(r).split(",")[0] and "timeout" in repr(r)


def test_advice_fits_the_reason():
    r = sg.check_vjp(lambda x: fn.exp(x), lambda g, y, x: (g * y * (1 + x - x),), [(2,)],
                     timeout=60)
    assert r.verdict is sg.Verdict.PROVED and r.advice == ""
    many = sg.verify(sg.models.mha(2, 2, 1, 2), end_to_end=False)
    assert all(o.advice == "" for o in many.obligations)
    from symgrad.prove.isolate import run_isolated
    import time
    slow = run_isolated(lambda: time.sleep(5), "slow", 0.05, None)
    assert "--timeout" in slow.advice and "memory" not in slow.advice


def test_jupyter_shows_a_small_escaped_table():
    r = sg.check_vjp(softmax, softmax_wrong, [(2, 3)], name="<b>mine</b>")
    html = r._repr_html_()
    assert html.startswith("<table") and "<b>mine</b>" not in html
    p = _Table()
    p.feed(html)
    assert "verdict" in p.cells and "REFUTED" in p.cells and "<b>mine</b>" in p.cells
    assert "counterexample" in p.cells and p.tags.count("tr") >= 5
    g = sg.verify(sg.models.mha(2, 2, 1, 2), end_to_end=False)
    assert g._repr_html_().count("<table") == len(g.obligations)
    assert repr(g) == "<GraphResult mha: PROVED (10 proved)>"
    assert str(g).splitlines()[0] == "PROVED mha: 10 obligations"


def test_json_round_trip_keeps_every_field():
    r = sg.check_vjp(softmax, softmax_wrong, [(2, 3)])
    d = r.to_json()
    assert Result.from_json(d).to_json() == d
    assert json.loads(json.dumps(d))["legend"] == r.legend


def test_graph_results_state_side_conditions_over_tape_values():
    g = sg.verify(sg.models.mha(2, 2, 1, 2))
    corollary, e2e = g.obligations[-2:]
    texts = [c["text"] for c in corollary.tape_conditions]
    assert "Σ_{j<2} exp(scaled[0,0,j]) ≠ 0" in texts
    assert {c["node"] for c in corollary.tape_conditions} == {"probs"}
    assert e2e.tape_conditions == corollary.tape_conditions
    # the node obligation states the same condition over its own argument
    node = next(r for r in g.obligations if r.name.startswith("node softmax"))
    assert "Σ_{j<2} exp(x[0,0,j]) ≠ 0" in [c.text for c in node.side_conditions]


def test_the_decoder_summarises_side_conditions_per_node_and_verbose_lists_them():
    args = ["verify", "decoder", "--no-end-to-end"]
    short = CliRunner().invoke(main, args)
    assert short.exit_code == 0, short.output
    block = short.output.split("side conditions (--verbose lists every one):\n")[1]
    rows = block.split("\n\n")[0].splitlines()
    assert rows and all(re.match(r"  node \S+\(.*\)\s+\d+ ", row) for row in rows), rows
    assert "[discharged]" not in short.output
    assert any("layer_norm" in row and "radicands > 0 (all discharged)" in row for row in rows)
    verbose = CliRunner().invoke(main, args + ["--verbose"])
    assert verbose.exit_code == 0
    assert verbose.output.count("[discharged]") > len(rows)
    assert verbose.output.count("side conditions of node ") == len(rows)


def test_progress_only_on_a_terminal_and_never_in_ci(monkeypatch, capsys):
    class Terminal:
        def __init__(self):
            self.text = ""

        def isatty(self):
            return True

        def write(self, s):
            self.text += s

        def flush(self):
            pass

    monkeypatch.delenv("CI", raising=False)
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    show = _progress_printer()
    show("[3/82] proved   node softmax(2x3)")
    assert term.text.startswith("\r\033[K[3/82] proved   node softmax(2x3)  [")
    assert term.text.endswith(" s]")
    monkeypatch.setenv("CI", "true")
    assert _progress_printer() is None
    monkeypatch.setattr(sys, "stderr", sys.__stderr__)
    result = CliRunner().invoke(main, ["verify", "mha"])   # not a terminal: no progress
    assert "\r" not in result.output and "\033[K" not in result.output


def test_counts_agree_between_terminal_json_junit_and_report(tmp_path):
    files = tmp_path / "ob"
    files.mkdir()
    (files / "a.toml").write_text('[[graph]]\ngraph = "mha"\n\n[[node]]\nop = "softmax"\n'
                                  'shapes = ["2x3"]\n\n[[mutant]]\nmutant = "sub_sign"\n'
                                  'expect = "refuted"\n\n[[node]]\nop = "exp"\nshapes = ["4"]\n'
                                  'name = "exp <4>"\n')
    result = CliRunner().invoke(main, ["check", str(files), "--no-cache", "-j", "1",
                                       "--json", str(tmp_path / "o.json"),
                                       "--junit", str(tmp_path / "j.xml"),
                                       "--report", str(tmp_path / "rep")])
    assert result.exit_code == 0, result.output
    n = int(re.search(r"^(\d+) obligations: (\d+) met", result.output, re.M).group(1))
    doc = json.loads((tmp_path / "o.json").read_text())
    suite = ET.parse(tmp_path / "j.xml").getroot().find("testsuite")
    assert n == 4 == len(doc["obligations"]) == int(suite.get("tests"))
    index = (tmp_path / "rep" / "index.html").read_text()
    for o in doc["obligations"]:
        assert o["title"].replace("<", "&lt;").replace(">", "&gt;") in index
        for r in o["results"]:   # the method's entry counts are the JSON's
            m = re.search(r"\((\d+) of (\d+) entries", r["method"])
            if m:
                assert (int(m.group(1)), int(m.group(2))) == (r["checked"], r["entries"])
    terminal_rows = [line for line in result.output.splitlines()
                     if re.match(r"(graph|node|mutant|exp) ", line)]
    assert len(terminal_rows) == n


@pytest.mark.parametrize("cmd", [["verify", "node", "softmax"], ["verify", "mutant",
                                                                   "sub_sign"]])
def test_single_obligations_list_their_side_conditions(cmd):
    result = CliRunner().invoke(main, cmd)
    assert "side conditions of " in result.output or "side conditions: none" in result.output


def test_list_and_a_run_show_the_same_side_conditions():
    listed = CliRunner().invoke(main, ["list"])
    assert listed.exit_code == 0
    rows = {line.split()[0]: line for line in listed.output.splitlines()[2:]}
    for op in ("softmax", "log", "layer_norm", "relu", "matmul"):
        r = sg.verify_node(op, list(sg.OPS[op].examples[0]))
        kinds = {(c.reason, c.text[-3:]) for c in r.side_conditions
                 if c.reason not in ("declared", "summary")}
        for reason, relation in kinds:
            assert f"{reason} {relation.strip()}" in rows[op], (op, reason)
        if any(c.reason == "declared" for c in r.side_conditions):
            assert "(declared)" in rows[op]
        if not r.side_conditions:
            assert rows[op].rstrip().endswith("-")


def test_sums_over_an_index_range_print_in_sigma_notation_and_nothing_else_does():
    import symengine as se
    from symgrad.prove.notation import readable
    x = [se.Symbol(f"x[0,{j}]") for j in range(3)]
    y = se.Symbol("y[0]")
    assert readable(se.exp(x[0]) + se.exp(x[1]) + se.exp(x[2])) == "Σ_{j<3} exp(x[0,j])"
    assert readable(se.exp(x[1]) + se.exp(x[2])) == str(se.exp(x[1]) + se.exp(x[2]))
    assert "Σ" not in readable(2 * se.exp(x[0]) + se.exp(x[1]))         # not one term
    part = readable(se.exp(x[0]) + se.exp(x[1]) + x[2])    # the matching terms only
    assert "(Σ_{j<2} exp(x[0,j]))" in part and "x[0,2]" in part and part.count("exp") == 1
    mixed = readable(se.exp(x[0]) * y + se.exp(x[1]) * y + se.exp(x[2]) * y)
    assert mixed == "Σ_{j<3} exp(x[0,j])*y[0]"
    r = sg.check_vjp(softmax, softmax_right, [(2, 3)])
    assert "Σ_{j<3} exp(x[0,j]) ≠ 0" in [c.text for c in r.side_conditions]

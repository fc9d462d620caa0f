"""The CI gate: obligation files, expectations, exit codes, outputs, the proof cache and the
pytest plugin."""
import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from click.testing import CliRunner

from symgrad import gate
from symgrad.cli import main

GOOD = '''
[[node]]
op = "softmax"
shapes = ["2x3"]

[[node]]
op = "matmul"
shapes = [[2, 3], [3, 2]]

[[mutant]]
mutant = "softmax_sign"
expect = "refuted"
'''


def run_gate(tmp_path, files: dict, *extra):
    d = tmp_path / "obligations"
    d.mkdir(exist_ok=True)
    for name, text in files.items():
        (d / name).write_text(text)
    result = CliRunner().invoke(main, ["check", str(d), "-j", "1", "--cache-dir",
                                       str(tmp_path / "cache"), *extra])
    return result.exit_code, result.output


def test_all_expectations_met_exit_0_and_outputs_parse(tmp_path):
    code, out = run_gate(tmp_path, {"a.toml": GOOD}, "--json", str(tmp_path / "o.json"),
                     "--junit", str(tmp_path / "o.xml"))
    assert code == 0, out
    assert "3 obligations: 3 met, 0 not met, 0 unknown" in out
    doc = json.loads((tmp_path / "o.json").read_text())
    assert doc["exit_code"] == 0 and {o["verdict"] for o in doc["obligations"]} == {
        "proved", "refuted"}
    suite_el = ET.parse(tmp_path / "o.xml").getroot().find("testsuite")
    assert suite_el.get("tests") == "3" and suite_el.get("failures") == "0"
    props = {p.get("name"): p.get("value") for p in suite_el.find("properties")}
    assert {"symgrad", "sympy", "symengine", "python-flint", "python"} <= set(props)
    case = suite_el.findall("testcase")[1]
    assert case.get("name") == "node matmul(2x3, 3x2)"
    assert json.loads({p.get("name"): p.get("value") for p in case.find("properties")}[
        "shapes"]) == [[2, 3], [3, 2]]


def test_a_mutant_expected_proved_is_a_regression_with_its_witness(tmp_path):
    code, out = run_gate(tmp_path, {"a.toml": '[[mutant]]\nmutant = "softmax_sign"\n'},
                     "--junit", str(tmp_path / "o.xml"))
    assert code == 1
    assert "expected proved, got refuted" in out and "counterexample: the cotangent of x[" in out
    case = ET.parse(tmp_path / "o.xml").getroot().find("testsuite/testcase")
    assert case.find("failure").get("type") == "refuted"


def test_only_unknowns_short_exit_4(tmp_path):
    code, out = run_gate(tmp_path, {"a.toml": '[[node]]\nop = "layer_norm"\nshapes = ["16x64", '
                                          '"64", "64"]\ntimeout = 0.05\n'})
    assert code == 4, out
    assert "timeout" in out


@pytest.mark.parametrize("text,needle", [
    ('[[node]\nop = "x"\n', "a.toml:1: malformed TOML"),
    ('[[node]]\nop = "nosuch"\nshapes = ["2"]\n', "a.toml:2: unknown op 'nosuch'; valid ops are"),
    ('\n[[graph]]\ngraph = "mha"\nheds = 2\n',
     "a.toml:4: unknown key 'heds' in a [[graph]] entry (did you mean 'heads'?)"),
    ('[[graph]]\ngraph = "gpt"\n', "unknown graph 'gpt'; valid graphs are: decoder"),
    ('[[node]]\nop = "softmax"\nshapes = ["2x0"]\n', "every dimension must be a positive"),
    ('[[node]]\nop = "softmax"\nshapes = ["2x3"]\nexpect = "maybe"\n',
     'expect must be "proved", "verified" or "refuted"'),
    ('[[nodes]]\nop = "softmax"\n', "unknown table [[nodes]]"),
])
def test_bad_input_exit_2_and_the_valid_file_still_runs(tmp_path, text, needle):
    code, out = run_gate(tmp_path, {"a.toml": text, "b.toml": GOOD}, "--json",
                     str(tmp_path / "o.json"))
    assert code == 2
    assert needle in out and "Traceback" not in out
    doc = json.loads((tmp_path / "o.json").read_text())
    assert len(doc["obligations"]) == 3 and all(o["met"] for o in doc["obligations"])


def test_cache_hit_then_missed_after_a_rule_changes(tmp_path, monkeypatch):
    pkg = tmp_path / "pkg"
    shutil.copytree(gate.cache.PACKAGE, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(gate.cache, "PACKAGE", pkg)
    monkeypatch.setattr(gate.cache, "_SOURCE_CACHE", {})
    obs, errors = gate.collect([_write(tmp_path, GOOD)])
    assert not errors
    cache = gate.Cache(tmp_path / "cache")
    first = gate.run_all(obs, 1, cache)
    assert not any(o.cached for o in first)
    second = gate.run_all(obs, 1, cache)
    assert all(o.cached for o in second)
    assert [o.verdict for o in second] == [o.verdict for o in first]
    with open(pkg / "ops" / "softmax.py", "a") as f:
        f.write("\n# an edit to the softmax family's rules\n")
    gate.cache._SOURCE_CACHE.clear()
    third = gate.run_all(obs, 1, cache)
    assert not third[0].cached and third[0].verdict == "proved"


def test_the_cache_compares_a_verdict_with_the_current_expect(tmp_path):
    entry = '[[node]]\nop = "softmax"\nshapes = ["2x3"]\nexpect = "{}"\n'
    assert run_gate(tmp_path, {"a.toml": entry.format("proved")})[0] == 0
    for _ in range(2):   # from the cache, against the edited expectation
        code, out = run_gate(tmp_path, {"a.toml": entry.format("refuted")})
        assert code == 1 and "1 from the cache" in out and "expected refuted, got proved" in out
    db = sqlite3.connect(tmp_path / "cache" / "proofs.sqlite")
    payload = db.execute("select payload from proofs").fetchone()[0]
    assert "expect" not in json.loads(payload) and "met" not in json.loads(payload)


def _tamper(payload: dict, digest: str):
    flipped = json.dumps(dict(payload, verdict="refuted"), sort_keys=True)
    return [(flipped, digest),                                  # content edited, hash kept
            (json.dumps(payload, sort_keys=True), "0" * 64),    # hash damaged
            ("{broken", gate.cache._sha256("{broken")),               # hash of a broken payload
            (json.dumps({"verdict": "proved"}), gate.cache._sha256(json.dumps({"verdict":
                                                                           "proved"})))]


@pytest.mark.parametrize("case", range(4))
def test_a_cache_row_that_does_not_match_its_hash_is_checked_again(tmp_path, case):
    code, _ = run_gate(tmp_path, {"a.toml": GOOD})
    path = tmp_path / "cache" / "proofs.sqlite"
    db = sqlite3.connect(path)
    key, payload, digest = db.execute("select key, payload, sha256 from proofs where payload "
                                      "like '%softmax(2x3)%'").fetchone()
    db.execute("update proofs set payload = ?, sha256 = ? where key = ?",
               (*_tamper(json.loads(payload), digest)[case], key))
    db.commit()
    code, out = run_gate(tmp_path, {"a.toml": GOOD})
    assert code == 0 and "2 from the cache" in out and out.count("warning:") == 1
    assert "warning: ignoring damaged proof-cache entries" in out and "softmax(2x3)" in out
    row = db.execute("select payload, sha256 from proofs where key = ?", (key,)).fetchone()
    assert gate.cache._sha256(row[0]) == row[1] and json.loads(row[0])["verdict"] == "proved"
    code, out = run_gate(tmp_path, {"a.toml": GOOD})   # overwritten: trusted again
    assert code == 0 and "3 from the cache" in out and "warning" not in out


def test_many_damaged_cache_rows_give_one_warning_and_a_count(tmp_path):
    run_gate(tmp_path, {"a.toml": GOOD})
    db = sqlite3.connect(tmp_path / "cache" / "proofs.sqlite")
    db.execute("update proofs set sha256 = '0'")
    db.commit()
    code, out = run_gate(tmp_path, {"a.toml": GOOD})
    assert code == 0 and "0 from the cache" in out
    assert out.count("ignoring damaged proof-cache entries") == 1
    assert "warning: 3 damaged proof-cache entries were checked again" in out


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_cache_database_is_rebuilt_once(tmp_path, damage):
    path = tmp_path / "cache" / "proofs.sqlite"
    path.parent.mkdir()
    if damage == "garbage":
        path.write_bytes(b"not a database" * 100)
    else:   # a real cache, with pages enough that half of the file loses some
        db = sqlite3.connect(path)
        db.execute("create table filler (x text)")
        db.executemany("insert into filler values (?)", [("x" * 500,)] * 200)
        db.commit()
        db.close()
        run_gate(tmp_path, {"a.toml": GOOD})
        with open(path, "r+b") as f:
            f.truncate(path.stat().st_size // 2)
    code, out = run_gate(tmp_path, {"a.toml": GOOD})
    assert code == 0 and "3 met" in out and out.count("warning:") == 1
    assert "was damaged (" in out and "moved it to proofs.sqlite.damaged and started a new one" \
        in out
    assert (tmp_path / "cache" / "proofs.sqlite.damaged").exists()
    code, out = run_gate(tmp_path, {"a.toml": GOOD})
    assert code == 0 and "3 from the cache" in out and "warning" not in out


def test_an_unusable_cache_is_ignored_with_a_warning(tmp_path):
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "proofs.sqlite").mkdir()   # not a file: cannot be moved aside
    with pytest.warns(UserWarning, match="ignoring the proof cache"):
        c = gate.Cache(tmp_path / "cache")
    assert c.db is None and c.get(gate.collect([_write(tmp_path, GOOD)])[0][0]) is None


def test_shipped_obligations_load_and_cover_every_op_graph_and_mutant():
    from symgrad.models.catalog import GRAPHS
    from symgrad.mutants import ENGINE_MUTANTS, MUTANTS
    from symgrad.ops import OPS
    root = Path(__file__).resolve().parent.parent / "obligations"
    obs, errors = gate.collect([root])
    assert not errors
    assert {o.spec["op"] for o in obs if o.kind == "node"} == set(OPS)
    assert {o.spec["graph"] for o in obs if o.kind == "graph"} == set(GRAPHS)
    assert {o.spec["mutant"] for o in obs if o.kind == "mutant"} == set(MUTANTS)
    assert {o.spec.get("backprop") for o in obs if o.kind == "graph"} >= set(ENGINE_MUTANTS)
    assert all(o.expect == "refuted" for o in obs if o.kind == "mutant" or
               o.spec.get("backprop"))


def test_pytest_plugin_collects_obligations_and_shows_the_witness(tmp_path):
    d = tmp_path / "obligations"
    d.mkdir()
    (d / "gate.toml").write_text(GOOD + '\n[[mutant]]\nmutant = "sub_sign"\n')
    proc = subprocess.run([sys.executable, "-m", "pytest", str(d), "-q", "-p",
                           "no:cacheprovider", "--junitxml", str(tmp_path / "j.xml")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "3 passed" in proc.stdout and "1 failed" in proc.stdout
    assert "mutant sub_sign: expected proved, got refuted" in proc.stdout
    assert "counterexample: the cotangent of" in proc.stdout
    cases = ET.parse(tmp_path / "j.xml").getroot().iter("testcase")
    assert len(list(cases)) == 4


def _pytest(tmp_path, *args):
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-rA", *args], capture_output=True, text=True, cwd=tmp_path,
                          timeout=600)


def test_pytest_plugin_shares_the_proof_cache_and_names_a_reproduction(tmp_path):
    d = tmp_path / "obligations"
    d.mkdir()
    (d / "gate.toml").write_text(GOOD + '\n[[mutant]]\nmutant = "sub_sign"\n')
    junit = tmp_path / "first.xml"
    first = _pytest(tmp_path, "obligations", "--junitxml", str(junit))
    assert "3 passed" in first.stdout and "1 failed" in first.stdout, first.stdout
    line = next(x for x in first.stdout.splitlines() if x.startswith("reproduce: "))
    assert line.startswith("reproduce: pytest 'obligations/gate.toml::") and \
        line.endswith("--symgrad-no-cache")
    # the pytest run filled the cache that `symgrad check` reads
    from symgrad.gate import Cache, load_file
    obligations, _ = load_file(d / "gate.toml", "obligations/gate.toml")
    cache = Cache(tmp_path / ".symgrad-cache")
    assert all(cache.get(ob) is not None for ob in obligations)
    # a second run reads it: every item says so in its properties
    again = _pytest(tmp_path, "obligations", "--junitxml", str(tmp_path / "again.xml"))
    props = [p.get("value") for p in ET.parse(tmp_path / "again.xml").getroot().iter(
        "property") if p.get("name") == "cached"]
    assert props == ["yes"] * 4, again.stdout
    # --symgrad-no-cache checks afresh; the reproduction line runs the failing item alone
    fresh = _pytest(tmp_path, "obligations", "--symgrad-no-cache", "--junitxml",
                    str(tmp_path / "fresh.xml"))
    props = [p.get("value") for p in ET.parse(tmp_path / "fresh.xml").getroot().iter(
        "property") if p.get("name") == "cached"]
    assert props == ["no"] * 4, fresh.stdout
    import shlex
    alone = _pytest(tmp_path, *shlex.split(line.removeprefix("reproduce: pytest ")))
    assert "1 failed" in alone.stdout and "passed" not in alone.stdout, alone.stdout
    # -p no:symgrad turns the plugin off: the toml files are not collected
    off = _pytest(tmp_path, "obligations", "-p", "no:symgrad")
    assert "no tests ran" in off.stdout, off.stdout


def _write(tmp_path, text):
    p = tmp_path / "obligations"
    p.mkdir(exist_ok=True)
    (p / "x.toml").write_text(text)
    return p / "x.toml"


def test_an_internal_error_on_one_obligation_keeps_the_others_and_exits_3(tmp_path,
                                                                         monkeypatch):
    import symgrad.api
    real = symgrad.api.verify_node

    def broken(op, *a, **k):
        if op == "matmul":
            raise RuntimeError("a bug")
        return real(op, *a, **k)

    monkeypatch.setattr(symgrad.api, "verify_node", broken)
    obs, _ = gate.collect([_write(tmp_path, GOOD)])
    outcomes = gate.run_all(obs, 1, None)
    assert [o.verdict for o in outcomes] == ["proved", "internal", "refuted"]
    assert outcomes[1].reason == "internal error: RuntimeError: a bug"
    assert gate.exit_code(outcomes) == 3

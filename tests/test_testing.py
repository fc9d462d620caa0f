"""symgrad.testing.assert_vjp and the symgrad_check fixture: a wrong rule fails an ordinary
test with its counterexample and a line that reproduces it; a right one passes."""
import os
import subprocess
import sys
import textwrap

import pytest

import symgrad as sg
from symgrad.testing import assert_vjp, reproduction

RULES = textwrap.dedent('''
    import symgrad as sg

    def softmax(x):
        e = sg.fn.exp(x)
        return e / e.sum(axis=-1, keepdims=True)

    def softmax_vjp(g, y, x):
        return (y * (g - (g * y).sum(axis=-1, keepdims=True)),)

    def softmax_vjp_wrong(g, y, x):
        return (y * g,)
''')


@pytest.fixture
def rules(tmp_path, monkeypatch):
    (tmp_path / "myrules.py").write_text(RULES)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    import importlib
    import myrules
    return importlib.reload(myrules)


def test_a_right_rule_passes_and_returns_its_result(rules):
    r = assert_vjp(rules.softmax, rules.softmax_vjp, shapes=[(2, 3)])
    assert r.verdict is sg.Verdict.PROVED


def test_a_wrong_rule_fails_with_the_counterexample_and_a_runnable_reproduction(rules):
    with pytest.raises(AssertionError) as info:
        assert_vjp(rules.softmax, rules.softmax_vjp_wrong, shapes=[(2, 3)])
    text = str(info.value)
    first = text.splitlines()[0]
    assert first.startswith("REFUTED vjp rule softmax_vjp_wrong at shapes [(2, 3)]")
    assert "the cotangent of x[" in first
    assert "expected (Jᵀḡ)" in text and "rule gave" in text and "x[0,0]=" in text
    line = text.splitlines()[-1]
    assert line.startswith("reproduce: python -c ")
    command = line.removeprefix("reproduce: ")
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    out = subprocess.run(command, shell=True, capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0 and out.stdout.startswith("REFUTED"), out.stdout + out.stderr


def test_undecided_is_a_failure_too():
    # right, but its backward needs exp(x)² = exp(2x), which the randomized model drops
    with pytest.raises(AssertionError, match="UNKNOWN .*\nunknown: "):
        assert_vjp(lambda x: sg.fn.exp(2 * x),
                   lambda g, y, x: (2 * g * sg.fn.exp(x) * sg.fn.exp(x),), shapes=[(2,)],
                   evidence="randomized")


def test_randomized_evidence_passes_on_verified(rules):
    r = assert_vjp(rules.softmax, rules.softmax_vjp, shapes=[(2, 3)], evidence="randomized")
    assert r.verdict is sg.Verdict.VERIFIED
    with pytest.raises(AssertionError, match="^REFUTED"):
        assert_vjp(rules.softmax, rules.softmax_vjp_wrong, shapes=[(2, 3)],
                   evidence="randomized")


def test_lambdas_get_a_hint_instead_of_a_command():
    hint = reproduction(lambda x: x, lambda g, y, x: (g,), [(2,)], "exact")
    assert hint.startswith("sg.check_vjp(forward, vjp, shapes=[(2,)])")


def test_the_fixture_fails_a_parametrised_test(tmp_path, rules):
    (tmp_path / "test_mine.py").write_text(textwrap.dedent('''
        import pytest
        import myrules

        @pytest.mark.parametrize("shape", [(2, 3), (1, 4)])
        def test_softmax(symgrad_check, shape):
            symgrad_check(myrules.softmax, myrules.softmax_vjp, shapes=[shape])

        def test_wrong(symgrad_check):
            symgrad_check(myrules.softmax, myrules.softmax_vjp_wrong, shapes=[(2, 3)])
    '''))
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          str(tmp_path / "test_mine.py")], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=600)
    assert "1 failed, 2 passed" in out.stdout, out.stdout + out.stderr
    assert "the cotangent of x[" in out.stdout and "reproduce: python -c" in out.stdout
    assert "def assert_vjp" not in out.stdout      # the failure points at the test's line

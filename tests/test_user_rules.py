"""A project's own rules in the gate (examples/myproject): an op made by
symgrad.define_op, a forward/VJP pair, a wrong twin expected REFUTED and a block built by
the project's function — through `symgrad check` and through pytest, the proof cache keyed
by the project's source, and one clear sentence for every bad reference."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import symgrad as sg

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "myproject"


@pytest.fixture
def project(tmp_path):
    dest = tmp_path / "myproject"
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns("__pycache__",
                                                                 ".symgrad-cache"))
    return dest


def _run(cwd, *args):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def test_the_example_project_passes_symgrad_check_and_the_cache_follows_its_source(project):
    first = _run(project, "symgrad.cli", "check")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "4 obligations: 4 met" in first.stdout and "0 from the cache" in first.stdout
    assert "swish with the bug                         refuted  refuted  yes" in first.stdout
    again = _run(project, "symgrad.cli", "check")
    assert "4 from the cache" in again.stdout, again.stdout
    # an edit anywhere in the project's package runs its obligations again
    rules = project / "myrules" / "rules.py"
    rules.write_text(rules.read_text().replace("return (g * (s + x * s * (1 - s)),)",
                                               "return (g * (s + x * s * (1 + s)),)"))
    edited = _run(project, "symgrad.cli", "check")
    assert edited.returncode == 1, edited.stdout
    assert "0 from the cache" in edited.stdout
    assert "node myrules.rules:swish(2x3)              proved   refuted  NO" in edited.stdout


def test_the_example_project_passes_pytest(project):
    out = _run(project, "pytest", "obligations", "-q", "-p", "no:cacheprovider")
    assert out.returncode == 0 and "4 passed" in out.stdout, out.stdout + out.stderr


@pytest.mark.parametrize("entry, message", [
    ('[[node]]\nrule = "myrules.nothere:x"\nshapes = ["2"]\n',
     "rules.toml:2: rule = \"myrules.nothere:x\": cannot import 'myrules.nothere'"),
    ('[[node]]\nrule = "myrules.rules:missing"\nshapes = ["2"]\n',
     "rules.toml:2: rule = \"myrules.rules:missing\": myrules.rules has no attribute"),
    ('[[node]]\nrule = "myrules.rules:swish"\nshapes = ["2"]\n',
     "rules.toml:2: rule = \"myrules.rules:swish\" is a function, not an op made by "
     "symgrad.define_op"),
    ('[[node]]\nforward = "myrules.rules:swish"\nshapes = ["2"]\n',
     "needs vjp = \"module.path:function\" too"),
    ('[[node]]\nop = "tanh"\nrule = "myrules.rules:rms_norm"\nshapes = ["2"]\n',
     "names one of op = …, rule = … or forward = … with vjp = …"),
    ('[[graph]]\nbuilder = "myrules.rules:EPS"\n',
     "rules.toml:2: builder = \"myrules.rules:EPS\" is not a function"),
    ('[[graph]]\nbuilder = "myrules.blocks:norm_block"\nargs = { m = 2 }\n',
     "rules.toml:3: builder myrules.blocks:norm_block(…) raised TypeError"),
    ('[[graph]]\nbuilder = "myrules.rules:swish"\nargs = { x = 2 }\n',
     "not a symgrad Graph"),
])
def test_a_bad_reference_is_one_sentence_at_its_line_and_exit_2(project, entry, message):
    (project / "obligations" / "rules.toml").write_text(entry)
    out = _run(project, "symgrad.cli", "check")
    assert out.returncode == 2, out.stdout + out.stderr
    assert message in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def test_a_builder_graph_with_a_wrong_user_op_is_refuted(project):
    rules = project / "myrules" / "rules.py"
    rules.write_text(rules.read_text().replace("dx = r * gw - x * r ** 3",
                                               "dx = r * gw - x * r ** 2"))
    out = _run(project, "symgrad.cli", "check")
    assert out.returncode == 1, out.stdout
    assert "node myrules.rules:rms_norm(2x3, 3)        proved   refuted  NO" in out.stdout
    assert "graph myrules.blocks:norm_block(d=3, n=2)  proved   refuted  NO" in out.stdout


@pytest.fixture
def clean_registry():
    before = set(sg.OPS)
    yield
    for name in set(sg.OPS) - before:
        del sg.OPS[name]


def test_define_op_checks_what_it_is_given(clean_registry):
    twice = sg.define_op("user_twice", lambda x: 2 * x, lambda g, y, x: (2 * g,))
    assert sg.define_op("user_twice", twice.forward, twice.vjp) is twice   # imported again
    with pytest.raises(sg.InputError, match="already defined"):
        sg.define_op("user_twice", lambda x: 3 * x, lambda g, y, x: (3 * g,))
    with pytest.raises(sg.InputError, match="already defined .built in"):
        sg.define_op("matmul", lambda x: x, lambda g, y, x: (g,))
    with pytest.raises(sg.InputError, match="identifier"):
        sg.define_op("not a name", lambda x: x, lambda g, y, x: (g,))
    assert sg.OPS["user_twice"].args == ("x",)
    assert sg.verify_node("user_twice", [(2, 2)]).verdict is sg.Verdict.PROVED
    with pytest.raises(sg.InputError, match="takes 1 input"):
        sg.verify_node("user_twice", [(2,), (2,)])

"""The command line: output, JSON, exit codes, and one-sentence errors without tracebacks."""
import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from symgrad.cli import main


def run(*args):
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_verify_node_proved():
    code, out = run("verify", "node", "softmax", "--shape", "2x3")
    assert code == 0
    assert "softmax(2x3)" in out and "PROVED" in out and "verdict: PROVED" in out
    assert "side conditions" in out


def test_verify_node_json():
    code, out = run("verify", "node", "matmul", "--shape", "2x3", "--shape", "3x4", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["verdict"] == "proved"
    ob = data["obligations"][0]
    assert ob["name"] == "matmul(2x3, 3x4)" and ob["verdict"] == "proved"
    assert isinstance(ob["seconds"], float) and ob["terms"] > 0


def test_reads_and_params():
    assert run("verify", "node", "mul", "--shape", "2x2", "--reads", "0,0")[0] == 0
    code, out = run("verify", "node", "scale", "--shape", "2x2", "--param", "c=1/3", "--json")
    assert code == 0 and json.loads(out)["obligations"][0]["params"]["c"] == "1/3"
    assert run("verify", "node", "layer_norm", "--shape", "2x3", "--shape", "3", "--shape", "3",
               "--param", "eps=eps")[0] == 0


@pytest.mark.parametrize("args,needle", [
    (["verify", "node", "nosuch"], "unknown op 'nosuch'; valid ops are:"),
    (["verify", "node", "matmul", "--shape", "2x3"], "matmul takes 2 input shape(s)"),
    (["verify", "node", "matmul", "--shape", "2x3", "--shape", "4x5"],
     "x has shape (2,3) and W has shape (4,5)"),
    (["verify", "node", "softmax", "--shape", "2x0"], "every dimension must be a positive integer"),
    (["verify", "node", "softmax", "--shape", "2xa"], "cannot read the shape '2xa'"),
    (["verify", "node", "softmax", "--shape", "300x300"], "more than the limit of 65536"),
    (["verify", "node", "scale", "--param", "d=1"], "has no parameter 'd'"),
    (["verify", "node", "scale", "--param", "c"], "write NAME=VALUE"),
])
def test_bad_input_exit_2_one_sentence(args, needle):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert needle in result.output
    assert "Traceback" not in result.output


def test_real_process_exit_codes_and_no_traceback():
    ok = subprocess.run([sys.executable, "-m", "symgrad.cli", "verify", "node", "relu",
                         "--shape", "2"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([sys.executable, "-m", "symgrad.cli", "verify", "node", "relux"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().startswith("error: unknown op 'relux'")


def test_list_shows_ops_with_signatures_and_conditions():
    code, out = run("list")
    assert code == 0
    for needle in ("layer_norm", "x (m,n), W (n,p) -> (m,p)", "x > 0", "hard_masked_softmax"):
        assert needle in out


def test_help_explains_exit_codes():
    code, out = run("--help")
    assert code == 0 and "Exit codes" in out


def test_refuted_mutant_exits_1_and_shows_the_witness():
    code, out = run("verify", "mutant", "layer_norm_unbiased_variance")
    assert code == 1
    assert "REFUTED" in out and "counterexample: the cotangent of" in out
    assert "residual in [" in out and "excludes 0" in out


def test_mutant_list_and_unknown_name():
    code, out = run("verify", "mutant")
    assert code == 0 and "softmax_no_subtraction" in out
    code, out = run("verify", "mutant", "nosuch")
    assert code == 2 and "unknown mutant 'nosuch'" in out


def test_timeout_exits_4():
    code, out = run("verify", "node", "layer_norm", "--shape", "8x32", "--shape", "32",
                    "--shape", "32", "--timeout", "0.05")
    assert code == 4 and "timeout" in out


def test_verify_mha_graph_json():
    code, out = run("verify", "mha", "--json")
    assert code == 0
    data = json.loads(out)
    names = [o["name"] for o in data["obligations"]]
    assert data["verdict"] == "proved"
    assert names[-2] == "mha: DAG corollary" and names[-1] == "mha: end to end"
    assert any(n.startswith("node softmax") for n in names)


def test_verify_graph_options_and_errors():
    code, out = run("verify", "layernorm", "--form", "decomposed", "--d-model", "3")
    assert code == 0 and "node mul(2x3#0, 2x3#0)" in out
    code, out = run("verify", "decoder", "--no-end-to-end")
    assert code == 0 and "end to end" not in out and "DAG corollary" in out
    code, out = run("verify", "mha", "--heads", "0")
    assert code == 2 and "heads must be a positive integer" in out
    code, out = run("verify", "mha", "--layout", "jax")
    assert code == 2
    code, out = run("verify", "mha", "--fixed-weights")
    assert code == 2 and "--fixed-weights applies to the decoder graph, not to mha" in out
    code, out = run("verify", "decoder", "--fixed-weights", "--no-end-to-end")
    assert code == 0 and "matmul_const" in out

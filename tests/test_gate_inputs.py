"""Bad input to the CLI and the CI gate: one clear sentence, the right exit code, no
traceback, nothing lost — environment variables and options checked before any work,
output paths, options that do not apply, the obligation schema, unreadable files, JUnit and
JSON records of input errors, and Ctrl-C."""
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from click.testing import CliRunner

import symgrad as sg
from symgrad import gate
from symgrad.cli import main
from symgrad.prove import isolate

FAST = '[[node]]\nop = "relu"\nshapes = ["2"]\n'


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if any obligation or check would start."""
    def refuse(*a, **k):
        raise AssertionError("work started before the input was checked")
    import symgrad.api
    import symgrad.prove.tape  # noqa: F401
    for module, name in ((gate, "run_all"), (gate, "collect"), (symgrad.api, "run_isolated"),
                         (symgrad.prove.tape, "run_isolated")):
        monkeypatch.setattr(module, name, refuse)


def usage_error(args, env=None, needle=""):
    """Run the CLI; expect exit 2 within a second, ``needle`` in the output, no traceback."""
    t0 = time.perf_counter()
    result = CliRunner().invoke(main, args, env=env)
    assert time.perf_counter() - t0 < 1.0
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert needle in result.output, result.output
    assert "Traceback" not in result.output
    return result.output


# ----- environment variables and options, before any work ---------------------------------

@pytest.mark.parametrize("variable,value", [
    ("SYMGRAD_MEMORY_MB", "abc"), ("SYMGRAD_MEMORY_MB", "0"), ("SYMGRAD_MEMORY_MB", "-5"),
    ("SYMGRAD_MEMORY_MB", "1.5"), ("SYMGRAD_TIMEOUT", "x"), ("SYMGRAD_TIMEOUT", "nan"),
    ("SYMGRAD_TIMEOUT", "inf"), ("SYMGRAD_TIMEOUT", "-1"), ("SYMGRAD_TIMEOUT", "0"),
    ("SYMGRAD_WORKERS", "abc"), ("SYMGRAD_WORKERS", "0"), ("SYMGRAD_MAX_ENTRIES", "abc"),
])
@pytest.mark.parametrize("command", [["check", "obligations"], ["verify", "mha"],
                                     ["verify", "node", "relu"]])
def test_a_bad_environment_variable_is_one_sentence_and_exit_2(variable, value, command,
                                                                 no_work):
    out = usage_error(command, {variable: value}, f"error: {variable}={value!r} is not a "
                                                  f"positive")
    assert len(out.strip().splitlines()) == 1


@pytest.mark.parametrize("args,needle", [
    (["verify", "node", "relu", "--timeout", "x"], "'x' is not a number of seconds"),
    (["verify", "node", "relu", "--timeout", "nan"], "got nan"),
    (["verify", "mha", "--timeout", "inf"], "got inf"),
    (["verify", "mutant", "sub_sign", "--timeout", "-1"], "got -1.0"),
    (["verify", "node", "relu", "--timeout", "0"], "must be a positive number of seconds"),
    (["verify", "node", "relu", "--max-entries", "0"], "0 is not in the range x>=1"),
    (["check", "obligations", "-j", "0"], "0 is not in the range x>=1"),
    (["check", "obligations", "-j", "-3"], "-3 is not in the range x>=1"),
])
def test_a_bad_option_is_a_usage_error(args, needle, no_work):
    out = usage_error(args, needle=needle)
    assert "Invalid value for" in out


def test_a_bad_environment_does_not_break_the_import():
    env = dict(os.environ, SYMGRAD_MEMORY_MB="abc", SYMGRAD_TIMEOUT="nan")
    proc = subprocess.run([sys.executable, "-c", "import symgrad.prove.isolate as i; "
                           "print(i.DEFAULT_TIMEOUT, i.DEFAULT_MEMORY_MB)"],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0 and proc.stdout.split() == ["600.0", "4096"], proc.stderr
    proc = subprocess.run([sys.executable, "-m", "symgrad.cli", "verify", "node", "relu"],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 2 and proc.stderr == ("error: SYMGRAD_TIMEOUT='nan' is not a "
                                                    "positive number of seconds; unset it or "
                                                    "set it to one like 600\n")


@pytest.mark.parametrize("kwargs,needle", [
    (dict(timeout="x"), "timeout must be a positive number of seconds, got 'x'"),
    (dict(timeout=True), "got True"), (dict(timeout=math.nan), "got nan"),
    (dict(timeout=-2), "got -2"), (dict(memory_mb=-5), "memory_mb must be a positive whole"),
    (dict(memory_mb=1.5), "got 1.5"), (dict(memory_mb="8192"), "got '8192'"),
])
def test_the_python_api_checks_its_limits(kwargs, needle):
    with pytest.raises(sg.InputError, match=needle.replace("(", r"\(")):
        sg.check_vjp(lambda x: x, lambda g, y, x: (g,), [(2,)], **kwargs)


def test_the_limits_read_the_environment_when_asked(monkeypatch):
    monkeypatch.setenv("SYMGRAD_TIMEOUT", "2.5")
    monkeypatch.setenv("SYMGRAD_MEMORY_MB", "100")
    monkeypatch.setenv("SYMGRAD_WORKERS", "3")
    assert (isolate.timeout_seconds(), isolate.memory_limit_mb(), isolate.workers()) == (
        2.5, 100, 3)
    assert isolate.timeout_seconds(7) == 7.0 and isolate.max_entries() == 65536
    monkeypatch.setenv("SYMGRAD_WORKERS", "0")
    with pytest.raises(sg.InputError, match="SYMGRAD_WORKERS='0' is not a positive whole"):
        isolate.worker_count()


# ----- output paths, before any work ------------------------------------------------------

@pytest.mark.parametrize("option,path,needle", [
    ("--junit", "nope/j.xml", "the directory '{tmp}/nope' does not exist"),
    ("--json", "nope/o.json", "the directory '{tmp}/nope' does not exist"),
    ("--json", "afile/o.json", "'{tmp}/afile' is a file, so"),
    ("--junit", "adir", "is a directory"),
    ("--report", "afile", "is a file"),
    ("--report", "afile/sub/dir", "'{tmp}/afile' is a file, so"),
    ("--cache-dir", "afile", "is a file"),
    ("--cache-dir", "afile/c", "'{tmp}/afile' is a file, so"),
])
def test_check_refuses_an_output_path_it_cannot_write_before_any_work(tmp_path, option, path,
                                                                       needle, no_work):
    (tmp_path / "afile").write_text("")
    (tmp_path / "adir").mkdir()
    usage_error(["check", "obligations", option, str(tmp_path / path)],
                needle=needle.format(tmp=tmp_path))


@pytest.mark.parametrize("command", [["verify", "node", "relu"], ["verify", "mha"],
                                     ["verify", "mutant", "sub_sign"]])
def test_verify_refuses_a_report_directory_it_cannot_create(tmp_path, command, no_work):
    (tmp_path / "afile").write_text("")
    usage_error(command + ["--report", str(tmp_path / "afile" / "r")], needle="is a file, so")


def test_a_report_directory_is_created_with_its_parents(tmp_path):
    result = CliRunner().invoke(main, ["verify", "node", "relu", "--report",
                                       str(tmp_path / "a" / "b")])
    assert result.exit_code == 0 and (tmp_path / "a" / "b" / "index.html").exists()


# ----- options that do not apply ----------------------------------------------------------

@pytest.mark.parametrize("args,needle", [
    (["verify", "layernorm", "--heads", "2"], "--heads applies to the mha, residual, "
                                              "postnorm, encoder, masked, masked-mha, decoder, "
                                              "prenorm, stack and llama graphs, not to "
                                              "layernorm"),
    (["verify", "layernorm", "--head-dim", "3"], "--head-dim applies to the mha"),
    (["verify", "ffn", "--heads", "2"], "not to ffn"),
    (["verify", "mha", "--d-ff", "8"], "--d-ff applies to the ffn, encoder, decoder, "
                                       "prenorm, stack and llama graphs, not to mha"),
    (["verify", "mha", "--kv-heads", "2"], "--kv-heads applies to the llama graph, not to mha"),
    (["verify", "masked", "--d-model", "4"], "--d-model applies to"),
    (["verify", "layernorm", "--layout", "torchlean"], "--layout applies to"),
    (["verify", "ffn", "--layout", "pytorch"], "not to ffn"),
    (["verify", "mha", "--form", "decomposed"], "--form applies to the layernorm graph, not "
                                                "to mha"),
    (["verify", "postnorm", "--form", "whole"], "not to postnorm"),
    (["verify", "encoder", "--fixed-weights"], "--fixed-weights applies to the decoder graph, "
                                               "not to encoder"),
    (["verify", "mutant", "--timeout", "5"], "--timeout applies when checking a mutant"),
    (["verify", "mutant", "--json"], "--json applies when checking a mutant"),
    (["check", "obligations", "--no-cache", "--cache-dir", "x"],
     "--cache-dir does not apply with --no-cache"),
])
def test_an_option_that_does_not_apply_is_a_usage_error(args, needle, no_work):
    out = usage_error(args, needle=needle)
    assert "Usage:" in out


# ----- the obligation schema --------------------------------------------------------------

NODE = '[[node]]\nop = "softmax"\nshapes = ["2x3"]\n'
GRAPH = '[[graph]]\ngraph = "mha"\n'


@pytest.mark.parametrize("text,line,needle", [
    (NODE + 'name = 5\n', 4, "name must be a non-empty string, got 5"),
    (NODE + 'name = ""\n', 4, 'name must be a non-empty string, got ""'),
    ('[[node]]\nop = "scale"\nshapes = ["2"]\nparams = {c = true}\n', 4,
     'params.c must be a string like "1/2", "3x2" or a symbol name, or an integer, got true'),
    ('[[node]]\nop = "scale"\nshapes = ["2"]\nparams = {c = 0.5}\n', 4, "got 0.5"),
    ('[[node]]\nop = "scale"\nshapes = ["2"]\nparams = {cc = "1/2"}\n', 4,
     "unknown parameter 'cc' of scale (did you mean 'c'?); valid parameters are: c"),
    ('[[node]]\nop = "scale"\nshapes = ["2"]\nparams = {c = "a b"}\n', 4,
     "params.c: cannot read the parameter value 'a b'"),
    (NODE + 'params = {c = "1"}\n', 4, "softmax takes no parameters, got params.c"),
    (NODE + 'params = "c=1"\n', 4, 'params must be a table, like params = { c = "1/2" }'),
    (NODE + 'symmetry = "no"\n', 4, 'symmetry must be true or false, got "no"'),
    (GRAPH + 'end_to_end = 1\n', 3, "end_to_end must be true or false, got 1"),
    ('[[graph]]\ngraph = "decoder"\nfixed_weights = "yes"\n', 3, "fixed_weights must be true"),
    (GRAPH + 'layout = 5\n', 3, "layout must be a string, got 5"),
    (GRAPH + 'layout = "jax"\n', 3, 'layout must be "pytorch" or "torchlean", got "jax"'),
    ('[[graph]]\ngraph = "layernorm"\nform = "half"\n', 3, 'form must be "whole" or'),
    (GRAPH + 'heads = 0\n', 3, "heads must be a positive integer, got 0"),
    (GRAPH + 'heads = true\n', 3, "heads must be a positive integer, got true"),
    (GRAPH + 'n = "2"\n', 3, 'n must be a positive integer, got "2"'),
    ('[[graph]]\ngraph = "layernorm"\n\nheads = 2\n', 4,
     "heads applies to the mha, residual, postnorm, encoder, masked, masked-mha, decoder, "
     "prenorm, stack and llama graphs, not to layernorm"),
    (GRAPH + 'kv_heads = 2\n', 3, "kv_heads applies to the llama graph, not to mha"),
    (GRAPH + 'form = "whole"\n', 3, "form applies to the layernorm graph, not to mha"),
    (GRAPH + 'fixed_weights = true\n', 3, "fixed_weights applies to the decoder graph, not "
                                          "to mha"),
    (GRAPH + 'backprop = "backprop_drop"\n', 3, "unknown engine mutant 'backprop_drop' (did "
                                                "you mean"),
    ('[[node]]\nop = "softmax"\nshapes = "2x3"\n', 3, "shapes must be a list with one shape"),
    ('[[node]]\nop = "softmax"\n', 1, "a [[node]] entry needs shapes = [...]"),
    ('[[node]]\nop = "softmax"\nshapes = [[2, true]]\n', 3, "cannot read the shape [2, true]"),
    (NODE + 'reads = [true]\n', 4, "reads must be a list of input indices, like [0, 0], "
                                   "got [true]"),
    (NODE + 'reads = "0,0"\n', 4, "reads must be a list of input indices"),
    (NODE + 'timeout = nan\n', 4, "timeout must be a positive number of seconds, got nan"),
    (NODE + 'timeout = inf\n', 4, "got inf"),
    (NODE + 'timeout = -1\n', 4, "got -1"),
    (NODE + 'timeout = "5"\n', 4, "got '5'"),
    (NODE + 'expect = true\n', 4, 'expect must be a string, got true'),
    ('[[node]]\nop = 5\nshapes = ["2"]\n', 2, "op must be a string, got 5"),
    ('[[node]]\nop = ["softmax"]\nshapes = ["2"]\n', 2, 'op must be a string, got ["softmax"]'),
    ('[[node]]\nop = "sofmax"\nshapes = ["2"]\n', 2,
     "unknown op 'sofmax' (did you mean 'softmax'?); valid ops are: add"),
    ('# a comment\n[[graph]]\ngraph = "mah"\n', 3, "unknown graph 'mah' (did you mean 'mha'?)"),
    ('[[mutant]]\nmutant = "softmax_sig"\n', 2, "(did you mean 'softmax_sign'?)"),
    ('[[mutant]]\n', 1, 'a [[mutant]] entry needs mutant = "…" (one of affine_db_first_row'),
    ('[[node]]\nop = "softmax"\nshpes = ["2x3"]\n', 3,
     "unknown key 'shpes' in a [[node]] entry (did you mean 'shapes'?); valid keys are:"),
    (NODE + '\n' + NODE + 'symmetry = 1\n', 8, "symmetry must be true or false, got 1"),
    ('[[nodes]]\nop = "softmax"\n', None, "unknown table [[nodes]] (did you mean 'node'?)"),
    ('node = [1]\n', None, "a [[node]] entry must be a table, got 1"),
    ('node = {op = "softmax"}\n', None, "node must be an array of tables ([[node]])"),
    ('', None, "no obligations: the file has no [[graph]], [[node]] or [[mutant]] entries"),
    ('# only a comment\n', None, "no obligations"),
    ('[[node]\n', 1, "malformed TOML"),
])
def test_schema_errors_name_the_file_and_the_line_of_the_key(tmp_path, text, line, needle):
    path = tmp_path / "o.toml"
    path.write_text(text)
    obs, errors = gate.load_file(path, "o.toml")
    assert len(errors) == 1
    where = f"o.toml:{line}: " if line else "o.toml: "
    assert errors[0].startswith(where) and needle in errors[0], errors[0]
    assert (errors[0].file, errors[0].line) == ("o.toml", line)


def test_a_valid_entry_with_every_key_still_loads(tmp_path):
    path = tmp_path / "o.toml"
    path.write_text('[[node]]\nname = "x"\nop = "scale"\nshapes = [[2]]\nparams = {c = "1/2"}\n'
                    'reads = [0]\nsymmetry = false\ntimeout = 5\nexpect = "proved"\n'
                    '[[graph]]\ngraph = "decoder"\nfixed_weights = true\nd_ff = 2\n'
                    'layout = "torchlean"\nend_to_end = false\nbackprop = '
                    '"backprop_miswires_reads"\nexpect = "refuted"\n')
    obs, errors = gate.load_file(path, "o.toml")
    assert not errors and [o.title for o in obs] == [
        "graph decoder (n=2, d_model=2, heads=1, head_dim=2, d_ff=2) layout=torchlean "
        "fixed_weights=true end_to_end=false backprop=backprop_miswires_reads", "x"]
    assert obs[0].line == 10 and obs[1].timeout == 5


# ----- files that cannot be read, and where there is nothing to check ---------------------

def run_gate(tmp_path, *args):
    result = CliRunner().invoke(main, ["check", *map(str, args), "-j", "1", "--cache-dir",
                                       str(tmp_path / "cache")])
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result.exit_code, result.output


@pytest.mark.parametrize("make,needle", [
    (lambda d: (d / "x.toml").write_bytes(FAST.encode() + b"# caf\xe9\n"),
     "x.toml:4: not UTF-8 text (the byte 0xe9); save the file as UTF-8"),
    (lambda d: (d / "x.toml").write_text(""), "x.toml: no obligations"),
    (lambda d: (d / "x.toml").mkdir(), "no obligation files (*.toml) in this directory"),
    (lambda d: None, "no obligation files (*.toml) in this directory"),
])
def test_unreadable_or_empty_obligations_exit_2(tmp_path, make, needle):
    d = tmp_path / "obligations"
    d.mkdir()
    make(d)
    code, out = run_gate(tmp_path, d)
    assert code == 2 and needle in out, out
    assert "no obligations ran; 1 input error(s)" in out


def test_an_unreadable_file_is_one_sentence(tmp_path, monkeypatch):
    path = tmp_path / "x.toml"
    path.write_text(FAST)
    assert gate.load_file(tmp_path, "d")[1] == ["d: is a directory, not an obligation file"]

    def denied(self):
        raise PermissionError(13, "Permission denied", str(self))
    monkeypatch.setattr(Path, "read_bytes", denied)   # as root, chmod would not stop it
    assert gate.load_file(path, "x.toml")[1] == [
        "x.toml: cannot read the file: permission denied"]


# ----- JUnit and JSON record input errors -------------------------------------------------

def test_junit_and_json_record_every_input_error(tmp_path):
    d = tmp_path / "obligations"
    d.mkdir()
    (d / "a.toml").write_text(FAST + '\n[[node]]\nop = "sofmax"\nshapes = ["2"]\n')
    (d / "b.toml").write_text("")
    code, out = run_gate(tmp_path, d, "--junit", tmp_path / "j.xml", "--json", tmp_path / "o.json")
    assert code == 2
    el = ET.parse(tmp_path / "j.xml").getroot().find("testsuite")
    assert (el.get("tests"), el.get("errors"), el.get("failures")) == ("3", "2", "0")
    errors = {c.get("name"): c.find("error") for c in el.findall("testcase")
              if c.find("error") is not None}
    assert set(errors) == {"input error at line 6", "input error"}
    assert errors["input error at line 6"].get("message").endswith(
        "a.toml:6: unknown op 'sofmax' (did you mean 'softmax'?); valid ops are: " +
        ", ".join(sorted(sg.OPS)))
    doc = json.loads((tmp_path / "o.json").read_text())
    assert doc["exit_code"] == 2 and len(doc["obligations"]) == 1
    assert [e.rsplit("/", 1)[-1][:20] for e in doc["input_errors"]] == [
        "a.toml:6: unknown op", "b.toml: no obligatio"]


# ----- Ctrl-C ---------------------------------------------------------------------------

SLOW = '[[graph]]\ngraph = "decoder"\n'   # end to end at the default shapes: ~40 s


def _left_over(marker: str) -> list:
    """Live processes whose command line names ``marker`` (forked children keep it)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker in (proc / "cmdline").read_bytes().decode(
                    errors="replace"):
                found.append(int(proc.name))
        except OSError:
            pass
    return found


def _interrupt(tmp_path, args, ready, group: bool):
    """Start ``symgrad ARGS``, wait until ``ready()``, send SIGINT (to the process, or to
    its process group as a terminal's Ctrl-C does); return (exit code, stderr)."""
    # as from a terminal: SIGINT at its default even when this test runs in a background
    # job (a shell starts those with SIGINT ignored, and children inherit that)
    proc = subprocess.Popen([sys.executable, "-m", "symgrad.cli", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 60
    while not ready() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    (os.killpg if group else os.kill)(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    deadline = time.time() + 10
    while _left_over(str(tmp_path)) and time.time() < deadline:
        time.sleep(0.2)
    assert not _left_over(str(tmp_path)), "processes were left running"
    return proc.returncode, out, err


@pytest.mark.parametrize("jobs,group", [(2, True), (1, False)])
def test_ctrl_c_during_check_exits_130_and_writes_what_finished(tmp_path, jobs, group):
    d = tmp_path / "obligations"
    d.mkdir()
    fast = FAST + '[[node]]\nop = "exp"\nshapes = ["2"]\n[[node]]\nop = "tanh"\nshapes = ["2"]\n'
    (d / "a.toml").write_text(fast)
    (d / "b.toml").write_text(SLOW)   # -j 1 runs it last; -j 2 next to the fast ones
    db = tmp_path / "cache" / "proofs.sqlite"

    def three_finished():   # a finished PROVED obligation is a row in the proof cache
        try:
            with sqlite3.connect(db) as con:
                return con.execute("select count(*) from proofs").fetchone()[0] == 3
        except sqlite3.Error:
            return False
    code, out, err = _interrupt(tmp_path, ["check", d, "-j", jobs, "--cache-dir", "cache",
                                           "--json", "o.json", "--junit", "j.xml", "--report",
                                           "r"], three_finished, group)
    assert code == 130, err
    assert "Traceback" not in err and "interrupted: 3 of 4 obligations finished" in err
    doc = json.loads((tmp_path / "o.json").read_text())
    assert doc["exit_code"] == 130
    assert sorted(o["title"] for o in doc["obligations"]) == [
        "node exp(2)", "node relu(2)", "node tanh(2)"]
    cases = ET.parse(tmp_path / "j.xml").getroot().findall("testsuite/testcase")
    assert len(cases) == 3 and "node relu(2)" in (tmp_path / "r" / "index.html").read_text()


@pytest.mark.parametrize("group", [True, False])
def test_ctrl_c_during_verify_exits_130_without_a_traceback(tmp_path, group):
    # node obligations and the end to end run side by side (threads waiting for their
    # checking processes): a Ctrl-C to the main process alone must stop them all
    t0 = time.time()
    # (a run of about 7 s: the interrupt at 2 s must come while it works)
    code, out, err = _interrupt(tmp_path, ["verify", "decoder", "--report", tmp_path / "r",
                                           "--n", "16", "--d-model", "64", "--heads", "4",
                                           "--head-dim", "16", "--d-ff", "256"],
                                lambda: time.time() > t0 + 2, group=group)
    assert code == 130 and err.strip().splitlines()[-1] == "interrupted"
    assert "Traceback" not in err

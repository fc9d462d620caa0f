"""The ``symgrad`` command.

Exit codes: 0 proved or verified, 1 refuted, 4 unknown, 2 usage or input error, 3 internal
error, 130 interrupted.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
import warnings
from pathlib import Path

import click
from click.core import ParameterSource

from .version import __version__
from .api import parse_param, verify_node, weakest
from .errors import InputError, InternalError
from .models.catalog import GRAPHS, GRAPH_OPTIONS, OPTIONAL_DIMS, build_graph, \
    graph_option_error
from .ops import OPS
from .prove.isolate import check_environment, memory_limit_mb, run_peak_mb, timeout_seconds
from .prove.result import Verdict, conditions_summary
from .tensor import parse_shape

EXIT_USAGE, EXIT_INTERNAL, EXIT_INTERRUPTED = 2, 3, 130
#: side conditions a terminal listing shows (JSON and reports show every one)
MAX_CONDITIONS = 24


def _print_table(results, out):
    rows = [("obligation", "verdict", "seconds", "terms", "method")]
    for r in results:
        rows.append((r.name, r.verdict.value.upper(), f"{r.seconds:.2f}", str(r.terms), r.method))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for k, row in enumerate(rows):
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() + "\n")
        if k == 0:
            out.write("  ".join("-" * w for w in widths) + "\n")


def _print_details(results, out, verbose: bool):
    """Under the table: why each UNKNOWN (and what to do next), each counterexample and
    non-zero residual; then the side conditions — listed for one obligation or with
    ``verbose``, else summarised per obligation (kind, count, how discharged)."""
    for r in results:
        for k, line in enumerate(r.findings()):
            out.write(f"{r.name}: {line}\n" if k == 0 else f"  {line}\n")
    with_conditions = [r for r in results if r.side_conditions]
    if not with_conditions:
        out.write("side conditions: none\n")
    elif verbose or len(results) == 1:
        for r in with_conditions:
            out.write(f"side conditions of {r.name} ({r.conditions_summary()}):\n")
            lines = r.conditions_lines(None if verbose else MAX_CONDITIONS)[1:]
            if len(lines) > 1 and lines[-1].startswith("  … and") and not verbose:
                lines[-1] += " (--verbose or --json lists every one)"
            out.write("".join(line + "\n" for line in lines))
    else:
        out.write("side conditions (--verbose lists every one):\n")
        width = max(len(r.name) for r in with_conditions)
        for r in with_conditions:
            out.write(f"  {r.name.ljust(width)}  {r.conditions_summary()}\n")


def report(results, as_json: bool, verbose: bool = False):
    verdict = weakest(results)
    if as_json:
        # the run's memory: the resident sum of this process and its checks, as sampled
        click.echo(json.dumps({"verdict": verdict.value, "symgrad": __version__,
                               "peak_memory_mb": round(run_peak_mb(), 1),
                               "memory_budget_mb": memory_limit_mb(),
                               "obligations": [r.to_json() for r in results]}, indent=2))
    else:
        out = sys.stdout
        _print_table(results, out)
        out.write("\n")
        _print_details(results, out, verbose)
        out.write(f"\nverdict: {verdict.value.upper()}{_evidence_note(results, verdict)}\n")
    return verdict.exit_code


def _evidence_note(results, verdict) -> str:
    """What a VERIFIED verdict rests on, in one parenthesis."""
    if verdict is not Verdict.VERIFIED:
        return ""
    bounds = [int(r.error_bound[2:]) for r in results if r.verdict is Verdict.VERIFIED]
    if len(results) == 1:
        return f" (randomized evidence, error ≤ 2^{bounds[0]})"
    each = f" each, {len(bounds)} end-to-end identities" if len(bounds) > 1 else \
        " for the end-to-end identity"
    return (f" (randomized evidence, error ≤ 2^{max(bounds)}{each}; every other "
            f"obligation proved exactly)")


class Seconds(click.ParamType):
    """A time limit: a finite number of seconds > 0."""

    name = "seconds"

    def convert(self, value, param, ctx):
        try:
            return timeout_seconds(float(value) if isinstance(value, str) else value,
                                   "the value")
        except (InputError, ValueError) as exc:
            self.fail(str(exc) if isinstance(exc, InputError) else
                      f"{value!r} is not a number of seconds", param, ctx)


def writable(ctx, param, value):
    """Check an output path before any work: a file's directory must exist and be
    writable; a directory (file_okay=False) is created with its parents, so its nearest
    existing ancestor must be a writable directory. A default is left to its user."""
    if value is None or ctx.get_parameter_source(param.name) is ParameterSource.DEFAULT:
        return value
    path = Path(value)
    wanted = path if not param.type.file_okay else path.parent
    near = next(p for p in [wanted, *wanted.parents] if p.exists())
    if param.type.file_okay and near != wanted:
        raise click.BadParameter(f"the directory {str(wanted)!r} does not exist", ctx, param)
    if not near.is_dir():
        raise click.BadParameter(f"{str(near)!r} is a file, so {value!r} cannot be created",
                                 ctx, param)
    if not os.access(near, os.W_OK | os.X_OK):
        raise click.BadParameter(f"the directory {str(near)!r} is not writable", ctx, param)
    return value


def report_option(f):
    return click.option("--report", "report_dir", type=click.Path(file_okay=False,
                                                                  writable=True),
                        default=None, callback=writable, help="Also write an HTML proof "
                        "report to this directory (open its index.html).")(f)


def verbose_option(f):
    return click.option("-v", "--verbose", is_flag=True, help="List every side condition "
                        "in full (default: a summary per obligation).")(f)


def shape_options(**defaults):
    """The graph-size options (--n --d-model --heads --kv-heads --head-dim --d-ff, --layout,
    --layers) with the command's default sizes."""
    options = [
        click.option("--n", default=defaults["n"], show_default=True, help="Sequence length."),
        click.option("--d-model", default=defaults["d_model"], show_default=True,
                     help="Model width."),
        click.option("--heads", default=defaults["heads"], show_default=True,
                     help="Attention heads."),
        click.option("--kv-heads", default=defaults.get("kv_heads", OPTIONAL_DIMS["kv_heads"]),
                     show_default=True,
                     help="llama only: key/value heads (grouped-query attention; each "
                          "serves heads/kv-heads query heads)."),
        click.option("--head-dim", default=defaults["head_dim"], show_default=True,
                     help="Width of one head."),
        click.option("--d-ff", default=defaults["d_ff"], show_default=True,
                     help="FFN hidden width."),
        click.option("--layout", type=click.Choice(["pytorch", "torchlean"]),
                     default="pytorch", show_default=True,
                     help="Head split: PyTorch's view+transpose, or TorchLean's direct "
                          "reshape (a different function)."),
        click.option("--layers", default=2, show_default=True, type=click.IntRange(min=1),
                     help="stack only: how many encoder blocks."),
    ]

    def apply(f):
        for option in reversed(options):
            f = option(f)
        return f
    return apply


def given(*names) -> dict:
    """{parameter name: the option as typed (--d-ff)} of the options among ``names`` that
    were given on the command line."""
    ctx = click.get_current_context()
    return {p.name: max(p.opts, key=len) for p in ctx.command.params if p.name in names
            and ctx.get_parameter_source(p.name) not in (ParameterSource.DEFAULT, None)}


def write_verify_report(report_dir, runs):
    """An HTML report of a `symgrad verify` run — the pages `symgrad check` writes, for
    ``runs`` [(kind, spec, results, expect)] titled as obligation entries would be."""
    if not report_dir:
        return
    from .report import write_report
    from .gate import Obligation, Outcome
    outcomes = []
    for kind, spec, results, expect in runs:
        ob = Obligation(kind, spec, "symgrad verify", 0, expect)
        outcomes.append(Outcome(ob.id, kind, ob.title, ob.file, expect,
                                weakest(results).value, sum(r.seconds for r in results),
                                results=[r.to_json() for r in results], spec=spec))
    click.echo(f"report: {write_report(report_dir, outcomes)}", err=True)


class _Group(click.Group):
    """Turns InputError into one sentence and exit 2; other exceptions into exit 3."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except InputError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(EXIT_USAGE)
        except KeyboardInterrupt:  # Ctrl-C: every check process is stopped by now
            click.echo("interrupted", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except BrokenPipeError:  # the reader (| head) went away: nothing left to say
            sys.stderr.close()
            ctx.exit(0)
        except (click.exceptions.ClickException, click.exceptions.Exit,
                click.exceptions.Abort, SystemExit):
            raise
        except (InternalError, Exception) as exc:  # a bug in symgrad: say so, exit 3
            click.echo(f"internal error: {exc}", err=True)
            ctx.exit(EXIT_INTERNAL)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="symgrad")
def main():
    """Prove with computer algebra that VJP rules (an autograd tape's backward pass) are
    right: backprop = the transposed Fréchet derivative of the forward, for fixed shapes.

    Verdicts: PROVED (zero normal form, under the printed side conditions), VERIFIED (a
    graph's end to end passed a randomized identity test, error ≤ 2^-64 — evidence, not a
    proof; see --evidence), REFUTED (a certified counterexample inside the domain), UNKNOWN
    (neither; the reason is printed). Exit codes: 0 proved or verified, 1 refuted, 4
    unknown, 2 usage/input error, 3 internal error, 130 interrupted (Ctrl-C).
    """
    check_environment()   # SYMGRAD_TIMEOUT, SYMGRAD_MEMORY_MB, …: before any work


@main.command("list")
def list_ops():
    """List the tape-node ops: signature, parameters and side conditions — the declared
    ones, then the kinds a check adds (denominators, radicands, logarithm arguments, step
    arguments), as `symgrad verify node OP` reports them at the op's first example shapes
    (checked now, about a second for every op)."""
    rows = [("op", "signature", "kind", "params", "side conditions")]
    for name in sorted(OPS):
        op = OPS[name]
        found = verify_node(name, list(op.examples[0]))
        conditions = "; ".join(t for t in (op.conditions and op.conditions + " (declared)",
                                           conditions_summary(found.side_conditions, False))
                               if t)
        rows.append((name, op.signature, op.linearity,
                     ", ".join(p.name for p in op.params) or "-", conditions or "-"))
    _echo_columns(rows)


def _echo_columns(rows):
    """``rows`` (the first one the header) as left-aligned columns under a rule."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for k, row in enumerate(rows):
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        if k == 0:
            click.echo("  ".join("-" * w for w in widths))


@main.group()
def verify():
    """Prove a graph (``verify mha``, ``verify encoder``, …, ``verify all``), a library op
    at fixed shapes (``verify node OP``), or check a shipped wrong rule (``verify mutant
    NAME``)."""


@verify.command("node")
@click.argument("op_name", metavar="OP")
@click.option("--shape", "shapes", multiple=True, metavar="AxB",
              help="One per input, in order, e.g. --shape 2x3 --shape 3x4. Default: the "
                   "op's first example shapes (see `symgrad list`).")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE",
              help="An op parameter: a number (1/3, 1e-5), a symbol name, or a shape "
                   "(3x2). Example: --param c=1/2, --param eps=eps.")
@click.option("--reads", default=None, metavar="I,J",
              help="Which input each argument reads, e.g. --reads 0,0 checks mul(x, x) "
                   "(give one --shape per distinct input).")
@click.option("--timeout", type=Seconds(), default=None,
              help="Seconds before the verdict becomes UNKNOWN (default 600).")
@click.option("--max-entries", type=click.IntRange(min=1), default=None,
              help="Refuse tensors with more entries than this (default 65536).")
@click.option("--backend", type=click.Choice(["symengine", "sympy"]), default="symengine",
              help="Differentiate with SymEngine (fast, default) or SymPy (reference).")
@click.option("--no-symmetry", is_flag=True,
              help="Normal-form every input entry instead of one per verified orbit.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead.")
@verbose_option
@report_option
def verify_node_cmd(op_name, shapes, params, reads, timeout, max_entries, backend,
                    no_symmetry, as_json, verbose, report_dir):
    """Prove or refute the VJP rule of library op OP at the given shapes.

    \b
    Example:
      symgrad verify node softmax --shape 2x3
      symgrad verify node matmul --shape 2x3 --shape 3x4 --json
      symgrad verify node mul --shape 2x2 --reads 0,0
    """
    from .ops import get_op
    op = get_op(op_name)
    if shapes:
        shape_list = [parse_shape(s) for s in shapes]
    else:
        shape_list = list(op.examples[0])
        if reads is not None:
            raise InputError("with --reads, give the shapes of the distinct inputs with "
                             "--shape")
    overrides = {}
    for item in params:
        if "=" not in item:
            raise InputError(f"cannot read --param {item!r}; write NAME=VALUE, e.g. c=1/2")
        k, v = item.split("=", 1)
        overrides[k.strip()] = parse_param(v, backend)
    read_list = None
    if reads is not None:
        try:
            read_list = [int(t) for t in reads.split(",")]
        except ValueError:
            raise InputError(f"cannot read --reads {reads!r}; write input indices like "
                             f"0,0") from None
    result = verify_node(op.name, shape_list, params=overrides, reads=read_list,
                         timeout=timeout, max_entries=max_entries, backend=backend,
                         symmetry=not no_symmetry)
    spec = {"op": op.name, "shapes": [list(s) for s in shape_list],
            "params": {i.split("=", 1)[0].strip(): i.split("=", 1)[1] for i in params}}
    write_verify_report(report_dir, [("node", spec, [result], "proved")])
    sys.exit(report([result], as_json, verbose))


def _progress_printer():
    """On a terminal: one self-overwriting line (what is running, elapsed seconds); in CI,
    or with stderr redirected, nothing."""
    if not sys.stderr.isatty() or os.environ.get("CI"):
        return None
    t0 = time.perf_counter()
    width = shutil.get_terminal_size((100, 20)).columns

    def show(text):
        line = f"{text}  [{time.perf_counter() - t0:.0f} s]"
        if len(line) >= width:
            line = line[:width - 2] + "…"
        sys.stderr.write(f"\r\033[K{line}")
        sys.stderr.flush()
    return show


#: the sizes `symgrad verify GRAPH` uses when none is given (`verify all`: the first)
VERIFY_DEFAULTS = dict(n=2, d_model=2, heads=1, head_dim=2, d_ff=4)
VERIFY_DEFAULTS_OF = {"llama": dict(n=2, d_model=4, heads=2, kv_heads=1, head_dim=2, d_ff=4)}


def graph_command(name):
    builder = GRAPHS[name][0] if name != "all" else "every graph"
    defaults = VERIFY_DEFAULTS_OF.get(name, VERIFY_DEFAULTS)

    @shape_options(**defaults)
    @click.option("--form", type=click.Choice(["whole", "decomposed"]), default="whole",
                  show_default=True, help="LayerNorm as one node or TorchLean's 14 nodes.")
    @click.option("--fixed-weights", is_flag=True,
                  help="decoder only: TorchLean's variant with the merge (Wo) and FFN weights "
                  "as fixed constants instead of inputs.")
    @click.option("--no-end-to-end", is_flag=True,
                  help="Skip the end-to-end obligation (node obligations + corollary only).")
    @click.option("--evidence", type=click.Choice(["auto", "exact", "randomized"]),
                  default="auto", show_default=True,
                  help="What the end-to-end verdict may rest on: exact (a normal form: "
                  "PROVED), randomized (a polynomial identity test mod a random 127-bit "
                  "prime: VERIFIED with an error bound ≤ 2^-64, never called proved), auto "
                  "(exact for tapes of up to 1000 values, randomized where exact is out of "
                  "reach). REFUTED always carries a certified witness.")
    @click.option("--timeout", type=Seconds(), default=None,
                  help="Seconds per obligation before it becomes UNKNOWN (default 600).")
    @click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead.")
    @verbose_option
    @report_option
    def command(n, d_model, heads, kv_heads, head_dim, d_ff, layout, form, fixed_weights,
                layers, no_end_to_end, evidence, timeout, as_json, verbose, report_dir):
        from .api import verify as verify_graph
        for key, shown in given(*GRAPH_OPTIONS).items():
            message = name != "all" and graph_option_error(key, name, shown)
            if message:
                raise click.UsageError(message)
        if no_end_to_end and given("evidence"):
            raise click.UsageError("--evidence applies to the end-to-end obligation, which "
                                   "--no-end-to-end skips")
        dims = dict(n=n, d_model=d_model, heads=heads, kv_heads=kv_heads, head_dim=head_dim,
                    d_ff=d_ff, layers=layers)
        names = sorted(GRAPHS) if name == "all" else [name]
        progress = _progress_printer()
        results, outcomes, interrupted = [], [], None
        try:
            for graph_name in names:
                graph = build_graph(graph_name, dims, layout, form, fixed_weights)
                shown = (lambda t, gn=graph_name: progress(f"{gn}: {t}")) if progress else None
                r = verify_graph(graph, end_to_end=not no_end_to_end, timeout=timeout,
                                 progress=shown, evidence=evidence)
                results.extend(r.obligations)
                outcomes.append((graph_name, r))
        except KeyboardInterrupt as exc:  # the graphs finished so far go into the report
            interrupted = exc
        if progress:
            sys.stderr.write("\r\033[K")
        if outcomes or not interrupted:
            write_verify_report(report_dir, [
                ("graph", dict(dims, graph=gn, layout=layout, form=form,
                               fixed_weights=fixed_weights, evidence=evidence),
                 r.obligations, "proved" if evidence == "exact" else "verified")
                for gn, r in outcomes])
        if interrupted:
            raise interrupted
        sys.exit(report(results, as_json, verbose))

    what = "every graph of the catalog" if name == "all" else f"the {name} graph ({builder})"
    command.__doc__ = (f"Prove {what}: node obligations, the DAG "
                       f"corollary and the end-to-end obligation — exact where it fits, "
                       f"else a randomized identity test (VERIFIED, error ≤ 2^-64; see "
                       f"--evidence).\n\nDefaults are small shapes: "
                       + ", ".join(f"{k}={v}" for k, v in defaults.items()
                                   if name == "all" or k in GRAPHS[name][1])
                       + (f" (kv_heads={OPTIONAL_DIMS['kv_heads']} for llama)."
                          if name == "all" else "."))
    return verify.command(name)(command)


for _graph in list(GRAPHS) + ["all"]:
    graph_command(_graph)


@main.command("bounds")
@click.argument("graph_name", metavar="GRAPH", type=click.Choice(sorted(GRAPHS)))
@shape_options(n=4, d_model=8, heads=2, head_dim=4, d_ff=16)
@click.option("--values", "values_path", type=click.Path(dir_okay=False), default=None,
              help="A .npz file with every graph input by its name (default: drawn at random "
                   "with --seed: x ~ N(0,1), weights N(0,1)/√fan-in, γ ~ 1+0.1·N, β and "
                   "biases 0.1·N).")
@click.option("--seed", default=0, show_default=True, help="Seed of the default values.")
@click.option("--radius", default="0.1", show_default=True,
              help="L∞ radius of the box around each perturbed input.")
@click.option("--perturb", "perturb", multiple=True, metavar="NAME",
              help="An input to perturb (repeatable; default x, or the first input of a "
                   "graph without one). The others stay fixed.")
@click.option("--method", type=click.Choice(["ibp", "ops", "centered", "taylor", "cubic",
                                              "subdivide", "auto"]),
              default="auto", show_default=True,
              help="ibp: each node's code on intervals (the naive baseline); ops: with "
                   "softmax by cancellation, LayerNorm as a whole, monotone pieces; centered: "
                   "the first-order (mean-value) form with the proved VJPs; taylor: a "
                   "second-order form, remainders third order in the radius; cubic: a "
                   "third-order form, remainders fourth order; subdivide: the narrowest "
                   "form on pieces of the box; auto: subdivide within "
                   "--budget (the tightest).")
@click.option("--budget", default=20.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds subdivision may spend.")
@click.option("--grad", is_flag=True,
              help="Also enclose ∂out/∂input over the box for every perturbed input.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead.")
@report_option
def bounds_cmd(graph_name, n, d_model, heads, kv_heads, head_dim, d_ff, layout, layers,
               values_path, seed, radius, perturb, method, budget, grad, as_json, report_dir):
    """Sound interval enclosures of every tape value of GRAPH over a box of inputs: each
    perturbed input anywhere within RADIUS of its value (L∞), the others fixed; outward
    rounded (float64 endpoints, arb for the transcendental functions); the theorems are in
    docs/bounds.md. Default shapes: n=4, d_model=8, heads=2, head_dim=4, d_ff=16."""
    from .intervals import bounds, default_values, load_values
    for key, shown in given("n", "d_model", "heads", "kv_heads", "head_dim", "d_ff", "layout",
                            "layers").items():
        message = graph_option_error(key, graph_name, shown)
        if message:
            raise click.UsageError(message)
    dims = dict(n=n, d_model=d_model, heads=heads, kv_heads=kv_heads, head_dim=head_dim,
                d_ff=d_ff, layers=layers)
    graph = build_graph(graph_name, dims, layout, "whole")
    values = load_values(values_path) if values_path else default_values(graph, seed)
    try:
        r = float(radius)
    except ValueError:
        raise InputError(f"--radius {radius!r} is not a number") from None
    found = bounds(graph, values, r, perturb=perturb or None, method=method, grad=grad,
                   budget=budget)
    if report_dir:
        from .report.bounds_page import write_bounds_report
        click.echo(f"report: {write_bounds_report(report_dir, graph, values, found)}",
                   err=True)
    if as_json:
        click.echo(json.dumps(found.to_json()))
        return
    _print_bounds(found, graph)


def _print_bounds(found, graph):
    click.echo(f"{graph.name}: {found.method} enclosures over the L∞ box of radius "
               f"{found.radius:g} around {', '.join(found.perturb)} ({found.pieces} "
               f"piece{'s' if found.pieces != 1 else ''}, {found.seconds:.2f} s)")
    rows = [("value", "shape", "mean width", "max width")]
    for name, (lo, hi) in found.values.items():
        w = hi - lo
        rows.append((name, "x".join(map(str, lo.shape)) or "scalar",
                     f"{float(w.mean()):.4g}" if w.size else "-",
                     f"{float(w.max()):.4g}" if w.size else "-"))
    _echo_columns(rows)
    if found.per_method:
        click.echo("\nout, mean width by method: " + ", ".join(
            f"{m} {float((hi - lo).mean()):.4g}" for m, (lo, hi) in found.per_method.items()))
    for name, (lo, hi) in found.jacobian.items():
        click.echo(f"∂out/∂{name}: enclosed, mean width {float((hi - lo).mean()):.4g}")


@main.command("check")
@click.argument("paths", nargs=-1, type=click.Path())
@report_option
@click.option("--junit", type=click.Path(dir_okay=False, writable=True), default=None,
              callback=writable, help="Write JUnit XML (pytest's xunit2 layout) to this file.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, writable=True),
              default=None, callback=writable, help="Write every outcome as JSON to this file.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None,
              help="Worker processes (default: the number of cores); with --executor dask "
                   "and no --scheduler, the LocalCluster's workers.")
@click.option("--executor", type=click.Choice(["local", "dask"]), default="local",
              show_default=True,
              help="Where obligations run: local (this machine's process pool) or dask "
                   "(each obligation a task on a dask.distributed cluster: --scheduler, or "
                   "a LocalCluster; needs symgrad[dask]).")
@click.option("--scheduler", metavar="ADDRESS", default=None,
              help="With --executor dask: the scheduler to submit to, e.g. "
                   "tcp://10.0.0.5:8786 (default: start a LocalCluster).")
@click.option("--no-cache", is_flag=True,
              help="Neither read nor write the proof cache (.symgrad-cache/).")
@click.option("--cache-dir", type=click.Path(file_okay=False, writable=True),
              default=".symgrad-cache", callback=writable, show_default=True,
              help="Where the proof cache lives.")
def check_cmd(paths, report_dir, junit, json_path, jobs, executor, scheduler, no_cache,
              cache_dir):
    """Run the obligation files under PATHS (default: obligations/) and compare every
    verdict with its expectation — the CI gate.

    PATHS are *.toml files or directories searched for them; the schema is in
    obligations/README.md. Verdicts already proved, verified or refuted for the same
    source, shapes and library versions come from the proof cache.

    \b
    Exit codes: 0 every expectation met; 1 a regression (a verdict that contradicts
    its expectation: refuted where proved or verified was expected, or the reverse);
    4 only UNKNOWNs, or VERIFIED where PROVED was expected, fell short; 2 bad input
    (the valid obligations still run and their results are written); 3 an internal
    error; 130 interrupted (Ctrl-C; the obligations finished so far are written).
    """
    from . import gate
    if no_cache and given("cache_dir"):
        raise click.UsageError("--cache-dir does not apply with --no-cache")
    if scheduler and executor != "dask":
        raise click.UsageError("--scheduler applies with --executor dask")
    t0 = time.perf_counter()
    obligations, errors = gate.collect(paths)
    for e in errors:
        click.echo(f"error: {e}", err=True)
    progress = _progress_printer()
    code = None
    with warnings.catch_warnings(record=True) as caught:   # cache trouble: say it, go on
        warnings.simplefilter("always")
        cache = None if no_cache else gate.Cache(cache_dir)
        try:
            outcomes = gate.run_all(obligations, jobs, cache, progress, executor, scheduler)
        except gate.Interrupted as exc:   # write what finished, then exit 130
            outcomes, code = exc.outcomes, gate.EXIT_INTERRUPTED
    if progress:
        sys.stderr.write("\r\033[K")
    for w in caught:
        click.echo(f"warning: {w.message}", err=True)
    if cache is not None and cache.damaged > 1:
        click.echo(f"warning: {cache.damaged} damaged proof-cache entries were checked again",
                   err=True)
    if code is not None:
        click.echo(f"interrupted: {len(outcomes)} of {len(obligations)} obligations "
                   f"finished", err=True)
    seconds = time.perf_counter() - t0
    _print_outcomes(outcomes, errors, seconds)
    if json_path:
        gate.write_json(json_path, outcomes, errors, code)
    if junit:
        gate.write_junit(junit, outcomes, seconds, errors)
    if report_dir:
        from .report import write_report
        index = write_report(report_dir, outcomes)
        click.echo(f"report: {index}")
    sys.exit(gate.exit_code(outcomes, errors) if code is None else code)


def _print_outcomes(outcomes, errors, seconds):
    from .gate import failure_text
    rows = [(o.title, o.expect, o.verdict, "yes" if o.met else "NO", f"{o.seconds:.2f}",
             "cache" if o.cached else "") for o in outcomes]
    if not outcomes:
        click.echo(f"no obligations ran; {len(errors)} input error(s)")
        return
    head = ("obligation", "expect", "verdict", "met", "seconds", "")
    widths = [max(len(r[k]) for r in rows + [head]) for k in range(len(head))]
    line = lambda r: "  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip()  # noqa: E731
    click.echo(line(head))
    click.echo("  ".join("-" * w for w in widths).rstrip())
    for r in rows:
        click.echo(line(r))
    missed = [o for o in outcomes if not o.met]
    for o in missed:
        click.echo("")
        click.echo(failure_text(o) if o.verdict not in ("error", "internal")
                   else f"error: {o.reason}")
    met = len(outcomes) - len(missed)
    unknown = sum(1 for o in missed if o.verdict == "unknown")
    weaker = sum(1 for o in missed if (o.verdict, o.expect) == ("verified", "proved"))
    cached = sum(1 for o in outcomes if o.cached)
    click.echo(f"\n{len(outcomes)} obligations: {met} met, {len(missed) - unknown - weaker} not "
               f"met, {unknown} unknown" + (f", {weaker} verified where proved was expected"
                                            if weaker else "") +
               f"; {cached} from the cache; {len(errors)} input error(s); {seconds:.1f} s")


@verify.command("mutant")
@click.argument("name", required=False)
@click.option("--timeout", type=Seconds(), default=None, help="Seconds (default 600).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead.")
@verbose_option
@report_option
def verify_mutant_cmd(name, timeout, as_json, verbose, report_dir):
    """Check a named wrong rule (a mutant) against its op's forward; it should be REFUTED
    (exit 1). Without NAME, list the mutants and the bug each one has."""
    from .mutants import MUTANTS, verify_mutant
    from .gate import unknown
    if name is None:
        extra = list(given("timeout", "as_json", "verbose", "report_dir").values())
        if extra:
            raise click.UsageError(f"{extra[0]} applies when checking a mutant (give its "
                                   f"NAME), not to the list of mutants")
        width = max(map(len, MUTANTS))
        for m in MUTANTS.values():
            click.echo(f"{m.name.ljust(width)}  {m.op}: {m.bug}")
        return
    from .mutants import ENGINE_MUTANTS
    if name in ENGINE_MUTANTS:
        raise InputError(f"{name} is an engine mutant (a wrong backprop, not a wrong rule): "
                         f"check it on a graph, with backprop = \"{name}\" in an obligation "
                         f"file's [[graph]] entry")
    if name not in MUTANTS:
        raise InputError(unknown(name, MUTANTS, "mutant"))
    result = verify_mutant(name, timeout=timeout)
    write_verify_report(report_dir, [("mutant", {"mutant": name}, [result], "refuted")])
    sys.exit(report([result], as_json, verbose))


def _number(text: str):
    """A --arg value as the Python number PyTorch code gets: an int, else a float (1/3 is the
    double nearest it)."""
    from fractions import Fraction
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError):
        raise InputError(f"cannot read --arg {text!r}: give a number (2.5, 1/3, 1e-5)") from None


def traced_evidence_option(f):
    """--evidence for `verify torch` / `verify jax`: what the verdict may rest on."""
    return click.option(
        "--evidence", type=click.Choice(["auto", "exact", "randomized"]), default="auto",
        show_default=True,
        help="What the verdict may rest on: exact (a normal form: PROVED), randomized (a "
             "polynomial identity test mod a random 127-bit prime: VERIFIED with an error "
             "bound ≤ 2^-64, never called proved), auto (exact within 10 s when "
             "the inputs and outputs hold at most 1000 entries, randomized where that is "
             "out of reach — e.g. a TransformerEncoderLayer). REFUTED always carries a "
             "certified witness.")(f)


@verify.command("torch")
@click.argument("target", metavar="MODULE:NAME")
@click.option("--shape", "shapes", multiple=True, required=True, metavar="AxB",
              help="One per tensor input, in order, e.g. --shape 2x3 --shape 3x4.")
@click.option("--arg", "args", multiple=True, metavar="VALUE",
              help="A non-tensor argument passed after the tensors (a number: 2.5, 1/3, "
                   "1e-5), repeatable; for an autograd.Function only.")
@click.option("--fixed-parameters", is_flag=True,
              help="For a module: keep its parameters fixed instead of proving their "
                   "gradients too.")
@click.option("--jvp", is_flag=True,
              help="For an autograd.Function: check its forward-mode rule (jvp, fed what "
                   "forward saved with ctx.save_for_forward) instead of its backward.")
@click.option("--timeout", type=Seconds(), default=None,
              help="Seconds before the verdict becomes UNKNOWN (default 600).")
@traced_evidence_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead.")
@verbose_option
@report_option
def verify_torch_cmd(target, shapes, args, fixed_parameters, jvp, timeout, evidence, as_json,
                     verbose, report_dir):
    """Prove the backward PyTorch runs: TARGET names, as module.path:Name (the current
    directory is on the path), a torch.autograd.Function subclass (its hand-written
    backward is checked against its forward), an nn.Module class or instance, or a
    function of tensors (PyTorch's own backward is checked). Needs the torch extra.

    \b
    Example:
      symgrad verify torch mylib.ops:FusedGelu --shape 4x8
      symgrad verify torch mylib.blocks:make_block --shape 1x3x8
    """
    from .frameworks.torch import check_target
    shape_list = [parse_shape(s) for s in shapes]
    extra = [_number(a) for a in args]
    result = check_target(target, shape_list, args=extra, parameters=not fixed_parameters,
                          jvp=jvp, timeout=timeout, evidence=evidence)
    write_verify_report(report_dir, [("rule", {"name": f"torch {target}", "shapes": [
        list(s) for s in shape_list]}, [result], "proved")])
    sys.exit(report([result], as_json, verbose))


@verify.command("jax")
@click.argument("target", metavar="MODULE:NAME")
@click.option("--shape", "shapes", multiple=True, required=True, metavar="AxB",
              help="One per array input, in order, e.g. --shape 2x3 --shape 3x4.")
@click.option("--timeout", type=Seconds(), default=None,
              help="Seconds before the verdict becomes UNKNOWN (default 600).")
@traced_evidence_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead.")
@verbose_option
@report_option
def verify_jax_cmd(target, shapes, timeout, evidence, as_json, verbose, report_dir):
    """Prove the backward JAX runs: TARGET names, as module.path:name (the current directory
    is on the path), a jax.custom_vjp function (its bwd is checked against its primal) or
    any function of arrays (JAX's own derivative is checked). Needs the jax extra.

    \b
    Example:
      symgrad verify jax mylib.ops:fused_gelu --shape 4x8
    """
    from .frameworks.jax import check_target
    shape_list = [parse_shape(s) for s in shapes]
    result = check_target(target, shape_list, timeout=timeout, evidence=evidence)
    write_verify_report(report_dir, [("rule", {"name": f"jax {target}", "shapes": [
        list(s) for s in shape_list]}, [result], "proved")])
    sys.exit(report([result], as_json, verbose))


if __name__ == "__main__":  # pragma: no cover
    main()

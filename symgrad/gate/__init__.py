"""The CI gate over a directory of obligations: ``symgrad check`` and the pytest plugin.

One module per concern: :mod:`~symgrad.gate.schema` (obligation files, loading,
validation), :mod:`~symgrad.gate.cache` (the content-addressed proof cache),
:mod:`~symgrad.gate.executors` (where obligations run), :mod:`~symgrad.gate.run` (checking,
expectations, the exit code) and :mod:`~symgrad.gate.outputs` (JSON, JUnit, failure text).
"""
from .cache import Cache, versions
from .outputs import failure_text, write_json, write_junit
from .run import Interrupted, exit_code, run_all, run_one
from .schema import (EXIT_INTERRUPTED, EXIT_OK, EXIT_REGRESSION, EXIT_UNKNOWN, EXIT_USAGE,
                     InputProblem, Obligation, Outcome, collect, load_file, parse_params,
                     unknown)

__all__ = ["Cache", "versions", "failure_text", "write_json", "write_junit", "Interrupted",
           "exit_code", "run_all", "run_one", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_REGRESSION",
           "EXIT_UNKNOWN", "EXIT_USAGE", "InputProblem", "Obligation", "Outcome", "collect",
           "load_file", "parse_params", "unknown"]

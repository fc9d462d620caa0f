"""The run's memory budget: one number for the whole run, enforced across processes."""
import os
import subprocess
import sys
import time

import pytest

import symgrad as sg
from symgrad.prove import isolate


def _hold(mb):
    """Touch ``mb`` MiB and keep them a while; a Result if the process survives."""
    block = bytearray(mb * 2 ** 20)
    for k in range(0, len(block), 4096):
        block[k] = 1
    time.sleep(1.5)
    return sg.Result("held", sg.Verdict.PROVED)


def _resident_mb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    return 0


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps_rollup"),
                    reason="the watchdog reads /proc (Linux); elsewhere only RLIMIT_AS applies")
def test_checks_that_together_pass_the_budget_are_stopped_by_the_watchdog():
    # three processes of ~450 MiB each: every one alone is far within 1200 MiB (its
    # address-space limit), together they are not
    def forks():
        isolate.fork_map(lambda mb: _hold(mb), [450, 450, 450])
        return sg.Result("forks", sg.Verdict.PROVED)

    # the budget counts this process too: what it holds already (the test process may
    # have imported PyTorch or JAX) comes on top of the 1200 MiB the checks may use
    budget = 1200 + _resident_mb()
    r = isolate.run_isolated(forks, "three at once", 60, budget)
    assert r.verdict is sg.Verdict.UNKNOWN
    assert r.reason.startswith("out of memory: the run held"), r.reason
    assert f"past its budget of {budget} MiB" in r.reason
    assert isolate.run_peak_mb() > budget
    alone = isolate.run_isolated(lambda: _hold(450), "one", 60, budget)
    assert alone.verdict is sg.Verdict.PROVED


def test_the_default_budget_is_4_gib_and_json_reports_the_run_peak():
    env = {k: v for k, v in os.environ.items() if k != "SYMGRAD_MEMORY_MB"}
    out = subprocess.run([sys.executable, "-m", "symgrad.cli", "verify", "mha", "--json"],
                         capture_output=True, text=True, env=env, timeout=300)
    import json
    d = json.loads(out.stdout)
    assert d["memory_budget_mb"] == 4096
    assert 0 < d["peak_memory_mb"] < 4096

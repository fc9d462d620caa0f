"""The gate on a Dask cluster (symgrad check --executor dask): a real scheduler and two
workers on loopback (`dask scheduler`, `dask worker` processes); one worker is killed
mid-run, and every outcome still arrives and matches the local executor's."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed", reason="the dask executor is an optional extra: "
                                          "pip install 'symgrad[dask]'")

ROOT = Path(__file__).resolve().parent.parent
GATE = ROOT / "obligations"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dask(*args, log):
    # as docs/cluster.md says to run a scheduler: a worker holds only the task it runs
    env = dict(os.environ, DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION="1.0")
    return subprocess.Popen([sys.executable, "-m", "distributed.cli." + args[0], *args[1:]],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env=env)


def _check(tmp_path, name, *args):
    out = tmp_path / f"{name}.json"
    proc = subprocess.run([sys.executable, "-m", "symgrad.cli", "check", str(GATE),
                           "--no-cache", "--json", str(out), *args], capture_output=True,
                          text=True, cwd=tmp_path, timeout=900)
    return proc, {o["id"].split("::", 1)[1]: o["verdict"]
                  for o in json.loads(out.read_text())["obligations"]}


def test_a_killed_worker_loses_no_result(tmp_path):
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    log = open(tmp_path / "dask.log", "w")
    scheduler = _dask("dask_scheduler", "--host", "127.0.0.1", "--port", str(port),
                      "--no-dashboard", log=log)
    workers = []
    try:
        time.sleep(3)
        workers = [_dask("dask_worker", address, "--nthreads", "1", "--no-dashboard",
                         "--name", f"w{k}", log=log) for k in range(2)]
        time.sleep(4)
        run = subprocess.Popen([sys.executable, "-m", "symgrad.cli", "check", str(GATE),
                                "--no-cache", "--executor", "dask", "--scheduler", address,
                                "--json", str(tmp_path / "dask.json")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=tmp_path)
        time.sleep(6)                                  # mid-run: kill one worker outright
        assert run.poll() is None, "the gate finished before the worker could be killed"
        os.killpg(workers[0].pid, signal.SIGKILL)
        stdout, stderr = run.communicate(timeout=900)
    finally:
        for p in workers + [scheduler]:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.close()
    assert run.returncode == 0, stdout[-2000:] + stderr[-2000:]
    got = {o["id"].split("::", 1)[1]: o["verdict"]
           for o in json.loads((tmp_path / "dask.json").read_text())["obligations"]}
    local, want = _check(tmp_path, "local", "-j", "2")
    assert local.returncode == 0, local.stdout[-2000:]
    assert got == want and len(got) >= 80
    text = (tmp_path / "dask.log").read_text()
    assert "Remove worker" in text and "name: w0" in text     # it was gone mid-run


CRASHER = """
import os


def _on_a_worker():
    try:
        from distributed import get_worker
        get_worker()
        return True
    except ValueError:
        return False


if _on_a_worker():
    os._exit(1)                # imported on a worker: the worker process dies, every time


def forward(x):
    return x * x


def vjp(g, y, x):
    return (2 * g * x,)
"""


def test_an_obligation_that_kills_its_workers_is_unknown_and_the_rest_arrive(tmp_path):
    (tmp_path / "crasher.py").write_text(CRASHER)
    (tmp_path / "obligations").mkdir()
    (tmp_path / "obligations" / "x.toml").write_text(
        '[[node]]\nforward = "crasher:forward"\nvjp = "crasher:vjp"\nshapes = ["2"]\n\n'
        '[[node]]\nop = "tanh"\nshapes = ["2x2"]\n')
    proc = subprocess.run([sys.executable, "-m", "symgrad.cli", "check", "--no-cache",
                           "--executor", "dask", "-j", "1", "--json", "out.json"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=600)
    outcomes = {o["title"]: o for o in json.loads(
        (tmp_path / "out.json").read_text())["obligations"]}
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert outcomes["node tanh(2x2)"]["verdict"] == "proved"
    lost = outcomes["node crasher:forward(2)"]
    assert lost["verdict"] == "unknown" and "the worker running it died" in lost["reason"]


def test_an_unreachable_scheduler_is_one_sentence(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "symgrad.cli", "check",
                           str(GATE / "mutants.toml"), "--no-cache", "--executor", "dask",
                           "--scheduler", f"tcp://127.0.0.1:{_free_port()}"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_local_cluster_gives_the_local_verdicts(tmp_path):
    proc, got = _check(tmp_path, "cluster", "--executor", "dask", "-j", "2")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert all(v in ("proved", "verified", "refuted") for v in got.values())
    assert len(got) >= 80


def test_a_graph_entry_splits_into_node_obligations_and_its_end_to_end():
    from symgrad.gate import load_file
    from symgrad.gate.run import graph_tasks, run_one
    obligations, _ = load_file(GATE / "graphs.toml")
    ob = next(o for o in obligations if o.title.startswith("graph mha"))
    jobs, labels, combine = graph_tasks(ob)
    assert len(jobs) > 2 and labels[-1] == "end to end" and labels[0].startswith("node 1/")
    split = combine([job() for job in jobs], 0.0)      # as the cluster's tasks give them
    whole = run_one(ob)
    assert split.verdict == whole.verdict == "proved"
    assert [r["name"] for r in split.results] == [r["name"] for r in whole.results]


def test_the_example_project_on_a_local_cluster(tmp_path):
    import shutil
    project = tmp_path / "myproject"
    shutil.copytree(ROOT / "examples" / "myproject", project,
                    ignore=shutil.ignore_patterns("__pycache__", ".symgrad-cache"))
    proc = subprocess.run([sys.executable, "-m", "symgrad.cli", "check", "--no-cache",
                           "--executor", "dask", "-j", "1"], capture_output=True, text=True,
                          cwd=project, timeout=600)
    assert proc.returncode == 0 and "4 obligations: 4 met" in proc.stdout, \
        proc.stdout + proc.stderr


def test_seed_blocks_of_a_large_end_to_end_are_tasks_on_every_worker():
    """An exact end to end too large as one identity (forced here) runs each seed block,
    and the linearity check, as a task of its own, on both workers; the verdict and the
    seed-block table equal those of the blocks run in turn."""
    import dask
    from distributed import Client, LocalCluster, get_task_stream

    import symgrad as sg
    from symgrad import models as M
    from symgrad.gate.executors import _FanOut, _on_worker
    from symgrad.mutants import ENGINE_MUTANTS
    from symgrad.prove.tape import by_seed_block
    g = M.mha_residual(2, 2, 1, 2)
    whole = sg.Result("whole", sg.Verdict.UNKNOWN, reason="too large: (forced by the test)")
    paths = [p for p in sys.path if p]
    with dask.config.set({"distributed.scheduler.worker-saturation": 1.0}):
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                               dashboard_address=None)
    try:
        with Client(cluster) as client, get_task_stream(client) as stream:
            r, info = client.submit(_on_worker, by_seed_block, paths, g, whole, None, None,
                                    None, None, _FanOut(paths, [], "e2e"), pure=False,
                                    key="e2e").result()
            name = sorted(ENGINE_MUTANTS)[0]          # a wrong engine: a block refutes it
            wrong, _ = client.submit(_on_worker, by_seed_block, paths, g, whole,
                                     ENGINE_MUTANTS[name], None, None, None,
                                     _FanOut(paths, [], "wrong"), pure=False,
                                     key="wrong").result()
    finally:
        cluster.close()
    blocks = [t for t in stream.data if t["key"].startswith("e2e.block")]
    assert len(blocks) == len(g.values) + 1                 # every block and the linearity
    assert len({t["worker"] for t in blocks}) == 2          # … shared by both workers
    local, local_info = by_seed_block(g, whole, None, None, None, None)
    assert r.verdict is local.verdict is sg.Verdict.PROVED, r.reason
    def table(res):
        return [{k: v for k, v in b.items() if k != "seconds"} for b in res.blocks]
    assert r.method == local.method and table(r) == table(local) and r.terms == local.terms
    assert wrong.verdict is sg.Verdict.REFUTED and wrong.method.startswith("per seed block: ")
    assert len([t for t in stream.data if t["key"].startswith("wrong.block")]) == \
        len(g.values) + 1
    assert [(v, verdict) for v, verdict, _ in info] == \
        [(v, verdict) for v, verdict, _ in local_info]


def test_a_seed_block_fan_out_off_a_worker_runs_in_turn():
    from symgrad.gate.executors import _FanOut
    assert _FanOut([], [], "k")([lambda: 1, lambda: 2], ["a", "b"]) == [1, 2]

"""Where the gate's obligations run: in this process one after another, or on a local pool
of forked worker processes. An executor calls ``finish(k, outcome)`` for each obligation
index ``k`` of ``todo`` as it completes; ``run(obligation)`` checks one, ``failed(obligation,
exc)`` is the outcome of one whose worker died.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from concurrent.futures import ProcessPoolExecutor, as_completed

from ..prove.isolate import stop_checks


def serial(obligations, todo, finish, run, failed):
    """Each obligation in this process (its checks fork as usual)."""
    for k in todo:
        finish(k, run(obligations[k]))


def _worker_start():
    """A pool worker: its obligation's entries stay in it (the pool already uses every
    core); a Ctrl-C is the parent's to handle; SIGTERM (the parent stopping the pool) kills
    the checks it runs and ends it without a traceback."""
    os.environ["SYMGRAD_WORKERS"] = "1"
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _worker_stop)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})


def _worker_stop(signum, frame):
    stop_checks()
    os._exit(128 + signum)


def local_pool(obligations, todo, finish, run, failed, jobs: int):
    """A pool of ``jobs`` forked workers; a Ctrl-C terminates them and propagates."""
    # The workers are forked with SIGINT blocked, until they ignore it (_worker_start).
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        pool = ProcessPoolExecutor(jobs, mp_context=mp.get_context("fork"),
                                   initializer=_worker_start)
        futures = {pool.submit(run, obligations[k]): k for k in todo}
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    try:
        for fut in as_completed(futures):
            k = futures[fut]
            try:
                outcome = fut.result()
            except Exception as exc:  # a worker died: this obligation only
                outcome = failed(obligations[k], exc)
            finish(k, outcome)
    except KeyboardInterrupt:
        # Python 3.14 has pool.terminate_workers(); before it, the workers are _processes.
        for worker in list((getattr(pool, "_processes", None) or {}).values()):
            worker.terminate()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _on_worker(fn, paths, *args):
    """``fn(*args)`` on a Dask worker: the project's import roots on its path (a user's
    rule imports there too), and leave to fork the checking children a check runs in —
    a Dask worker process is daemonic, and multiprocessing refuses a daemon children."""
    import multiprocessing
    import sys
    for p in reversed(paths):
        if p not in sys.path:
            sys.path.insert(0, p)
    multiprocessing.current_process()._config["daemon"] = False
    os.environ["SYMGRAD_WORKERS"] = "1"    # a worker is one core: its entries in turn
    return fn(*args)


def _part(job, refs):
    """One part of a split graph entry; the user code it names is imported first (its ops
    registered in this worker)."""
    from ..frameworks.targets import load
    for ref in refs:
        load(ref)
    return job()


def _part_lost(label, exc, end_to_end: bool):
    """A part whose workers kept dying: its UNKNOWN, shaped as the part's result."""
    from ..prove.result import Result, Verdict
    text = str(exc).strip().splitlines()
    r = Result(name=label, verdict=Verdict.UNKNOWN,
               reason=f"the worker running it died ({type(exc).__name__}: "
                      f"{text[0] if text else ''})",
               advice="run it again, or give the workers more memory")
    return (r, None) if end_to_end else r


class _FanOut:
    """The seed blocks of an exact end to end too large as one identity, as tasks of their
    own (:func:`symgrad.prove.tape.by_seed_block`): submitted from the worker running the
    end to end, which leaves its slot while it waits (``worker_client``), so every worker
    of the cluster takes blocks. Off a worker (a test, a direct call), in turn."""

    def __init__(self, paths, refs, key: str):
        self.paths, self.refs, self.key = paths, refs, key

    def __call__(self, jobs, labels):
        from distributed import wait, worker_client
        try:
            from distributed import get_worker
            get_worker()
        except ValueError:
            from ..prove.tape import in_turn
            return in_turn(jobs, labels)
        with worker_client() as client:
            # later tape values (nearer the output) make the larger blocks: first
            futures = [client.submit(_on_worker, _part, self.paths, job, self.refs,
                                     pure=False, key=f"{self.key}.block{j}", priority=j)
                       for j, job in enumerate(jobs)]
            wait(futures)
            out = []
            for fut, label in zip(futures, labels):
                try:
                    out.append(fut.result())
                except Exception as exc:  # noqa: BLE001 - this block's workers died
                    out.append(_part_lost(label, exc, False))
            return out


class _Parts:
    """A split entry's parts in flight: their results so far (None: not yet), labels, how
    to combine them, when it started, whether the last part is the end to end."""

    def __init__(self, labels, combine, end_to_end: bool):
        self.done = [None] * len(labels)
        self.labels, self.combine, self.end_to_end = labels, combine, end_to_end
        self.start = time.perf_counter()


def dask_cluster(obligations, todo, finish, run, failed, jobs: int, scheduler=None,
                 lost=None, split=None):
    """Each obligation a task on a ``dask.distributed`` cluster: the scheduler at
    ``scheduler`` (``tcp://host:8786``), or a LocalCluster of ``jobs`` single-threaded
    worker processes. ``split(ob, fan_out)`` gives a large entry's parts — (jobs, labels,
    combine(done, seconds)), a graph's node obligations and end to end — which run as
    tasks of their own, so one graph spreads over the workers; an exact end to end too
    large as one identity runs its seed blocks through ``fan_out`` (:class:`_FanOut`),
    as tasks too. Outcomes come back as tasks
    finish (``finish`` writes the cache); a task whose workers keep dying (Dask retries it
    on another) becomes ``lost(ob, exc)`` — for a part, that part's UNKNOWN; a Ctrl-C
    cancels the rest and propagates."""
    import sys
    try:
        from distributed import Client, LocalCluster, as_completed as done_first
    except ImportError:
        from ..errors import InputError
        raise InputError("--executor dask needs dask.distributed: pip install "
                         "'symgrad[dask]'") from None
    from .cache import USER_KEYS
    cluster = None
    if scheduler is None:
        import dask
        # one task at a time per worker, none queued behind it: a worker that dies takes
        # down only the task it was running, not an innocent one waiting on it
        with dask.config.set({"distributed.scheduler.worker-saturation": 1.0}):
            cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True,
                                   dashboard_address=None)
        client = Client(cluster)
    else:
        try:
            client = Client(scheduler, timeout="5s")
        except (OSError, TimeoutError) as exc:
            from ..errors import InputError
            raise InputError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    paths = [p for p in sys.path if p]
    tag = f"{os.getpid()}-{id(obligations)}"
    futures: dict = {}     # future → (k, part index or None)
    pending: dict = {}     # k → the split entry's parts in flight (_Parts)
    try:
        for k in todo:
            ob = obligations[k]
            parts = None
            refs = [ob.spec[key] for key in USER_KEYS if key in ob.spec]
            if split is not None:
                try:
                    parts = split(ob, _FanOut(paths, refs, f"symgrad-{k}-{tag}"))
                except Exception:   # noqa: BLE001 - run whole: run() reports the problem
                    parts = None
            if not parts or not parts[0]:
                futures[client.submit(_on_worker, run, paths, ob, pure=False,
                                      key=f"symgrad-{k}-{tag}")] = (k, None)
                continue
            jobs_k, labels, combine = parts
            pending[k] = _Parts(labels, combine, ob.spec.get("end_to_end", True))
            for j, job in enumerate(jobs_k):
                futures[client.submit(_on_worker, _part, paths, job, refs, pure=False,
                                      key=f"symgrad-{k}.{j}-{tag}")] = (k, j)
        for fut in done_first(list(futures)):
            k, j = futures[fut]
            if j is None:
                try:
                    outcome = fut.result()
                except Exception as exc:  # noqa: BLE001 - its workers died: this one only
                    outcome = (lost or failed)(obligations[k], exc)
                finish(k, outcome)
                continue
            parts = pending[k]
            try:
                parts.done[j] = fut.result()
            except Exception as exc:  # noqa: BLE001 - this part's workers died
                parts.done[j] = _part_lost(parts.labels[j], exc,
                                           parts.end_to_end and j == len(parts.done) - 1)
            if all(r is not None for r in parts.done):
                try:
                    outcome = parts.combine(parts.done, time.perf_counter() - parts.start)
                except Exception as exc:  # noqa: BLE001 - a bug in combining: exit 3
                    outcome = failed(obligations[k], exc)
                finish(k, outcome)
    except KeyboardInterrupt:
        client.cancel(list(futures))
        raise
    finally:
        client.close()
        if cluster is not None:
            cluster.close()

"""Where the gate's obligations run: in this process one after another, or on a local pool
of forked worker processes. An executor calls ``finish(k, outcome)`` for each obligation
index ``k`` of ``todo`` as it completes; ``run(obligation)`` checks one, ``failed(obligation,
exc)`` is the outcome of one whose worker died.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
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


def _on_worker(run, ob, paths):
    """One obligation on a Dask worker: the project's import roots on its path (a user's
    rule imports there too), and leave to fork the checking children a check runs in —
    a Dask worker process is daemonic, and multiprocessing refuses a daemon children."""
    import multiprocessing
    import sys
    for p in reversed(paths):
        if p not in sys.path:
            sys.path.insert(0, p)
    multiprocessing.current_process()._config["daemon"] = False
    os.environ["SYMGRAD_WORKERS"] = "1"    # a worker is one core: its entries in turn
    return run(ob)


def dask_cluster(obligations, todo, finish, run, failed, jobs: int, scheduler=None,
                 lost=None):
    """Each obligation a task on a ``dask.distributed`` cluster: the scheduler at
    ``scheduler`` (``tcp://host:8786``), or a LocalCluster of ``jobs`` single-threaded
    worker processes. Outcomes come back as tasks finish (``finish`` writes the cache);
    a task whose workers keep dying (Dask retries it on another) becomes ``lost(ob, exc)``,
    that obligation's UNKNOWN; a Ctrl-C cancels the rest and propagates."""
    import sys
    try:
        from distributed import Client, LocalCluster, as_completed as done_first
    except ImportError:
        from ..errors import InputError
        raise InputError("--executor dask needs dask.distributed: pip install "
                         "'symgrad[dask]'") from None
    cluster = None
    if scheduler is None:
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
    try:
        futures = {client.submit(_on_worker, run, obligations[k], paths, pure=False,
                                 key=f"symgrad-{k}-{os.getpid()}-{id(obligations)}"): k
                   for k in todo}
        for fut in done_first(futures):
            k = futures[fut]
            try:
                outcome = fut.result()
            except Exception as exc:  # noqa: BLE001 - its workers died: this one only
                outcome = (lost or failed)(obligations[k], exc)
            finish(k, outcome)
    except KeyboardInterrupt:
        client.cancel(list(futures))
        raise
    finally:
        client.close()
        if cluster is not None:
            cluster.close()

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

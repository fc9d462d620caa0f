"""Run a check in a forked child with a time and memory limit.

FLINT and SymEngine calls cannot be interrupted from Python, so a limit needs a process: the
child runs the check and sends back the result; past the time limit it is killed and the
verdict is UNKNOWN("timeout"). The memory limit (RLIMIT_AS) turns a runaway expansion into
UNKNOWN("out of memory") instead of swapping. Errors in the user's input come back as the
same exception class with the same one-sentence message.
"""
from __future__ import annotations

import gc
import multiprocessing as mp
import os
import pickle
import resource
import time
import traceback

from ..errors import InputError, InternalError
from .result import Result, Verdict

#: seconds per obligation unless told otherwise (``SYMGRAD_TIMEOUT`` overrides)
DEFAULT_TIMEOUT = float(os.environ.get("SYMGRAD_TIMEOUT", 600))
#: address-space limit of a checking process in MiB (``SYMGRAD_MEMORY_MB`` overrides)
DEFAULT_MEMORY_MB = int(os.environ.get("SYMGRAD_MEMORY_MB", 8192))


def workers() -> int:
    """Processes one obligation may use for its entries (``SYMGRAD_WORKERS`` overrides;
    default: the machine's cores)."""
    try:
        return max(int(os.environ.get("SYMGRAD_WORKERS", os.cpu_count() or 1)), 1)
    except ValueError:
        return 1


def fork_map(fn, parts: list) -> list:
    """``[fn(p) for p in parts]`` with each call in a forked child (the children inherit
    every table built so far). A child that dies — out of memory, say — raises
    MemoryError here, which the isolated checking process reports as UNKNOWN."""
    if len(parts) <= 1 or not hasattr(os, "fork"):
        return [fn(p) for p in parts]
    children = []
    for p in parts[1:]:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: compute, send, leave without running the parent's cleanup
            os.close(r)
            code = 0
            try:
                data = pickle.dumps(("ok", fn(p)))
            except MemoryError:
                data, code = pickle.dumps(("died", None)), 1
            except BaseException:
                data, code = pickle.dumps(("error", traceback.format_exc())), 1
            with os.fdopen(w, "wb") as out:
                out.write(data)
            os._exit(code)
        os.close(w)
        children.append((pid, r))
    results = [fn(parts[0])]
    failed = None
    for pid, r in children:
        with os.fdopen(r, "rb") as inp:
            data = inp.read()
        os.waitpid(pid, 0)
        try:
            kind, payload = pickle.loads(data)
        except Exception:
            kind, payload = "died", None
        if kind == "ok":
            results.append(payload)
        else:
            failed = failed or (kind, payload)
    if failed is not None:
        if failed[0] == "died":
            raise MemoryError("a worker process died")
        raise RuntimeError(f"a worker process failed:\n{failed[1]}")
    return results


def _child(target, conn, memory_mb):
    # The checking process is short-lived and allocates millions of small tuples (IDs,
    # keys) that form no cycles: the cyclic collector would only rescan them.
    gc.disable()
    try:
        if memory_mb:
            limit = memory_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        result = target()
        result.peak_memory_mb = max(resource.getrusage(who).ru_maxrss for who in (
            resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024  # per process
        conn.send(("ok", result))
    except InputError as exc:
        conn.send(("input", (type(exc), str(exc))))
    except MemoryError:
        conn.send(("memory", None))
    except BaseException:  # a bug: carry the traceback to the parent
        conn.send(("internal", traceback.format_exc()))
    finally:
        conn.close()


def run_isolated(target, name: str, timeout: float | None = None,
                 memory_mb: int | None = None) -> Result:
    """``target()`` (returning a Result) in a child process under the limits."""
    timeout = DEFAULT_TIMEOUT if timeout is None else timeout
    memory_mb = DEFAULT_MEMORY_MB if memory_mb is None else memory_mb
    if "fork" not in mp.get_all_start_methods():  # no fork: run here, no hard limit
        return target()
    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    t0 = time.perf_counter()
    proc = ctx.Process(target=_child, args=(target, send, memory_mb), daemon=True)
    proc.start()
    send.close()
    msg = None
    try:
        if recv.poll(timeout):
            try:
                msg = recv.recv()
            except EOFError:
                msg = None
        else:
            msg = ("timeout", None)
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join()
        recv.close()
    seconds = time.perf_counter() - t0
    if msg is None:
        return Result(name, Verdict.UNKNOWN, method="limit", seconds=seconds,
                      reason=f"the checking process died (exit code {proc.exitcode}); most "
                             f"likely it ran out of memory (limit {memory_mb} MiB)")
    kind, payload = msg
    if kind == "ok":
        return payload
    if kind == "timeout":
        return Result(name, Verdict.UNKNOWN, method="limit", seconds=seconds,
                      reason=f"timeout: no verdict within {timeout:g} s")
    if kind == "memory":
        return Result(name, Verdict.UNKNOWN, method="limit", seconds=seconds,
                      reason=f"out of memory (limit {memory_mb} MiB)")
    if kind == "input":
        cls, text = payload
        raise cls(text)
    raise InternalError(f"symgrad failed while checking {name}:\n{payload}")

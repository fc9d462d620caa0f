"""Run a check in a forked child with a time and memory limit.

FLINT and SymEngine calls cannot be interrupted from Python, so a limit needs a process: the
child runs the check and sends back the result; past the time limit it is killed and the
verdict is UNKNOWN("timeout"). Memory has one budget for the whole run (``SYMGRAD_MEMORY_MB``,
4096 MiB unless told otherwise): each checking process gets it, on top of the address space
it inherited, as its address-space limit (RLIMIT_AS, which turns a runaway expansion into
UNKNOWN("out of memory") instead of swapping), and a watchdog thread sums the resident memory of this process and of every
checking process it started, with what they forked, and kills the largest when the sum
passes the budget — that check comes back UNKNOWN("out of memory"), naming the budget. Errors in the user's input come back as the
same exception class with the same one-sentence message. The child leads its own process
group and ignores Ctrl-C: the parent handles it, killing the group (the child and whatever
it forked). The limits come from arguments or the ``SYMGRAD_*`` variables, read when used
and checked: a malformed value is an InputError naming it, never a crash at import.
"""
from __future__ import annotations

import contextlib
import gc
import math
import multiprocessing as mp
import numbers
import os
import pickle
import resource
import signal
import sys
import tempfile
import threading
import time
import traceback
import warnings

from ..errors import InputError, InternalError
from .flint_poly import address_space_bytes
from .result import Result, Verdict

#: the limits' environment variables: name -> (what a value must be, built-in default)
LIMITS = {
    "SYMGRAD_TIMEOUT": ("a positive number of seconds", 600.0),
    "SYMGRAD_MEMORY_MB": ("a positive whole number of MiB", 4096),
    "SYMGRAD_WORKERS": ("a positive whole number of processes", None),   # None: the cores
    "SYMGRAD_MAX_ENTRIES": ("a positive whole number of entries", 65536),
}


def _limit(variable: str, value, name: str, integer: bool):
    """``value`` (None: the environment variable, else its built-in default) checked to be
    a finite number > 0 — a whole one if ``integer``; one sentence naming ``name`` (or the
    variable) and the bad value otherwise."""
    what, default = LIMITS[variable]
    if value is None:
        raw = os.environ.get(variable, "").strip()
        if not raw:
            return default if default is not None else max(os.cpu_count() or 1, 1)
        try:
            value = int(raw) if integer else float(raw)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or value <= 0:
            raise InputError(f"{variable}={raw!r} is not {what}; unset it or set it to "
                             f"one like {default or 2:g}")
        return value
    kinds = numbers.Integral if integer else numbers.Real
    if (isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value)
            or value <= 0):
        raise InputError(f"{name} must be {what}, got {value!r}")
    return int(value) if integer else float(value)


def timeout_seconds(value=None, name: str = "timeout") -> float:
    """Seconds per check: ``value``, else ``SYMGRAD_TIMEOUT``, else 600 — finite and > 0."""
    return _limit("SYMGRAD_TIMEOUT", value, name, integer=False)


def memory_limit_mb(value=None, name: str = "memory_mb") -> int:
    """Memory budget of a run in MiB (the checking processes' resident memory together, and
    each one's address-space limit): ``value``, else ``SYMGRAD_MEMORY_MB``, else 4096 — a
    whole number > 0."""
    return _limit("SYMGRAD_MEMORY_MB", value, name, integer=True)


def worker_count(value=None, name: str = "workers") -> int:
    """Processes one obligation may use for its entries: ``value``, else
    ``SYMGRAD_WORKERS``, else the machine's cores."""
    return _limit("SYMGRAD_WORKERS", value, name, integer=True)


def max_entries(value=None, name: str = "max_entries") -> int:
    """Entries per tensor above which a check is refused: ``value``, else
    ``SYMGRAD_MAX_ENTRIES``, else 65536."""
    return _limit("SYMGRAD_MAX_ENTRIES", value, name, integer=True)


def check_environment():
    """Raise InputError (one sentence) for the first malformed SYMGRAD_* limit variable."""
    for variable in LIMITS:
        _limit(variable, None, variable, integer=variable != "SYMGRAD_TIMEOUT")


def _or_default(read, variable):
    try:
        return read()
    except InputError:  # reported where the limit is used (run_isolated, the CLI)
        return LIMITS[variable][1]


#: seconds per obligation unless told otherwise (``SYMGRAD_TIMEOUT`` overrides)
DEFAULT_TIMEOUT = _or_default(timeout_seconds, "SYMGRAD_TIMEOUT")
#: memory budget of a run in MiB (``SYMGRAD_MEMORY_MB`` overrides)
DEFAULT_MEMORY_MB = _or_default(memory_limit_mb, "SYMGRAD_MEMORY_MB")
#: processes one obligation may use for its entries (``SYMGRAD_WORKERS`` overrides)
workers = worker_count

#: process groups of the checking processes this process started and has not reaped
_RUNNING: set = set()


class _Watch:
    """The run's memory watchdog: every :data:`WATCH_SECONDS`, the resident memory of this
    process plus every process in the groups of running checks; past the smallest budget
    among them, the largest group is killed (and remembered, so its check says why). Keeps
    the peak sum it saw."""

    def __init__(self):
        self.budgets: dict = {}      # pgid -> budget in MiB
        self.over: dict = {}         # pgid -> the sum (MiB) that passed the budget
        self.peak_mb = 0.0
        self.lock = threading.Lock()
        self.thread = None

    def add(self, pgid: int, budget_mb: int):
        with self.lock:
            self.budgets[pgid] = budget_mb
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="symgrad-memory",
                                               daemon=True)
                self.thread.start()

    def remove(self, pgid: int):
        with self.lock:
            self.budgets.pop(pgid, None)

    def _run(self):
        while True:
            with self.lock:
                if not self.budgets:
                    self.thread = None
                    return
                budgets = dict(self.budgets)
            by_group = _resident_by_group(set(budgets))
            total = _resident_mb("self") + sum(by_group.values())
            self.peak_mb = max(self.peak_mb, total)
            budget = min(budgets.values())
            if total > budget and by_group:
                largest = max(by_group, key=by_group.get)
                with self.lock:
                    self.over[largest] = total
                _kill_group(largest)
            time.sleep(WATCH_SECONDS)


#: how often the memory watchdog samples
WATCH_SECONDS = 0.05
_PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2 ** 20 if hasattr(os, "sysconf") else 4096 / 2 ** 20


def _resident_mb(pid) -> float:
    """The proportional resident memory (PSS, MiB) of a process: pages a forked child still
    shares with its parent count once between them, not once in each. RSS where the kernel
    has no smaps_rollup."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * _PAGE_MB
    except (OSError, ValueError, IndexError):
        return 0.0


def _resident_by_group(groups: set) -> dict:
    """{process group: resident MiB of its processes} for ``groups`` (Linux /proc; empty
    elsewhere, where only the address-space limit applies)."""
    out: dict = {}
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return out
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                pgrp = int(f.read().rsplit(")", 1)[1].split()[2])
        except (OSError, IndexError, ValueError):
            continue
        if pgrp in groups:
            out[pgrp] = out.get(pgrp, 0.0) + _resident_mb(pid)
    return out


_WATCH = _Watch()


def run_peak_mb() -> float:
    """The largest resident memory (MiB) this process and its running checks held together,
    as the watchdog sampled it (0 before any check ran)."""
    return _WATCH.peak_mb


def stop_checks():
    """Kill every checking process this process started, with the processes it forked
    (each checking process leads its own process group)."""
    for pgid in list(_RUNNING):
        _kill_group(pgid)


def _kill_group(pgid):
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:  # already gone
        pass


@contextlib.contextmanager
def _quiet_fork():
    """JAX warns at every fork of a process that imported it (its threads do not survive
    one); a checking process never calls JAX (symgrad.frameworks.jax reads what it needs
    first), so the warning is not for it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called",
                                category=RuntimeWarning)
        yield


def fork_map(fn, parts: list) -> list:
    """``[fn(p) for p in parts]`` with each call in a forked child (the children inherit
    every table built so far). A child that dies — out of memory, say — raises
    MemoryError here, which the isolated checking process reports as UNKNOWN."""
    if len(parts) <= 1 or not hasattr(os, "fork"):
        return [fn(p) for p in parts]
    children = []
    for p in parts[1:]:
        r, w = os.pipe()
        with _quiet_fork():
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


def _child(target, conn, memory_mb, errors=None):
    # What the child prints goes to a file the parent passes on, less FLINT's report of an
    # allocation refused at the memory limit (the verdict says so in its own words).
    if errors is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(errors.fileno(), 1)
        os.dup2(errors.fileno(), 2)
    # Its own process group (the parent kills the group: the processes it forks go too);
    # a Ctrl-C is the parent's to handle, so it is ignored here (it was blocked until now).
    os.setpgid(0, 0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    # The checking process is short-lived and allocates millions of small tuples (IDs,
    # keys) that form no cycles: the cyclic collector would only rescan them.
    gc.disable()
    try:
        if memory_mb:   # the budget on top of what the process inherited (a parent that
            # imported PyTorch or JAX maps gigabytes of address space it never touches)
            limit = address_space_bytes() + memory_mb * 1024 * 1024
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


def _printed(text: str) -> str:
    """What a child printed, less FLINT's allocation-failure reports."""
    lines, skip = [], False
    for line in text.splitlines():
        if line.startswith("FLINT exception"):
            skip = True
            continue
        if line.startswith("cannot allocate memory"):   # glibc, at the limit
            continue
        if skip and (line.startswith(" ") or not line.strip()):
            continue
        skip = False
        lines.append(line)
    return "\n".join(lines).strip()


MEMORY_ADVICE = ("allow more memory (SYMGRAD_MEMORY_MB in the environment), or check smaller "
                 "shapes")


def run_isolated(target, name: str, timeout: float | None = None,
                 memory_mb: int | None = None) -> Result:
    """``target()`` (returning a Result) in a child process under the limits. A Ctrl-C
    here kills the child (and what it forked) and propagates as KeyboardInterrupt."""
    timeout = timeout_seconds(timeout)
    memory_mb = memory_limit_mb(memory_mb)
    if "fork" not in mp.get_all_start_methods():  # no fork: run here, no hard limit
        return target()
    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    t0 = time.perf_counter()
    errors = tempfile.TemporaryFile()
    proc = ctx.Process(target=_child, args=(target, send, memory_mb, errors), daemon=True)
    # No signal between the fork and the bookkeeping: the child starts with them blocked.
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        with _quiet_fork():
            proc.start()
        try:
            os.setpgid(proc.pid, proc.pid)
        except OSError:  # the child did it first, or is gone already
            pass
        _RUNNING.add(proc.pid)
        _WATCH.add(proc.pid, memory_mb)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
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
        _kill_group(proc.pid)
        if proc.is_alive():
            proc.kill()
        proc.join()
        _RUNNING.discard(proc.pid)
        _WATCH.remove(proc.pid)
        recv.close()
    over = _WATCH.over.pop(proc.pid, None)
    seconds = time.perf_counter() - t0
    errors.seek(0)
    said = _printed(errors.read().decode("utf-8", "replace"))
    errors.close()
    if said:   # on stderr: a --json report on stdout stays one JSON document
        sys.stderr.write(said + "\n")
        sys.stderr.flush()
    if over is not None and (msg is None or msg[0] != "ok"):
        return Result(name, Verdict.UNKNOWN, method="limit", seconds=seconds,
                      reason=f"out of memory: the run held {over:,.0f} MiB, past its budget of "
                             f"{memory_mb} MiB, and this check was the largest part of it",
                      advice=MEMORY_ADVICE)
    if msg is None:
        return Result(name, Verdict.UNKNOWN, method="limit", seconds=seconds,
                      reason=f"the checking process died (exit code {proc.exitcode}); most "
                             f"likely it ran out of memory (limit {memory_mb} MiB)",
                      advice=MEMORY_ADVICE)
    kind, payload = msg
    if kind == "ok":
        return payload
    if kind == "timeout":
        return Result(name, Verdict.UNKNOWN, method="limit", seconds=seconds,
                      reason=f"timeout: no verdict within {timeout:g} s",
                      advice="allow more time (--timeout, or SYMGRAD_TIMEOUT in the "
                             "environment), or check smaller shapes")
    if kind == "memory":
        return Result(name, Verdict.UNKNOWN, method="limit", seconds=seconds,
                      reason=f"out of memory (limit {memory_mb} MiB)", advice=MEMORY_ADVICE)
    if kind == "input":
        cls, text = payload
        raise cls(text)
    raise InternalError(f"symgrad failed while checking {name}:\n{payload}")

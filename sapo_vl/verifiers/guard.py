"""A hard wall-clock limit for verifier work that might never return, by running it in worker processes.

Why processes: math-verify's own timeout is `signal.alarm`, which only works in the main thread (the
trainer scores from threads), and neither a signal nor a thread can interrupt CPython while it grinds
through one big-integer operation such as `10**(10**(10**10))`. Killing a process always works.

How: each `Worker` is a child Python (`python -c "…_serve(FD)"`, started with fork+exec, so
it is safe from a parent that holds CUDA contexts or threads and never re-imports the parent's `__main__`)
talking over a socket pair. `run_guarded(fn, *args, timeout=…)` borrows an idle worker, sends it the
call, and waits at most `timeout` seconds for the reply; past that the worker is killed, a fresh one
replaces it on the next call, and `GuardTimeout` is raised. Workers start once (about half a second,
importing math-verify) and are reused, so a call costs one round trip (≈0.06 ms) on top of the work.

Inside a worker `run_guarded` calls `fn` directly: the batch scorer already runs whole `score` calls in
workers under its own limit. Each worker also caps its address space (`MEMORY_LIMIT_MB`) and dies with
its parent (workers are started from one long-lived thread, since that signal follows the starting
thread).
"""
from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable

MEMORY_LIMIT_MB = 4096
"""Address-space cap of a worker; a blow-up raises MemoryError there instead of swapping the host."""
START_TIMEOUT_S = 120.0
"""How long a new worker may take to import math-verify and report ready (slow shared CI machines)."""
PRELOAD = ("math_verify", "sapo_vl.verifiers")
"""Modules a worker imports before it reports ready, so that the first call's limit is spent on work."""

_IN_WORKER = False


class GuardTimeout(Exception):
    """The call ran past its wall-clock limit; its worker was killed."""


class GuardUnavailable(RuntimeError):
    """A worker process could not be started: an environment problem, raised rather than scored."""


class WorkerCrashed(RuntimeError):
    """The worker died during a call (segfault, out of memory); it is replaced on the next call."""


_CHILD_MAIN = "import sys; from sapo_vl.verifiers.guard import _serve; _serve(int(sys.argv[1]), int(sys.argv[2]))"


class Worker:
    """One child process serving calls, one at a time. Not thread-safe: borrow it via the pool."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])  # the directory holding the sapo_vl package
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD_MAIN, str(theirs.fileno()), str(MEMORY_LIMIT_MB)],
            pass_fds=(theirs.fileno(),), env=env, stdin=subprocess.DEVNULL, close_fds=True,
        )
        theirs.close()
        self.conn = Connection(ours.detach())
        self.ready = False

    def wait_ready(self) -> "Worker":
        """Block until the child has imported `PRELOAD` (started workers can do that in parallel)."""
        if self.ready:
            return self
        if not self.conn.poll(START_TIMEOUT_S):
            self.close()
            raise GuardUnavailable(f"verifier worker did not start within {START_TIMEOUT_S:.0f} s")
        try:
            self.conn.recv()  # "ready"
        except (EOFError, OSError) as e:
            self.close()
            raise GuardUnavailable(f"verifier worker failed to start (exit code {self.proc.poll()})") from e
        self.ready = True
        return self

    def call(self, fn: Callable, args: tuple, kwargs: dict, timeout: float) -> Any:
        self.wait_ready()
        try:
            self.conn.send((fn, args, kwargs))
        except (BrokenPipeError, ConnectionResetError) as e:  # it died while idle
            self.close()
            raise WorkerCrashed(f"verifier worker died (exit code {self.proc.poll()})") from e
        if not self.conn.poll(timeout):
            self.close()
            raise GuardTimeout(f"no result within {timeout:g} s")
        try:
            status, value = self.conn.recv()
        except (EOFError, OSError) as e:
            self.close()
            raise WorkerCrashed(f"verifier worker died (exit code {self.proc.poll()})") from e
        if status == "err":
            raise value
        return value

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None and not self.conn.closed

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if not self.conn.closed:
            self.conn.close()


# ---------------------------------------------------------------------------------------------- pool
_lock = threading.Lock()
_idle: list[Worker] = []
_owner_pid = os.getpid()
_spawner: ThreadPoolExecutor | None = None


def _adopt_after_fork() -> None:
    """Call with `_lock` held. After a fork the inherited workers and spawner thread belong to the parent."""
    global _owner_pid, _spawner
    if _owner_pid != os.getpid():
        _idle.clear()
        _spawner = None
        _owner_pid = os.getpid()


def _spawn(n: int) -> list[Worker]:
    """Start `n` workers. They are started from one long-lived thread because a worker's parent-death
    signal fires when the *thread* that started it exits, and callers' threads (a batch's pool) come and go."""
    global _spawner
    with _lock:
        _adopt_after_fork()
        if _spawner is None:
            _spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="verifier-spawner")
        spawner = _spawner
    return spawner.submit(lambda: [Worker() for _ in range(n)]).result()


def _borrow() -> Worker:
    with _lock:
        _adopt_after_fork()
        while _idle:
            worker = _idle.pop()
            if worker.alive:
                return worker
    return _spawn(1)[0]


def _give_back(worker: Worker) -> None:
    if worker.alive:
        with _lock:
            if _owner_pid == os.getpid():
                _idle.append(worker)


def run_guarded(fn: Callable, *args: Any, timeout: float, **kwargs: Any) -> Any:
    """`fn(*args, **kwargs)` in a worker process, killed after `timeout` seconds (raises GuardTimeout).

    `fn` must be a module-level function and its arguments and result picklable. An exception inside
    `fn` is re-raised here. Inside a worker, `fn` runs directly (the caller is already guarded).
    """
    if _IN_WORKER:
        return fn(*args, **kwargs)
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    worker = _borrow()
    try:
        return worker.call(fn, args, kwargs, timeout)
    finally:
        _give_back(worker)


def warm_up(n: int) -> None:
    """Start workers until `n` are idle (their start-up then stays out of timed work)."""
    with _lock:
        _adopt_after_fork()
        missing = n - sum(w.alive for w in _idle)
    for worker in _spawn(missing) if missing > 0 else []:  # all start at once, then we wait for each
        _give_back(worker.wait_ready())


def shutdown() -> None:
    """Stop all idle workers (also run at exit)."""
    with _lock:
        workers = list(_idle) if _owner_pid == os.getpid() else []
        _idle.clear()
    for worker in workers:
        worker.close()


atexit.register(shutdown)


# ---------------------------------------------------------------------------------------------- child side
def _die_with_parent() -> None:
    try:  # Linux: SIGKILL this process when the parent goes away, even mid-computation
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _limit_memory(megabytes: int) -> None:
    try:
        import resource

        limit = megabytes * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except Exception:
        pass


def _serve(fd: int, memory_mb: int) -> None:
    global _IN_WORKER
    _IN_WORKER = True
    _die_with_parent()
    import importlib
    import logging

    conn = Connection(fd)
    # We enforce the time limit ourselves, so math-verify's "timeout is disabled" warning is noise.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    for name in PRELOAD:
        importlib.import_module(name)
    _limit_memory(memory_mb)
    conn.send(("ready", None))
    while True:
        try:
            fn, args, kwargs = conn.recv()
        except (EOFError, OSError):
            return
        try:
            reply = ("ok", fn(*args, **kwargs))
        except BaseException as e:  # noqa: BLE001 - everything goes back to the caller
            reply = ("err", e)
        try:
            conn.send(reply)
        except Exception as e:  # unpicklable result or exception
            conn.send(("err", RuntimeError(f"{type(e).__name__}: {e}; original: {reply[1]!r:.300}")))

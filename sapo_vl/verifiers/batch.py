"""`score_batch`: score many (verifier, response, answer, params) items in parallel, in order, with a time limit
per item and the throughput reported. The trainer scores its G × B rollouts with it.

Parallelism is processes, not threads: `workers` threads each drive one guard worker process
(`guard.py`), which runs the whole `score(...)` call, so SymPy work runs on `workers` cores and a call
that exceeds `timeout` seconds is killed and scored 0 with reason "timeout" (the worker is replaced;
the other items are unaffected). Items are sent in small chunks to keep the round trips cheap; a chunk
that runs out of time is retried item by item, so only the slow item loses. Results come back in the
order of the items, each with the [start, end] span (monotonic clock) of the call that scored it, so
callers and tests can see which items ran at the same time. `workers=0` scores inline in the calling thread, one by one (math still runs
guarded, per call), which is what a debugger wants.

Configuration errors (unknown verifier or parameter, bad parameter values, unreadable ground truth)
raise `VerifierConfigError` before or during the batch; model output never does.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

from .registry import check_params, score
from .guard import GuardTimeout, WorkerCrashed, run_guarded, warm_up
from .result import VerifierResult

Item = tuple  # (name, response, answer) or (name, response, answer, params)


class BatchScores(NamedTuple):
    results: list[VerifierResult]
    """One per item, in the order of the items."""
    seconds: float
    """Wall-clock time of the scoring (worker start-up, paid once per process, excluded)."""
    per_second: float
    """Throughput: responses scored per second."""
    timeouts: int
    """Items that ran past `timeout` (scored 0, reason "timeout")."""
    workers: int
    """Worker processes used (0: inline)."""
    spans: list[tuple[float, float]]
    """One per item: (start, end) on `time.monotonic()` of the worker call that scored it (its chunk's call, or
    its own call when a chunk was retried item by item); overlapping spans ran in parallel."""


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _normalise(item: Item) -> tuple[str, Any, Any, dict]:
    if not isinstance(item, (tuple, list)) or len(item) not in (3, 4):
        raise ValueError(f"a batch item is (name, response, answer[, params]), got {item!r:.200}")
    name, response, answer = item[:3]
    params = item[3] if len(item) == 4 and item[3] is not None else {}
    if not isinstance(params, Mapping):
        raise ValueError(f"batch item params must be a mapping, got {type(params).__name__}")
    params = dict(params)
    check_params(name, params)
    return name, response, answer, params


def _score_chunk(chunk: Sequence[tuple[str, Any, Any, dict]]) -> list[VerifierResult]:
    """Runs in a worker process."""
    return [score(name, response, answer, **params) for name, response, answer, params in chunk]


Span = tuple[float, float]


def _guarded(chunk: Sequence[tuple[str, Any, Any, dict]], timeout: float) -> list[tuple[VerifierResult, Span]]:
    """(result, span of the worker call) per item of `chunk`."""
    start = time.monotonic()
    try:
        results = run_guarded(_score_chunk, chunk, timeout=timeout)
        span = (start, time.monotonic())
        return [(r, span) for r in results]
    except (GuardTimeout, WorkerCrashed) as e:
        if len(chunk) > 1:  # find the slow one: retry each alone
            return [pair for item in chunk for pair in _guarded([item], timeout)]
        reason = "timeout" if isinstance(e, GuardTimeout) else "verifier worker crashed"
        return [(VerifierResult(0.0, reason, None), (start, time.monotonic()))]


def _inline(item: tuple[str, Any, Any, dict]) -> tuple[VerifierResult, Span]:
    start = time.monotonic()
    name, response, answer, params = item
    result = score(name, response, answer, **params)
    return result, (start, time.monotonic())


def score_batch(items: Iterable[Item], *, workers: int | None = None, timeout: float = 10.0,
                chunk_size: int = 8) -> BatchScores:
    """Score `items` in parallel; see the module docstring.

    Args:
        items: (name, response, answer) or (name, response, answer, params) tuples.
        workers: worker processes; None → min(8, CPU count); 0 → inline, no processes.
        timeout: seconds one item may take before it scores 0 with reason "timeout" (a chunk of
            `chunk_size` items gets the same limit as a whole, then retries item by item).
        chunk_size: items sent to a worker at once.
    """
    todo = [_normalise(item) for item in items]
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    if not (isinstance(chunk_size, int) and chunk_size >= 1):
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    n = default_workers() if workers is None else workers
    if not (isinstance(n, int) and n >= 0):
        raise ValueError(f"workers must be an int >= 0, got {workers!r}")

    if n == 0 or not todo:
        start = time.perf_counter()
        pairs = [_inline(item) for item in todo]
    else:
        n = min(n, -(-len(todo) // chunk_size))  # no more workers than chunks
        warm_up(n)
        chunks = [todo[i:i + chunk_size] for i in range(0, len(todo), chunk_size)]
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=n, thread_name_prefix="verifier") as pool:
            pairs = [pair for chunk_pairs in pool.map(lambda c: _guarded(c, timeout), chunks) for pair in chunk_pairs]
    seconds = time.perf_counter() - start
    results = [r for r, _ in pairs]
    timeouts = sum(r.reason == "timeout" for r in results)
    return BatchScores(results, seconds, len(results) / seconds if seconds > 0 else float("inf"), timeouts, n,
                       [span for _, span in pairs])

"""The hard wall-clock limit: a pathological expression cannot hang scoring, in any thread.

The limit is shown by its result ("timeout", GuardTimeout, a killed worker replaced by a new process), never by
how long a call took: these tests pass on a busy machine. Speed: bench/bench_verifiers.py."""
import os
import threading
import time

import pytest

from sapo_vl.verifiers import score
from sapo_vl.verifiers.guard import GuardTimeout, run_guarded

PATHOLOGICAL = [r"\boxed{10^{10^{10^{10}}}}", r"\boxed{(10^{10})!}"]


@pytest.mark.parametrize("response", PATHOLOGICAL)
def test_pathological_expression_times_out(response):
    result = score("math", response, "5", timeout=0.5)
    assert (result.score, result.reason) == (0.0, "timeout")


def test_guard_works_outside_the_main_thread():
    # math-verify's own SIGALRM timeout raises there; ours must not
    out = {}
    thread = threading.Thread(target=lambda: out.update(
        ok=score("math", r"\boxed{\frac{1}{2}}", "0.5"), slow=score("math", PATHOLOGICAL[0], "5", timeout=0.5)))
    thread.start()
    thread.join(30)
    assert out["ok"].score == 1.0
    assert out["slow"].reason == "timeout"


def test_scoring_recovers_after_a_timeout():
    score("math", PATHOLOGICAL[0], "5", timeout=0.5)
    assert score("math", r"\boxed{\sqrt{884}}", r"2\sqrt{221}").score == 1.0


def test_run_guarded_kills_a_slow_call():
    before = run_guarded(os.getpid, timeout=30)
    with pytest.raises(GuardTimeout):
        run_guarded(time.sleep, 30, timeout=0.5)
    after = run_guarded(os.getpid, timeout=30)
    assert after != before  # the sleeping worker was killed and replaced by a fresh process
    with pytest.raises(ProcessLookupError):
        os.kill(before, 0)  # and it is gone, not left sleeping


def test_run_guarded_reuses_its_worker_and_reraises_errors():
    first = run_guarded(os.getpid, timeout=30)
    assert first != os.getpid()  # it ran in another process
    assert run_guarded(os.getpid, timeout=30) == first  # and the common case pays no start-up
    with pytest.raises(ValueError):
        run_guarded(int, "not a number", timeout=30)
    assert run_guarded(os.getpid, timeout=30) == first  # an exception does not cost the worker


def test_bad_timeout_raises():
    with pytest.raises(ValueError):
        score("math", r"\boxed{1}", "2", timeout=0)


def test_workers_outlive_the_thread_that_needed_them():
    # a worker's parent-death signal follows the thread that started it; the batch's threads come and go
    pids = []
    thread = threading.Thread(target=lambda: pids.append(run_guarded(os.getpid, timeout=30)))
    thread.start()
    thread.join()
    time.sleep(0.3)
    assert run_guarded(os.getpid, timeout=30) == pids[0]

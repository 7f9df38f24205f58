"""`score_batch`: results in order, parallel worker processes, per-item time limit, throughput reported.

No test here asserts how long anything took: parallelism is shown by the overlap of the [start, end]
spans the batch records per item, a timeout by its result; speed is measured by bench/bench_verifiers.py."""
import pytest

from sapo_vl.verifiers import VerifierConfigError, score, score_batch

SLOW = r"\boxed{10^{10^{10^{10}}}}"
MIXED = [
    ("math", r"<answer>\frac{1}{2}</answer>", "0.5", {}),
    ("math", r"\boxed{3}", "4", None),
    ("choice", "The answer is (C)", "C", {"choices": ["a", "b", "c"]}),
    ("numeric", "<answer>47</answer>", "45", {}),
    ("count", "twenty-one", "21"),
    ("exact", "The Red.", "red", {}),
    ("format", "<think>x</think><answer>3</answer>", "", {}),
    ("combined", "<answer>3</answer>", "3", {"accuracy": "math"}),
] * 3


def _inline(items):
    return [score(it[0], it[1], it[2], **(it[3] if len(it) == 4 and it[3] else {})) for it in items]


@pytest.mark.parametrize("workers,chunk_size", [(2, 1), (2, 8), (0, 8)])
def test_results_come_back_in_order(workers, chunk_size):
    batch = score_batch(MIXED, workers=workers, chunk_size=chunk_size)
    assert batch.results == _inline(MIXED)
    assert [r.score for r in batch.results[:8]] == [1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.9]
    assert batch.workers == workers
    assert batch.per_second == pytest.approx(len(MIXED) / batch.seconds)
    assert batch.timeouts == 0
    assert len(batch.spans) == len(MIXED) and all(start <= end for start, end in batch.spans)


def _overlap(a, b) -> bool:
    return max(a[0], b[0]) < min(a[1], b[1])


def test_slow_items_time_out_in_parallel_and_alone():
    items = [("math", SLOW, "5"), ("count", "3", "3"), ("math", SLOW, "5"), ("exact", "red", "red")]
    batch = score_batch(items, workers=2, timeout=1.5, chunk_size=1)
    assert [r.reason for r in batch.results[0::2]] == ["timeout", "timeout"]
    assert [r.score for r in batch.results[1::2]] == [1.0, 1.0]
    assert batch.timeouts == 2
    # both slow items were running at once: the second started before the first was killed
    assert _overlap(batch.spans[0], batch.spans[2]), batch.spans


def test_one_worker_runs_items_one_after_another():
    # the counterpart of the overlap above: one worker process never scores two items at once
    items = [("math", SLOW, "5"), ("math", SLOW, "5"), ("count", "3", "3")]
    batch = score_batch(items, workers=1, timeout=1.0, chunk_size=1)
    assert batch.timeouts == 2 and batch.workers == 1
    assert not any(_overlap(a, b) for i, a in enumerate(batch.spans) for b in batch.spans[i + 1:]), batch.spans


def test_a_timed_out_chunk_is_retried_item_by_item():
    # the other items are instant (no SymPy), so only the slow one can run out of time, even on a busy machine
    items = [("count", "3", "3"), ("math", SLOW, "5"), ("math", r"\boxed{0.5}", "0.5"), ("exact", "blue", "red")]
    batch = score_batch(items, workers=1, timeout=1.5, chunk_size=4)
    assert [(r.score, r.reason) for r in batch.results] == [
        (1.0, "exact count"), (0.0, "timeout"), (1.0, "identical"), (0.0, "no match")]
    assert batch.timeouts == 1  # the retry alone: only the slow item is counted and scored 0


def test_empty_batch():
    batch = score_batch([], workers=2)
    assert batch.results == [] and batch.spans == [] and batch.timeouts == 0


@pytest.mark.parametrize("items,error", [
    ([("maths", "x", "1")], VerifierConfigError),
    ([("numeric", "x", "1", {"tolerence": 0.1})], VerifierConfigError),
    ([("numeric", "x")], ValueError),
    ([("numeric", "x", "1", ["not", "a", "dict"])], ValueError),
])
def test_config_errors_raise_before_any_work(items, error):
    with pytest.raises(error):
        score_batch(items, workers=2)


def test_bad_arguments_raise():
    for kwargs in ({"workers": -1}, {"timeout": 0}, {"chunk_size": 0}):
        with pytest.raises(ValueError):
            score_batch(MIXED[:1], **kwargs)

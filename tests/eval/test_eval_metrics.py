"""pass@k, the bootstrap interval and the summary, checked against arithmetic done by hand."""
import math

import pytest

from sapo_vl.evaluation.metrics import bootstrap_ci, pass_at_k, summarize

PASS_AT_K = [  # (n, c, k, expected, the arithmetic)
    (1, 1, 1, 1.0, "one sample, right"),
    (1, 0, 1, 0.0, "one sample, wrong"),
    (5, 2, 1, 2 / 5, "pass@1 = c / n"),
    (5, 2, 2, 1 - 3 / 10, "1 - C(3,2)/C(5,2) = 1 - 3/10"),
    (5, 2, 3, 1 - 1 / 10, "1 - C(3,3)/C(5,3) = 1 - 1/10"),
    (5, 2, 4, 1.0, "n - c = 3 < k = 4: every 4-subset holds a right sample"),
    (4, 1, 2, 1 - 3 / 6, "1 - C(3,2)/C(4,2) = 1 - 3/6"),
    (8, 0, 8, 0.0, "none right"),
    (8, 8, 1, 1.0, "all right"),
    (10, 3, 5, 1 - 21 / 252, "1 - C(7,5)/C(10,5) = 1 - 21/252"),
    (200, 1, 100, 0.5, "1 - C(199,100)/C(200,100) = 1 - 100/200"),
]


@pytest.mark.parametrize("n,c,k,expected,why", PASS_AT_K)
def test_pass_at_k_by_hand(n, c, k, expected, why):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12), why
    assert pass_at_k(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k), abs=1e-12)


@pytest.mark.parametrize("n,c,k", [(3, 4, 1), (3, 1, 0), (3, 1, 4), (0, 0, 1)])
def test_pass_at_k_rejects_impossible_counts(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_bootstrap_of_a_constant_is_a_point():
    assert bootstrap_ci([1, 1, 1, 1], seed=0) == [1.0, 1.0]
    assert bootstrap_ci([0.5] * 7, seed=3) == [0.5, 0.5]


def test_bootstrap_matches_the_exact_resampling_distribution():
    """Scores [1, 0, 0, 0]: a resample's mean is X/4 with X ~ Binomial(4, 1/4), so
    P(X=0) = 81/256 = 0.316, P(X<=1) = 189/256 = 0.738, P(X<=2) = 243/256 = 0.949, P(X<=3) = 255/256 = 0.996.
    The 2.5% quantile is 0 (0.316 > 0.025); the 97.5% quantile is 3/4 (0.949 < 0.975 <= 0.996)."""
    assert bootstrap_ci([1, 0, 0, 0], seed=0, resamples=20000) == [0.0, 0.75]


def test_bootstrap_of_ten_records():
    """Scores with 5 of 10 right: a resample's mean is X/10, X ~ Binomial(10, 1/2); P(X<=1) = 11/1024 = 0.011,
    P(X<=2) = 56/1024 = 0.055, so the 2.5% quantile is 0.2; by symmetry the 97.5% quantile is 0.8."""
    assert bootstrap_ci([1] * 5 + [0] * 5, seed=1, resamples=20000) == pytest.approx([0.2, 0.8])


def test_bootstrap_is_seeded():
    values = [1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 0, 1]
    assert bootstrap_ci(values, seed=5) == bootstrap_ci(values, seed=5)


def _rows(pattern: dict[str, list[int]], fmt=None):
    return [{"id": i, "sample": k, "score": float(s), "format": None if fmt is None else fmt[i][k], "tokens": 10 * (k + 1),
             "truncated": k == 0, "verifier": "count"} for i, scores in pattern.items() for k, s in enumerate(scores)]


def test_summary_by_hand():
    """4 records x 3 samples, right counts c = 3, 1, 0, 2:
    accuracy (sample 0) = (1 + 1 + 0 + 0) / 4 = 0.5;  pass@1 = (3/3 + 1/3 + 0 + 2/3) / 4 = 0.5;
    pass@2 = (1 + (1 - C(2,2)/C(3,2)) + 0 + (1 - C(1,2)/C(3,2))) / 4 = (1 + 2/3 + 0 + 1) / 4 = 2/3;
    pass@3 = (1 + 1 + 0 + 1) / 4 = 0.75;  tokens 10, 20, 30 per record: mean 20; one truncated in 3: 1/3."""
    pattern = {"a": [1, 1, 1], "b": [1, 0, 0], "c": [0, 0, 0], "d": [0, 1, 1]}
    fmt = {"a": [1, 1, 1], "b": [0, 0, 0], "c": [1, 0, 1], "d": [1, 1, 1]}
    m = summarize(reversed(_rows(pattern, fmt)), n_samples=3, seed=0)
    assert m["n_records"] == 4 and m["n_samples"] == 12
    assert m["accuracy"] == 0.5 and m["pass@1"] == pytest.approx(0.5)
    assert m["pass@k"] == pytest.approx({"1": 0.5, "2": 2 / 3, "3": 0.75})
    assert m["format_compliance"] == pytest.approx(8 / 12)  # format scores 3 + 0 + 2 + 3 of 12
    assert m["mean_response_tokens"] == 20 and m["truncation_rate"] == pytest.approx(1 / 3)
    assert m["by_verifier"] == {"count": {"records": 4, "pass@1": pytest.approx(0.5)}}
    lo, hi = m["pass@1_ci95"]
    assert 0 <= lo <= 0.5 <= hi <= 1


def test_partial_scores_count_in_the_mean_not_in_pass_at_k():
    """A combined-verifier score of 0.9 adds 0.9 to accuracy but is not a right sample for pass@k."""
    m = summarize(_rows({"a": [0.9, 1.0]}), n_samples=2, seed=0)
    assert m["accuracy"] == pytest.approx(0.9) and m["pass@1"] == pytest.approx(0.95)
    assert m["pass@k"] == pytest.approx({"1": 0.5, "2": 1.0})


def test_summary_refuses_missing_samples():
    rows = _rows({"a": [1, 1]})[:1]
    with pytest.raises(ValueError, match="lack samples"):
        summarize(rows, n_samples=2, seed=0)

"""Eval metrics over per-sample scores: accuracy, pass@k, a bootstrap interval, format compliance, length.

For R records with K samples each (scores in [0, 1]; a sample is *correct* when its score is 1):

- `accuracy`: mean score of each record's first sample (sample 0), the single-sample figure; with
  temperature 0 this is greedy accuracy.
- `pass@1`: mean over records of c/n, the mean score of its n samples: the same quantity as accuracy,
  estimated with all K samples (lower variance).
- `pass@k` for every k <= K: mean over records of the unbiased estimator 1 - C(n-c, k) / C(n, k)
  (Chen et al. 2021, "Evaluating Large Language Models Trained on Code"), computed as a product so that
  it neither overflows nor cancels.
- `pass@1_ci95` and `accuracy_ci95`: 95% percentile bootstrap intervals over records (records resampled
  with replacement, `BOOTSTRAP_RESAMPLES` times, from a generator seeded by the run's seed).
- `format_compliance`: mean of the `format` verifier's score over all samples (None when the task asks
  for a bare answer); `mean_response_tokens`, `truncation_rate`: over all samples.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Sequence

import numpy as np

BOOTSTRAP_RESAMPLES = 2000
CORRECT = 1.0 - 1e-9
"""A sample counts as correct for pass@k when its score is at least this."""


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one record with n samples, c of them correct: 1 - C(n-c, k) / C(n, k)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    # C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i)
    return 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def bootstrap_ci(values: Sequence[float], *, seed: int, resamples: int = BOOTSTRAP_RESAMPLES,
                 level: float = 0.95) -> list[float]:
    """Percentile bootstrap interval of the mean of `values` (one value per record)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return [float("nan"), float("nan")]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, v.size, size=(resamples, v.size))  # (resamples, R)
    means = v[idx].mean(axis=1)  # (resamples,)
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return [float(lo), float(hi)]


def summarize(rows: Iterable[dict], *, n_samples: int, seed: int) -> dict:
    """Metrics over sample rows ({"id", "sample", "score", "format", "tokens", "truncated", "verifier"}),
    every record having samples 0..n_samples-1. Records are keyed by id; row order does not matter."""
    by_record: dict[str, dict[int, dict]] = defaultdict(dict)
    for row in rows:
        by_record[row["id"]][int(row["sample"])] = row
    ids = sorted(by_record)
    missing = [i for i in ids if sorted(by_record[i]) != list(range(n_samples))]
    if missing:
        raise ValueError(f"{len(missing)} record(s) lack samples 0..{n_samples - 1}, e.g. {missing[0]!r}")
    R, K = len(ids), n_samples
    if R == 0:
        return {"n_records": 0, "n_samples": 0, "accuracy": None, "pass@1": None}
    scores = np.array([[by_record[i][k]["score"] for k in range(K)] for i in ids], dtype=np.float64)  # (R, K)
    correct = (scores >= CORRECT).sum(axis=1)  # (R,)
    per_record = scores.mean(axis=1)  # (R,)
    all_rows = [by_record[i][k] for i in ids for k in range(K)]
    formats = [r["format"] for r in all_rows if r.get("format") is not None]
    out = {
        "n_records": R,
        "n_samples": R * K,
        "accuracy": float(scores[:, 0].mean()),
        "accuracy_ci95": bootstrap_ci(scores[:, 0], seed=seed),
        "pass@1": float(per_record.mean()),
        "pass@1_ci95": bootstrap_ci(per_record, seed=seed),
        "pass@k": {str(k): float(np.mean([pass_at_k(K, int(c), k) for c in correct])) for k in range(1, K + 1)},
        "format_compliance": float(np.mean(formats)) if formats else None,
        "mean_response_tokens": float(np.mean([r["tokens"] for r in all_rows])),
        "truncation_rate": float(np.mean([bool(r["truncated"]) for r in all_rows])),
    }
    groups: dict[str, list[float]] = defaultdict(list)
    for row, i in enumerate(ids):
        groups[by_record[i][0].get("verifier", "?")].append(float(per_record[row]))
    out["by_verifier"] = {name: {"records": len(v), "pass@1": float(np.mean(v))} for name, v in sorted(groups.items())}
    return out

"""Verifiers: reward functions that score a model response against a ground truth, by name.

Each verifier lives in its own module as a pure function

    verify(response: str, answer: str, **params) -> VerifierResult(score in [0, 1], reason, extracted)

and `VERIFIERS` is the flat name → function table that recipes and configs refer to:

| name     | what it checks                                                 | module        |
|----------|----------------------------------------------------------------|---------------|
| math     | mathematical equivalence (math-verify), hang-guarded           | `math.py`     |
| choice   | multiple-choice letter or option text, last answer wins        | `choice.py`   |
| numeric  | ChartQA relaxed accuracy (5% relative), text golds exact       | `numeric.py`  |
| count    | exact integer, digits or number words                          | `count.py`    |
| exact    | normalised string equality (SQuAD normalisation)               | `exact.py`    |
| format   | `<think>…</think><answer>…</answer>` or `\\boxed{}` compliance  | `format.py`   |
| combined | weighted accuracy + format, e.g. 0.9 · math + 0.1 · format     | `combined.py` |

`score(name, response, answer, **params)` dispatches and never raises on model output (empty, huge,
binary or malformed responses score 0 with a reason); it raises `VerifierConfigError` (a ValueError)
for an unknown name or parameter, naming the closest valid one, and for bad parameter values.
The table, `score` and the parameter checks live in `registry.py`; `score_batch` (in `batch.py`) scores
many in parallel worker processes under a per-item time limit. Answer extraction shared by all of them is
in `extract.py`.
"""
from __future__ import annotations

from .batch import BatchScores, score_batch
from .registry import VERIFIERS, check_params, param_names, required_params, score
from .result import VerifierConfigError, VerifierResult

__all__ = ["VERIFIERS", "VerifierResult", "VerifierConfigError", "score", "score_batch", "BatchScores",
           "check_params", "param_names", "required_params"]

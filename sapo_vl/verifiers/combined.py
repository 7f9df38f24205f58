"""`combined`: a weighted sum of an accuracy verifier and the format verifier, e.g. 0.9 · math + 0.1 · format.

R1-style recipes reward correctness and format together (DeepSeek-R1 adds an accuracy and a format
reward; EasyR1's math reward weights them 0.9 / 0.1). Here:

    score = (w_accuracy · accuracy + w_format · format) / (w_accuracy + w_format)

so the result stays in [0, 1] whatever the weights; with the default weights {"accuracy": 0.9,
"format": 0.1} it is exactly 0.9 · accuracy + 0.1 · format. A weight of 0 skips that verifier.

Example (a recipe's `verifier_params`):

    score("combined", response, "3", accuracy="math", accuracy_params={"timeout": 2},
          format_params={"style": "think_answer"}, weights={"accuracy": 0.9, "format": 0.1})

`extracted` is the accuracy verifier's; the reason lists both parts ("accuracy 1 (equivalent); format 0
(missing <think>)").
"""
from __future__ import annotations

import math
from typing import Mapping

from . import format as format_verifier
from .params import check_params_in
from .result import VerifierConfigError, VerifierResult
from .single import SINGLE_VERIFIERS

DEFAULT_WEIGHTS = {"accuracy": 0.9, "format": 0.1}


def _check_weights(weights: Mapping[str, float]) -> dict[str, float]:
    if not isinstance(weights, Mapping):
        raise VerifierConfigError(f"combined: weights must be a mapping, got {type(weights).__name__}")
    unknown = set(weights) - set(DEFAULT_WEIGHTS)
    if unknown:
        raise VerifierConfigError(f"combined: unknown weight keys {sorted(unknown)}; valid: accuracy, format")
    out = {k: weights.get(k, 0.0) for k in DEFAULT_WEIGHTS}
    for k, w in out.items():
        if not (isinstance(w, (int, float)) and math.isfinite(w) and w >= 0):
            raise VerifierConfigError(f"combined: weight {k!r} must be a finite number >= 0, got {w!r}")
    if sum(out.values()) <= 0:
        raise VerifierConfigError("combined: the weights sum to 0")
    return out


def verify(response: str, answer: str, *, accuracy: str, accuracy_params: Mapping | None = None,
           format_params: Mapping | None = None, weights: Mapping[str, float] = DEFAULT_WEIGHTS) -> VerifierResult:
    """Weighted mean of `accuracy` (a verifier name) and `format`.

    Params:
        accuracy: name of the accuracy verifier ("math", "choice", "numeric", "count", "exact").
        accuracy_params: its parameters.
        format_params: the format verifier's parameters (`style`, `think_prefilled`).
        weights: {"accuracy": w_a, "format": w_f}, each >= 0, not both 0; normalised by their sum.
    """
    if accuracy not in SINGLE_VERIFIERS or accuracy == "format":
        valid = sorted(set(SINGLE_VERIFIERS) - {"format"})
        raise VerifierConfigError(f"combined: accuracy must be one of {valid}, got {accuracy!r}")
    w = _check_weights(weights)
    accuracy_params = dict(accuracy_params or {})
    format_params = dict(format_params or {})
    check_params_in(SINGLE_VERIFIERS, accuracy, accuracy_params)
    check_params_in(SINGLE_VERIFIERS, "format", format_params)

    parts = []
    total = 0.0
    extracted = None
    if w["accuracy"] > 0:
        acc = SINGLE_VERIFIERS[accuracy](response, answer, **accuracy_params)
        total += w["accuracy"] * acc.score
        extracted = acc.extracted
        parts.append(f"accuracy {acc.score:g} ({acc.reason})")
    if w["format"] > 0:
        fmt = format_verifier.verify(response, answer, **format_params)
        total += w["format"] * fmt.score
        parts.append(f"format {fmt.score:g} ({fmt.reason})")
    score = min(1.0, max(0.0, total / sum(w.values())))
    return VerifierResult(score, "; ".join(parts), extracted)

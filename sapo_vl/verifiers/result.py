"""The verdict every verifier returns, and the error a verifier raises for a bad configuration.

A verifier scores model output and never raises on it: whatever the response holds, it returns a
`VerifierResult`. It does raise `VerifierConfigError` (a `ValueError`) when its *configuration* is wrong:
an unknown parameter, a tolerance below zero, a ground truth the verifier cannot read. Those come from a
recipe or a YAML file, and failing loudly there beats training on zero rewards.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


class VerifierConfigError(ValueError):
    """A verifier's parameters or ground truth are unusable (never raised because of model output)."""


@dataclass(frozen=True, slots=True)
class VerifierResult:
    score: float
    """Reward in [0, 1]."""
    reason: str
    """Short, human-readable why ("equivalent", "no answer found", "timeout")."""
    extracted: str | None = None
    """The answer pulled out of the response, as text; None when nothing was found."""

    def __post_init__(self) -> None:
        if not (isinstance(self.score, (int, float)) and math.isfinite(self.score) and 0.0 <= self.score <= 1.0):
            raise ValueError(f"score must be a finite number in [0, 1], got {self.score!r}")


def hit(reason: str, extracted: str | None) -> VerifierResult:
    """Score 1."""
    return VerifierResult(1.0, reason, extracted)


def miss(reason: str, extracted: str | None = None) -> VerifierResult:
    """Score 0."""
    return VerifierResult(0.0, reason, extracted)


def clip_extracted(text: str | None, limit: int = 200) -> str | None:
    """Keep `extracted` short enough to log: at most `limit` characters, marked with an ellipsis when cut."""
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"

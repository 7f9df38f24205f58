"""The verifier table: name → function, `score` (dispatch that never raises on model output) and the checks of
verifier names and parameters. The package re-exports all of it (`from sapo_vl.verifiers import score`);
`batch.py` imports it from here, so that the package imports `batch` without an import circle."""
from __future__ import annotations

from typing import Any, Callable

from . import combined
from .extract import as_text
from .params import check_params_in, keyword_params
from .single import SINGLE_VERIFIERS
from .guard import GuardUnavailable
from .result import VerifierConfigError, VerifierResult

VERIFIERS: dict[str, Callable[..., VerifierResult]] = {**SINGLE_VERIFIERS, "combined": combined.verify}
"""name → verify function: the single verifiers, and `combined` (a weighted mix of two of them)."""


def param_names(name: str) -> tuple[str, ...]:
    """The keyword parameters verifier `name` accepts."""
    return keyword_params(VERIFIERS[name])[0]


def required_params(name: str) -> tuple[str, ...]:
    """The keyword parameters verifier `name` cannot do without (no default)."""
    return keyword_params(VERIFIERS[name])[1]


def check_params(name: str, params: dict[str, Any]) -> None:
    """Raise VerifierConfigError for an unknown verifier name or parameter (naming the closest valid one) or a
    missing required parameter."""
    check_params_in(VERIFIERS, name, params)


def score(name: str, response: Any, answer: Any, **params: Any) -> VerifierResult:
    """Score `response` against `answer` with verifier `name` and its `params`.

    Non-str responses are coerced (bytes decoded with replacement, None → ""). A verifier bug on some
    odd input becomes score 0 with reason "verifier error: …" rather than an exception, so one rollout
    cannot end a training run; configuration errors (`VerifierConfigError`) and a guard worker that cannot
    start (`GuardUnavailable`) still raise.
    """
    check_params(name, params)
    response, answer = as_text(response), as_text(answer)
    try:
        return VERIFIERS[name](response, answer, **params)
    except (VerifierConfigError, GuardUnavailable):
        raise
    except Exception as e:  # noqa: BLE001 - the promise is: never raise on model output
        return VerifierResult(0.0, f"verifier error: {type(e).__name__}: {str(e)[:120]}", None)

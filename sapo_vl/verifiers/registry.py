"""The verifier table: name → function, `score` (dispatch that never raises on model output) and the checks of
verifier names and parameters. The package re-exports all of it (`from sapo_vl.verifiers import score`);
`batch.py` imports it from here, so that the package imports `batch` without an import circle."""
from __future__ import annotations

import difflib
import inspect
from functools import lru_cache
from typing import Any, Callable

from . import choice, combined, count, exact, format, math, numeric
from .extract import as_text
from .guard import GuardUnavailable
from .result import VerifierConfigError, VerifierResult

VERIFIERS: dict[str, Callable[..., VerifierResult]] = {
    "math": math.verify,
    "choice": choice.verify,
    "numeric": numeric.verify,
    "count": count.verify,
    "exact": exact.verify,
    "format": format.verify,
    "combined": combined.verify,
}


def _closest(name: str, options) -> str:
    close = difflib.get_close_matches(str(name), list(options), n=1, cutoff=0.0)
    return f"; did you mean {close[0]!r}?" if close else ""


@lru_cache(maxsize=None)
def param_names(name: str) -> tuple[str, ...]:
    """The keyword parameters verifier `name` accepts."""
    sig = inspect.signature(VERIFIERS[name])
    return tuple(p.name for p in sig.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY)


@lru_cache(maxsize=None)
def required_params(name: str) -> tuple[str, ...]:
    """The keyword parameters verifier `name` cannot do without (no default)."""
    sig = inspect.signature(VERIFIERS[name])
    return tuple(p.name for p in sig.parameters.values()
                 if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is inspect.Parameter.empty)


def check_params(name: str, params: dict[str, Any]) -> None:
    """Raise VerifierConfigError for an unknown verifier name or parameter (naming the closest valid one) or a
    missing required parameter."""
    if name not in VERIFIERS:
        raise VerifierConfigError(f"unknown verifier {name!r}{_closest(name, VERIFIERS)} (valid: {', '.join(VERIFIERS)})")
    valid = param_names(name)
    for key in params:
        if key not in valid:
            raise VerifierConfigError(f"verifier {name!r} has no parameter {key!r}{_closest(key, valid)}"
                                      f" (valid: {', '.join(valid) or 'none'})")
    missing = [key for key in required_params(name) if key not in params]
    if missing:
        raise VerifierConfigError(f"verifier {name!r} needs parameter(s) {', '.join(missing)}")


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

"""Parameter checks for a table of verifier functions (name → `verify`): the keyword parameters each accepts and
needs. `registry.py` applies them to the full table; `combined.py` to the verifiers it combines."""
from __future__ import annotations

import inspect
from functools import lru_cache
from typing import Any, Callable, Mapping

from ..suggest import did_you_mean
from .result import VerifierConfigError


@lru_cache(maxsize=None)
def keyword_params(fn: Callable) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(accepted, required) keyword-only parameter names of a verifier function."""
    params = [p for p in inspect.signature(fn).parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    return tuple(p.name for p in params), tuple(p.name for p in params if p.default is inspect.Parameter.empty)


def check_params_in(table: Mapping[str, Callable], name: str, params: Mapping[str, Any]) -> None:
    """Raise VerifierConfigError for a name not in `table` or a parameter its function does not take (naming the
    closest valid one), or a missing required parameter."""
    if name not in table:
        raise VerifierConfigError(f"unknown verifier {name!r}{did_you_mean(name, table, cutoff=0.0)} "
                                  f"(valid: {', '.join(table)})")
    valid, required = keyword_params(table[name])
    for key in params:
        if key not in valid:
            raise VerifierConfigError(f"verifier {name!r} has no parameter {key!r}{did_you_mean(key, valid, cutoff=0.0)}"
                                      f" (valid: {', '.join(valid) or 'none'})")
    missing = [key for key in required if key not in params]
    if missing:
        raise VerifierConfigError(f"verifier {name!r} needs parameter(s) {', '.join(missing)}")

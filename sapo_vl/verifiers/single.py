"""The single verifiers by name (each scores a response on its own); `combined` mixes two of them."""
from __future__ import annotations

from typing import Callable

from . import choice, count, exact, format, math, numeric
from .result import VerifierResult

SINGLE_VERIFIERS: dict[str, Callable[..., VerifierResult]] = {
    "math": math.verify,
    "choice": choice.verify,
    "numeric": numeric.verify,
    "count": count.verify,
    "exact": exact.verify,
    "format": format.verify,
}

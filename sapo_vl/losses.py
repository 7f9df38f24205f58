"""The policy-loss registry: one entry per loss, naming its pure function, its config section and its aggregation.

Adding a loss is two edits: the pure tensor function in `sapo_vl/algorithms.py`, and one `LossEntry` here with
a config dataclass whose field names are the function's own keyword arguments (so the training loop passes the
section on as `**kwargs`, with no branch per loss). `AlgorithmConfig` carries one section per entry, named after
it; `tests/test_algorithms.py` holds every entry to a config section, a documentation entry in
`docs/algorithm.md` and a hand-computed test.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable

from .algorithms import grpo_loss, gspo_loss, sapo_loss


@dataclass
class SapoConfig:
    tau_pos: float = 1.0
    """Gate temperature for tokens with positive advantage (> 0); larger = faster decay off-policy."""
    tau_neg: float = 1.05
    """Gate temperature for tokens with negative advantage (> 0); the paper's stable setting is tau_neg > tau_pos."""


@dataclass
class GspoConfig:
    eps_low: float = 3e-4
    """Lower clip range of the sequence ratio: clip(s, 1 - eps_low, 1 + eps_high)."""
    eps_high: float = 4e-4
    """Upper clip range of the sequence ratio."""


@dataclass
class GrpoConfig:
    eps_low: float = 0.2
    """Lower clip range of the token ratio: clip(r, 1 - eps_low, 1 + eps_high)."""
    eps_high: float = 0.28
    """Upper clip range of the token ratio (DAPO's clip-higher)."""
    dual_clip: float | None = None
    """Dual-clip constant c (> 1, typically 3) bounding the loss of negative-advantage tokens; null = off."""


@dataclass(frozen=True)
class LossEntry:
    fn: Callable[..., Any]
    """The pure loss: (logprobs, old_logprobs, advantages, mask, **kwargs) → (loss, stats)."""
    config: type
    """Its config section (`algorithm.<name>`); field names are keyword arguments of `fn`."""
    default_agg: str
    """The aggregation its paper uses, taken when `algorithm.loss_agg` is null."""

    def kwargs(self, section: Any) -> dict[str, Any]:
        """The section's values as keyword arguments of `fn`."""
        return asdict(section)


LOSSES: dict[str, LossEntry] = {
    "sapo": LossEntry(sapo_loss, SapoConfig, "seq-mean-token-mean"),
    "gspo": LossEntry(gspo_loss, GspoConfig, "seq-mean-token-mean"),
    "grpo": LossEntry(grpo_loss, GrpoConfig, "token-mean"),
}
"""`algorithm.name` → its loss entry."""

"""The policy-loss registry: one entry per loss, naming its pure function, its config section and its aggregation.

Adding a loss is two edits: the pure tensor function in `sapo_vl/algorithms.py`, and one `LossEntry` here with
a config dataclass whose field names are the function's own keyword arguments (so the training loop passes the
section on as `**kwargs`, with no branch per loss). `AlgorithmConfig` carries one section per entry, named after
it; `tests/test_algorithms.py` holds every entry to a config section, a documentation entry in
`docs/algorithm.md` and a hand-computed test, and each entry's `stats` to what its function returns.

`LossEntry.stats` names the stats a loss logs beside the ones every loss logs (`COMMON_STATS`); `sapo-vl compare`
summarises exactly `summary_stats()`, so a new loss's diagnostics reach the comparison table by being declared here.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable

from .algorithms import GATE_WEIGHT_LEVELS, RATIO_DEVIATIONS, SIGN_CASES, grpo_loss, gspo_loss, sapo_loss

LOSS_VALUES = ("loss", "pg_loss", "kl")
"""What every loss returns about its own value (`kl` only with KL on); not a diagnostic."""
COMMON_STATS = ("ratio_mean", "ratio_std", "ratio_max", "ratio_min", "ratio_seq_var", "logratio_seq_var",
                *SIGN_CASES, *RATIO_DEVIATIONS)
"""The token-ratio diagnostics every loss logs (`algorithms.regime_stats`)."""


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
    stats: tuple[str, ...] = ()
    """The stats `fn` returns beyond `COMMON_STATS` and `LOSS_VALUES` (a test holds this to the function)."""

    def kwargs(self, section: Any) -> dict[str, Any]:
        """The section's values as keyword arguments of `fn`."""
        return asdict(section)


LOSSES: dict[str, LossEntry] = {
    "sapo": LossEntry(sapo_loss, SapoConfig, "seq-mean-token-mean",
                      ("gate_weight_mean", *GATE_WEIGHT_LEVELS, "gate_weight_token_min")),
    "gspo": LossEntry(gspo_loss, GspoConfig, "seq-mean-token-mean",
                      ("seq_ratio_mean", "clip_frac_low", "clip_frac_high")),
    "grpo": LossEntry(grpo_loss, GrpoConfig, "token-mean", ("clip_frac_low", "clip_frac_high", "dual_clip_frac")),
}
"""`algorithm.name` → its loss entry."""


def summary_stats() -> list[str]:
    """Every diagnostic some loss logs, in order: `COMMON_STATS`, then each entry's own (each name once)."""
    return list(dict.fromkeys([*COMMON_STATS, *(k for e in LOSSES.values() for k in e.stats)]))

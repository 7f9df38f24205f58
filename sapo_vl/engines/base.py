"""The rollout-engine interface the training loop talks to.

Lifecycle per training step, as the loop drives it:

    engine.reclaim_memory()                 # wake: KV cache / weights back on the device (no-op for "hf")
    samples = engine.generate(prompts, images, settings, seed)
    engine.release_memory()                 # sleep: give the device memory to the update phase
    ... optimizer steps on the DeepSpeed engine ...
    engine.update_weights()                 # pull the new weights from the trained policy (no-op for "hf")

`generate` returns `Samples` (see `sapo_vl.sampling`): the processor's encoding of the B prompts exactly as the
trainer will feed them (`inputs`), the B·G completions right-padded, their masks, truncation flags, decoded texts
and the log-probability of every sampled token under the distribution it was drawn from.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence, runtime_checkable

from ..sampling import Samples


@dataclass(frozen=True)
class SamplingSettings:
    """How to sample one rollout; every engine honours every field or refuses it with an error naming it."""

    group_size: int
    """G completions per prompt."""
    max_new_tokens: int
    """Longest completion; a row that reaches it without a stop token is truncated."""
    temperature: float = 1.0
    """Softmax temperature (> 0; <= 0 decodes greedily where an engine supports it)."""
    top_p: float = 1.0
    """Nucleus mass in (0, 1]; 1.0 = off."""
    top_k: int = 0
    """Top-k cut-off; 0 = off."""


@runtime_checkable
class RolloutEngine(Protocol):
    name: str
    """The registry name ("hf", "vllm")."""

    def generate(self, prompts: Sequence[list[dict]], images: Sequence[Sequence[Any]], settings: SamplingSettings,
                 seed: int) -> Samples:
        """G completions for each of the B chat prompts (with their PIL images); deterministic given `seed`."""
        ...

    def update_weights(self) -> None:
        """Take the trained policy's current weights (after the update phase)."""
        ...

    def release_memory(self) -> None:
        """Free what the engine holds on the device while the update phase runs."""
        ...

    def reclaim_memory(self) -> None:
        """Take back what `release_memory` freed, before the next `generate`."""
        ...

"""The rollout-engine interface the training loop talks to.

Lifecycle per training step, as the loop drives it:

    engine.reclaim_memory()                 # wake: KV cache / weights back on the device (no-op for "hf")
    samples = engine.generate(prompts, images, settings, seed)
    engine.release_memory()                 # sleep: give the device memory to the update phase
    ... optimizer steps on the DeepSpeed engine ...
    engine.update_weights()                 # pull the new weights from the trained policy (no-op for "hf")

On a rollout rank of a split placement (`sapo_vl/split.py`) the engine is built without a DeepSpeed engine and
takes the weights a trainer sends instead: `engine.load_weights(named_tensors)`.

`generate` returns `Samples` (below): the processor's encoding of the B prompts exactly as the
trainer will feed them (`inputs`), the B·G completions right-padded, their masks, truncation flags, decoded texts
and the log-probability of every sampled token under the distribution it was drawn from.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Protocol, Sequence, runtime_checkable

import torch

Tensor = torch.Tensor


@dataclass
class Samples:
    """G sampled completions for each of B prompts. Row r of the completions belongs to prompt r // G."""

    inputs: Any
    """The processor's BatchFeature for the B prompts (input_ids (B, Lp) left-padded, attention_mask,
    mm_token_type_ids, pixel_values, image_grid_thw)."""
    completion_ids: Tensor
    """(B·G, Lc) sampled token ids, right-padded with the pad id after the stop token."""
    completion_mask: Tensor
    """(B·G, Lc) 1 on sampled tokens up to and including the stop token."""
    truncated: Tensor
    """(B·G,) bool: no stop token within max_new_tokens."""
    sample_logprobs: Tensor
    """(B·G, Lc) log-probability of each sampled token under the distribution it was drawn from (after
    temperature, top-k/top-p and the banned tokens); 0 where the mask is 0. A diagnostic of rollout/update drift."""
    texts: list[str]
    """B·G decoded completions, special tokens removed."""
    group_size: int
    prefill_tokens: int
    """Tokens that went through the prefill forwards (B·Lp shared, B·G·Lp expanded; summed over chunks)."""
    prompt_routing: Tensor | None = None
    """(B, Lp, moe_layers, k) int16 expert indices each prompt token was routed to (aligned to `inputs`'
    input_ids; −1 on padding), when routing is recorded (`algorithm.routing_replay`, `sapo_vl.routing`)."""
    completion_routing: Tensor | None = None
    """(B·G, Lc, moe_layers, k) int16 expert indices of each completion token as it was fed back (−1 where it
    was not: padding, the last token)."""

    @property
    def lengths(self) -> Tensor:
        return self.completion_mask.sum(-1)  # (B·G,)


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
    samples_from_trainer_weights: bool
    """True when `generate` runs on the trained module itself (the same weights and kernels as the trainer's
    forward), so π_old may be taken from the update's own first pass; False for a separate sampler (its
    log-probs differ by kernels and precision), after which the loop always recomputes π_old and logs the
    sampler/trainer mismatch."""

    def generate(self, prompts: Sequence[list[dict]], images: Sequence[Sequence[Any]], settings: SamplingSettings,
                 seed: int) -> Samples:
        """G completions for each of the B chat prompts (with their PIL images); deterministic given `seed`."""
        ...

    def update_weights(self) -> None:
        """Take the trained policy's current weights (after the update phase)."""
        ...

    def load_weights(self, named: Iterable[tuple[str, Tensor]]) -> None:
        """Take weights sent from elsewhere: (checkpoint name, tensor) pairs as `sapo_vl.weights` streams them (a
        rollout rank of a split placement, whose engine was built with no DeepSpeed engine); drop every cache
        built on the old ones."""
        ...

    def release_memory(self) -> None:
        """Free what the engine holds on the device while the update phase runs."""
        ...

    def reclaim_memory(self) -> None:
        """Take back what `release_memory` freed, before the next `generate`."""
        ...

    @classmethod
    def memory_items(cls, g: "GenerationShape") -> "GenerationMemory":
        """What this engine holds during the rollout and the update, for the offline memory plan (no instance,
        no weights: arithmetic on `g`)."""
        ...

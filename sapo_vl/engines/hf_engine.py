"""The `transformers` rollout engine: `sapo_vl.sampling` on the trained model itself.

It samples with the DeepSpeed engine's own module, so there are no weights to send after an update. Under ZeRO-3
the parameters are gathered once for the whole rollout (`ds.gathered`), not once per layer per token.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from .. import ds
from ..memplan import GenerationMemory, PlanContext, hf_generation_memory
from ..sampling import sample_completions
from .base import Samples, SamplingSettings


class HFEngine:
    name = "hf"
    samples_from_trainer_weights = True
    memory_knobs = ("rollout.generation_batch_size",)
    """Config keys that lower this engine's rollout memory (the plan's knob search tries them)."""

    def __init__(self, ds_engine, policy, processor, cfg, *, device: torch.device | None = None):
        """ds_engine: the DeepSpeed engine training `policy` (the `transformers` model, possibly PEFT-wrapped);
        cfg: the run's `Config` (`rollout.shared_prefill`, `rollout.generation_batch_size`)."""
        self.ds_engine = ds_engine
        self.policy = policy
        self.processor = processor
        self.shared_prefill = cfg.rollout.shared_prefill
        self.generation_batch_size = cfg.rollout.generation_batch_size
        self.device = device if device is not None else next(policy.parameters()).device

    def generate(self, prompts: Sequence[list[dict]], images: Sequence[Sequence[Any]], settings: SamplingSettings,
                 seed: int) -> Samples:
        gen = torch.Generator(device=self.device).manual_seed(seed)
        self.ds_engine.eval()
        try:
            with ds.gathered(self.ds_engine):
                return sample_completions(
                    self.policy, self.processor, prompts, images, group_size=settings.group_size,
                    max_new_tokens=settings.max_new_tokens, temperature=settings.temperature, top_p=settings.top_p,
                    top_k=settings.top_k, shared_prefill=self.shared_prefill, generator=gen,
                    generation_batch_size=self.generation_batch_size,
                )
        finally:
            self.ds_engine.train()

    def update_weights(self) -> None:
        """Nothing to do: the sampler runs on the trained weights themselves."""

    def release_memory(self) -> None:
        """Nothing to do: the KV cache of a rollout (one chunk of `rollout.generation_batch_size` rows at a time)
        is freed when `generate` returns."""

    def reclaim_memory(self) -> None:
        """Nothing to do (see `release_memory`)."""

    @classmethod
    def memory_items(cls, ctx: PlanContext) -> GenerationMemory:
        return hf_generation_memory(ctx)

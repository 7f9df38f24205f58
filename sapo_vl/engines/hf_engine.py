"""The `transformers` rollout engine: `sapo_vl.sampling` on the trained model itself.

It samples with the DeepSpeed engine's own module, so there are no weights to send after an update. Under ZeRO-3
the parameters are gathered once for the whole rollout (`ds.gathered`), not once per layer per token. When the
policy's routers are hooked for routing replay (`sapo_vl.routing`), the experts of every prompt and completion token
are recorded on the samples.

It refuses `transformers` older than `MIN_TRANSFORMERS`: on 5.19 (vLLM's pins hold it below 5.21) its log-probs
of the sampled tokens differ from the trainer's teacher-forced forward by up to 0.4 (measured,
`tests/test_sampling.py::test_sampled_logprobs_match_teacher_forced_forward`), so SAPO's ratios would be wrong
without a word; 5.24 is the oldest release that test passed on.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterable, Sequence

import torch

from .. import ds, routing
from ..models.loading import hf_model
from ..memplan import GenerationMemory, PlanContext, hf_generation_memory
from ..sampling import sample_completions
from ..weights import load_into
from .base import Samples, SamplingSettings

MIN_TRANSFORMERS = "5.24"
"""Oldest `transformers` on which the sampler's log-probs were measured to match the trainer's forward."""


class TransformersVersionError(RuntimeError):
    """The installed `transformers` makes the "hf" sampler's log-probs disagree with the trainer's forward."""


def installed_transformers() -> str:
    import transformers

    return transformers.__version__


def check_transformers(version: str | None = None) -> None:
    """Raise `TransformersVersionError` when `version` (default: the installed one) is older than MIN_TRANSFORMERS."""
    from packaging.version import Version

    version = version or installed_transformers()
    if Version(version) < Version(MIN_TRANSFORMERS):
        raise TransformersVersionError(
            f"rollout.engine=hf with transformers {version}: below {MIN_TRANSFORMERS} its sampled-token log-probs "
            "differ from the trainer's forward by up to 0.4 (measured on 5.19), which would make every SAPO ratio "
            f"wrong. Either pip install 'transformers>={MIN_TRANSFORMERS}' (not possible beside vLLM 0.33, which "
            "pins < 5.21), or sample with rollout.engine=vllm in this environment.")


class HFEngine:
    name = "hf"
    samples_from_trainer_weights = True
    memory_knobs = ("rollout.generation_batch_size",)
    """Config keys that lower this engine's rollout memory (the plan's knob search tries them)."""

    def __init__(self, ds_engine, policy, processor, cfg, *, device: torch.device | None = None,
                 speed_only: bool = False):
        """ds_engine: the DeepSpeed engine training `policy` (the `transformers` model, possibly PEFT-wrapped), or
        None on a rollout rank of a split placement (`policy` is then a plain model fed by `load_weights`);
        cfg: the run's `Config` (`rollout.shared_prefill`, `rollout.generation_batch_size`). speed_only: skip the
        `transformers` version check (a benchmark that reads tokens/s, never the log-probs)."""
        if not speed_only:
            check_transformers()
        self.ds_engine = ds_engine
        self.policy = policy
        self.processor = processor
        self.shared_prefill = cfg.rollout.shared_prefill
        self.generation_batch_size = cfg.rollout.generation_batch_size
        self.device = device if device is not None else next(policy.parameters()).device

    def generate(self, prompts: Sequence[list[dict]], images: Sequence[Sequence[Any]], settings: SamplingSettings,
                 seed: int) -> Samples:
        gen = torch.Generator(device=self.device).manual_seed(seed)
        if self.ds_engine is None:  # a rollout rank of a split placement: a plain model, always in eval mode
            return self._sample(prompts, images, settings, gen, contextlib.nullcontext())
        self.ds_engine.eval()
        try:
            return self._sample(prompts, images, settings, gen, ds.gathered(self.ds_engine))
        finally:
            self.ds_engine.train()

    def _sample(self, prompts, images, settings: SamplingSettings, gen: torch.Generator, gathered) -> Samples:
        with gathered, routing.recording(self.policy) as routes:
            samples = sample_completions(
                self.policy, self.processor, prompts, images, settings, shared_prefill=self.shared_prefill,
                generator=gen, generation_batch_size=self.generation_batch_size,
            )
            if routes is not None:  # R3: the experts each token went to, as the trainer will lay them out
                routes.fill(samples)
                routing.check_sampled_routes(samples, routes.tracker.num_experts, self.name)
            return samples

    def update_weights(self) -> None:
        """Nothing to do: the sampler runs on the trained weights themselves."""

    def load_weights(self, named: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Copy weights a trainer sent (split placement: checkpoint names, `sapo_vl.weights`) into the model."""
        load_into(hf_model(self.policy), named)

    def release_memory(self) -> None:
        """Nothing to do: the KV cache of a rollout (one chunk of `rollout.generation_batch_size` rows at a time)
        is freed when `generate` returns."""

    def reclaim_memory(self) -> None:
        """Nothing to do (see `release_memory`)."""

    @classmethod
    def memory_items(cls, ctx: PlanContext) -> GenerationMemory:
        return hf_generation_memory(ctx)

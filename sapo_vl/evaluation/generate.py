"""Batched generation for eval: K samples per prompt, each row drawing from its own seeded random stream.

`generate(model, processor, prompts, images, SamplingSettings(group_size=K, ...), seeds=[...])` is the rollout sampler
(`sapo_vl.sampling.sample_completions`: one prefill per prompt shared by its K rows, Qwen3-VL's M-RoPE
positions, banned vision tokens, stop on `<|im_end|>`) with one generator per row, seeded by the caller (per
record and sample index). A row's tokens then do not depend on which other records share its batch, on the
rank that runs it, or on whether the run was resumed.
Temperature 0 is greedy decoding (argmax; no random draws at all).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from sapo_vl.engines import SamplingSettings
from sapo_vl.sampling import sample_completions


@dataclass
class Generated:
    """K completions for each of B prompts; row r belongs to prompt r // K, sample r % K."""

    texts: list[str]
    """B·K decoded completions, special tokens removed."""
    tokens: list[int]
    """B·K generated token counts, the stop token not counted."""
    truncated: list[bool]
    """B·K flags: no stop token within max_new_tokens."""


def row_seed(seed: int, record_id: str, sample: int) -> int:
    """A 63-bit seed for one (record, sample): stable across runs, machines and Python versions."""
    import hashlib

    digest = hashlib.sha256(f"{seed}\x1f{record_id}\x1f{sample}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@torch.no_grad()
def generate(model, processor, prompts: Sequence[list[dict]], images: Sequence[Sequence[Any]],
             settings: SamplingSettings, seeds: Sequence[int] | None = None) -> Generated:
    """Generate `settings.group_size` completions per prompt; `seeds` holds one seed per row (B·K), unused when
    greedy (`settings.temperature` <= 0)."""
    K, B = settings.group_size, len(prompts)
    if K < 1 or settings.max_new_tokens < 1:
        raise ValueError(f"n_samples and max_new_tokens must be >= 1, got {K}, {settings.max_new_tokens}")
    greedy = settings.temperature <= 0
    if not greedy and (seeds is None or len(seeds) != B * K):
        raise ValueError(f"sampling needs one seed per row: {B * K} rows, {0 if seeds is None else len(seeds)} seeds")
    device = next(model.parameters()).device
    gens = None if greedy else [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]
    s = sample_completions(model, processor, prompts, images, settings, generator=gens)
    tokens = s.completion_mask.sum(-1) - (~s.truncated).long()  # the stop token is not counted
    return Generated(texts=s.texts, tokens=tokens.tolist(), truncated=s.truncated.tolist())

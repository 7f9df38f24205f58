"""Batch arithmetic for one rollout step: how B prompts × G completions split over ranks, minibatches and
micro-batches. Errors name the config keys to change."""
from __future__ import annotations

import math
from dataclasses import dataclass

from .config import Config, ConfigError


@dataclass(frozen=True)
class BatchPlan:
    world: int
    """Ranks."""
    prompts_per_rank: int
    """Prompts each rank rolls out per step (B / world)."""
    rows_per_rank: int
    """Completions per rank per step (prompts_per_rank × G)."""
    minibatch_rows: int
    """Completions per rank in one optimizer step."""
    micro: int
    """Completions per forward/backward (the DeepSpeed micro-batch)."""
    grad_accum: int
    """Micro-batches per optimizer step."""
    optimizer_steps_per_rollout: int
    """μ × num_minibatches."""
    total_optimizer_steps: int
    """Over the whole run, format warm-up included (the LR schedule's length)."""


def batch_plan(cfg: Config, world: int) -> BatchPlan:
    """The plan of `cfg` on `world` ranks; ConfigError when B or the rows do not divide."""
    B, G = cfg.rollout.prompts_per_step, cfg.rollout.group_size
    if B % world:
        raise ConfigError(f"rollout.prompts_per_step={B} must be a multiple of the number of ranks ({world})")
    rows = B // world * G
    nm = cfg.algorithm.num_minibatches
    if rows % nm:
        raise ConfigError(f"{rows} completions per rank do not split into algorithm.num_minibatches={nm}")
    mb_rows = rows // nm
    micro = min(cfg.deepspeed.micro_batch_size, mb_rows)
    mu = cfg.algorithm.updates_per_rollout
    return BatchPlan(world=world, prompts_per_rank=B // world, rows_per_rank=rows, minibatch_rows=mb_rows, micro=micro,
                     grad_accum=math.ceil(mb_rows / micro), optimizer_steps_per_rollout=mu * nm,
                     total_optimizer_steps=cfg.train.steps * mu * nm + cfg.train.format_warmup_steps)

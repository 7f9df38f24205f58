"""Rollout engines: what samples G completions per prompt for the trainer.

An engine implements `RolloutEngine` (see `base.py`): sample, take new weights, and release / reclaim its memory
around the update phase. `rollout.engine` in the config picks one by name from `ROLLOUT_ENGINES`:

- "hf": the `transformers` sampler (`sapo_vl.sampling`) running on the trained model itself, with ZeRO-3
  parameters gathered once per rollout. Runs anywhere; the default.
- "vllm": a colocated vLLM engine per rank (`sapo_vl.engines.vllm_engine`), fed the trained weights after every
  rollout's updates. Needs `pip install 'sapo_vl[vllm]'`.

The training loop only ever calls the interface, so a new engine is one module and one entry here.
"""
from __future__ import annotations

from .base import RolloutEngine, SamplingSettings

ROLLOUT_ENGINES = {
    "hf": "sapo_vl.engines.hf_engine:HFEngine",
    "vllm": "sapo_vl.engines.vllm_engine:VLLMEngine",
}
"""Name → "module:class" of each rollout engine (imported only when chosen: vLLM is an optional dependency)."""


def engine_class(name: str) -> type:
    """The engine class registered as `name` (imported on demand)."""
    import importlib

    if name not in ROLLOUT_ENGINES:
        raise ValueError(f"unknown rollout engine {name!r}; choose one of {sorted(ROLLOUT_ENGINES)}")
    module, cls = ROLLOUT_ENGINES[name].split(":")
    return getattr(importlib.import_module(module), cls)


__all__ = ["ROLLOUT_ENGINES", "RolloutEngine", "SamplingSettings", "engine_class"]

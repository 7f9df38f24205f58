"""`evaluate_policy`: the trainer's entry point, run every N steps with the policy being trained; its settings
come from `policy_settings`, built once.

    settings = policy_settings(processor, limit=200, n_samples=4, max_new_tokens=256, seed=0)  # once, at setup
    metrics = evaluate_policy(policy, processor, ["synthetic_color", "chartqa_test"], settings,
                              out_dir=run_dir / "eval" / f"step_{step}")
    # {"eval/synthetic_color/accuracy": 0.61, "eval/synthetic_color/pass@1": 0.58, "eval/synthetic_color/pass@4": ...}

It runs the same `run_task` as `sapo-vl eval` (same batches, seeds, verifiers and files), so a number
logged during training is the number the command reports for that checkpoint. Under torch.distributed
(the trainer's process group), records are sharded across ranks and every rank gets the same metrics back:
call it on all ranks. Under ZeRO-3, call it inside `sapo_vl.ds.gathered(engine)` so that generation sees
whole parameters. The model is switched to eval mode for the call and back afterwards. Use a fresh
`out_dir` per step: a folder that holds samples of the same task is resumed, not overwritten.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .registry import get_task
from .runner import Settings, run_task


def policy_settings(processor, *, limit: int | None, n_samples: int = 1, max_new_tokens: int | None = None,
                    seed: int = 0, temperature: float | None = None) -> Settings:
    """The eval settings of a training run: `n_samples` per record, greedy for one sample and temperature 1.0
    for more (pass@k needs distinct samples) unless `temperature` is given, images resized to the processor's
    own pixel bounds (what training feeds the model), no progress bar."""
    size = dict(getattr(getattr(processor, "image_processor", None), "size", None) or {})
    pixels = {k: v for k, v in (("min_pixels", size.get("shortest_edge")), ("max_pixels", size.get("longest_edge")))
              if v}
    if temperature is None:
        temperature = 0.0 if n_samples == 1 else 1.0
    return Settings(n_samples=n_samples, temperature=temperature, max_new_tokens=max_new_tokens, limit=limit,
                    seed=seed, progress=False, **pixels)


def evaluate_policy(model, processor, tasks: Sequence[str], settings: Settings, *,
                    out_dir: str | Path) -> dict[str, float]:
    """Evaluate `model` on `tasks` with `settings` (see `policy_settings`) and return flat metrics for the log.

    Keys per task: eval/<task>/accuracy, eval/<task>/pass@1, eval/<task>/pass@k (each k <= n_samples, k > 1),
    eval/<task>/format_compliance (tasks that ask for tags), eval/<task>/response_tokens.
    """
    metrics: dict[str, float] = {}
    for name in tasks:
        summary = run_task(model, processor, get_task(name), Path(out_dir) / name, settings, model_name="policy")
        m = summary["metrics"]
        metrics[f"eval/{name}/accuracy"] = m["accuracy"]
        metrics[f"eval/{name}/pass@1"] = m["pass@1"]
        for k, v in m["pass@k"].items():
            if k != "1":
                metrics[f"eval/{name}/pass@{k}"] = v
        if m.get("format_compliance") is not None:
            metrics[f"eval/{name}/format_compliance"] = m["format_compliance"]
        metrics[f"eval/{name}/response_tokens"] = m["mean_response_tokens"]
    return metrics

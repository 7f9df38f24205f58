"""The embedded default job (`make demo`): train the tiny Qwen3-VL with SAPO on the dominant-color task.

It runs `configs/demo.yaml` through the same code path as a GPU run (the DeepSpeed engine, the verifiers, the
recipe), offline on the CPU: the checkpoint is built on this machine and the images are drawn here. At the end
it prints the reward curve, the accuracy over the last steps and where the plots and checkpoints are.
"""
from __future__ import annotations

import argparse
from pathlib import Path

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides of configs/demo.yaml")
    p.add_argument("--config", default=str(DEMO_CONFIG), help="config to run (default: configs/demo.yaml)")


def summarise(rows: list[dict], every: int = 10) -> str:
    """A small table of the reward curve: mean reward, accuracy and entropy per block of `every` steps."""
    lines = [f"{'steps':>11}  {'reward':>6}  {'accuracy':>8}  {'entropy':>7}"]
    for s in range(0, len(rows), every):
        block = rows[s : s + every]
        mean = lambda k: sum(r.get(k, 0.0) for r in block) / len(block)
        lines.append(f"{block[0]['step']:>5}-{block[-1]['step']:<5}  {mean('reward_mean'):6.3f}  "
                     f"{mean('accuracy'):8.3f}  {mean('entropy'):7.3f}")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    import json

    from .config import ConfigError, load_config
    from .train import train

    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as err:
        print(f"error: {err}")
        return 2
    run_dir = train(cfg)
    if not (run_dir / "metrics.jsonl").exists():
        return 0
    rows = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines() if l]
    every = max(1, len(rows) // 15)
    print(f"\nreward curve (means over blocks of {every} steps):")
    print(summarise(rows, every=every))
    tail = rows[-20:]
    final = sum(r["reward_mean"] for r in tail) / len(tail)
    print(f"\nmean reward over the last {len(tail)} steps: {final:.3f} (from {rows[0]['reward_mean']:.3f} at step 0)")
    print(f"plots:       {run_dir / 'plots'}")
    print(f"checkpoint:  {run_dir / 'checkpoints'} (hf/ loads with AutoModelForImageTextToText)")
    print(f"metrics:     {run_dir / 'metrics.jsonl'}; samples: {run_dir / 'samples'}")
    return 0

"""One training step on a fixed rollout, launched on 1 or 2 ranks; writes the metrics and the weights.

    torchrun --nproc_per_node N tests/step_ranks.py OUT_DIR key=value ...

Every rank samples the same global rollout (the same prompts, seed and initial weights) and keeps its share of
the groups, so 1 rank and 2 ranks train on exactly the same completions (with fixed rewards that differ within
each group, since a random-weight policy never answers right); `train_step` then runs as in training
(global advantages, π_old pass, μ passes, optimizer steps, metrics over ranks).
"""
import json
import sys
from pathlib import Path

import torch

from sapo_vl import train
from sapo_vl.config import load_config
from sapo_vl.data.stream import PromptStream
from sapo_vl.rollout import Scored, collect_rollout
from sapo_vl.run import setup_run


def main() -> None:
    out = Path(sys.argv[1])
    cfg = load_config("configs/demo.yaml", sys.argv[2:])
    run = setup_run(cfg)
    B, world, rank = cfg.rollout.prompts_per_step, run.dist.world_size, run.dist.rank
    everyone = PromptStream(cfg.data, cfg.model, run.processor, seed=cfg.train.seed, rank=0, world=1)
    full = collect_rollout(run.rollout_engine, everyone.next_batch(B), cfg, seed=1234).rollout
    full.rewards = (torch.arange(full.n) % 3 == 0).float()  # a random policy scores 0: give the groups a signal
    mine = full.groups(list(range(rank * B // world, (rank + 1) * B // world)))
    train.rollout_phase = lambda run, step: Scored(mine)
    metrics, _ = train.train_step(run, 0)
    if run.dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(metrics))
        flat = torch.cat([p.detach().float().reshape(-1) for p in run.ds_engine.module.parameters()])
        torch.save(flat, out / "weights.pt")


if __name__ == "__main__":
    main()

"""`sapo-vl sft CONFIG [key=value ...]`: a supervised cold start, saved as an ordinary Hugging Face checkpoint.

Trains the config's policy on the worked responses its recipes carry (`record.meta["response"]`, e.g.
`synthetic_color_think`: `<think>…</think><answer>…</answer>`) through the same DeepSpeed engine, micro-batches
and global token normalisation as the RL update, then writes `RUN_DIR/hf/` (`logging.out_dir/logging.run_name`),
a transformers folder that `model.name_or_path` of an RL config can name. The config's sections mean:

- `train.steps`: supervised optimizer steps; `train.seed`: data order and initial sampling;
- each step takes `prompts_per_step × group_size / num_minibatches` records (the RL minibatch's rows) and
  minimises the token-mean negative log-likelihood of "response<|im_end|>" over them;
- `optimizer.*`, `deepspeed.*`, `model.*`, `data.*` as in training (the split of each recipe is trained on);
- accuracy before and after: `--eval-prompts` prompts of each recipe's `test` split, `rollout.group_size`
  completions each, sampled by the rollout engine at `rollout.temperature` and scored by the records'
  verifiers: the mean reward an RL run from this checkpoint starts at (`--eval-every` also measures it
  along the way).

Writes `RUN_DIR/metrics.jsonl` (`sft_loss` per step, `accuracy` where measured) and `RUN_DIR/sft.json` (the
losses, each accuracy measured, and the checkpoint path). A record without a `meta["response"]` is skipped and
counted (`skipped_no_response` in sft.json); a run where none has one stops with an error naming the recipes.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path


from . import ds
from .config import Config, ConfigError, load_config
from .data.stream import PromptStream
from .dist import all_reduce
from .rollout import collect_rollout
from .update import supervised_rollout, supervised_step

RESPONSE_KEY = "response"
"""The `Record.meta` key holding a record's worked (correct) response."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="YAML config (model, data, optimizer, deepspeed, train.steps, logging.run_name)")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. train.steps=100")
    p.add_argument("--eval-prompts", type=int, default=64, help="test-split prompts for the accuracy before and "
                   "after (default 64; 0 = no accuracy)")
    p.add_argument("--eval-every", type=int, default=0, help="also measure the accuracy every N steps (default 0: "
                   "only before and after)")


def run(args: argparse.Namespace) -> int:
    from .data.sources import SourceError
    from .models.archs import ArchError
    from .models.loading import ModelLoadError

    try:
        cfg = load_config(None if args.config == "defaults" else args.config, args.overrides)
        if args.eval_prompts < 0 or args.eval_every < 0:
            raise ConfigError("--eval-prompts and --eval-every must be >= 0")
        report = sft(cfg, eval_prompts=args.eval_prompts, eval_every=args.eval_every)
    except (ConfigError, ModelLoadError, ArchError, SourceError, NoResponses) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if report:
        print(f"cold-start checkpoint: {report['checkpoint']}")
    return 0


class NoResponses(ValueError):
    """No record of the training mix carries a worked response."""


def sft(cfg: Config, *, eval_prompts: int = 64, eval_every: int = 0) -> dict:
    """Supervised steps on worked responses, the accuracy before/after, and `RUN_DIR/hf`; returns sft.json's dict."""
    from .config import ConfigError
    from .run import setup_run

    if cfg.rollout.placement != "colocated":
        raise ConfigError("sapo-vl sft: rollout.placement must be colocated (supervised steps sample only for the "
                          "accuracy checks, on the training ranks)")
    run = setup_run(cfg)
    run.say(f"sapo-vl sft: {cfg.model.name_or_path}, {cfg.train.steps} steps of {run.plan.minibatch_rows} records "
            f"× {run.dist.world_size} rank(s), lr {cfg.optimizer.lr} → {run.run_dir / 'hf'}")
    test = test_stream(cfg, run) if eval_prompts else None
    report: dict = {"steps": cfg.train.steps, "losses": [], "accuracy": {}, "skipped_no_response": 0}

    def measure(step: int) -> None:
        if test is None:
            return
        acc = accuracy(run, test, eval_prompts, seed=cfg.train.seed + step)
        report["accuracy"][str(step)] = acc
        run.log.log(step, {"accuracy": acc["accuracy"], "response_length_mean": acc["response_length_mean"]})
        run.say(f"step {step}: accuracy {acc['accuracy']:.3f} on {acc['completions']} sampled completions")

    measure(0)
    for step in range(cfg.train.steps):
        prompts = run.stream.next_batch(run.plan.minibatch_rows * run.dist.world_size)
        loss, skipped = sft_step(run, prompts)
        report["losses"].append(loss)
        report["skipped_no_response"] += skipped
        run.log.log(step, {"sft_loss": loss})
        if eval_every and (step + 1) % eval_every == 0 and step + 1 < cfg.train.steps:
            measure(step + 1)
    run.rollout_engine.update_weights()
    measure(cfg.train.steps)
    report["checkpoint"] = str(save_hf(run))
    if run.dist.is_main:
        (run.run_dir / "sft.json").write_text(json.dumps(report, indent=1) + "\n")
    run.log.close()
    return report


def test_stream(cfg: Config, run) -> PromptStream:
    """The recipes' `test` splits, unshuffled, on this rank."""
    data = copy.deepcopy(cfg.data)
    for spec in data.recipes:
        spec.split = "test"
    data.shuffle = False
    return PromptStream(data, cfg.model, run.processor, seed=cfg.train.seed, rank=run.dist.rank,
                        world=run.dist.world_size)


def accuracy(run, stream: PromptStream, n_prompts: int, seed: int) -> dict[str, float]:
    """Mean verifier score of `rollout.group_size` sampled completions on each of the first `n_prompts` prompts of
    `stream` (the same prompts every time), over all ranks."""
    stream.k, stream.cursors = 0, [0] * len(stream.pool)  # rewind: every measurement sees the same prompts
    run.ds_engine.eval()
    rollout = collect_rollout(run.rollout_engine, stream.next_batch(n_prompts), run.cfg, seed).rollout
    run.ds_engine.train()
    total, n, length = all_reduce([float(rollout.rewards.sum()), float(rollout.n),
                                   float(rollout.completion_mask.sum())])
    return {"accuracy": total / max(n, 1.0), "completions": int(n), "response_length_mean": length / max(n, 1.0)}


def has_response(record) -> bool:
    return isinstance(record.meta.get(RESPONSE_KEY), str) and bool(record.meta[RESPONSE_KEY])


def sft_step(run, prompts: list) -> tuple[float, int]:
    """One optimizer step of token-mean NLL on the prompts' worked responses (`update.supervised_step`); returns the
    loss (over all ranks) and how many records were skipped for having none (they stay in the batch with an empty
    loss mask, so every rank runs the same micro-batches)."""
    keep = [has_response(q.record) for q in prompts]
    if all_reduce([float(sum(keep))])[0] == 0:
        names = sorted({q.record.id.split("/")[0] for q in prompts})
        raise NoResponses(f"no record of {names} carries meta[{RESPONSE_KEY!r}] (a worked response to train on); "
                          "sft needs recipes such as synthetic_color_think")
    texts = [q.record.meta[RESPONSE_KEY] if ok else "" for q, ok in zip(prompts, keep)]
    loss = supervised_step(run.ds_engine, supervised_rollout(run.processor, prompts, texts), run.plan.micro, run.dist)
    return loss, len(keep) - sum(keep)


def save_hf(run) -> Path:
    """The trained policy and its processor as `RUN_DIR/hf` (full weights gathered under ZeRO-3)."""
    out = run.run_dir / "hf"
    with ds.gathered(run.ds_engine):
        if run.dist.is_main:
            run.policy.save_pretrained(out, safe_serialization=True)
    if run.dist.is_main:
        run.processor.save_pretrained(out)
    return out

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

import torch

from . import ds
from .config import Config, ConfigError, load_config
from .data.stream import PromptStream
from .models.loading import encode_prompts
from .rollout import Rollout, collect_rollout
from .sampling import Samples

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
    from .run import setup_run

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
    run.engine.eval()
    rollout, _, _ = collect_rollout(run.rollout_engine, stream.next_batch(n_prompts), run.cfg, seed)
    run.engine.train()
    total, n, length = ds.all_reduce([float(rollout.rewards.sum()), float(rollout.n),
                                      float(rollout.completion_mask.sum())])
    return {"accuracy": total / max(n, 1.0), "completions": int(n), "response_length_mean": length / max(n, 1.0)}


def has_response(record) -> bool:
    return isinstance(record.meta.get(RESPONSE_KEY), str) and bool(record.meta[RESPONSE_KEY])


def sft_step(run, prompts: list) -> tuple[float, int]:
    """One optimizer step of token-mean NLL on the prompts' worked responses; returns the loss (over all ranks)
    and how many records were skipped for having none (they stay in the batch with an empty loss mask, so every
    rank runs the same micro-batches and the step ends on DeepSpeed's accumulation boundary)."""
    keep = [has_response(q.record) for q in prompts]
    if ds.all_reduce([float(sum(keep))])[0] == 0:
        names = sorted({q.record.id.split("/")[0] for q in prompts})
        raise NoResponses(f"no record of {names} carries meta[{RESPONSE_KEY!r}] (a worked response to train on); "
                          "sft needs recipes such as synthetic_color_think")
    ro = response_rollout(run.processor, prompts)
    n_tok = ds.all_reduce([float(ro.completion_mask.sum())])[0]
    total = 0.0
    for chunk in _chunks(list(range(ro.n)), run.plan.micro):
        batch = ro.micro_batch(chunk, run.dist.device)
        logp, _ = run.engine(**batch.model_inputs(), touch_vision=run.dist.world_size > 1, with_entropy=False)
        mask = batch.mask.to(logp.dtype)  # (n, Lc)
        loss = -(logp * mask).sum() / n_tok
        ds.backward(run.engine, loss, run.dist.world_size)
        run.engine.step()  # the optimizer steps at the accumulation boundary, after the last micro-batch
        total += float(loss.detach())
    return ds.all_reduce([total])[0], len(keep) - sum(keep)


def response_rollout(processor, prompts: list) -> Rollout:
    """The prompts with their worked responses as one-completion rows ("response<|im_end|>", right-padded); a
    record without one gets an empty loss mask."""
    tok = processor.tokenizer
    stop = tok.convert_tokens_to_ids("<|im_end|>")
    texts = [q.record.meta[RESPONSE_KEY] if has_response(q.record) else "" for q in prompts]
    ids = [tok(t, add_special_tokens=False)["input_ids"] + [stop] for t in texts]
    width = max(len(i) for i in ids)
    samples = Samples(
        inputs=encode_prompts(processor, [q.record.prompt for q in prompts], [q.images for q in prompts]),
        completion_ids=torch.tensor([i + [tok.pad_token_id] * (width - len(i)) for i in ids]),  # (N, Lc)
        completion_mask=torch.tensor([[int(bool(t))] * len(i) + [0] * (width - len(i))
                                      for t, i in zip(texts, ids)]),  # (N, Lc)
        truncated=torch.zeros(len(ids), dtype=torch.bool), sample_logprobs=torch.zeros(len(ids), width),
        texts=texts, group_size=1, prefill_tokens=0,
    )
    return Rollout.from_samples([q.record for q in prompts], samples)


def save_hf(run) -> Path:
    """The trained policy and its processor as `RUN_DIR/hf` (full weights gathered under ZeRO-3)."""
    out = run.run_dir / "hf"
    with ds.gathered(run.engine):
        if run.dist.is_main:
            run.policy.save_pretrained(out, safe_serialization=True)
    if run.dist.is_main:
        run.processor.save_pretrained(out)
    return out


def _chunks(rows: list[int], size: int) -> list[list[int]]:
    return [rows[i : i + size] for i in range(0, len(rows), size)]

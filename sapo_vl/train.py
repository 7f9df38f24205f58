"""The training loop: SAPO (or GSPO / GRPO) for Qwen3-VL under DeepSpeed, top to bottom, no Trainer class.

    deepspeed --num_gpus N --module sapo_vl.train CONFIG [key=value ...]     (also --hostfile for several nodes)
    torchrun --nproc_per_node N -m sapo_vl.train CONFIG [key=value ...]
    sapo-vl train CONFIG [key=value ...]                                (one process)

`setup_run` (`sapo_vl/run.py`) builds the typed `Run`; each `train_step`: sample prompts → G completions per prompt
from the rollout engine (`rollout.engine`) → verifier rewards (parallel, time-limited; `rollout.sample_and_score`)
→ group advantages (over the global batch) and the loss mask → π_old log-probs → μ passes of `num_minibatches`
optimizer steps (`update.update_policy`, on packed shared-prefix micro-batches by default, `sapo_vl/packing.py`)
→ the rollout engine takes the new weights → metrics (over all ranks, `metrics.step_metrics`), samples, plots →
checkpoint.

Departures from the paper, all deliberate:
- π_old log-probs are recomputed by a no-grad forward of the generating policy rather than taken from the
  sampler (same weights, so the same values up to kernel differences; `rollout_logprob_gap` logs the gap). When
  μ = 1 and there is one minibatch, the current log-probs (detached) serve as π_old and that pass is skipped,
  unless a separate sampler drew the rollout (an engine whose `samples_from_trainer_weights` is False: vllm) or
  `algorithm.rollout_correction` is on:
  then π_old is always recomputed, the sampler/trainer mismatch is logged (`mismatch_kl`, `is_*`) and TIS/MIS
  weights scale each token's advantage and mask (`algorithms.rollout_correction`).
- A non-finite loss on any rank drops that optimizer step on every rank, weights bit-identical (`ds.poisoned`,
  `ds.optimizer_step`: ZeRO 1-3 skip it; ZeRO-0 steps at learning rate 0 on zeroed gradients, so AdamW's moments
  decay); it is counted in `skipped_steps`.
- `algorithm.dynamic_sampling` replaces zero-std groups by groups of fresh prompts for at most
  `dynamic_sampling_rounds` extra rollouts per step (DAPO over-samples once and filters); what is left stays
  masked out of the loss, so a step's batch keeps its size.
- `train.format_warmup_steps` (off by default) runs supervised steps on shuffled answers before RL, for
  random-weight policies that do not yet answer in the task's format (the embedded demo).
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

from . import ds, routing
from .algorithms import group_advantages, rollout_correction, zero_std_groups
from .batch_plan import batch_plan
from .config import Config, ConfigError, correction_mode, load_config
from .data.stream import PromptStream
from .dist import all_gather_cat, world_size
from .metrics import GroupRewards, StepCounters, StepTiming, step_metrics
from .rollout import Rollout, Scored, sample_and_score, step_seed
from .run import Run, run_dir_of, setup_run
from .split import RolloutFeed, join_split, serve_rollouts
from .runlog import sparkline
from .typed_config import parse_with_overrides
from .update import format_warmup, micro_batch_source, rollout_logprobs, update_policy


# ---------------------------------------------------------------------------------------------------- the loop
def train(cfg: Config):
    """Train as `cfg` says; returns the run directory."""
    if cfg.train.dry_run:
        return dry_run(cfg)
    split = join_split(cfg)  # rollout.placement=split: this rank's role and its channel to the other role
    if split is not None and not split.placement.is_trainer:
        serve_rollouts(cfg, split)
        return run_dir_of(cfg)
    run = setup_run(cfg)
    p, a = run.plan, cfg.algorithm
    where = f"{p.world} training rank(s) + {split.placement.world - p.world} rollout rank(s), max_staleness " \
        f"{cfg.rollout.max_staleness}" if split else f"{p.world} rank(s)"
    run.say(f"sapo-vl train: {a.name} on {cfg.model.name_or_path}, {where} on {run.dist.device.type}, "
            f"ZeRO-{cfg.deepspeed.zero_stage}, rollout engine {cfg.rollout.engine}; per step "
            f"{cfg.rollout.prompts_per_step} prompts × G={cfg.rollout.group_size}, μ={a.updates_per_rollout} × "
            f"{a.num_minibatches} minibatches of {p.minibatch_rows} rows/rank ({p.grad_accum} micro-batches of "
            f"≤{p.micro}); {cfg.train.steps} steps → {run.run_dir}")
    if run.start_step == 0 and cfg.train.format_warmup_steps:
        warm_up(run)
    if split is not None:
        run.feed = RolloutFeed(cfg, split, policy=run.policy, ds_engine=run.ds_engine, stream=run.stream)
        run.feed.start(run.start_step)
    bar = progress_bar(run)
    for step in range(run.start_step, cfg.train.steps):
        metrics, rollout = train_step(run, step)
        last = step + 1 == cfg.train.steps
        if cfg.eval.every and ((step + 1) % cfg.eval.every == 0 or last):
            metrics.update(periodic_eval(run, step))
        if (step + 1) % cfg.logging.log_every == 0 or last:
            run.log.log(step, metrics)
        if cfg.logging.sample_every and step % cfg.logging.sample_every == 0 and rollout is not None:
            run.log.samples(step, sample_rows(rollout))
        if bar is not None and rollout is not None:
            bar.set_postfix(reward=f"{metrics['reward_mean']:.3f}", tok_s=f"{metrics['tokens_per_s']:.0f}")
            bar.update(1)
        if (cfg.logging.save_every and (step + 1) % cfg.logging.save_every == 0) or last:
            ds.save_checkpoint(run.ds_engine, run.run_dir, step + 1, {"step": step + 1, "stream": run.stream.state_dict()},
                               policy=run.policy, processor=run.processor, dist=run.dist,
                               keep=cfg.logging.keep_checkpoints)
    if bar is not None:
        bar.close()
    finish(run)
    return run.run_dir


def train_step(run: Run, step: int) -> tuple[dict[str, float], Rollout | None]:
    """One rollout → score → advantage → update; returns the step's metrics (over all ranks) and the rollout
    (None when a split placement's batch was too stale to train on)."""
    cfg = run.cfg
    t0 = time.time()
    scored = rollout_phase(run, step)
    if scored is None:  # dropped (split placement, older than rollout.max_staleness): no update this step
        run.feed.after_step(step)
        return dict(run.feed.stats), None
    rollout = scored.rollout
    t_rolled = time.time()
    groups = assign_advantages(rollout, cfg, run.dist.rank)
    source = micro_batch_source(rollout, run.policy, run.update, run.dist.device)
    entropy = old_and_ref_logprobs(run, rollout, source)
    correction = correct_rollout_mismatch(run, rollout)
    stats, bad_steps = update_policy(run.ds_engine, rollout, source, run.update, seed=cfg.train.seed * 31 + step)
    if run.feed is not None:
        run.feed.after_step(step)  # the rollout ranks' next weights
    else:
        run.rollout_engine.update_weights()
    stats.update(correction)
    stats.update(routing.mismatch_metrics(run.policy))  # algorithm.routing_replay: own top-k vs the sampler's
    run.skipped_steps += bad_steps
    if bad_steps:
        run.say(f"step {step}: non-finite loss in {bad_steps} minibatch(es); those optimizer steps were skipped")
    # (split placement: the rollout rank scored while this rank waited; the wait is the rollout phase here)
    timing = StepTiming(start=t0, rolled_out=t_rolled, updated=time.time(),
                        score_s=scored.score_s if run.feed is None else 0.0)
    counters = StepCounters(
        lr=float(run.ds_engine.optimizer.param_groups[0]["lr"]), grad_norm=ds.grad_norm(run.ds_engine),
        skipped_steps=run.skipped_steps, score_timeouts=float(scored.score_timeouts),
        zero_std_frac_sampled=scored.zero_std_frac_sampled, dynamic_sampling_rounds=scored.dynamic_sampling_rounds,
        prompts_skipped=float(sum(run.stream.stats.skipped.values())))
    metrics = step_metrics(rollout, groups, update_stats=stats, entropy=entropy, timing=timing, counters=counters)
    if run.feed is not None:
        metrics.update(run.feed.stats)  # staleness, drops, waits (this trainer's)
    return metrics, rollout


def rollout_phase(run: Run, step: int) -> Scored | None:
    """This rank's scored rollout of `step` (with DAPO's refill when on; `rollout.sample_and_score`); under a split
    placement the one its rollout rank sent (None when it was too stale to train on)."""
    if run.feed is not None:
        return run.feed.receive(step)
    return sample_and_score(run.rollout_engine, run.stream, run.cfg, step_seed(run.cfg, step, run.dist.rank),
                            pad_id=run.processor.tokenizer.pad_token_id)


def assign_advantages(rollout: Rollout, cfg: Config, rank: int) -> GroupRewards:
    """Group advantages over the global batch (groups never straddle ranks) and the loss mask, set on `rollout`;
    returns the global rewards and advantages for the log."""
    G, a = cfg.rollout.group_size, cfg.algorithm
    all_rewards = all_gather_cat(rollout.rewards, world_size())
    adv_all, zero_std = group_advantages(all_rewards, G, scale=a.advantage_scale, eps=a.adv_eps)
    rollout.advantages = adv_all[rank * rollout.n : (rank + 1) * rollout.n]
    loss_mask = rollout.completion_mask.clone()
    if a.mask_truncated:
        loss_mask[rollout.truncated] = 0
    if a.dynamic_sampling:  # what the refill could not replace stays out of the loss
        loss_mask[zero_std_groups(rollout.rewards, G).repeat_interleave(G)] = 0
    rollout.loss_mask = loss_mask
    return GroupRewards(rewards=all_rewards, advantages=adv_all, zero_std_frac=zero_std)


def needs_mismatch_pass(run: Run) -> bool:
    """π_old is recomputed for the mismatch correction and its diagnostics: with a correction on, or whenever a
    separate sampler drew the rollout (an engine that does not sample from the trainer's own weights)."""
    if run.feed is not None:  # split placement: a separate copy, possibly rollout.max_staleness versions old
        return True
    return correction_mode(run.cfg) != "none" or not run.rollout_engine.samples_from_trainer_weights


def old_and_ref_logprobs(run: Run, rollout: Rollout, source) -> torch.Tensor | None:
    """Fill `rollout.old_logprobs` (when more than one optimizer step uses the rollout, or a mismatch pass is due)
    and `ref_logprobs` (when KL is on); returns the per-token entropies of the π_old pass, or None when skipped."""
    entropy = None
    if run.update.optimizer_steps > 1 or needs_mismatch_pass(run):
        rollout.old_logprobs, entropy = rollout_logprobs(run.ds_engine, rollout, source, run.update)
    if run.ref is not None:  # (ZeRO-3: every rank runs this pass together)
        rollout.ref_logprobs, _ = rollout_logprobs(run.ref, rollout, source, run.update)
    return entropy


def correct_rollout_mismatch(run: Run, rollout: Rollout) -> dict[str, float]:
    """`algorithm.rollout_correction` (TIS / MIS on π_old / π_sample) when π_old was recomputed for it: sets
    `rollout.is_weights` and narrows `rollout.loss_mask`; returns the mismatch diagnostics (empty otherwise)."""
    if rollout.old_logprobs is None or not needs_mismatch_pass(run):
        return {}
    rc, mode = run.cfg.algorithm.rollout_correction, correction_mode(run.cfg)
    weights, rollout.loss_mask, diagnostics = rollout_correction(
        rollout.old_logprobs, rollout.sample_logprobs, rollout.loss_mask, mode=mode, level=rc.level,
        threshold=rc.threshold)
    rollout.is_weights = weights if mode != "none" else None
    return diagnostics


# ---------------------------------------------------------------------------------------------------- around the loop
def warm_up(run: Run) -> None:
    """`train.format_warmup_steps` supervised steps on shuffled answers (see `update.format_warmup`)."""
    cfg = run.cfg
    stream = PromptStream(cfg.data, cfg.model, run.processor, seed=cfg.train.seed + 1, rank=run.dist.rank,
                          world=run.dist.world_size, pool=run.stream.pool)
    losses = format_warmup(run.ds_engine, run.processor, stream, cfg.train.format_warmup_steps, plan=run.plan,
                           dist=run.dist, seed=cfg.train.seed)
    if run.rollout_engine is not None:  # (split placement: the feed sends the warmed-up weights at its start)
        run.rollout_engine.update_weights()
    run.say(f"format warm-up: {len(losses)} supervised steps on shuffled answers, loss {losses[0]:.3f} → "
            f"{losses[-1]:.3f} (answers carry no information about the images)")


def periodic_eval(run: Run, step: int) -> dict[str, float]:
    """The configured eval tasks on the current policy (same tasks, verifiers and files as `sapo-vl eval`)."""
    from .evaluation import evaluate_policy, policy_settings

    cfg = run.cfg
    settings = policy_settings(run.processor, limit=cfg.eval.limit, n_samples=cfg.eval.n_samples, seed=cfg.train.seed,
                               max_new_tokens=cfg.eval.max_new_tokens or cfg.rollout.max_new_tokens)
    run.ds_engine.eval()
    with ds.gathered(run.ds_engine):
        ev = evaluate_policy(run.policy, run.processor, cfg.eval.tasks, settings,
                             out_dir=run.run_dir / "eval" / f"step_{step + 1}")
    run.ds_engine.train()
    run.say("eval: " + ", ".join(f"{k.split('/', 1)[1]}={v:.3f}" for k, v in ev.items() if k.endswith("accuracy")))
    return ev


def sample_rows(rollout: Rollout) -> list[dict]:
    """This rank's completions with their rewards, advantages and verifier verdicts, for `samples/`."""
    G = rollout.group_size
    return [{"id": rollout.records[i // G].id, "answer": rollout.records[i // G].answer, "response": rollout.texts[i],
             "reward": float(rollout.rewards[i]), "advantage": float(rollout.advantages[i]),
             "reason": rollout.scores[i].reason, "extracted": rollout.scores[i].extracted} for i in range(rollout.n)]


def progress_bar(run: Run):
    if not (run.dist.is_main and run.cfg.logging.progress):
        return None
    from tqdm import tqdm

    return tqdm(total=run.cfg.train.steps, initial=run.start_step, desc="train", dynamic_ncols=True, file=sys.stdout)


def finish(run: Run) -> None:
    """Plots, the reward sparkline, and the log closed."""
    if run.cfg.logging.plots:
        run.say("plots: " + ", ".join(str(x) for x in run.log.plots()))
    rows = run.log.read_metrics() if run.dist.is_main else []
    curve = [r["reward_mean"] for r in rows if isinstance(r.get("reward_mean"), float)]
    if curve:
        run.say(f"reward  {sparkline(curve)}  first {curve[0]:.3f} → last {curve[-1]:.3f} (max {max(curve):.3f})")
    run.log.close()
    run.say(f"run folder: {run.run_dir}")


def dry_run(cfg: Config, *, gpus: int | None = None, gpu_gib: float = 80.0):
    """Print the per-rank memory plan and DeepSpeed config, offline: no processor, data, weights or process group.

    gpus: ranks to plan for; default the launcher's WORLD_SIZE, else 8 (one node of the shipped configs).
    """
    import os

    from .memplan import dry_run_report, split_trainers

    world = gpus or int(os.environ.get("WORLD_SIZE", "8"))
    if int(os.environ.get("RANK", "0")) == 0:
        print(dry_run_report(cfg, world, gpu_gib=gpu_gib))
        trainers = split_trainers(cfg, world) if cfg.rollout.placement == "split" else world  # DeepSpeed's ranks
        p = batch_plan(cfg, trainers)
        device = torch.device("cuda")  # the plan is for the GPUs it names, whatever this machine has
        conf = ds.ds_config(cfg, micro_batch=p.micro, grad_accum=p.grad_accum, world_size=trainers, device=device)
        print(f"deepspeed config: {conf}")
    return run_dir_of(cfg)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="YAML config (see configs/); 'defaults' for the built-in defaults")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. algorithm.name=gspo")
    p.add_argument("--dry-run", action="store_true", help="print the per-rank memory plan (weights, gradients, "
                   "optimizer, activations, KV cache) in GiB with a verdict, offline, without loading anything")
    p.add_argument("--gpus", type=int, default=None, help="with --dry-run: ranks to plan for (default: the "
                   "launcher's WORLD_SIZE, else 8)")
    p.add_argument("--gpu-gib", type=float, default=80.0, help="with --dry-run: memory per GPU in GiB (default 80)")
    p.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)  # set by the deepspeed launcher


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="sapo_vl.train", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parse_with_overrides(parser, argv))


def run(args: argparse.Namespace) -> int:
    from .data.sources import SourceError
    from .models.archs import ArchError
    from .models.loading import ModelLoadError
    from .placement import SplitError

    try:
        cfg = load_config(None if args.config == "defaults" else args.config, args.overrides)
        if args.dry_run:
            dry_run(cfg, gpus=args.gpus, gpu_gib=args.gpu_gib)
        else:
            train(cfg)
    except (ConfigError, ModelLoadError, ArchError, SourceError, SplitError) as err:  # one line, not a traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

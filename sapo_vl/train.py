"""The training loop: SAPO (or GSPO / GRPO) for Qwen3-VL under DeepSpeed, top to bottom, no Trainer class.

    deepspeed --num_gpus N -m sapo_vl.train CONFIG [key=value ...]     (also --hostfile for several nodes)
    torchrun --nproc_per_node N -m sapo_vl.train CONFIG [key=value ...]
    sapo-vl train CONFIG [key=value ...]                                (one process)

Each step: sample prompts → G completions per prompt (shared prefill, ZeRO-3 parameters gathered once) → verifier
rewards (parallel, time-limited) → group advantages (over the global batch) → π_old log-probs → μ passes of
`num_minibatches` optimizer steps → metrics, samples, plots → checkpoint.

Departures from the paper, all deliberate:
- π_old log-probs are recomputed by a no-grad forward of the generating policy rather than taken from the
  sampler (same weights, so the same values up to kernel differences; `rollout_logprob_gap` logs the gap). When
  μ = 1 and there is one minibatch, the current log-probs (detached) serve as π_old and that pass is skipped.
- A non-finite loss on any rank turns that micro-batch into a zero-gradient one and the optimizer step runs at
  learning rate 0 (weights untouched; AdamW's moments still decay); it is counted in `skipped_steps`.
- `algorithm.dynamic_sampling` replaces zero-std groups by groups of fresh prompts for at most
  `dynamic_sampling_rounds` extra rollouts per step (DAPO over-samples once and filters); what is left stays
  masked out of the loss, so a step's batch keeps its size.
- `train.format_warmup_steps` (off by default) runs supervised steps on shuffled answers before RL, for
  random-weight policies that do not yet answer in the task's format (the embedded demo).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import torch

from . import ds
from .algorithms import group_advantages
from .losses import LOSSES
from .config import Config, ConfigError, config_to_dict, dump_yaml, load_config
from .logprobs import PolicyLogprobs
from .models.loading import load_policy, load_processor
from .prompts import PromptStream
from .rollout import Rollout, collect_rollout, refill_zero_std_groups, zero_std_groups
from .runlog import RunLog, sparkline
from .update import format_warmup, rollout_logprobs, update_policy


# ---------------------------------------------------------------------------------------------------- plan
def plan(cfg: Config, world: int) -> dict:
    """Batch arithmetic for one rollout step; errors name the config keys to change."""
    B, G = cfg.rollout.prompts_per_step, cfg.rollout.group_size
    if B % world:
        raise ConfigError(f"rollout.prompts_per_step={B} must be a multiple of the number of ranks ({world})")
    rows = B // world * G  # completions per rank
    nm = cfg.algorithm.num_minibatches
    if rows % nm:
        raise ConfigError(f"{rows} completions per rank do not split into algorithm.num_minibatches={nm}")
    mb_rows = rows // nm
    micro = min(cfg.deepspeed.micro_batch_size, mb_rows)
    grad_accum = math.ceil(mb_rows / micro)
    mu = cfg.algorithm.updates_per_rollout
    return dict(world=world, prompts_per_rank=B // world, rows_per_rank=rows, minibatch_rows=mb_rows, micro=micro,
                grad_accum=grad_accum, optimizer_steps_per_rollout=mu * nm,
                total_optimizer_steps=cfg.train.steps * mu * nm + cfg.train.format_warmup_steps)


def loss_kwargs(cfg: Config) -> dict:
    """Keyword arguments of the configured loss (see `AlgorithmConfig.loss_kwargs`)."""
    return cfg.algorithm.loss_kwargs(cfg.rollout.max_new_tokens)


def build_policy(cfg: Config, device: torch.device):
    """The `transformers` policy with the config's freezing, LoRA and gradient checkpointing applied."""
    policy = load_policy(cfg.model.name_or_path, dtype=cfg.model.dtype, device=device,
                         attn_implementation=cfg.model.attn_implementation,
                         trust_remote_code=cfg.model.trust_remote_code)
    if cfg.model.freeze_vision:
        policy.model.visual.requires_grad_(False)
    if cfg.model.gradient_checkpointing:
        policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if cfg.model.lora.r > 0:
        from peft import LoraConfig, get_peft_model

        lc = cfg.model.lora
        policy = get_peft_model(policy, LoraConfig(
            r=lc.r, lora_alpha=lc.alpha, lora_dropout=lc.dropout,
            target_modules=rf"^model\.language_model\..*\.({'|'.join(lc.target_modules)})$",
        ))
    return policy


# ---------------------------------------------------------------------------------------------------- the loop
def train(cfg: Config) -> Path:
    dist = ds.init_distributed()
    p = plan(cfg, dist.world_size)
    G, B = cfg.rollout.group_size, cfg.rollout.prompts_per_step
    run_name = cfg.logging.run_name or datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = Path(cfg.logging.out_dir) / run_name
    say = print if dist.is_main else (lambda *a, **k: None)
    say(f"sapo-vl train: {cfg.algorithm.name} on {cfg.model.name_or_path}, {dist.world_size} rank(s) on "
        f"{dist.device.type}, ZeRO-{cfg.deepspeed.zero_stage}; per step {B} prompts × G={G}, μ="
        f"{cfg.algorithm.updates_per_rollout} × {cfg.algorithm.num_minibatches} minibatches of {p['minibatch_rows']} "
        f"rows/rank ({p['grad_accum']} micro-batches of ≤{p['micro']}); {cfg.train.steps} steps → {run_dir}")

    # ---- setup
    torch.manual_seed(cfg.train.seed)
    processor = load_processor(cfg.model.name_or_path, min_pixels=cfg.model.min_pixels,
                               max_pixels=cfg.model.max_pixels, trust_remote_code=cfg.model.trust_remote_code)
    stream = PromptStream(cfg.data, cfg.model, processor, seed=cfg.train.seed, rank=dist.rank, world=dist.world_size)
    if cfg.train.dry_run:
        first = stream.next_batch(B)
        say(f"dry run: data {[(n, w, len(r)) for n, w, r in stream.pool]}; first batch on rank 0: "
            f"{[q.record.id for q in first]} ({[q.tokens for q in first]} prompt tokens); plan {p}")
        conf = ds.ds_config(cfg, micro_batch=p["micro"], grad_accum=p["grad_accum"], world_size=dist.world_size,
                            device=dist.device)
        say(f"deepspeed config: {conf}")
        return run_dir
    policy = build_policy(cfg, dist.device)
    ref = None
    if cfg.algorithm.kl_beta > 0:
        ref = PolicyLogprobs(load_policy(cfg.model.name_or_path, dtype=cfg.model.dtype, device=dist.device)).eval()
        ref.requires_grad_(False)
    module = PolicyLogprobs(policy)
    engine = ds.create_engine(module, cfg, micro_batch=p["micro"], grad_accum=p["grad_accum"], dist=dist,
                              total_optimizer_steps=p["total_optimizer_steps"])
    log = RunLog(run_dir, is_main=dist.is_main, tensorboard=cfg.logging.tensorboard, wandb=cfg.logging.wandb,
                 wandb_project=cfg.logging.wandb_project, config=config_to_dict(cfg))
    if dist.is_main:
        (run_dir / "config.yaml").write_text(dump_yaml(cfg))
    start = 0
    if cfg.train.resume:
        ckpt = ds.latest_checkpoint(run_dir) if cfg.train.resume == "auto" else Path(cfg.train.resume)
        if ckpt is not None:
            client = ds.load_checkpoint(engine, ckpt)
            stream.load_state_dict(client["stream"])
            start = int(client["step"])
            log.truncate_after(start)
            say(f"resumed from {ckpt} at step {start}")
    if start == 0 and cfg.train.format_warmup_steps:
        warm_stream = PromptStream(cfg.data, cfg.model, processor, seed=cfg.train.seed + 1, rank=dist.rank,
                                   world=dist.world_size, pool=stream.pool)
        losses = format_warmup(engine, processor, warm_stream, cfg.train.format_warmup_steps, plan=p, dist=dist,
                               seed=cfg.train.seed)
        say(f"format warm-up: {len(losses)} supervised steps on shuffled answers, loss {losses[0]:.3f} → "
            f"{losses[-1]:.3f} (answers carry no information about the images)")
    loss_fn, lkw = LOSSES[cfg.algorithm.name].fn, loss_kwargs(cfg)
    mu, nm = cfg.algorithm.updates_per_rollout, cfg.algorithm.num_minibatches
    touch_vision = dist.world_size > 1
    T = cfg.rollout.temperature
    skipped_steps = 0
    bar = None
    if dist.is_main and cfg.logging.progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.train.steps, initial=start, desc="train", dynamic_ncols=True, file=sys.stdout)

    for step in range(start, cfg.train.steps):
        # ---- rollout and score (DAPO dynamic sampling refills zero-std groups with fresh prompts)
        t0 = time.time()
        prompts = stream.next_batch(B)
        seed = cfg.train.seed * 1_000_003 + step * 7919 + dist.rank
        gen = torch.Generator(device=dist.device).manual_seed(seed)
        rollout, score_s, timeouts = collect_rollout(engine, policy, processor, prompts, cfg, gen)
        zero_before = ds.all_reduce([float(zero_std_groups(rollout.rewards, G).float().mean())])[0] / dist.world_size
        extra_rounds = 0
        if cfg.algorithm.dynamic_sampling:
            def draw(n: int, round_: int) -> Rollout:
                nonlocal score_s, timeouts
                more = stream.next_batch(n * dist.world_size)
                g = torch.Generator(device=dist.device).manual_seed(seed + 104_729 * (round_ + 1))
                ro, sec, to = collect_rollout(engine, policy, processor, more, cfg, g)
                score_s, timeouts = score_s + sec, timeouts + to
                return ro

            rollout, extra_rounds = refill_zero_std_groups(rollout, draw, rounds=cfg.algorithm.dynamic_sampling_rounds,
                                                           pad_id=processor.tokenizer.pad_token_id)
        rewards = rollout.rewards
        correct = torch.tensor([r.score for r in rollout.scores], dtype=torch.float32)
        t2 = time.time()
        t1 = t2 - score_s

        # ---- advantages, over the global batch (groups never straddle ranks)
        all_rewards = ds.all_gather_cat(rewards, dist.world_size)
        adv_all, zero_std = group_advantages(all_rewards, G, scale=cfg.algorithm.advantage_scale,
                                             eps=cfg.algorithm.adv_eps)
        n_rank = rollout.n
        rollout.rewards = rewards
        rollout.advantages = adv_all[dist.rank * n_rank : (dist.rank + 1) * n_rank]
        loss_mask = rollout.completion_mask.clone()
        if cfg.algorithm.mask_truncated:
            loss_mask[rollout.truncated] = 0
        if cfg.algorithm.dynamic_sampling:  # what the refill could not replace stays out of the loss
            loss_mask[zero_std_groups(rewards, G).repeat_interleave(G)] = 0

        # ---- π_old (and π_ref) log-probs
        rows = list(range(n_rank))
        entropy = None
        if mu > 1 or nm > 1:
            rollout.old_logprobs, entropy = rollout_logprobs(engine, rollout, rows, p["micro"], dist.device, T,
                                                             touch_vision)
        if ref is not None:
            rollout.ref_logprobs, _ = rollout_logprobs(ref, rollout, rows, p["micro"], dist.device, T, False)

        # ---- μ passes × num_minibatches optimizer steps
        m, bad_steps = update_policy(engine, rollout, loss_mask, plan=p, loss_fn=loss_fn, loss_kwargs=lkw,
                                     mu=mu, num_minibatches=nm, temperature=T, dist=dist,
                                     seed=cfg.train.seed * 31 + step, touch_vision=touch_vision)
        skipped_steps += bad_steps
        if bad_steps:
            say(f"step {step}: non-finite loss in {bad_steps} minibatch(es); those optimizer steps were skipped")
        t3 = time.time()

        # ---- metrics (averaged over ranks)
        if "entropy_update" in m:
            m["entropy"] = m.pop("entropy_update")
        if entropy is not None:
            cm = rollout.completion_mask
            m["entropy"] = float((entropy * cm).sum() / cm.sum().clamp(min=1))
            gap = (rollout.old_logprobs - rollout.sample_logprobs)[cm.bool()]
            m["rollout_logprob_gap"] = float(gap.abs().mean()) if gap.numel() else 0.0
        lengths = rollout.completion_mask.sum(-1).float()
        local = {
            **m, "response_length_mean": float(lengths.mean()), "response_length_max": float(lengths.max()),
            "truncation_rate": float(rollout.truncated.float().mean()), "accuracy": float((correct >= 1).float().mean()),
            "score_timeouts": float(timeouts),
        }
        keys = sorted(local)
        red = ds.all_reduce([local[k] for k in keys])
        metrics = {k: v / dist.world_size for k, v in zip(keys, red)}
        by_verifier = defaultdict(list)
        for q_i, rec in enumerate(rollout.records):
            by_verifier[rec.verifier].extend(correct[q_i * G : (q_i + 1) * G].tolist())
        for name, vals in by_verifier.items():
            metrics[f"reward/{name}"] = sum(vals) / len(vals)
        gen_tokens = ds.all_reduce([float(lengths.sum())])[0]
        metrics.update(
            reward_mean=float(all_rewards.mean()), reward_std=float(all_rewards.std()) if all_rewards.numel() > 1 else 0.0,
            advantage_mean=float(adv_all.mean()), advantage_std=float(adv_all.std()) if adv_all.numel() > 1 else 0.0,
            advantage_max=float(adv_all.max()), advantage_min=float(adv_all.min()), zero_std_frac=zero_std,
            lr=float(engine.optimizer.param_groups[0]["lr"]),
            grad_norm=float(engine.get_global_grad_norm() or 0.0),
            tokens_per_s=gen_tokens / max(t1 - t0, 1e-9), rollout_s=t1 - t0, score_s=t2 - t1, update_s=t3 - t2,
            step_s=time.time() - t0, skipped_steps=skipped_steps, score_per_s=rollout.n / max(score_s, 1e-9),
            zero_std_frac_sampled=zero_before, dynamic_sampling_rounds=extra_rounds,
            prompts_skipped=float(sum(stream.stats.skipped.values())),
        )
        # ---- periodic eval (same tasks, verifiers and files as `sapo-vl eval`)
        if cfg.eval.every and ((step + 1) % cfg.eval.every == 0 or step + 1 == cfg.train.steps):
            from .evaluation import evaluate_policy

            engine.eval()
            with ds.gathered(engine):
                ev = evaluate_policy(policy, processor, cfg.eval.tasks, limit=cfg.eval.limit,
                                     n_samples=cfg.eval.n_samples, seed=cfg.train.seed,
                                     max_new_tokens=cfg.eval.max_new_tokens or cfg.rollout.max_new_tokens,
                                     out_dir=run_dir / "eval" / f"step_{step + 1}")
            engine.train()
            metrics.update(ev)
            say("eval: " + ", ".join(f"{k.split('/', 1)[1]}={v:.3f}" for k, v in ev.items() if k.endswith("accuracy")))

        if (step + 1) % cfg.logging.log_every == 0 or step + 1 == cfg.train.steps:
            log.log(step, metrics)
        if cfg.logging.sample_every and step % cfg.logging.sample_every == 0:
            log.samples(step, [
                {"id": rollout.records[i // G].id, "answer": rollout.records[i // G].answer, "response": rollout.texts[i],
                 "reward": float(rewards[i]), "advantage": float(rollout.advantages[i]),
                 "reason": rollout.scores[i].reason, "extracted": rollout.scores[i].extracted}
                for i in range(rollout.n)
            ])
        if bar is not None:
            bar.set_postfix(reward=f"{metrics['reward_mean']:.3f}", tok_s=f"{metrics['tokens_per_s']:.0f}")
            bar.update(1)

        # ---- checkpoint
        last = step + 1 == cfg.train.steps
        if (cfg.logging.save_every and (step + 1) % cfg.logging.save_every == 0) or last:
            ds.save_checkpoint(engine, run_dir, step + 1, {"step": step + 1, "stream": stream.state_dict()},
                               policy=policy, processor=processor, dist=dist, keep=cfg.logging.keep_checkpoints)

    if bar is not None:
        bar.close()
    if cfg.logging.plots:
        plots = log.plots()
        say("plots: " + ", ".join(str(x) for x in plots))
    rows = log.read_metrics() if dist.is_main else []
    if rows:
        curve = [r["reward_mean"] for r in rows if isinstance(r.get("reward_mean"), float)]
        say(f"reward  {sparkline(curve)}  first {curve[0]:.3f} → last {curve[-1]:.3f} (max {max(curve):.3f})")
    log.close()
    say(f"run folder: {run_dir}")
    return run_dir


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="YAML config (see configs/); 'defaults' for the built-in defaults")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. algorithm.name=gspo")
    p.add_argument("--dry-run", action="store_true", help="resolve the config, build the data pipeline and print "
                   "the plan without loading weights")
    p.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)  # set by the deepspeed launcher


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="sapo_vl.train", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    from .cli import parse_with_overrides

    return run(parse_with_overrides(parser, argv))


def run(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(None if args.config == "defaults" else args.config, args.overrides)
        if args.dry_run:
            cfg = load_config(None if args.config == "defaults" else args.config, [*args.overrides, "train.dry_run=true"])
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    train(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())

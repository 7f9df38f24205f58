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
import random
import sys
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import torch
import torch.distributed as tdist

from . import ds
from .algorithms import POLICY_LOSSES, group_advantages, overlong_penalty
from .config import Config, ConfigError, config_to_dict, dump_yaml, load_config
from .logprobs import PolicyLogprobs
from .models.loading import encode_prompts, load_policy, load_processor
from .prompts import PromptStream
from .rollout import Rollout
from .runlog import RunLog, sparkline
from .sampling import Samples, sample_completions
from .verifiers.batch import score_batch


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
    a = cfg.algorithm
    kw: dict = dict(agg=a.resolved_loss_agg(), kl_beta=a.kl_beta, kl_estimator=a.kl_estimator,
                    max_len=a.max_len_norm or cfg.rollout.max_new_tokens)
    if a.name == "sapo":
        kw.update(tau_pos=a.sapo.tau_pos, tau_neg=a.sapo.tau_neg)
    elif a.name == "gspo":
        kw.update(eps_low=a.gspo.eps_low, eps_high=a.gspo.eps_high)
    else:
        kw.update(eps_low=a.grpo.eps_low, eps_high=a.grpo.eps_high, dual_clip=a.grpo.dual_clip)
    return kw


# ---------------------------------------------------------------------------------------------------- helpers
def _comm_device() -> torch.device:
    """Where collective tensors must live: the current GPU under NCCL, the CPU under gloo."""
    if tdist.is_initialized() and tdist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _all_gather_cat(x: torch.Tensor, world: int) -> torch.Tensor:
    """(n,) on every rank → (world·n,) in rank order, on the CPU."""
    if world == 1:
        return x
    x = x.to(_comm_device())
    parts = [torch.zeros_like(x) for _ in range(world)]
    tdist.all_gather(parts, x)
    return torch.cat(parts).cpu()


def _all_reduce(values: list[float], op=tdist.ReduceOp.SUM) -> list[float]:
    if not (tdist.is_initialized() and tdist.get_world_size() > 1):
        return [float(v) for v in values]
    t = torch.tensor(values, dtype=torch.float64, device=_comm_device())
    tdist.all_reduce(t, op=op)
    return t.tolist()


def _model_inputs(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k != "extras"}


def _chunks(rows: list[int], size: int) -> list[list[int]]:
    return [rows[i : i + size] for i in range(0, len(rows), size)]


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


@torch.no_grad()
def rollout_logprobs(module, rollout: Rollout, rows: list[int], micro: int, device, temperature: float,
                     touch_vision: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, Lc) log-probs and entropies of all completion rows under `module`, micro-batch by micro-batch."""
    lc = rollout.completion_ids.shape[1]
    logp = torch.zeros(rollout.n, lc)
    ent = torch.zeros(rollout.n, lc)
    for chunk in _chunks(rows, micro):
        batch = rollout.micro_batch(chunk, device)
        lp, e = module(**_model_inputs(batch), temperature=temperature, touch_vision=touch_vision)
        n = batch["n_completion"]
        logp[chunk, :n] = lp.float().cpu()
        ent[chunk, :n] = e.float().cpu()
    return logp, ent


def update_policy(engine, rollout: Rollout, loss_mask: torch.Tensor, *, plan: dict, loss_fn, loss_kwargs: dict,
                  mu: int, num_minibatches: int, temperature: float, dist: ds.Dist, seed: int,
                  touch_vision: bool) -> tuple[dict[str, float], int]:
    """μ passes over the rollout, each `num_minibatches` optimizer steps; returns loss stats and skipped steps.

    π_old is `rollout.old_logprobs` when set, else the current log-probs detached (μ = 1, one minibatch).
    Each micro-batch's loss is normalised by the token / sequence counts of its whole minibatch over all ranks.
    """
    agg: dict[str, float] = defaultdict(float)
    weight_sum, skipped = 0.0, 0
    gen = torch.Generator().manual_seed(seed)
    n, mb_rows = rollout.n, plan["minibatch_rows"]
    for epoch in range(mu):
        order = torch.randperm(n, generator=gen).tolist()
        for m in range(num_minibatches):
            mb = order[m * mb_rows : (m + 1) * mb_rows]
            lm = loss_mask[mb]
            g_tok, g_seq = _all_reduce([float(lm.sum()), float((lm.sum(-1) > 0).sum())])
            bad = False
            for chunk in _chunks(mb, plan["micro"]):
                batch = rollout.micro_batch(chunk, dist.device)
                ex = batch["extras"]
                mask = loss_mask[chunk, : batch["n_completion"]].to(dist.device)
                logp, ent = engine(**_model_inputs(batch), temperature=temperature, touch_vision=touch_vision,
                                   with_entropy=epoch == 0 and "old_logprobs" not in ex)
                old = ex["old_logprobs"] if "old_logprobs" in ex else logp.detach()
                loss, stats = loss_fn(logp, old, ex["advantages"], mask, ref_logprobs=ex.get("ref_logprobs"),
                                      global_tokens=g_tok, global_seqs=g_seq, **loss_kwargs)
                if _all_reduce([float(torch.isfinite(loss))], tdist.ReduceOp.MIN)[0] == 0:
                    bad = True  # keep every rank's collectives in step: back-propagate an exact zero instead
                    loss = logp.sum() * 0.0
                ds.backward(engine, loss, dist.world_size)
                ds.optimizer_step(engine, skip=bad and engine.is_gradient_accumulation_boundary())
                if epoch == 0 and "old_logprobs" not in ex:
                    stats["entropy_update"] = float((ent.detach() * mask).sum() / mask.sum().clamp(min=1))
                w = float(mask.sum())
                weight_sum += w
                for k, v in stats.items():
                    agg[k] += w * (v if math.isfinite(v) else 0.0)
            skipped += int(bad)
    stats = {k: v / max(weight_sum, 1.0) for k, v in agg.items()}
    if "entropy_update" in stats:
        stats["entropy_update"] *= mu  # only the first pass contributed
    return stats, skipped


def format_warmup(engine, processor, stream: PromptStream, steps: int, *, plan: dict, dist: ds.Dist,
                  seed: int) -> list[float]:
    """Supervised steps on shuffled answers (see `train.format_warmup_steps`); returns the per-step losses.

    Each step takes `minibatch_rows` prompts per rank, pairs them with a permutation of their own answers, and
    minimises the token-mean negative log-likelihood of "answer<|im_end|>" through the same engine, micro-batches
    and global normalisation as the RL update.
    """
    tok = processor.tokenizer
    stop = tok.convert_tokens_to_ids("<|im_end|>")
    losses = []
    for s in range(steps):
        prompts = stream.next_batch(plan["minibatch_rows"] * dist.world_size)
        answers = [q.record.answer for q in prompts]
        random.Random(f"{seed}/warmup/{s}/{dist.rank}").shuffle(answers)
        ids = [tok(a, add_special_tokens=False)["input_ids"] + [stop] for a in answers]
        width = max(len(i) for i in ids)
        samples = Samples(
            inputs=encode_prompts(processor, [q.record.prompt for q in prompts], [q.images for q in prompts]),
            completion_ids=torch.tensor([i + [tok.pad_token_id] * (width - len(i)) for i in ids]),
            completion_mask=torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i in ids]),
            truncated=torch.zeros(len(ids), dtype=torch.bool), sample_logprobs=torch.zeros(len(ids), width),
            texts=answers, group_size=1, prefill_tokens=0,
        )
        ro = Rollout.from_samples([q.record for q in prompts], samples)
        n_tok = _all_reduce([float(ro.completion_mask.sum())])[0]
        total = 0.0
        for chunk in _chunks(list(range(ro.n)), plan["micro"]):
            batch = ro.micro_batch(chunk, dist.device)
            logp, _ = engine(**_model_inputs(batch), touch_vision=dist.world_size > 1, with_entropy=False)
            mask = batch["extras"]["mask"].to(logp.dtype)
            loss = -(logp * mask).sum() / n_tok
            ds.backward(engine, loss, dist.world_size)
            engine.step()
            total += float(loss.detach())
        losses.append(_all_reduce([total])[0])
    return losses


def collect_rollout(engine, policy, processor, prompts: list, cfg: Config, generator) -> tuple[Rollout, float, int]:
    """Sample G completions per prompt (parameters gathered under ZeRO-3) and score them with the verifiers.

    Returns the rollout with `scores` and `rewards` (verifier score, plus DAPO's overlong penalty when on), the
    seconds spent scoring and the number of scoring timeouts.
    """
    G = cfg.rollout.group_size
    engine.eval()
    with ds.gathered(engine):
        samples = sample_completions(
            policy, processor, [q.record.prompt for q in prompts], [q.images for q in prompts], group_size=G,
            max_new_tokens=cfg.rollout.max_new_tokens, temperature=cfg.rollout.temperature, top_p=cfg.rollout.top_p,
            top_k=cfg.rollout.top_k, shared_prefill=cfg.rollout.shared_prefill, generator=generator,
        )
    engine.train()
    rollout = Rollout.from_samples([q.record for q in prompts], samples)
    t = time.time()
    items = [(q.record.verifier, rollout.texts[i * G + g], q.record.answer, q.record.verifier_params)
             for i, q in enumerate(prompts) for g in range(G)]
    scored = score_batch(items, workers=cfg.rollout.score_workers, timeout=cfg.rollout.score_timeout_s)
    rollout.scores = scored.results
    rollout.rewards = torch.tensor([r.score for r in scored.results], dtype=torch.float32)
    if cfg.algorithm.overlong_penalty.enabled:
        op = cfg.algorithm.overlong_penalty
        rollout.rewards = rollout.rewards + overlong_penalty(rollout.completion_mask.sum(-1),
                                                             cfg.rollout.max_new_tokens, op.buffer, op.penalty)
    return rollout, time.time() - t, scored.timeouts


def zero_std_groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """(n_groups,) bool: groups whose rewards are all equal."""
    flat = rewards.view(-1, group_size)
    return flat.max(-1).values == flat.min(-1).values


def refill_zero_std_groups(rollout: Rollout, draw, *, rounds: int, pad_id: int) -> tuple[Rollout, int]:
    """DAPO dynamic sampling: replace zero-std groups by groups of fresh prompts that carry signal.

    `draw(n, round)` rolls out and scores `n` new prompts on this rank. Every rank draws the same number per round (the
    largest need over ranks), so the global prompt stream stays aligned. Returns the rollout, in which the
    remaining zero-std groups (if `rounds` ran out) come last, and the number of extra rollouts drawn.
    """
    G = rollout.group_size
    done = 0
    for round_ in range(rounds):
        zero = zero_std_groups(rollout.rewards, G)
        need = int(_all_reduce([float(zero.sum())], tdist.ReduceOp.MAX)[0])
        if need == 0:
            break
        extra = draw(need, round_)
        done += 1
        good = [g for g, z in enumerate(zero_std_groups(extra.rewards, G).tolist()) if not z]
        zero_idx = [g for g, z in enumerate(zero.tolist()) if z]
        fill = good[: len(zero_idx)]
        keep = [g for g, z in enumerate(zero.tolist()) if not z] + zero_idx[len(fill):]
        rollout = Rollout.concat([rollout.groups(keep), extra.groups(fill)], pad_id)
    return rollout, done


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
    loss_fn, lkw = POLICY_LOSSES[cfg.algorithm.name], loss_kwargs(cfg)
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
        zero_before = _all_reduce([float(zero_std_groups(rollout.rewards, G).float().mean())])[0] / dist.world_size
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
        all_rewards = _all_gather_cat(rewards, dist.world_size)
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
        red = _all_reduce([local[k] for k in keys])
        metrics = {k: v / dist.world_size for k, v in zip(keys, red)}
        by_verifier = defaultdict(list)
        for q_i, rec in enumerate(rollout.records):
            by_verifier[rec.verifier].extend(correct[q_i * G : (q_i + 1) * G].tolist())
        for name, vals in by_verifier.items():
            metrics[f"reward/{name}"] = sum(vals) / len(vals)
        gen_tokens = _all_reduce([float(lengths.sum())])[0]
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

"""The update phase: π_old log-probs, μ passes of minibatch optimizer steps, and the format warm-up.

Each micro-batch loss is normalised by the token / sequence counts of its whole minibatch over all ranks, so the
micro-batch gradients sum (and DeepSpeed's all-reduce averages) to exactly the minibatch gradient.
"""
from __future__ import annotations

import random

import torch
import torch.distributed as tdist

from . import ds, packing
from .batch_plan import BatchPlan
from .data.stream import PromptStream
from .dist import Dist
from .models.loading import encode_prompts
from .rollout import Rollout
from .runlog import UpdateStats
from .sampling import Samples


def chunks(rows: list[int], size: int) -> list[list[int]]:
    return [rows[i : i + size] for i in range(0, len(rows), size)]


@torch.no_grad()
def rollout_logprobs(module, rollout: Rollout, rows: list[int], micro: int, device, temperature: float,
                     touch_vision: bool, *, shared_prefix: bool = False,
                     micro_tokens: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, Lc) log-probs and entropies of all completion rows under `module`, micro-batch by micro-batch.

    shared_prefix: on packed micro-batches of at most `micro_tokens` padded tokens (`sapo_vl.packing`).
    """
    if shared_prefix:
        table = packing.prompt_table(rollout, getattr(module, "module", module).policy)
        logp, ent, _ = packing.packed_rollout_logprobs(
            module, table, rows, limits=packing.update_limits(table, micro, micro_tokens), device=device,
            temperature=temperature, touch_vision=touch_vision)
        return logp, ent
    lc = rollout.completion_ids.shape[1]
    logp = torch.zeros(rollout.n, lc)
    ent = torch.zeros(rollout.n, lc)
    for chunk in chunks(rows, micro):
        batch = rollout.micro_batch(chunk, device)
        lp, e = module(**batch.model_inputs(), temperature=temperature, touch_vision=touch_vision)
        n = batch.n_completion
        logp[chunk, :n] = lp.float().cpu()
        ent[chunk, :n] = e.float().cpu()
    return logp, ent


def update_policy(engine, rollout: Rollout, loss_mask: torch.Tensor, *, plan: BatchPlan, loss_fn, loss_kwargs: dict,
                  mu: int, num_minibatches: int, temperature: float, dist: Dist, seed: int,
                  touch_vision: bool, shared_prefix: bool = False,
                  micro_tokens: int = 0) -> tuple[dict[str, float], int]:
    """μ passes over the rollout, each `num_minibatches` optimizer steps; returns loss stats and skipped steps.

    π_old is `rollout.old_logprobs` when set, else the current log-probs detached (μ = 1, one minibatch).
    Each micro-batch's loss is normalised by the token / sequence counts of its whole minibatch over all ranks.
    shared_prefix: minibatches of whole groups on packed micro-batches (`packing.packed_update_policy`, which
    adds `padding_frac`, `vision_patches` and `micro_batches` to the stats); else rows shuffled one by one,
    `plan.micro` rows per micro-batch.
    """
    if shared_prefix:
        table = packing.prompt_table(rollout, engine.module.policy)
        return packing.packed_update_policy(
            engine, table, rollout.token_advantages(list(range(rollout.n)), rollout.completion_ids.shape[1]), loss_mask,
            old_logprobs=rollout.old_logprobs,
            ref_logprobs=rollout.ref_logprobs, loss_fn=loss_fn, loss_kwargs=loss_kwargs,
            limits=packing.update_limits(table, plan.micro, micro_tokens), mu=mu, num_minibatches=num_minibatches,
            temperature=temperature, world_size=dist.world_size, device=dist.device, seed=seed,
            touch_vision=touch_vision)
    acc = UpdateStats()
    skipped = 0
    ent_sum = ent_tokens = 0.0  # entropy of the first pass, when no π_old pass measured it
    gen = torch.Generator().manual_seed(seed)
    n, mb_rows = rollout.n, plan.minibatch_rows
    for epoch in range(mu):
        order = torch.randperm(n, generator=gen).tolist()
        for m in range(num_minibatches):
            mb = order[m * mb_rows : (m + 1) * mb_rows]
            lm = loss_mask[mb]
            g_tok, g_seq = ds.all_reduce([float(lm.sum()), float((lm.sum(-1) > 0).sum())])
            bad = False
            for chunk in chunks(mb, plan.micro):
                batch = rollout.micro_batch(chunk, dist.device)
                mask = loss_mask[chunk, : batch.n_completion].to(dist.device)
                first_pass = epoch == 0 and batch.old_logprobs is None
                logp, ent = engine(**batch.model_inputs(), temperature=temperature, touch_vision=touch_vision,
                                   with_entropy=first_pass)
                old = batch.old_logprobs if batch.old_logprobs is not None else logp.detach()
                loss, stats = loss_fn(logp, old, batch.advantages, mask, ref_logprobs=batch.ref_logprobs,
                                      global_tokens=g_tok, global_seqs=g_seq, **loss_kwargs)
                if ds.all_reduce([float(torch.isfinite(loss))], tdist.ReduceOp.MIN)[0] == 0:
                    bad = True  # the whole optimizer step is dropped, on every rank
                    loss = ds.poisoned(loss, logp)
                ds.backward(engine, loss, dist.world_size)
                ds.optimizer_step(engine, skip=bad)
                w = float(mask.sum())
                if first_pass:
                    ent_sum, ent_tokens = ent_sum + float((ent.detach() * mask).sum()), ent_tokens + w
                acc.add(stats, w, float((mask.sum(-1) > 0).sum()))
            skipped += int(bad)
    stats = acc.result(mu * num_minibatches)
    if ent_tokens:
        stats["entropy_update"] = ent_sum / ent_tokens
    return stats, skipped


def format_warmup(engine, processor, stream: PromptStream, steps: int, *, plan: BatchPlan, dist: Dist,
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
        prompts = stream.next_batch(plan.minibatch_rows * dist.world_size)
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
        n_tok = ds.all_reduce([float(ro.completion_mask.sum())])[0]
        total = 0.0
        for chunk in chunks(list(range(ro.n)), plan.micro):
            batch = ro.micro_batch(chunk, dist.device)
            logp, _ = engine(**batch.model_inputs(), touch_vision=dist.world_size > 1, with_entropy=False)
            mask = batch.mask.to(logp.dtype)
            loss = -(logp * mask).sum() / n_tok
            ds.backward(engine, loss, dist.world_size)
            engine.step()
            total += float(loss.detach())
        losses.append(ds.all_reduce([total])[0])
    return losses

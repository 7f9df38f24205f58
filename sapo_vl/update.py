"""The update phase: π_old / reference log-probs and μ passes of minibatch optimizer steps, in one loop.

    source = micro_batch_source(rollout, policy, settings, device)   # rows one by one, or packed groups
    rollout.old_logprobs, entropy = rollout_logprobs(engine, rollout, source, settings)
    stats, skipped = update_policy(engine, rollout, source, settings, seed)

The loop is the same whatever the micro-batch layout: minibatches → micro-batches → forward → loss → backward →
optimizer step at the minibatch's end. Only the *source* differs (`MicroBatchSource`): `RowSource` (a row per
completion, rows shuffled one by one, `deepspeed.micro_batch_size` rows per micro-batch) or
`packing.PackedSource` (minibatches of whole groups, a prompt followed by its completions in one packed row,
micro-batches bounded by tokens). A micro-batch of either kind knows its completion rows and runs its own forward
(`logprobs`), and the loop takes everything else the loss needs from the `Rollout` by those rows.

Each micro-batch loss is normalised by the token / sequence counts of its whole minibatch over all ranks, so the
micro-batch gradients sum (and DeepSpeed's all-reduce averages) to exactly the minibatch gradient, however the
minibatch was cut. The number of micro-batches of a minibatch may vary (packed), so the accumulation boundary is
set on the engine before each micro-batch. A non-finite loss on any rank drops the whole optimizer step on every
rank (`ds.poisoned`, `ds.optimizer_step`).

`format_warmup` is the supervised warm-up on shuffled answers (`train.format_warmup_steps`).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

import torch
import torch.distributed as tdist

from . import ds
from .algorithms import LossInputs
from .batch_plan import BatchPlan
from .config import Config
from .data.stream import PromptStream
from .dist import Dist, all_reduce, world_size
from .engines.base import Samples
from .losses import LOSSES
from .metrics import UpdateStats
from .models.loading import encode_prompts
from .packing import PackedSource
from .rollout import Rollout

Tensor = torch.Tensor


@dataclass(frozen=True)
class UpdateSettings:
    """What the update phase needs of the config, built once per run (`UpdateSettings.from_config`)."""

    loss_fn: Callable
    """The configured policy loss (`sapo_vl.losses.LOSSES`)."""
    loss_kwargs: dict[str, Any]
    """Its keyword arguments (its config section, aggregation, KL)."""
    mu: int
    """Passes over each rollout (`algorithm.updates_per_rollout`)."""
    num_minibatches: int
    """Optimizer steps per pass."""
    temperature: float
    """The sampling temperature: log-probs are of the distribution the rollout sampled from."""
    shared_prefix: bool | str
    """Packed micro-batches of whole groups (`packing.PackedSource`); "auto": the same, each micro-batch run
    packed or as rows by the cost estimate; False: a row per completion (`RowSource`)."""
    micro_rows: int
    """Completions per row-path micro-batch (`deepspeed.micro_batch_size`, capped by the minibatch)."""
    micro_tokens: int
    """Padded tokens per packed micro-batch (`deepspeed.micro_batch_tokens`; 0 = what `micro_rows` rows hold)."""
    touch_vision: bool
    """Run the vision tower on a dummy image when a micro-batch has none (several ranks: ZeRO's collectives and
    gradient buckets stay in step)."""

    @classmethod
    def from_config(cls, cfg: Config, plan: BatchPlan) -> "UpdateSettings":
        a = cfg.algorithm
        return cls(loss_fn=LOSSES[a.name].fn, loss_kwargs=a.loss_kwargs(cfg.rollout.max_new_tokens),
                   mu=a.updates_per_rollout, num_minibatches=a.num_minibatches, temperature=cfg.rollout.temperature,
                   shared_prefix=a.shared_prefix, micro_rows=plan.micro,
                   micro_tokens=cfg.deepspeed.micro_batch_tokens, touch_vision=plan.world > 1)

    @property
    def optimizer_steps(self) -> int:
        return self.mu * self.num_minibatches


# ---------------------------------------------------------------------------------------------------- sources
class MicroBatch(Protocol):
    """One forward's worth of completion rows, in any layout (`rollout.RowBatch`, `packing.PackedBatch`)."""

    rows: list[int]
    """The rollout rows of its completions, in the order `logprobs` returns them."""

    @property
    def n_completion(self) -> int:
        """Lc': completion positions returned (the longest completion among `rows`)."""

    def logprobs(self, module, **kw) -> tuple[Tensor, Tensor]:
        """(n, Lc') log-probs and entropies through `module` (the DeepSpeed engine or the bare module)."""

    def counts(self) -> dict[str, float]:
        """real_tokens, padded_tokens, vision_patches: what the forward computed."""


class MicroBatchSource(Protocol):
    """How a rollout's rows become minibatches and micro-batches."""

    def minibatches(self, n_minibatches: int, generator: torch.Generator) -> list[list[int]]:
        """One pass's rows, shuffled and cut into `n_minibatches` minibatches."""

    def plan(self, rows: Sequence[int]) -> list[Any]:
        """The micro-batches of `rows`, as cheap plans (the same number on every rank)."""

    def batch(self, plan: Any) -> MicroBatch:
        """The tensors of one planned micro-batch, on the device."""


def chunks(rows: Sequence[int], size: int) -> list[list[int]]:
    rows = list(rows)
    return [rows[i : i + size] for i in range(0, len(rows), size)]


class RowSource:
    """A row per completion: rows shuffled one by one, `micro_rows` rows per micro-batch (`Rollout.row_batch`)."""

    def __init__(self, rollout: Rollout, micro_rows: int, device: torch.device):
        self.rollout, self.micro_rows, self.device = rollout, micro_rows, device

    def minibatches(self, n_minibatches: int, generator: torch.Generator) -> list[list[int]]:
        order = torch.randperm(self.rollout.n, generator=generator).tolist()
        size = self.rollout.n // n_minibatches
        return [order[m * size : (m + 1) * size] for m in range(n_minibatches)]

    def plan(self, rows: Sequence[int]) -> list[list[int]]:
        return chunks(rows, self.micro_rows)

    def batch(self, plan: list[int]):
        return self.rollout.row_batch(plan, self.device)


def micro_batch_source(rollout: Rollout, policy, u: UpdateSettings, device: torch.device) -> MicroBatchSource:
    """The configured layout for this rollout (`UpdateSettings.shared_prefix`)."""
    if u.shared_prefix:
        return PackedSource(rollout, policy, micro_rows=u.micro_rows, micro_tokens=u.micro_tokens, device=device,
                            auto=u.shared_prefix == "auto")
    return RowSource(rollout, u.micro_rows, device)


# ---------------------------------------------------------------------------------------------------- the passes
@torch.no_grad()
def rollout_logprobs(module, rollout: Rollout, source: MicroBatchSource, u: UpdateSettings) -> tuple[Tensor, Tensor]:
    """(N, Lc) log-probs and entropies of every completion row under `module` (π_old, or the reference)."""
    logp, ent = torch.zeros(rollout.completion_ids.shape), torch.zeros(rollout.completion_ids.shape)
    for plan in source.plan(range(rollout.n)):
        mb = source.batch(plan)
        lp, e = mb.logprobs(module, temperature=u.temperature, touch_vision=u.touch_vision)
        logp[mb.rows, : mb.n_completion] = lp.float().cpu()
        ent[mb.rows, : mb.n_completion] = e.float().cpu()
    return logp, ent


class UpdateTally:
    """The update phase's numbers: loss stats (`UpdateStats`), the first pass's entropy when no π_old pass
    measured it, and what the micro-batches computed (padding, vision patches, micro-batches, the share of them
    run packed)."""

    def __init__(self) -> None:
        self.stats = UpdateStats()
        self.ent_sum = self.ent_tokens = 0.0
        self.counts = {"real_tokens": 0.0, "padded_tokens": 0.0, "vision_patches": 0.0, "micro_batches": 0.0,
                       "packed": 0.0}

    def add(self, stats: dict[str, float], mask: Tensor, entropy: Tensor | None, mb: MicroBatch) -> None:
        w = float(mask.sum())
        self.stats.add(stats, w, float((mask.sum(-1) > 0).sum()))
        if entropy is not None:
            self.ent_sum, self.ent_tokens = self.ent_sum + float((entropy.detach() * mask).sum()), self.ent_tokens + w
        for k, v in mb.counts().items():
            self.counts[k] += v
        self.counts["micro_batches"] += 1

    def result(self, optimizer_steps: int) -> dict[str, float]:
        out = self.stats.result(optimizer_steps)
        if self.ent_tokens:
            out["entropy_update"] = self.ent_sum / self.ent_tokens
        out["padding_frac"] = 1.0 - self.counts["real_tokens"] / max(self.counts["padded_tokens"], 1.0)
        out["vision_patches"] = self.counts["vision_patches"]
        out["micro_batches"] = self.counts["micro_batches"]
        out["packed_frac"] = self.counts["packed"] / max(self.counts["micro_batches"], 1.0)
        return out


def update_policy(engine, rollout: Rollout, source: MicroBatchSource, u: UpdateSettings,
                  seed: int) -> tuple[dict[str, float], int]:
    """μ passes over the rollout, each `num_minibatches` optimizer steps; returns the update's stats (`UpdateTally`)
    and the number of skipped optimizer steps.

    π_old is `rollout.old_logprobs` when set, else the current log-probs detached (μ = 1, one minibatch).
    """
    tally = UpdateTally()
    gen = torch.Generator().manual_seed(seed)
    skipped = 0
    for epoch in range(u.mu):
        for rows in source.minibatches(u.num_minibatches, gen):
            first_pass = epoch == 0 and rollout.old_logprobs is None
            skipped += not minibatch_step(engine, rollout, source, rows, u, tally, first_pass=first_pass)
    return tally.result(u.optimizer_steps), skipped


def minibatch_step(engine, rollout: Rollout, source: MicroBatchSource, rows: list[int], u: UpdateSettings,
                   tally: UpdateTally, *, first_pass: bool) -> bool:
    """One optimizer step on minibatch `rows`, micro-batch by micro-batch; False when it was dropped (a
    non-finite loss on some rank)."""
    lm = rollout.loss_mask[rows]
    g_tok, g_seq = all_reduce([float(lm.sum()), float((lm.sum(-1) > 0).sum())])
    plans = source.plan(rows)
    bad = False
    for i, plan in enumerate(plans):
        mb = source.batch(plan)
        engine.set_gradient_accumulation_boundary(i == len(plans) - 1)
        logp, ent = mb.logprobs(engine, temperature=u.temperature, touch_vision=u.touch_vision,
                                with_entropy=first_pass)
        r, lc, device = mb.rows, mb.n_completion, logp.device
        mask = rollout.loss_mask[r, :lc].to(device)
        old = rollout.old_logprobs[r, :lc].to(device) if rollout.old_logprobs is not None else logp.detach()
        ref = rollout.ref_logprobs[r, :lc].to(device) if rollout.ref_logprobs is not None else None
        x = LossInputs(logp, old, rollout.token_advantages(r, lc).to(device), mask, ref_logprobs=ref,
                       global_tokens=g_tok, global_seqs=g_seq)
        loss, stats = u.loss_fn(x, **u.loss_kwargs)
        if all_reduce([float(torch.isfinite(loss))], tdist.ReduceOp.MIN)[0] == 0:
            bad = True  # the whole optimizer step is dropped, on every rank
            loss = ds.poisoned(loss, logp)
        ds.backward(engine, loss, world_size())
        ds.optimizer_step(engine, skip=bad)
        tally.add(stats, mask, ent if first_pass else None, mb)
    return not bad


# ---------------------------------------------------------------------------------------------------- warm-up
def format_warmup(engine, processor, stream: PromptStream, steps: int, *, plan: BatchPlan, dist: Dist,
                  seed: int) -> list[float]:
    """Supervised steps on shuffled answers (see `train.format_warmup_steps`); returns the per-step losses.

    Each step takes `minibatch_rows` prompts per rank, pairs them with a permutation of their own answers, and
    minimises the token-mean negative log-likelihood of "answer<|im_end|>" (`supervised_step`).
    """
    losses = []
    for s in range(steps):
        prompts = stream.next_batch(plan.minibatch_rows * dist.world_size)
        answers = [q.record.answer for q in prompts]
        random.Random(f"{seed}/warmup/{s}/{dist.rank}").shuffle(answers)
        losses.append(supervised_step(engine, supervised_rollout(processor, prompts, answers), plan.micro, dist))
    return losses


def supervised_rollout(processor, prompts: list, texts: list[str]) -> Rollout:
    """The prompts with one completion each, "text<|im_end|>" right-padded; an empty text gets an empty loss mask
    (its row still runs, so every rank runs the same micro-batches)."""
    tok = processor.tokenizer
    stop = tok.convert_tokens_to_ids("<|im_end|>")
    ids = [tok(t, add_special_tokens=False)["input_ids"] + [stop] for t in texts]
    width = max(len(i) for i in ids)
    samples = Samples(
        inputs=encode_prompts(processor, [q.record.prompt for q in prompts], [q.images for q in prompts]),
        completion_ids=torch.tensor([i + [tok.pad_token_id] * (width - len(i)) for i in ids]),  # (N, Lc)
        completion_mask=torch.tensor([[int(bool(t))] * len(i) + [0] * (width - len(i))
                                      for t, i in zip(texts, ids)]),  # (N, Lc)
        truncated=torch.zeros(len(ids), dtype=torch.bool), sample_logprobs=torch.zeros(len(ids), width),
        texts=list(texts), group_size=1, prefill_tokens=0,
    )
    return Rollout.from_samples([q.record for q in prompts], samples)


def supervised_step(engine, ro: Rollout, micro: int, dist: Dist) -> float:
    """One optimizer step of token-mean negative log-likelihood of `ro`'s completions (normalised over all ranks'
    tokens, through the same engine and micro-batches as the RL update); returns the step's loss over all ranks."""
    n_tok = all_reduce([float(ro.completion_mask.sum())])[0]
    total = 0.0
    parts = chunks(range(ro.n), micro)
    for i, rows in enumerate(parts):
        batch = ro.row_batch(rows, dist.device)
        engine.set_gradient_accumulation_boundary(i == len(parts) - 1)
        logp, _ = batch.logprobs(engine, touch_vision=dist.world_size > 1, with_entropy=False)
        mask = batch.mask.to(logp.dtype)  # (n, Lc)
        loss = -(logp * mask).sum() / max(n_tok, 1.0)
        ds.backward(engine, loss, dist.world_size)
        engine.step()
        total += float(loss.detach())
    return all_reduce([total])[0]

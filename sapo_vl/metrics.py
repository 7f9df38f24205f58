"""One step's numbers: the update's loss statistics accumulated over micro-batches and ranks (`UpdateStats`), and
the step's metrics over all ranks (`step_metrics`), as `metrics.jsonl` logs them.

Everything here is independent of how rows were cut into micro-batches or spread over ranks: sums where parts
add up, extremes as extremes, standard deviations from moments, sequence means weighted by sequences.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.distributed as tdist

from .dist import all_gather_objects, all_reduce, world_size

Tensor = torch.Tensor


@dataclass
class StepTiming:
    """Wall-clock marks of one step (seconds since the epoch) and the scoring seconds inside the rollout phase."""

    start: float
    rolled_out: float
    """End of rollout + scoring."""
    updated: float
    """End of the update phase."""
    score_s: float
    """Seconds spent scoring, inside [start, rolled_out]."""


RANK_TOTALS = ("vision_patches", "micro_batches", "score_timeouts")
"""Counts logged as their sum over ranks (everything else rank-local is averaged, or maxed / minned)."""


@dataclass
class GroupRewards:
    """The step's rewards and group advantages over the global batch (every rank holds the same tensors)."""

    rewards: Tensor
    """(N_global,) verifier rewards, rank order."""
    advantages: Tensor
    """(N_global,) group advantages."""
    zero_std_frac: float
    """Share of groups whose rewards have no spread (no signal)."""


@dataclass
class StepCounters:
    """Numbers of the step that do not come from the rollout rows: the optimizer's and the sampling loop's."""

    lr: float
    grad_norm: float
    """The last optimizer step's gradient norm before clipping (`ds.grad_norm`)."""
    skipped_steps: int
    """Optimizer steps skipped so far for a non-finite loss."""
    score_timeouts: float
    """This rank's verifier timeouts (logged as the sum over ranks)."""
    zero_std_frac_sampled: float
    """Zero-std share before DAPO's refill (global)."""
    dynamic_sampling_rounds: int
    prompts_skipped: float
    """Records the prompt stream skipped so far (bad images, too long), this rank's count."""


def step_metrics(rollout, groups: GroupRewards, *, update_stats: dict[str, float], entropy: Tensor | None,
                 timing: StepTiming, counters: StepCounters) -> dict[str, float]:
    """One step's metrics, over all ranks: rank-local values are averaged (every rank holds the same number of
    rows) except `*_max` / `*_min`, which take the extreme over ranks, and the counts in `RANK_TOTALS`, summed;
    per-verifier rewards are pooled over every rank's rows, and global values are used as they are.

    rollout: this rank's `Rollout` (after the update); entropy: (N, Lc) per-token entropies from the π_old pass,
    or None (then the update's own first-pass entropy is used).
    """
    m = dict(update_stats)
    if "entropy_update" in m:
        m["entropy"] = m.pop("entropy_update")
    cm = rollout.completion_mask
    if entropy is not None:
        m["entropy"] = float((entropy * cm).sum() / cm.sum().clamp(min=1))
        gap = (rollout.old_logprobs - rollout.sample_logprobs)[cm.bool()]
        m["rollout_logprob_gap"] = float(gap.abs().mean()) if gap.numel() else 0.0
    correct = [float(r.score) for r in rollout.scores]
    lengths = cm.sum(-1).float()
    local = {
        **m, "response_length_mean": float(lengths.mean()), "response_length_max": float(lengths.max()),
        "truncation_rate": float(rollout.truncated.float().mean()),
        "accuracy": sum(c >= 1 for c in correct) / max(len(correct), 1),
        "score_timeouts": counters.score_timeouts,
    }
    metrics = _over_ranks(local)
    metrics.update(_per_verifier(rollout, correct))
    gen_tokens = all_reduce([float(lengths.sum())])[0]
    rollout_s = timing.rolled_out - timing.score_s - timing.start
    r, adv = groups.rewards, groups.advantages
    metrics.update(
        reward_mean=float(r.mean()), reward_std=float(r.std()) if r.numel() > 1 else 0.0,
        advantage_mean=float(adv.mean()), advantage_std=float(adv.std()) if adv.numel() > 1 else 0.0,
        advantage_max=float(adv.max()), advantage_min=float(adv.min()), zero_std_frac=groups.zero_std_frac,
        lr=counters.lr, grad_norm=counters.grad_norm,
        tokens_per_s=gen_tokens / max(rollout_s, 1e-9), rollout_s=rollout_s, score_s=timing.score_s,
        update_s=timing.updated - timing.rolled_out, step_s=time.time() - timing.start,
        skipped_steps=counters.skipped_steps, score_per_s=rollout.n / max(timing.score_s, 1e-9),
        zero_std_frac_sampled=counters.zero_std_frac_sampled, dynamic_sampling_rounds=counters.dynamic_sampling_rounds,
        prompts_skipped=counters.prompts_skipped,
    )
    return metrics


def _over_ranks(local: dict[str, float]) -> dict[str, float]:
    """Rank-local values → global: means, `RANK_TOTALS` summed, `*_max` / `*_min` as extremes."""
    world = world_size()
    totals = sorted(k for k in local if k in RANK_TOTALS)
    means = sorted(k for k in local if not k.endswith(("_max", "_min")) and k not in RANK_TOTALS)
    red = all_reduce([local[k] for k in means + totals])
    out = {k: v / world for k, v in zip(means, red)}
    out.update(zip(totals, red[len(means) :]))
    for suffix, op in (("_max", tdist.ReduceOp.MAX), ("_min", tdist.ReduceOp.MIN)):  # extremes over all ranks
        ext = sorted(k for k in local if k.endswith(suffix))
        if ext:
            out.update(zip(ext, all_reduce([local[k] for k in ext], op)))
    return out


def _per_verifier(rollout, correct: list[float]) -> dict[str, float]:
    """`reward/<verifier>`: mean score of each verifier's rows, pooled over every rank's rows."""
    G = rollout.group_size
    mine: dict[str, list[float]] = {}  # name → [sum of scores, rows]
    for i, rec in enumerate(rollout.records):
        acc = mine.setdefault(rec.verifier, [0.0, 0.0])
        acc[0] += sum(correct[i * G : (i + 1) * G])
        acc[1] += G
    pooled: dict[str, list[float]] = {}
    for part in all_gather_objects(mine):
        for name, (total, n) in part.items():
            acc = pooled.setdefault(name, [0.0, 0.0])
            acc[0] += total
            acc[1] += n
    return {f"reward/{name}": pooled[name][0] / max(pooled[name][1], 1.0) for name in sorted(pooled)}


class UpdateStats:
    """The loss stats of one update phase, accumulated over micro-batches and then over all ranks, so that what is
    logged does not depend on how the rows were cut into micro-batches or spread over ranks:

    - the losses (`SUMMED`) carry global normalisers, so their micro-batch parts *sum* to the optimizer step's
      loss: summed over micro-batches and ranks, averaged over optimizer steps;
    - `*_max` / `*_min`: the extreme over micro-batches and ranks;
    - `*_std` with a `*_mean` beside it: recombined from token-weighted first and second moments;
    - means over sequences (`SEQUENCE_MEANS`): weighted by sequences;
    - every other stat is a mean over tokens, weighted by each micro-batch's loss tokens.
    """

    SUMMED = ("loss", "pg_loss")
    SEQUENCE_MEANS = ("ratio_seq_var", "seq_ratio_mean")

    def __init__(self) -> None:
        self.weighted: dict[str, float] = {}
        self.sums: dict[str, float] = {}
        self.maxes: dict[str, float] = {}
        self.mins: dict[str, float] = {}
        self.tokens = 0.0
        self.seqs = 0.0

    def add(self, stats: dict[str, float], tokens: float, seqs: float) -> None:
        """One micro-batch's stats (non-finite values count as 0), its loss tokens and its sequences."""
        self.tokens += tokens
        self.seqs += seqs
        for k, v in stats.items():
            v = v if math.isfinite(v) else 0.0
            if k in self.SUMMED:
                self.sums[k] = self.sums.get(k, 0.0) + v
            elif k.endswith("_max"):
                self.maxes[k] = max(self.maxes.get(k, -math.inf), v if tokens else -math.inf)
            elif k.endswith("_min"):
                self.mins[k] = min(self.mins.get(k, math.inf), v if tokens else math.inf)
            elif k.endswith("_std") and k[:-4] + "_mean" in stats:
                mean = stats[k[:-4] + "_mean"]
                self.weighted[k] = self.weighted.get(k, 0.0) + tokens * (v * v + mean * mean)  # E[x²]
            elif k in self.SEQUENCE_MEANS:
                self.weighted[k] = self.weighted.get(k, 0.0) + seqs * v
            else:
                self.weighted[k] = self.weighted.get(k, 0.0) + tokens * v

    def result(self, optimizer_steps: int) -> dict[str, float]:
        """Global values, the same on every rank."""
        keys, sum_keys = sorted(self.weighted), sorted(self.sums)
        red = all_reduce([self.weighted[k] for k in keys] + [self.tokens, self.seqs] +
                         [self.sums[k] for k in sum_keys])
        tokens, seqs = max(red[len(keys)], 1.0), max(red[len(keys) + 1], 1.0)
        out = {k: v / (seqs if k in self.SEQUENCE_MEANS else tokens) for k, v in zip(keys, red)}
        for k in keys:
            if k.endswith("_std") and k[:-4] + "_mean" in out:  # sqrt(E[x²] − E[x]²)
                out[k] = math.sqrt(max(out[k] - out[k[:-4] + "_mean"] ** 2, 0.0))
        out.update({k: v / max(optimizer_steps, 1) for k, v in zip(sum_keys, red[len(keys) + 2 :])})
        for found, op in ((self.maxes, tdist.ReduceOp.MAX), (self.mins, tdist.ReduceOp.MIN)):
            ext = sorted(found)  # every rank holds the same keys: the same loss function ran on each
            if ext:
                out.update(zip(ext, all_reduce([found[k] for k in ext], op)))
        return out

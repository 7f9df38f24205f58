"""What a run leaves behind: `metrics.jsonl`, sampled completions, TensorBoard events, optional wandb, PNG plots.

Only the main rank writes. On resume, metric lines after the resumed step are dropped so the file reads as one run.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PLOTS = {
    "reward": ["reward_mean", "accuracy"],
    "length": ["response_length_mean", "truncation_rate"],
    "entropy": ["entropy"],
    "gate": ["gate_weight_mean", "soft_suppressed_frac", "clip_frac_low", "clip_frac_high"],
}
"""Plot file → metrics drawn in it (those the run logged)."""


class RunLog:
    def __init__(self, run_dir: Path, *, is_main: bool, tensorboard: bool, wandb: bool, wandb_project: str,
                 config: dict[str, Any]):
        self.dir, self.is_main = run_dir, is_main
        self.tb = self.wb = None
        if not is_main:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "samples").mkdir(exist_ok=True)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / "tensorboard"))
        if wandb:
            import wandb as wb

            self.wb = wb.init(project=wandb_project, name=run_dir.name, config=config, dir=str(run_dir))

    @property
    def metrics_path(self) -> Path:
        return self.dir / "metrics.jsonl"

    def truncate_after(self, step: int) -> None:
        """Keep only the metric lines of steps < `step` (used when resuming from a checkpoint at `step`)."""
        if not self.is_main or not self.metrics_path.exists():
            return
        keep = [l for l in self.metrics_path.read_text().splitlines() if l and json.loads(l)["step"] < step]
        self.metrics_path.write_text("".join(l + "\n" for l in keep))

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if not self.is_main:
            return
        row = {"step": step, **{k: (v if isinstance(v, (int, float)) and math.isfinite(v) else str(v))
                                for k, v in metrics.items()}}
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if self.tb is not None:
            for k, v in metrics.items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    self.tb.add_scalar(k, v, step)
            self.tb.flush()
        if self.wb is not None:
            self.wb.log(metrics, step=step)

    def samples(self, step: int, rows: list[dict[str, Any]]) -> None:
        if not self.is_main:
            return
        with (self.dir / "samples" / f"step_{step:06d}.jsonl").open("w") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.exists():
            return []
        return [json.loads(l) for l in self.metrics_path.read_text().splitlines() if l]

    def plots(self) -> list[Path]:
        """One PNG per entry of PLOTS from metrics.jsonl; returns the files written."""
        if not self.is_main:
            return []
        rows = self.read_metrics()
        if not rows:
            return []
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        out = []
        (self.dir / "plots").mkdir(exist_ok=True)
        for name, keys in PLOTS.items():
            keys = [k for k in keys if any(isinstance(r.get(k), (int, float)) for r in rows)]
            if not keys:
                continue
            fig, ax = plt.subplots(figsize=(6, 3.5))
            for k in keys:
                pts = [(r["step"], r[k]) for r in rows if isinstance(r.get(k), (int, float))]
                ax.plot([p[0] for p in pts], [p[1] for p in pts], label=k, marker="." if len(pts) < 40 else None)
            ax.set_xlabel("step")
            ax.set_title(name)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
            fig.tight_layout()
            path = self.dir / "plots" / f"{name}.png"
            fig.savefig(path, dpi=100)
            plt.close(fig)
            out.append(path)
        return out

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wb is not None:
            self.wb.finish()


def sparkline(values: list[float], lo: float = 0.0, hi: float = 1.0) -> str:
    """A one-line text curve, for terminals."""
    bars = "▁▂▃▄▅▆▇█"
    span = (hi - lo) or 1.0
    return "".join(bars[min(len(bars) - 1, max(0, int((v - lo) / span * (len(bars) - 1) + 0.5)))] for v in values)


# ---------------------------------------------------------------------------------------------------- step metrics
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


def step_metrics(rollout, *, all_rewards, all_advantages, zero_std: float, update_stats: dict[str, float],
                 entropy, timing: StepTiming, extra: dict[str, float]) -> dict[str, float]:
    """One step's metrics, over all ranks: rank-local values are averaged (every rank holds the same number of
    rows) except `*_max` / `*_min`, which take the extreme over ranks, and the counts in `RANK_TOTALS`, summed; per-verifier rewards are pooled over every rank's rows, and global tensors are used as they are.

    rollout: this rank's `Rollout` (after the update); all_rewards / all_advantages: (N_global,) tensors;
    entropy: (N, Lc) per-token entropies from the π_old pass, or None (then the update's own first-pass entropy
    is used); extra: values that are already global (learning rate, grad norm, counters).
    """
    from . import ds

    extra = dict(extra)  # popped below; the caller's dict stays as it was
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
        "score_timeouts": float(extra.pop("score_timeouts", 0.0)),
    }
    import torch.distributed as tdist

    world = ds.world_size()
    totals = sorted(k for k in local if k in RANK_TOTALS)
    means = sorted(k for k in local if not k.endswith(("_max", "_min")) and k not in RANK_TOTALS)
    red = ds.all_reduce([local[k] for k in means + totals])
    metrics = {k: v / world for k, v in zip(means, red)}
    metrics.update(zip(totals, red[len(means) :]))
    for suffix, op in (("_max", tdist.ReduceOp.MAX), ("_min", tdist.ReduceOp.MIN)):  # extremes over all ranks
        ext = sorted(k for k in local if k.endswith(suffix))
        if ext:
            metrics.update(zip(ext, ds.all_reduce([local[k] for k in ext], op)))
    G = rollout.group_size
    per_verifier: dict[str, list[float]] = {}  # name → [sum of scores, rows]
    for i, rec in enumerate(rollout.records):
        acc = per_verifier.setdefault(rec.verifier, [0.0, 0.0])
        acc[0] += sum(correct[i * G : (i + 1) * G])
        acc[1] += G
    pooled: dict[str, list[float]] = {}
    for part in ds.all_gather_objects(per_verifier):
        for name, (total, n) in part.items():
            acc = pooled.setdefault(name, [0.0, 0.0])
            acc[0] += total
            acc[1] += n
    for name in sorted(pooled):
        metrics[f"reward/{name}"] = pooled[name][0] / max(pooled[name][1], 1.0)
    gen_tokens = ds.all_reduce([float(lengths.sum())])[0]
    rollout_s = timing.rolled_out - timing.score_s - timing.start
    adv = all_advantages
    metrics.update(
        reward_mean=float(all_rewards.mean()), reward_std=float(all_rewards.std()) if all_rewards.numel() > 1 else 0.0,
        advantage_mean=float(adv.mean()), advantage_std=float(adv.std()) if adv.numel() > 1 else 0.0,
        advantage_max=float(adv.max()), advantage_min=float(adv.min()), zero_std_frac=zero_std,
        lr=extra.pop("lr"), grad_norm=extra.pop("grad_norm"),
        tokens_per_s=gen_tokens / max(rollout_s, 1e-9), rollout_s=rollout_s, score_s=timing.score_s,
        update_s=timing.updated - timing.rolled_out, step_s=time.time() - timing.start,
        skipped_steps=extra.pop("skipped_steps"), score_per_s=rollout.n / max(timing.score_s, 1e-9),
        **extra,
    )
    return metrics


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
        import torch.distributed as tdist

        from . import ds

        keys, sum_keys = sorted(self.weighted), sorted(self.sums)
        red = ds.all_reduce([self.weighted[k] for k in keys] + [self.tokens, self.seqs] +
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
                out.update(zip(ext, ds.all_reduce([found[k] for k in ext], op)))
        return out

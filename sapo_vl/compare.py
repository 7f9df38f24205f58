"""`sapo-vl compare CONFIG --algorithms sapo,gspo,grpo --seeds 0,1,2`: one config under each algorithm and seed.

Every (algorithm, seed) trains in its own process (`python -m sapo_vl.train CONFIG algorithm.name=A train.seed=S
...`, or under `--launcher "deepspeed --num_gpus 8"`), into `OUT_DIR/RUN-NAME-A-sS`; `--jobs N` runs N at once,
each under a launcher on its own master port and GPUs (`sapo_vl.launch`).
The seed sets the data order, the initial weights' sampling and the rollout sampling, so the runs of one seed
see the same prompts whatever the algorithm. A run whose `metrics.jsonl` already reaches `train.steps` is not
run again; an unfinished one resumes from its last checkpoint (`train.resume=auto`), or, with none, has its folder
removed and starts over, so a long comparison survives a restart (`logging.save_every` sets how much is lost). Each algorithm keeps its own default clip ranges /
temperatures: only the config and overrides given here apply, to all runs alike.

Outputs in `OUT_DIR/RUN-NAME-comparison/`:
- `summary.json`: per algorithm, per seed the figures of `run_summary`, and their mean and std over seeds;
- `summary.md`: the table of mean ± std over seeds (the one to quote);
- `curves.png`: per algorithm the mean over seeds with a min-max band, for reward, per-sequence ratio
  variance, SAPO gate weight and GSPO/GRPO clip fraction.
"""
from __future__ import annotations

import argparse
import json
import math
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .config import ConfigError, load_config
from .launch import LaunchError, env_with, train_command

# figures of `run_summary` that the table shows, with their column titles
TABLE = [("final_reward", "final reward (last 10)"), ("mean_reward", "mean reward"),
         ("steps_to_threshold", "steps to {thr}"), ("collapses", "collapses"), ("ratio_seq_var", "ratio seq var"),
         ("gate_weight_mean", "gate weight"), ("soft_suppressed_frac", "soft-suppressed"),
         ("clip_frac", "clip frac (low+high)"), ("entropy_final", "entropy (last 10)")]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="YAML config shared by every run")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides applied to every run")
    p.add_argument("--algorithms", default="sapo,gspo,grpo", help="comma-separated (default sapo,gspo,grpo)")
    p.add_argument("--seeds", default="", help="comma-separated train.seed values (default: the config's seed)")
    p.add_argument("--jobs", type=int, default=1, help="runs at once (default 1)")
    p.add_argument("--launcher", default="", help='e.g. "deepspeed --num_gpus 8" (default: one plain process)')
    p.add_argument("--smooth", type=int, default=5, help="moving-average window of the reward curve used for "
                   "steps-to-threshold, collapses and the plot (default 5)")
    p.add_argument("--threshold", type=float, default=0.6, help="smoothed reward that counts as reached "
                   "(default 0.6)")


# ---------------------------------------------------------------------------------------------------- arithmetic
def smooth(xs: list[float], k: int) -> list[float]:
    """Trailing moving average: element i is the mean of xs[max(0, i-k+1) .. i]."""
    return [sum(xs[max(0, i - k + 1): i + 1]) / len(xs[max(0, i - k + 1): i + 1]) for i in range(len(xs))]


def steps_to_threshold(curve: list[float], threshold: float) -> int | None:
    """Steps run until `curve` (the smoothed reward) first reaches `threshold`: index of that step + 1; None if
    never."""
    return next((i + 1 for i, v in enumerate(curve) if v >= threshold), None)


def collapses(curve: list[float], drop: float = 0.2) -> int:
    """Episodes where `curve` (the smoothed reward) falls more than `drop` below its running best.

    An episode starts at the first step with curve[i] < best(0..i) - drop and ends when the curve is back within
    `drop` of the running best (that best as it stands then), so a long slump counts once and a second fall after a
    recovery counts again.
    """
    best, down, n = -math.inf, False, 0
    for v in curve:
        best = max(best, v)
        below = v < best - drop
        n += below and not down
        down = below
    return n


def mean_std(xs: list[float | None]) -> dict[str, float | int | None]:
    """Mean and sample std (n - 1; 0 for one value) of the non-None values; n = how many there were."""
    vals = [float(x) for x in xs if x is not None]
    if not vals:
        return {"mean": None, "std": None, "n": 0}
    m = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return {"mean": m, "std": sd, "n": len(vals)}


def _mean_of(rows: list[dict], key: str) -> float | None:
    vals = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
    return sum(vals) / len(vals) if vals else None


def run_summary(rows: list[dict], *, threshold: float = 0.6, smooth_k: int = 5, final_k: int = 10) -> dict:
    """The figures of one run from its metric rows (one per step, in step order).

    final_reward: mean reward_mean of the last `final_k` steps; mean_reward: over all steps;
    steps_to_threshold / collapses: on the `smooth_k` moving average (see those functions);
    ratio_seq_var, gate_weight_mean, soft_suppressed_frac, clip_frac_low, clip_frac_high: means over the steps
    that logged them (None when the algorithm logs none: gate figures for GSPO/GRPO, clip figures for SAPO);
    clip_frac = clip_frac_low + clip_frac_high; gate_weight_min: the lowest step mean of the gate weight;
    entropy_final: mean `entropy` (per token, of the sampling policy) over the last `final_k` steps, the sign of
    an entropy collapse.
    """
    if not rows:
        raise ValueError("no metric rows")
    rew = [float(r["reward_mean"]) for r in rows]
    curve = smooth(rew, smooth_k)
    out = {"steps": len(rows), "final_reward": sum(rew[-final_k:]) / len(rew[-final_k:]),
           "mean_reward": sum(rew) / len(rew), "steps_to_threshold": steps_to_threshold(curve, threshold),
           "collapses": collapses(curve)}
    for k in ("ratio_seq_var", "gate_weight_mean", "soft_suppressed_frac", "clip_frac_low", "clip_frac_high"):
        out[k] = _mean_of(rows, k)
    gates = [r["gate_weight_mean"] for r in rows if isinstance(r.get("gate_weight_mean"), (int, float))]
    out["gate_weight_min"] = min(gates) if gates else None
    out["entropy_final"] = _mean_of(rows[-final_k:], "entropy")
    lo, hi = out["clip_frac_low"], out["clip_frac_high"]
    out["clip_frac"] = None if lo is None and hi is None else (lo or 0.0) + (hi or 0.0)
    return out


def summarize(runs: dict[str, dict[int, list[dict]]], *, threshold: float = 0.6, smooth_k: int = 5) -> dict:
    """{algorithm: {"seeds": {seed: run_summary}, "over_seeds": {figure: mean_std}}} for runs[algorithm][seed].

    Steps-to-threshold over seeds averages the seeds that reached it; `reached` counts them."""
    out = {}
    for a, by_seed in runs.items():
        per = {s: run_summary(rows, threshold=threshold, smooth_k=smooth_k) for s, rows in by_seed.items()}
        keys = list(next(iter(per.values())))
        over = {k: mean_std([p[k] for p in per.values()]) for k in keys if k != "steps"}
        over["reached"] = sum(p["steps_to_threshold"] is not None for p in per.values())
        out[a] = {"seeds": per, "over_seeds": over}
    return out


# ---------------------------------------------------------------------------------------------------- running
def _load_rows(path: Path) -> list[dict]:
    rows = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{i}: not a JSON line ({err.msg})") from None
        if "step" not in rows[-1] or "reward_mean" not in rows[-1]:
            raise ValueError(f"{path}:{i}: a metric row needs 'step' and 'reward_mean'")
    return rows


def complete(path: Path, steps: int) -> bool:
    """Whether `path` (a metrics.jsonl) logged the last step, steps-1 (the loop always logs it; it logs it last)."""
    if not path.exists():
        return False
    return any(r["step"] >= steps - 1 for r in _load_rows(path))


def _prepare(run_dir: Path) -> None:
    """An unfinished run resumes from its last checkpoint; without one, its partial log goes (fresh start)."""
    from . import ds

    if run_dir.exists() and ds.latest_checkpoint(run_dir) is None:
        shutil.rmtree(run_dir)


def run(args: argparse.Namespace) -> int:
    algos = [a.strip() for a in args.algorithms.split(",") if a.strip()]
    try:
        cfg = load_config(args.config, args.overrides)
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()] if args.seeds else [cfg.train.seed]
        for a in algos:
            load_config(args.config, [*args.overrides, f"algorithm.name={a}"])
    except ValueError as err:  # ConfigError is one, and so is a seed that is not an integer
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not algos or args.jobs < 1:
        print("error: --algorithms needs at least one name and --jobs must be >= 1", file=sys.stderr)
        return 2
    base, out, steps = cfg.logging.run_name or "compare", Path(cfg.logging.out_dir), cfg.train.steps
    todo, paths = [], {}
    for s in seeds:  # seed-major, so a partial comparison holds every algorithm of the first seeds
        for a in algos:
            name = f"{base}-{a}-s{s}"
            paths[a, s] = out / name / "metrics.jsonl"
            try:
                done = complete(paths[a, s], steps)
            except ValueError as err:  # a damaged log: say which line rather than guess what to keep
                print(f"error: {err}", file=sys.stderr)
                return 2
            if done:
                print(f"== {a} seed {s}: complete, not run again ({paths[a, s]})", flush=True)
                continue
            todo.append((a, s, [args.config, *args.overrides, f"algorithm.name={a}", f"train.seed={s}",
                                f"logging.run_name={name}", "train.resume=auto"]))
    t0, running, failed = time.time(), [], []
    while todo or running:
        while todo and len(running) < args.jobs:
            a, s, rest = todo.pop(0)
            slot = min(set(range(args.jobs)) - {r[3] for r in running})  # its own GPUs and port (sapo_vl.launch)
            try:
                head, env = train_command(args.launcher, slot=slot, jobs=args.jobs)
            except LaunchError as err:
                print(f"error: {err}", file=sys.stderr)
                return 2
            cmd = [*head, *rest]
            _prepare(paths[a, s].parent)
            paths[a, s].parent.mkdir(parents=True, exist_ok=True)
            log = paths[a, s].parent / "compare.log"
            print(f"== {a} seed {s}: {shlex.join(cmd)}  (output: {log})", flush=True)
            running.append((a, s, subprocess.Popen(cmd, stdout=log.open("a"), stderr=subprocess.STDOUT,
                                                   env=env_with(env)), slot))
        time.sleep(1.0)
        for item in [r for r in running if r[2].poll() is not None]:
            running.remove(item)
            a, s, proc, _ = item
            ok = proc.returncode == 0 and complete(paths[a, s], steps)
            print(f"== {a} seed {s}: {'done' if ok else 'FAILED'} after {time.time() - t0:.0f}s", flush=True)
            if not ok:
                failed.append((a, s))
    if failed:
        for a, s in failed:
            print(f"error: the {a} seed {s} run failed; see {paths[a, s].parent / 'compare.log'}", file=sys.stderr)
        return 1
    runs = {a: {s: _load_rows(paths[a, s]) for s in seeds} for a in algos}
    return report(runs, out / f"{base}-comparison", threshold=args.threshold, smooth_k=args.smooth)


# ---------------------------------------------------------------------------------------------------- report
def _fmt(ms: dict, digits: int = 3) -> str:
    if ms["mean"] is None:
        return "–"
    return f"{ms['mean']:.{digits}f} ± {ms['std']:.{digits}f}"


def table(summary: dict, threshold: float) -> str:
    """Markdown: one row per algorithm, mean ± std over seeds of each figure of TABLE."""
    head = ["algorithm", "seeds"] + [t.format(thr=threshold) for _, t in TABLE]
    md = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for a, s in summary.items():
        o = s["over_seeds"]
        cells = [a, str(len(s["seeds"]))]
        for k, _ in TABLE:
            if k == "steps_to_threshold":
                cells.append(f"{_fmt(o[k], 0)} ({o['reached']}/{len(s['seeds'])} reached)"
                             if o[k]["mean"] is not None else f"never (0/{len(s['seeds'])})")
            elif k == "collapses":
                cells.append(_fmt(o[k], 1))
            else:
                cells.append(_fmt(o[k], 4 if k == "ratio_seq_var" else 3))
        md.append("| " + " | ".join(cells) + " |")
    return "\n".join(md) + "\n"


def plot(runs: dict[str, dict[int, list[dict]]], path: Path, smooth_k: int = 5) -> None:
    """Per algorithm the mean over seeds and a min-max band: reward (smoothed), ratio_seq_var, SAPO's gate weight
    and GSPO/GRPO's clip fraction (low + high)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def series(rows: list[dict], key: str) -> list[float] | None:
        if key == "clip_frac":
            if not any("clip_frac_low" in r for r in rows):
                return None
            return [r.get("clip_frac_low", 0.0) + r.get("clip_frac_high", 0.0) for r in rows]
        if not any(isinstance(r.get(key), (int, float)) for r in rows):
            return None
        return [float(r[key]) if isinstance(r.get(key), (int, float)) else math.nan for r in rows]

    panels = [("reward_mean", f"reward (moving average of {smooth_k})"), ("ratio_seq_var", "per-sequence ratio variance"),
              ("gate_weight_mean", "SAPO gate weight"), ("clip_frac", "clip fraction (low + high)")]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    for ax, (key, title) in zip(axes, panels):
        for i, (a, by_seed) in enumerate(runs.items()):
            curves = [series(rows, key) for rows in by_seed.values()]
            curves = [smooth(c, smooth_k) if key == "reward_mean" else c for c in curves if c is not None]
            if not curves:
                continue
            n = min(len(c) for c in curves)
            cols = [[c[t] for c in curves] for t in range(n)]
            mean = [sum(v) / len(v) for v in cols]
            color = f"C{i}"
            ax.plot(range(n), mean, color=color, label=a)
            ax.fill_between(range(n), [min(v) for v in cols], [max(v) for v in cols], color=color, alpha=0.2)
        if key == "ratio_seq_var":  # spikes of 10-100 next to a baseline of 0.01: a log scale shows both
            ax.set_yscale("symlog", linthresh=1e-3)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("mean over seeds, band = min..max", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def report(runs: dict[str, dict[int, list[dict]]], out: Path, *, threshold: float = 0.6, smooth_k: int = 5) -> int:
    """Write OUT/summary.json, OUT/summary.md and OUT/curves.png for runs[algorithm][seed] = metric rows; print
    the table."""
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(runs, threshold=threshold, smooth_k=smooth_k)
    meta = {"threshold": threshold, "smooth": smooth_k, "final_window": 10, "collapse_drop": 0.2}
    (out / "summary.json").write_text(json.dumps({"settings": meta, "algorithms": summary}, indent=1) + "\n")
    md = table(summary, threshold)
    (out / "summary.md").write_text(md)
    plot(runs, out / "curves.png", smooth_k)
    print(md, end="")
    print(f"summary: {out / 'summary.json'}  table: {out / 'summary.md'}  plot: {out / 'curves.png'}")
    return 0

"""`sapo-vl compare CONFIG --algorithms sapo,gspo,grpo --seeds 0,1,2`: one config under each algorithm and seed.

Every (algorithm, seed) trains in its own process (`python -m sapo_vl.train CONFIG algorithm.name=A train.seed=S
...`, or under `--launcher "deepspeed --num_gpus 8"`), into `OUT_DIR/RUN-NAME-A-sS`; `--jobs N` runs N at once,
each under a launcher on its own master port and GPUs (`sapo_vl.launch`).
The seed sets the data order, the initial weights' sampling and the rollout sampling, so the runs of one seed
see the same prompts whatever the algorithm. A config's `compare.variants` (name → overrides) repeats the whole
comparison per variant, into `OUT_DIR/RUN-NAME-VARIANT-A-sS`. A run whose `metrics.jsonl` already reaches
`train.steps` is not run again; an unfinished one resumes from its last checkpoint (`train.resume=auto`), or, with
none, has its folder removed and starts over, so a long comparison survives a restart (`logging.save_every` sets
how much is lost). Each algorithm keeps its own default clip ranges / temperatures: only the config, the
variant and the overrides given here apply, to all runs alike.

Outputs in `OUT_DIR/RUN-NAME-comparison/`:
- `summary.json`: per algorithm, per seed the figures of `run_summary` (every diagnostic the loss registry
  declares, `sapo_vl.losses.summary_stats`), their mean and std over seeds, and the paired per-seed differences
  between algorithms (`paired`); with variants, the same per variant under "variants";
- `summary.md`: per variant the results table (mean ± std over seeds), the diagnostics table and the paired
  differences;
- `curves.png` (with variants `curves-VARIANT.png`): per algorithm the mean over seeds with a min-max band, for
  reward, within-sequence variance of log r, the fraction of tokens with |r − 1| > 0.2, SAPO's gate weight and
  GSPO/GRPO's clip fraction.
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

from .losses import summary_stats

# figures of `run_summary` that the results table shows, with their column titles
TABLE = [("final_reward", "final reward (last 10)"), ("mean_reward", "mean reward"),
         ("steps_to_threshold", "steps to {thr}"), ("collapses", "collapses"), ("entropy_final", "entropy (last 10)")]
RAW_RATIO_MOMENTS = ("ratio_mean", "ratio_std", "ratio_max", "ratio_min")
"""Registry stats left out of the diagnostics table (they stay in summary.json)."""
PAIRED = ("final_reward", "mean_reward")
"""Figures compared seed by seed between algorithms."""


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


def steps_to_threshold(curve: list[float], threshold: float, steps: list[int] | None = None) -> int | None:
    """Steps run until `curve` (the smoothed reward) first reaches `threshold`: that row's step + 1 (`steps`: the
    logged step of each row, which differs from the row index when `logging.log_every` > 1; default the index);
    None if never."""
    steps = list(range(len(curve))) if steps is None else steps
    return next((steps[i] + 1 for i, v in enumerate(curve) if v >= threshold), None)


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
    """The figures of one run from its metric rows (in step order; one per logged step).

    final_reward: mean reward_mean of the last `final_k` rows; mean_reward: over all rows;
    steps_to_threshold / collapses: on the `smooth_k`-row moving average (see those functions; the steps are the
    rows' `step` + 1); every diagnostic of `sapo_vl.losses.summary_stats()`: the mean over the rows that logged it,
    except `*_max` / `*_min` (the extreme over rows); None when the run's loss logs none (gate figures for
    GSPO/GRPO, clip figures for SAPO); clip_frac = clip_frac_low + clip_frac_high; gate_weight_min: the lowest
    row mean of the gate weight; entropy_final: mean `entropy` (per token, of the sampling policy) over the last
    `final_k` rows, the sign of an entropy collapse.
    """
    if not rows:
        raise ValueError("no metric rows")
    rew = [float(r["reward_mean"]) for r in rows]
    curve = smooth(rew, smooth_k)
    out = {"steps": len(rows), "final_reward": sum(rew[-final_k:]) / len(rew[-final_k:]),
           "mean_reward": sum(rew) / len(rew),
           "steps_to_threshold": steps_to_threshold(curve, threshold, [int(r["step"]) for r in rows]),
           "collapses": collapses(curve)}
    for k in summary_stats():
        vals = [float(r[k]) for r in rows if isinstance(r.get(k), (int, float))]
        pick = min if k.endswith("_min") else max if k.endswith("_max") else (lambda v: sum(v) / len(v))
        out[k] = pick(vals) if vals else None
    gates = [r["gate_weight_mean"] for r in rows if isinstance(r.get("gate_weight_mean"), (int, float))]
    out["gate_weight_min"] = min(gates) if gates else None
    out["entropy_final"] = _mean_of(rows[-final_k:], "entropy")
    lo, hi = out.get("clip_frac_low"), out.get("clip_frac_high")
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


def sign_flip_p(diffs: list[float]) -> float | None:
    """Two-sided exact p-value of the paired sign-flip (randomisation) test of mean difference 0: the share of
    the 2^n sign patterns whose |mean| is at least the observed one. None for n = 0 or n > 16. With n = 5 seeds the
    smallest possible value is 2/32 = 0.0625."""
    n = len(diffs)
    if n == 0 or n > 16:
        return None
    observed = abs(sum(diffs)) - 1e-12
    hits = sum(abs(sum(d if (mask >> i) & 1 else -d for i, d in enumerate(diffs))) >= observed
               for mask in range(2 ** n))
    return hits / 2 ** n


def paired(summary: dict, figures: tuple[str, ...] = PAIRED) -> dict:
    """Per pair of algorithms "A-B" and figure: the per-seed differences A − B over the seeds both ran, their mean
    and std, the seeds where A is higher / lower, the paired t statistic (mean / (std / √n); None when std is 0
    or n < 2) and the exact sign-flip p-value (`sign_flip_p`)."""
    algos = list(summary)
    out: dict = {}
    for i, a in enumerate(algos):
        for b in algos[i + 1:]:
            seeds = [s for s in summary[a]["seeds"] if s in summary[b]["seeds"]]
            for fig in figures:
                d = {s: summary[a]["seeds"][s][fig] - summary[b]["seeds"][s][fig] for s in seeds
                     if summary[a]["seeds"][s][fig] is not None and summary[b]["seeds"][s][fig] is not None}
                ms = mean_std(list(d.values()))
                t = (ms["mean"] / (ms["std"] / math.sqrt(ms["n"]))) if ms["n"] > 1 and ms["std"] else None
                out.setdefault(f"{a}-{b}", {})[fig] = {
                    "diffs": d, **ms, "higher": sum(v > 0 for v in d.values()), "lower": sum(v < 0 for v in d.values()),
                    "t": t, "p_sign_flip": sign_flip_p(list(d.values()))}
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


def check_variants(variants: dict) -> None:
    """ConfigError unless `compare.variants` maps folder-safe names to lists of dotted key=value overrides."""
    for name, over in variants.items():
        if not (isinstance(name, str) and name.replace("_", "").replace(".", "").isalnum()):
            raise ConfigError(f"compare.variants: name {name!r} must be letters, digits, '_' or '.' (it names run "
                              "folders)")
        if not (isinstance(over, list) and all(isinstance(o, str) and "=" in o for o in over)):
            raise ConfigError(f"compare.variants.{name}: must be a list of dotted key=value overrides (got {over!r})")


def _variant_overrides(cfg, variant: str | None) -> list[str]:
    return [] if variant is None else list(cfg.compare.variants[variant])


def _run_name(base: str, variant: str | None, algo: str, seed: int) -> str:
    return f"{base}-{algo}-s{seed}" if variant is None else f"{base}-{variant}-{algo}-s{seed}"


def run(args: argparse.Namespace) -> int:
    algos = [a.strip() for a in args.algorithms.split(",") if a.strip()]
    try:
        cfg = load_config(args.config, args.overrides)
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()] if args.seeds else [cfg.train.seed]
        check_variants(cfg.compare.variants)
        variants = list(cfg.compare.variants) or [None]
        for v in variants:
            for a in algos:
                load_config(args.config, [*args.overrides, *_variant_overrides(cfg, v), f"algorithm.name={a}"])
    except ValueError as err:  # ConfigError is one, and so is a seed that is not an integer
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not algos or args.jobs < 1:
        print("error: --algorithms needs at least one name and --jobs must be >= 1", file=sys.stderr)
        return 2
    base, out, steps = cfg.logging.run_name or "compare", Path(cfg.logging.out_dir), cfg.train.steps
    todo, paths = [], {}
    for s in seeds:  # seed-major, so a partial comparison holds every algorithm and variant of the first seeds
        for v in variants:
            for a in algos:
                name = _run_name(base, v, a, s)
                paths[v, a, s] = out / name / "metrics.jsonl"
                try:
                    done = complete(paths[v, a, s], steps)
                except ValueError as err:  # a damaged log: say which line rather than guess what to keep
                    print(f"error: {err}", file=sys.stderr)
                    return 2
                if done:
                    print(f"== {name}: complete, not run again ({paths[v, a, s]})", flush=True)
                    continue
                todo.append(((v, a, s), [args.config, *args.overrides, *_variant_overrides(cfg, v),
                                         f"algorithm.name={a}", f"train.seed={s}", f"logging.run_name={name}",
                                         "train.resume=auto"]))
    try:
        failed = execute(todo, paths, steps, jobs=args.jobs, launcher=args.launcher)
    except LaunchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if failed:
        for key in failed:
            print(f"error: the run {paths[key].parent.name} failed; see {paths[key].parent / 'compare.log'}",
                  file=sys.stderr)
        return 1
    runs = {v: {a: {s: _load_rows(paths[v, a, s]) for s in seeds} for a in algos} for v in variants}
    return report(runs, out / f"{base}-comparison", threshold=args.threshold, smooth_k=args.smooth)


def execute(todo: list, paths: dict, steps: int, *, jobs: int, launcher: str) -> list:
    """Run the (key, training arguments) pairs of `todo`, `jobs` at a time, each under `launcher` on its own slot
    (master port and GPUs, `sapo_vl.launch`) and into the folder of `paths[key]`; returns the keys whose run failed
    (non-zero exit, or a log that does not reach `steps`). LaunchError when the launcher's jobs would share GPUs."""
    t0, running, failed = time.time(), [], []
    while todo or running:
        while todo and len(running) < jobs:
            key, rest = todo.pop(0)
            slot = min(set(range(jobs)) - {r[2] for r in running})
            head, env = train_command(launcher, slot=slot, jobs=jobs)
            cmd = [*head, *rest]
            _prepare(paths[key].parent)
            paths[key].parent.mkdir(parents=True, exist_ok=True)
            log = paths[key].parent / "compare.log"
            print(f"== {paths[key].parent.name}: {shlex.join(cmd)}  (output: {log})", flush=True)
            running.append((key, subprocess.Popen(cmd, stdout=log.open("a"), stderr=subprocess.STDOUT,
                                                  env=env_with(env)), slot))
        time.sleep(1.0)
        for item in [r for r in running if r[1].poll() is not None]:
            running.remove(item)
            key, proc, _ = item
            ok = proc.returncode == 0 and complete(paths[key], steps)
            print(f"== {paths[key].parent.name}: {'done' if ok else 'FAILED'} after {time.time() - t0:.0f}s",
                  flush=True)
            if not ok:
                failed.append(key)
    return failed


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
                cells.append(_fmt(o[k], 3))
        md.append("| " + " | ".join(cells) + " |")
    return "\n".join(md) + "\n"


def diagnostics_table(summary: dict) -> str:
    """Markdown: one row per algorithm, mean ± std over seeds of every registry diagnostic (`summary_stats`, less
    the raw ratio moments) that some compared algorithm logged."""
    keys = [k for k in summary_stats() if k not in RAW_RATIO_MOMENTS
            and any(s["over_seeds"][k]["n"] for s in summary.values())]
    md = ["| " + " | ".join(["algorithm", *keys]) + " |", "|" + "---|" * (len(keys) + 1)]
    for a, s in summary.items():
        md.append("| " + " | ".join([a, *(_fmt(s["over_seeds"][k], 4) for k in keys)]) + " |")
    return "\n".join(md) + "\n"


def paired_table(pairs: dict) -> str:
    """Markdown: per pair and figure, the per-seed differences, mean ± std, higher/lower seeds, t and sign-flip p."""
    md = ["| pair | figure | per-seed differences | mean ± std | higher / lower | t | p (sign-flip) |",
          "|---|---|---|---|---|---|---|"]
    for pair, figs in pairs.items():
        for fig, d in figs.items():
            diffs = ", ".join(f"{v:+.3f}" for v in d["diffs"].values())
            t = "–" if d["t"] is None else f"{d['t']:.2f}"
            p = "–" if d["p_sign_flip"] is None else f"{d['p_sign_flip']:.3f}"
            md.append(f"| {pair.replace('-', ' − ')} | {fig} | {diffs} | {_fmt(d, 3)} | {d['higher']} / {d['lower']} "
                      f"| {t} | {p} |")
    return "\n".join(md) + "\n"


PANELS = [("reward_mean", "reward (moving average of {k})"), ("logratio_seq_var", "within-sequence var of log r"),
          ("ratio_dev_gt02_frac", "tokens with |r - 1| > 0.2"), ("gate_weight_mean", "SAPO gate weight"),
          ("clip_frac", "clip fraction (low + high)")]
"""The curves' panels: metric (clip_frac = clip_frac_low + clip_frac_high) and title."""


def _series(rows: list[dict], key: str) -> list[float] | None:
    if key == "clip_frac":
        if not any("clip_frac_low" in r for r in rows):
            return None
        return [r.get("clip_frac_low", 0.0) + r.get("clip_frac_high", 0.0) for r in rows]
    if not any(isinstance(r.get(key), (int, float)) for r in rows):
        return None
    return [float(r[key]) if isinstance(r.get(key), (int, float)) else math.nan for r in rows]


def plot(runs: dict[str, dict[int, list[dict]]], path: Path, smooth_k: int = 5, title: str = "") -> None:
    """Per algorithm the mean over seeds and a min-max band of each panel of PANELS (reward smoothed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PANELS), figsize=(4 * len(PANELS), 3.6))
    for ax, (key, name) in zip(axes, PANELS):
        for i, (a, by_seed) in enumerate(runs.items()):
            curves = [_series(rows, key) for rows in by_seed.values()]
            curves = [smooth(c, smooth_k) if key == "reward_mean" else c for c in curves if c is not None]
            if not curves:
                continue
            steps = [int(r["step"]) for r in next(iter(by_seed.values()))]
            n = min(len(c) for c in curves + [steps])
            cols = [[c[t] for c in curves] for t in range(n)]
            color = f"C{i}"
            ax.plot(steps[:n], [sum(v) / len(v) for v in cols], color=color, label=a)
            ax.fill_between(steps[:n], [min(v) for v in cols], [max(v) for v in cols], color=color, alpha=0.2)
        if key == "logratio_seq_var":  # spikes next to a small baseline: a log scale shows both
            ax.set_yscale("symlog", linthresh=1e-4)
        ax.set_title(name.format(k=smooth_k), fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{title}mean over seeds, band = min..max", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def report(runs: dict, out: Path, *, threshold: float = 0.6, smooth_k: int = 5) -> int:
    """Write OUT/summary.json, OUT/summary.md and the curves for runs[variant][algorithm][seed] = metric rows
    (variant None: no variants; a plain runs[algorithm][seed] is read as that); print the tables."""
    if not all(isinstance(v, dict) and all(isinstance(x, dict) for x in v.values()) for v in runs.values()):
        runs = {None: runs}
    out.mkdir(parents=True, exist_ok=True)
    meta = {"threshold": threshold, "smooth": smooth_k, "final_window": 10, "collapse_drop": 0.2}
    parts, md, plots = {}, [], []
    for v, by_algo in runs.items():
        summary = summarize(by_algo, threshold=threshold, smooth_k=smooth_k)
        parts[v] = {"algorithms": summary, "paired": paired(summary)}
        md += ([] if v is None else [f"### {v}\n"]) + [table(summary, threshold), "\n" + diagnostics_table(summary),
                                                        "\n" + paired_table(parts[v]["paired"]), "\n"]
        plots.append(out / ("curves.png" if v is None else f"curves-{v}.png"))
        plot(by_algo, plots[-1], smooth_k, title="" if v is None else f"{v}: ")
    body = parts[None] if list(parts) == [None] else {"variants": parts}
    (out / "summary.json").write_text(json.dumps({"settings": meta, **body}, indent=1) + "\n")
    text = "".join(md).rstrip("\n") + "\n"
    (out / "summary.md").write_text(text)
    print(text, end="")
    print(f"summary: {out / 'summary.json'}  tables: {out / 'summary.md'}  plots: {', '.join(map(str, plots))}")
    return 0

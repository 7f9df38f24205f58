"""`sapo-vl compare CONFIG --algorithms sapo,gspo,grpo`: the same config, seed and data under each algorithm.

Each algorithm trains in its own process (`python -m sapo_vl.train CONFIG algorithm.name=NAME ...`, or under
`--launcher "deepspeed --num_gpus 8"`), into `OUT_DIR/RUN-NAME`. Then one PNG of the reward curves and one table
(Markdown and CSV) of first / last / best reward and accuracy, the paper's comparison in miniature.
"""
from __future__ import annotations

import argparse
import csv
import json
import shlex
import subprocess
import sys
from pathlib import Path

from .config import ConfigError, load_config


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="YAML config shared by every run")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides applied to every run")
    p.add_argument("--algorithms", default="sapo,gspo,grpo", help="comma-separated (default sapo,gspo,grpo)")
    p.add_argument("--launcher", default="", help='e.g. "deepspeed --num_gpus 8" (default: one plain process)')
    p.add_argument("--smooth", type=int, default=5, help="moving-average window of the plotted curves (default 5)")


def _smooth(xs: list[float], k: int) -> list[float]:
    return [sum(xs[max(0, i - k + 1) : i + 1]) / len(xs[max(0, i - k + 1) : i + 1]) for i in range(len(xs))]


def run(args: argparse.Namespace) -> int:
    algos = [a.strip() for a in args.algorithms.split(",") if a.strip()]
    try:
        cfg = load_config(args.config, args.overrides)
        for a in algos:
            load_config(args.config, [*args.overrides, f"algorithm.name={a}"])
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    base = cfg.logging.run_name or "compare"
    out = Path(cfg.logging.out_dir)
    launcher = shlex.split(args.launcher) if args.launcher else [sys.executable]
    runs = {}
    for a in algos:
        name = f"{base}-{a}"
        cmd = [*launcher, "-m", "sapo_vl.train", args.config, *args.overrides, f"algorithm.name={a}",
               f"logging.run_name={name}"]
        print(f"== {a}: {' '.join(cmd)}", flush=True)
        if subprocess.run(cmd).returncode != 0:
            print(f"error: the {a} run failed; see its output above", file=sys.stderr)
            return 1
        runs[a] = [json.loads(l) for l in (out / name / "metrics.jsonl").read_text().splitlines() if l]
    return report(runs, out / f"{base}-comparison", smooth=args.smooth)


def report(runs: dict[str, list[dict]], stem: Path, smooth: int = 5) -> int:
    """Write STEM.png (reward curves), STEM.md and STEM.csv (one row per algorithm); print the table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stem.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    fig, ax = plt.subplots(figsize=(7, 4))
    for a, ms in runs.items():
        steps = [m["step"] for m in ms]
        rew = [m["reward_mean"] for m in ms]
        ax.plot(steps, _smooth(rew, smooth), label=a)
        tail = rew[-max(1, len(rew) // 10):]
        rows.append({"algorithm": a, "steps": len(rew), "reward_first": rew[0], "reward_last10pct": sum(tail) / len(tail),
                     "reward_best": max(rew), "accuracy_last": ms[-1].get("accuracy", float("nan"))})
    ax.set_xlabel("step")
    ax.set_ylabel(f"mean reward (moving average of {smooth})")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(stem.with_suffix(".png"), dpi=100)
    plt.close(fig)
    keys = list(rows[0])
    with stem.with_suffix(".csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)
    md = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    md += ["| " + " | ".join(fmt(r[k]) for k in keys) + " |" for r in rows]
    stem.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    print(f"plot: {stem.with_suffix('.png')}  table: {stem.with_suffix('.md')}, {stem.with_suffix('.csv')}")
    return 0

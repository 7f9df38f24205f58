"""Seconds per training step, split into rollout, scoring and update, from a short real run of the demo config.

    .venv/bin/python bench/bench_step.py [CONFIG] [key=value ...]

Runs `sapo_vl.train` for a few steps (default: configs/demo.yaml, 6 steps, no format warm-up, into a temporary
folder) and prints the mean of each phase over the steps after the first, with its share of the step.
"""
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> None:
    args = sys.argv[1:]
    config = args[0] if args and "=" not in args[0] else "configs/demo.yaml"
    overrides = [a for a in args if "=" in a]
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "sapo_vl.train", config, f"logging.out_dir={tmp}", "logging.run_name=bench",
               "logging.progress=false", "logging.plots=false", "train.steps=6", "train.format_warmup_steps=0",
               *overrides]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        rows = [json.loads(l) for l in (Path(tmp) / "bench" / "metrics.jsonl").read_text().splitlines()][1:]
    phases = ("rollout_s", "score_s", "update_s")
    mean = {p: sum(r[p] for r in rows) / len(rows) for p in phases}
    step = sum(r["step_s"] for r in rows) / len(rows)
    print(f"{config} {' '.join(overrides)}: {step:.3f} s/step over {len(rows)} steps")
    names = {"rollout_s": "rollout (prompts, sampling)", "score_s": "scoring (verifiers)",
             "update_s": "update (advantages, pi_old log-probs, optimizer steps)"}
    for p in phases:
        print(f"  {names[p]:56s} {mean[p]:7.3f} s  ({100 * mean[p] / step:4.1f}%)")
    print(f"  {'other (metrics, samples)':56s} {step - sum(mean.values()):7.3f} s")


if __name__ == "__main__":
    main()

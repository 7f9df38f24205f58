"""Asynchronous rollouts: split placement one step off vs the synchronous colocated run, on the same cores.

    .venv/bin/python bench/bench_async.py                        # the tiny model, 2 CPU ranks (one core each)
    .venv/bin/python bench/bench_async.py --prompts 8 --max-new-tokens 32 --repeats 1

Two launches of `sapo_vl.train` through torchrun with 2 ranks of one thread each, the same config and seed:
- synchronous: `rollout.placement: colocated`, both ranks sample their half of the batch, then both update on it;
- asynchronous: `rollout.placement: split`, `rollout.max_staleness: 1`: rank 1 samples batch t+1 while rank 0
  updates on batch t (all of it).

The config is rollout-heavy, long completions from few prompts (the reasoning regime): the demo task on the tiny
Qwen3-VL, 4 prompts × G = 8, no format warm-up, so the random-weight policy writes completions of up to
`--max-new-tokens` (48). Steps per second are measured on the trainer's logged step times
(`step_s`: from asking for the batch to the next weights sent) after `--skip` warm-up steps. Prints each run's
steps/s, the rollout's share of the synchronous step (the issue's bar: at least 40%), and
`async speedup: X.XX×`, the median over `--repeats` pairs of runs made by this one command (the ratio moves by
about ±10% from pair to pair on the 2-core machine). Target here: ≥ 1.4×.

Why it can win on the same cores: the colocated step is S(B/2) + U(B/2), the split one max(S(B), U(B)) (rollout
S and update U of B rows; the weight sync is small here). A decode step of the `transformers` sampler costs
little more for all rows than for half of them (its time is mostly per token, not per row, at these sizes), so
the split run nearly hides a whole rollout behind the update; it wins most when S(B) ≈ U(B), and loses where
one side of the whole batch alone outlasts the colocated step: many prompts with short completions (the update;
0.8× at 16 prompts × 32 tokens before the packed update got faster), or completions so long that the rollout
rank is the bottleneck (1.13× at 4 prompts × 96 tokens).
"""
import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from sapo_vl.launch import free_port

REPO = Path(__file__).resolve().parents[1]


def run(out: Path, name: str, args, extra: list[str]) -> list[dict]:
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", DS_ACCELERATOR="cpu",
               PYTHONUNBUFFERED="1")
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           "-m", "sapo_vl.train", "configs/demo.yaml", f"train.steps={args.steps}", "train.format_warmup_steps=0",
           f"rollout.max_new_tokens={args.max_new_tokens}", f"rollout.prompts_per_step={args.prompts}",
           f"rollout.group_size={args.group_size}",
           f"logging.out_dir={out}", f"logging.run_name={name}", "logging.progress=false", "logging.plots=false",
           "logging.sample_every=0", "logging.tensorboard=false", *extra]
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"{name} failed:\n{res.stderr[-4000:]}")
    return [json.loads(line) for line in (out / name / "metrics.jsonl").read_text().splitlines() if line]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--skip", type=int, default=3, help="first steps left out (start-up, op builds)")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--prompts", type=int, default=4, help="prompts per step")
    ap.add_argument("--group-size", type=int, default=8, help="G: completions per prompt")
    ap.add_argument("--repeats", type=int, default=3, help="pairs of runs; the median speedup is printed")
    ap.add_argument("--keep", default=None, help="write the runs here (default: a temporary folder)")
    args = ap.parse_args()
    print(f"config: demo task, tiny Qwen3-VL, {args.prompts} prompts × G={args.group_size}, {args.max_new_tokens} new "
          f"tokens, 2 ranks × 1 thread, steps {args.skip}..{args.steps - 1}, {args.repeats} pair(s) of runs")
    ratios = []
    for i in range(args.repeats):
        with (tempfile.TemporaryDirectory() if args.keep is None else contextlib.nullcontext(args.keep)) as tmp:
            sync = run(Path(tmp), f"sync{i}", args, [])
            split = run(Path(tmp), f"async{i}", args, ["rollout.placement=split", "rollout.max_staleness=1"])
        ratios.append(report(sync[args.skip:], split[args.skip:]))
    print(f"async speedup: {statistics.median(ratios):.2f}×" + (f" (median of {', '.join(f'{r:.2f}' for r in ratios)})"
                                                              if len(ratios) > 1 else ""))


def report(rows_s: list[dict], rows_a: list[dict]) -> float:
    """Print one pair's steps/s and where the time went; return the speedup."""
    sps_sync = len(rows_s) / sum(r["step_s"] for r in rows_s)
    sps_async = len(rows_a) / sum(r["step_s"] for r in rows_a)
    share = sum(r["rollout_s"] for r in rows_s) / sum(r["step_s"] for r in rows_s)

    def mean(key: str) -> float:
        return sum(r[key] for r in rows_a) / len(rows_a)

    print(f"  synchronous colocated (2 ranks): {sps_sync:.3f} steps/s (rollout {share:.0%} of the step) | split 1 + 1, "
          f"max_staleness 1: {sps_async:.3f} steps/s (rollout rank sampling {mean('rollout_sample_s'):.2f} s/batch; "
          f"trainer waited {mean('rollout_wait_s'):.2f} s for batches, {mean('weight_sync_s'):.2f} s in weight "
          f"syncs; staleness {mean('staleness'):.2f}) → {sps_async / sps_sync:.2f}×")
    return sps_async / sps_sync


if __name__ == "__main__":
    main()

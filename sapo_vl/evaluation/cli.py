"""`sapo-vl eval`: evaluate a model on one task, a suite of tasks for several models, or list the tasks.

    sapo-vl eval --task TASK --model PATH_OR_HUB_ID --out DIR [--n-samples K] [--temperature T]
                 [--max-new-tokens N] [--batch-size B] [--limit N] [--seed S] [--data-path PATH] [-o key=value]
    sapo-vl eval --suite math|chart|reasoning|all --models M1,M2,M3 --out DIR [same options]
    sapo-vl eval --list [--suite S]
    torchrun --nproc_per_node N -m sapo_vl.evaluation --task TASK --model M --out DIR     (data parallel)

A single task writes DIR/samples.jsonl, DIR/summary.json and prints its table. A suite writes
DIR/<model>/<task>/ for every pair, then DIR/results.md, DIR/results.csv and DIR/results.png. Rerunning the
same command resumes. Bad input (unknown task, missing model, unreachable dataset, a model that is not
Qwen-VL, a run folder holding other settings) is one line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Sequence

EPILOG = """examples:
  sapo-vl eval --list
  sapo-vl eval --task synthetic_color --model sapo-vl/tiny-qwen3-vl --limit 20 --out runs/eval/color
  sapo-vl eval --task chartqa_test --model Qwen/Qwen3-VL-2B-Instruct --out runs/eval/chartqa
  sapo-vl eval --task mathvista_testmini --model runs/my_run/checkpoints/step_500/hf --n-samples 8 \\
      --temperature 1.0 --out runs/eval/mathvista_step500
  sapo-vl eval --suite math --models Qwen/Qwen3-VL-2B-Instruct,runs/my_run/checkpoints/step_500/hf --out runs/eval/math
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from sapo_vl.data.images import ImageConfig

    what = p.add_argument_group("what to evaluate")
    what.add_argument("--task", help="a task name (see --list)")
    what.add_argument("--suite", help="math | chart | reasoning | all, or TASK1,TASK2,...: every task of the suite")
    what.add_argument("--model", help="model: hub id, local checkpoint folder, or sapo-vl/tiny-qwen3-vl")
    what.add_argument("--models", help="comma-separated models, for --suite")
    what.add_argument("--list", action="store_true", help="list the tasks (with --suite: that suite's) and exit")
    what.add_argument("--out", help="output folder (rerun the same command to resume)")
    data = p.add_argument_group("data")
    data.add_argument("--data-path", action="append", default=[], metavar="[TASK=]PATH",
                      help="local copy of the task's dataset (the recipe's `path` option); TASK=PATH in suites")
    data.add_argument("--root", help="dataset root that relative image paths start from (the recipe's --root)")
    data.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                      help="recipe option, e.g. -o subject=Math (repeatable)")
    data.add_argument("--limit", type=int, help="evaluate the first N records only")
    gen = p.add_argument_group("generation")
    gen.add_argument("--n-samples", type=int, default=1, help="samples per record, K (pass@k for k <= K); default 1")
    gen.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    gen.add_argument("--top-p", type=float, default=1.0)
    gen.add_argument("--top-k", type=int, default=0)
    gen.add_argument("--max-new-tokens", type=int, help="default: the task's (1024 for benchmarks)")
    gen.add_argument("--batch-size", type=int, default=8, help="records per generation batch (default 8)")
    gen.add_argument("--seed", type=int, default=0, help="sampling, synthetic data and bootstrap seed (default 0)")
    gen.add_argument("--min-pixels", type=int, default=ImageConfig.min_pixels)
    gen.add_argument("--max-pixels", type=int, default=ImageConfig.max_pixels)
    run = p.add_argument_group("run")
    run.add_argument("--dtype", default="auto", help="auto (bf16 on GPU, fp32 on CPU) | bfloat16 | float16 | float32")
    run.add_argument("--score-workers", type=int, default=0, help="verifier worker processes (0: inline)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--local_rank", "--local-rank", type=int, help=argparse.SUPPRESS)  # the deepspeed launcher's


def add_eval_commands(subparsers) -> None:
    """Register `sapo-vl eval` on the `sapo-vl` subparsers (its func returns an exit status)."""
    p = subparsers.add_parser("eval", help="evaluate models on benchmark tasks (rule-scored, resumable)",
                              description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=run_command)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sapo_vl.evaluation", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m sapo_vl.evaluation ...` (what torchrun / deepspeed launch)."""
    return run_command(build_parser().parse_args(argv))


# --------------------------------------------------------------------------------------------------- commands
def run_command(args: argparse.Namespace) -> int:
    from sapo_vl.data.recipe import RecipeError
    from sapo_vl.data.sources import SourceError
    from sapo_vl.models.loading import ModelLoadError
    from sapo_vl.verifiers import VerifierConfigError

    from . import dist
    from .task import TaskError

    try:
        if args.list:
            return list_tasks(args.suite)
        _check_args(args)
        ranks = dist.join()
        code = run_suite(args, ranks) if args.suite else run_single(args, ranks)
        dist.leave()  # not on errors: a rank that failed alone must exit, so that the launcher stops the rest
        return code
    except (TaskError, ModelLoadError, SourceError, RecipeError, VerifierConfigError) as err:
        print(f"sapo-vl eval: error: {_one_line(err)}", file=sys.stderr)
        return 2


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _check_args(args: argparse.Namespace) -> None:
    from .task import TaskError

    if bool(args.task) == bool(args.suite):
        raise TaskError("give --task TASK or --suite SUITE (or --list)")
    if args.task and not args.model:
        raise TaskError("--task needs --model PATH_OR_HUB_ID")
    if args.suite and not (args.models or args.model):
        raise TaskError("--suite needs --models M1,M2,...")
    if not args.out:
        raise TaskError("--out DIR is required")
    for flag in ("n_samples", "batch_size", "max_new_tokens", "limit"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise TaskError(f"--{flag.replace('_', '-')} must be >= 1, got {value}")


def settings_from(args: argparse.Namespace):
    from .runner import Settings

    return Settings(n_samples=args.n_samples, temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
                    max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, limit=args.limit,
                    seed=args.seed, min_pixels=args.min_pixels, max_pixels=args.max_pixels,
                    score_workers=args.score_workers, progress=not args.no_progress, data_root=args.root)


def configured_task(name: str, args: argparse.Namespace):
    """The task with the command line's recipe options and data path applied."""
    from .registry import get_task
    from .task import TaskError

    task = get_task(name)
    options = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise TaskError(f"-o expects KEY=VALUE, got {item!r}")
        options[key] = _coerce(task, key, value)
    paths = dict(p.split("=", 1) if re.match(r"^\w+=", p) and not Path(p).exists() else ("", p) for p in args.data_path)
    path = paths.get(name) or (paths.get("") if not args.suite else None)
    if path:
        options["path"] = path
    return task.with_options(**options) if options else task


def _coerce(task, key: str, value: str):
    from sapo_vl.data.recipe import coerce_option, get_recipe

    return coerce_option(get_recipe(task.recipe), key, value)


def load_model(name: str, args: argparse.Namespace, device):
    from sapo_vl.models.loading import check_qwen_vl, load_policy, load_processor

    check_qwen_vl(name)
    processor = load_processor(name, min_pixels=args.min_pixels, max_pixels=args.max_pixels)
    model = load_policy(name, dtype=args.dtype, device=device).eval()
    return model, processor


def run_single(args: argparse.Namespace, ranks) -> int:
    from .report import summary_text
    from .runner import run_task

    from sapo_vl.models.loading import check_qwen_vl

    task = configured_task(args.task, args)
    check_qwen_vl(args.model)  # a bad model fails before the data is read,
    loaded = task.load(limit=args.limit, seed=args.seed, root=args.root)  # bad data before the model loads
    model, processor = load_model(args.model, args, ranks.device)
    summary = run_task(model, processor, task, args.out, settings_from(args), model_name=args.model, ranks=ranks,
                       loaded=loaded)
    if ranks.is_main:
        print(summary_text(summary))
        print(f"wrote {Path(args.out) / 'samples.jsonl'} and {Path(args.out) / 'summary.json'}")
        _warn_coverage(summary)
    return 0


def _warn_coverage(summary: dict) -> None:
    """Rows of the published split that were not scored: a warning on stderr as well as in the table."""
    warning = (summary.get("coverage") or {}).get("warning")
    if warning:
        print(f"sapo-vl eval: WARNING: {warning}", file=sys.stderr)


def model_slug(name: str) -> str:
    """A folder name for a model: "Qwen/Qwen3-VL-2B-Instruct" -> "Qwen__Qwen3-VL-2B-Instruct"."""
    return re.sub(r"[^\w.-]+", "_", name.strip("/").replace("/", "__")) or "model"


def run_suite(args: argparse.Namespace, ranks) -> int:
    """Every task of the suite for every model; a task that fails is reported and left out of the table."""
    from sapo_vl.data.sources import SourceError

    from .registry import suite
    from .report import suite_chart, suite_csv, suite_markdown, summary_text
    from .runner import run_task
    from .task import TaskError

    models = [m.strip() for m in (args.models or args.model).split(",") if m.strip()]
    tasks = suite(args.suite)
    out = Path(args.out)
    results: dict[str, dict[str, dict]] = {}
    failed = []
    for name in models:
        model, processor = load_model(name, args, ranks.device)
        results[name] = {}
        for task in tasks:
            try:
                configured = configured_task(task.name, args)
                summary = run_task(model, processor, configured, out / model_slug(name) / task.name,
                                   settings_from(args), model_name=name, ranks=ranks)
            except (TaskError, SourceError) as err:
                failed.append(f"{name} / {task.name}: {_one_line(err)}")
                if ranks.is_main:
                    print(f"sapo-vl eval: skipped {task.name} for {name}: {_one_line(err)}", file=sys.stderr)
                continue
            results[name][task.name] = summary
            if ranks.is_main:
                print(summary_text(summary) + "\n")
                _warn_coverage(summary)
        del model
    if ranks.is_main and any(results.values()):
        (out / "results.md").write_text(suite_markdown(results))
        (out / "results.csv").write_text(suite_csv(results))
        suite_chart(results, out / "results.png", title=f"sapo-vl eval --suite {args.suite}")
        print(suite_markdown(results))
        print(f"wrote {out / 'results.md'}, {out / 'results.csv'}, {out / 'results.png'}")
    if failed:
        if ranks.is_main:
            print(f"sapo-vl eval: error: {len(failed)} task run(s) failed; first: {failed[0]}", file=sys.stderr)
        return 2
    return 0


def list_tasks(suite_name: str | None = None) -> int:
    """Print every task (or a suite's): name, domain, dataset, split, size, verifier, metric, scoring."""
    from .registry import TASKS, suite
    from .task import SCORING_KINDS

    tasks = suite(suite_name) if suite_name else [TASKS[n] for n in sorted(TASKS)]
    rows = [("task", "domain", "dataset", "split", "size", "verifier", "metric", "scoring")]
    for t in tasks:
        scoring = SCORING_KINDS[t.scoring]
        rows.append((t.name, t.domain, t.dataset_name(), t.split, str(t.size or "?"), t.verifier_label, t.metric,
                     scoring))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0

"""Run one task on one model: batched generation, verifier scoring, `samples.jsonl`, `summary.json`, resume.

`run_task(model, processor, task, out_dir, settings)`:

1. Loads the task's records (the first `limit`) and cuts them into fixed batches of `batch_size` records.
2. Reads `out_dir/samples.jsonl` (one line per (record, sample)); a batch with any line missing is to do.
   `out_dir/run.json` pins what the lines depend on (model, task, data options, prompt, generation settings,
   seed): rerunning with other values is refused rather than silently mixed. `limit`, `n_samples` and
   `batch_size` may change: more records or samples are added to what is there.
3. Generates each batch to do (K samples per record, each row from its own seed, see `generate.py`),
   scores every sample with the task's verifier and the `format` verifier, and appends the batch's lines.
   With several ranks, rank r runs batches r, r+W, ... of the to-do list and rank 0 writes all lines.
4. Computes the summary from the lines of the current records and samples (so it does not depend on how
   the run was interrupted, resumed or sharded), writes `summary.json` and returns it.

A batch is always the same records in the same order, whatever was done before, so a resumed or sharded
run computes exactly the tensors an uninterrupted single-process run computes.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sapo_vl.data.images import BadImage, ImageConfig, load_image
from sapo_vl.data.jsonio import write_json
from sapo_vl.data.record import Record
from sapo_vl.engines import SamplingSettings

from . import dist
from .generate import generate, row_seed
from .metrics import summarize
from .task import EXTRACTION, SCORING_KINDS, Task, TaskError

SAMPLES, SUMMARY, RUN = "samples.jsonl", "summary.json", "run.json"


class RunMismatch(TaskError):
    """`out_dir` holds samples made with other settings; resuming would mix them."""


@dataclass(frozen=True)
class Settings:
    """How to generate and score; the CLI flags of `sapo-vl eval` map one to one onto these fields."""

    n_samples: int = 1
    """Samples per record (K); pass@k is reported for every k <= K."""
    temperature: float = 0.0
    """0: greedy decoding; otherwise sampling at this temperature."""
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int | None = None
    """None: the task's own budget."""
    batch_size: int = 8
    """Records per generation batch (each with its K samples)."""
    limit: int | None = None
    """Evaluate the first `limit` records only."""
    seed: int = 0
    """Seeds every row's sampling stream, the recipe (synthetic data) and the bootstrap."""
    min_pixels: int = ImageConfig.min_pixels
    max_pixels: int = ImageConfig.max_pixels
    score_workers: int = 0
    """Verifier worker processes (0: score inline; math-verify still runs under its time limit)."""
    score_timeout: float = 10.0
    """Seconds one verifier call may take before it scores 0 ("timeout")."""
    progress: bool = True
    """Show a progress bar (rank 0)."""
    data_root: str | None = None
    """Dataset root the records' relative image paths start from (`--root`, the recipe's `root`); None: none."""

    def sampling(self, max_new_tokens: int) -> SamplingSettings:
        """How each batch is sampled: K rows per record, each at most `max_new_tokens` long (this run's limit:
        `self.max_new_tokens`, else the task's)."""
        return SamplingSettings(group_size=self.n_samples, max_new_tokens=max_new_tokens,
                                temperature=self.temperature, top_p=self.top_p, top_k=self.top_k)


PINNED = ("model", "task", "split", "options", "prompt", "temperature", "top_p", "top_k", "max_new_tokens", "seed",
          "min_pixels", "max_pixels")
"""run.json fields a resumed run must match."""


def run_key(task: Task, settings: Settings, model_name: str, max_new_tokens: int) -> dict[str, Any]:
    return {"model": model_name, "task": task.name, "split": task.split, "options": _jsonable(task.options),
            "prompt": task.prompt, "temperature": settings.temperature, "top_p": settings.top_p,
            "top_k": settings.top_k, "max_new_tokens": max_new_tokens, "seed": settings.seed,
            "min_pixels": settings.min_pixels, "max_pixels": settings.max_pixels}


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


# ------------------------------------------------------------------------------------------------ samples file
def read_samples(path: Path) -> list[dict]:
    """The complete lines of a samples file; a torn last line (a crash mid-write) is cut off the file."""
    if not path.exists():
        return []
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with open(path, "r+b") as f:
            f.truncate(end)
    rows = []
    for n, line in enumerate(data[:end].splitlines()):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError as e:
                raise RunMismatch(f"{path} line {n + 1} is not JSON ({e}); move the file away to start over") from None
    return rows


def check_run(out_dir: Path, key: dict[str, Any]) -> None:
    """Write run.json, or check that the one there matches `key` on every PINNED field."""
    path = out_dir / RUN
    if path.exists():
        old = json.loads(path.read_text())
        diff = [f"{k}: {old.get(k)!r} there, {key[k]!r} now" for k in PINNED
                if _jsonable(old.get(k)) != _jsonable(key[k])]
        if diff:
            raise RunMismatch(f"{out_dir} holds a run with other settings ({'; '.join(diff)}); "
                              "pass another --out or delete that folder")
    else:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json(path, key)


def fingerprint(records: list[Record]) -> str:
    """sha256 over the evaluated records (ids, answers, prompts, image bytes or paths)."""
    h = hashlib.sha256()
    for r in records:
        h.update(json.dumps([r.id, r.answer, r.prompt, r.verifier, r.verifier_params], sort_keys=True,
                            default=str).encode())
        for im in r.images:
            h.update(im if isinstance(im, bytes) else str(im).encode())
    return "sha256:" + h.hexdigest()[:16]


def prompt_text(record: Record) -> str:
    """The prompt as text, one "<image>" per image slot."""
    parts = []
    for m in record.prompt:
        content = m.get("content")
        items = content if isinstance(content, list) else [{"type": "text", "text": str(content)}]
        parts += ["<image>" if c.get("type") == "image" else c.get("text", "") for c in items]
    return " ".join(p for p in parts if p)


# ------------------------------------------------------------------------------------------------ one batch
def run_batch(model, processor, task: Task, records: list[Record], todo: set[tuple[str, int]], settings: Settings,
              max_new_tokens: int) -> list[dict]:
    """Generate and score one batch; returns the lines for the (id, sample) pairs in `todo`."""
    from sapo_vl.verifiers import VerifierConfigError, score, score_batch

    start = time.perf_counter()
    images_cfg = ImageConfig(min_pixels=settings.min_pixels, max_pixels=settings.max_pixels)
    lines: list[dict] = []
    usable, images = [], []
    for r in records:  # the whole batch, done samples included: the same batch gives the same tensors
        try:
            name, params = task.score_spec(r)
            score(name, "", r.answer, **params)  # reads the gold (cheaply): a bad one skips the record
            images.append([load_image(src, settings.data_root, images_cfg, record=r.id) for src in r.images])
            usable.append(r)
        except (BadImage, VerifierConfigError) as err:
            if any((r.id, k) in todo for k in range(settings.n_samples)):
                kind = "bad image" if isinstance(err, BadImage) else "bad ground truth"
                lines.append({"id": r.id, "skipped": f"{kind}: {err}"})
    if not usable:
        return lines
    K = settings.n_samples
    seeds = [row_seed(settings.seed, r.id, k) for r in usable for k in range(K)]
    out = generate(model, processor, [r.prompt for r in usable], images, settings.sampling(max_new_tokens), seeds=seeds)
    rows = [(r, k, i * K + k) for i, r in enumerate(usable) for k in range(K) if (r.id, k) in todo]
    items = []
    for r, _, j in rows:
        name, params = task.score_spec(r)
        items.append((name, out.texts[j], r.answer, params))
        if task.format_style:
            items.append(("format", out.texts[j], "", {"style": task.format_style}))
    scored = score_batch(items, workers=settings.score_workers, timeout=settings.score_timeout).results
    step = 2 if task.format_style else 1
    seconds = (time.perf_counter() - start) / max(1, len(usable) * K)
    for n, (r, k, j) in enumerate(rows):
        result = scored[n * step]
        lines.append({
            "id": r.id, "sample": k, "prompt": prompt_text(r), "response": out.texts[j], "answer": r.answer,
            "extracted": result.extracted, "score": result.score, "reason": result.reason,
            "verifier": items[n * step][0], "format": scored[n * step + 1].score if step == 2 else None,
            "tokens": out.tokens[j], "truncated": out.truncated[j], "seconds": round(seconds, 6),
        })
    return lines


# ------------------------------------------------------------------------------------------------ the run
def run_task(model, processor, task: Task, out_dir: str | Path, settings: Settings = Settings(), *,
             model_name: str = "policy", ranks: dist.Dist | None = None,
             loaded: tuple[list[Record], list[tuple[str, str]]] | None = None) -> dict:
    """Evaluate `task` and return its summary (on every rank). See the module docstring. `loaded` is
    `task.load(limit=settings.limit, seed=settings.seed, root=settings.data_root)` when the caller has it already."""
    ranks = ranks or dist.current()
    out_dir = Path(out_dir)
    K = settings.n_samples
    if K < 1 or settings.batch_size < 1:
        raise TaskError(f"--n-samples and --batch-size must be >= 1, got {K} and {settings.batch_size}")
    max_new_tokens = settings.max_new_tokens or task.max_new_tokens
    records, skipped = loaded or task.load(limit=settings.limit, seed=settings.seed, root=settings.data_root)
    if not records:
        raise TaskError(f"task {task.name!r} has no usable records"
                        + (f" ({len(skipped)} skipped, first: {skipped[0][1]})" if skipped else ""))
    batches = [records[i:i + settings.batch_size] for i in range(0, len(records), settings.batch_size)]

    plan: Any = None
    if ranks.is_main:
        try:
            check_run(out_dir, run_key(task, settings, model_name, max_new_tokens))
            have = {(row["id"], row.get("sample", -1)) for row in read_samples(out_dir / SAMPLES)}
            skipped_ids = {i for i, s in have if s == -1}
            need = [{(r.id, k) for r in b if r.id not in skipped_ids for k in range(K)} - have for b in batches]
            ids = {r.id for r in records}
            done = sum(1 for i, k in have if i in ids and 0 <= k < K)
            plan = {"todo": [(b, sorted(n)) for b, n in enumerate(need) if n], "done": done}
        except (TaskError, OSError) as err:  # every rank must hear of it, or the others wait forever
            plan = {"error": f"{type(err).__name__}: {err}" if isinstance(err, OSError) else str(err)}
    plan = dist.broadcast(plan, ranks)
    if "error" in plan:
        raise RunMismatch(plan["error"])

    todo = plan["todo"]
    was_training = getattr(model, "training", False)
    model.eval()
    bar = _progress(settings.progress and ranks.is_main, total=len(records) * K, initial=plan["done"], task=task.name)
    start, generated = time.perf_counter(), 0
    try:
        for first in range(0, len(todo), ranks.world_size):
            mine = todo[first + ranks.rank] if first + ranks.rank < len(todo) else None
            lines = [] if mine is None else run_batch(
                model, processor, task, batches[mine[0]], {tuple(x) for x in mine[1]}, settings, max_new_tokens)
            gathered = dist.gather(lines, ranks)
            if ranks.is_main:
                new = [line for part in gathered for line in part]
                with open(out_dir / SAMPLES, "a", encoding="utf-8") as f:
                    f.writelines(json.dumps(line, ensure_ascii=False) + "\n" for line in new)
                n = sum("sample" in line for line in new)
                generated += n
                bar.update(n)
    finally:
        bar.close()
        model.train(was_training)
    seconds = time.perf_counter() - start

    summary = None
    if ranks.is_main:
        summary = build_summary(task, settings, records, skipped, read_samples(out_dir / SAMPLES), model_name,
                                max_new_tokens)
        summary["timing"] = {"seconds": round(seconds, 3), "samples_generated": generated,
                             "samples_per_s": round(generated / seconds, 3) if seconds > 0 and generated else None,
                             "world_size": ranks.world_size, "device": str(ranks.device)}
        write_json(out_dir / SUMMARY, summary)
    return dist.broadcast(summary, ranks)


def build_summary(task: Task, settings: Settings, records: list[Record], skipped: list[tuple[str, str]],
                  lines: list[dict], model_name: str, max_new_tokens: int) -> dict:
    """The summary of the current records and samples (timing is added by the caller)."""
    ids = {r.id for r in records}
    K = settings.n_samples
    rows = [x for x in lines if x["id"] in ids and "sample" in x and x["sample"] < K]
    bad = {x["id"]: x["skipped"] for x in lines if x["id"] in ids and "skipped" in x}
    skip_reasons: dict[str, int] = {}
    for reason in [s for _, s in skipped] + list(bad.values()):
        kind = reason.split(":")[0]
        skip_reasons[kind] = skip_reasons.get(kind, 0) + 1
    kept = [r for r in records if r.id not in bad]
    source = task.options.get("path") or settings.data_root or task.dataset_name()
    local = source and (os.path.exists(str(source)) or str(source).startswith(("/", ".")))
    return {
        "task": task.name, "domain": task.domain, "model": model_name,
        "scoring": task.scoring_line,
        "scoring_kind": SCORING_KINDS[task.scoring],
        "extraction": EXTRACTION,
        "verifier": task.verifier_label,
        "dataset": {"name": task.dataset_name(), "recipe": task.recipe, "split": task.split,
                    "source": str(source), "options": _jsonable(task.options),
                    "revision": "local copy" if local else ("generated" if str(source).startswith("synthetic")
                                                            else "hub default branch (not pinned)"),
                    "fingerprint": fingerprint(kept), "records": len(kept),
                    "skipped": skip_reasons, "skipped_examples": ([f"{i}: {s}" for i, s in skipped[:3]]
                                                                  + [f"{i}: {s}" for i, s in list(bad.items())[:3]])},
        "coverage": coverage(task, len(kept), skipped + list(bad.items()), settings.limit),
        "seed": settings.seed,
        "generation": {"n_samples": K, "greedy": settings.temperature <= 0, "temperature": settings.temperature,
                       "top_p": settings.top_p, "top_k": settings.top_k, "max_new_tokens": max_new_tokens,
                       "batch_size": settings.batch_size, "min_pixels": settings.min_pixels,
                       "max_pixels": settings.max_pixels, "prompt": task.prompt or "recipe"},
        "metrics": summarize(rows, n_samples=K, seed=settings.seed),
    }


def coverage(task: Task, scored: int, skipped: list[tuple[str, str]], limit: int | None) -> dict:
    """How many rows were scored against the task's published size: {"scored", "published", "limit",
    "data_errors" (skipped rows the task lists as errors in the release), "unscored" (published rows neither
    scored nor a listed data error; None with a limit or without a published size), "unscored_reasons"
    (reason -> rows), "warning" (a sentence when rows went unscored, else None)}."""
    known = [(i, why) for i, why in skipped if i in task.data_errors]
    lost: dict[str, int] = {}
    for i, why in skipped:
        if i not in task.data_errors:
            lost[why.split(":")[0]] = lost.get(why.split(":")[0], 0) + 1
    unscored = None if limit is not None or task.size is None else max(0, task.size - scored - len(known))
    warning = None
    if unscored:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(lost.items(), key=lambda kv: -kv[1])) or "not in the source"
        warning = (f"only {scored} of the {task.size} published rows of {task.name} were scored; {unscored} "
                   f"were not ({reasons}), so the accuracy is over the rest")
    return {"scored": scored, "published": task.size, "limit": limit, "data_errors": len(known),
            "unscored": unscored, "unscored_reasons": lost, "warning": warning}


def _progress(enabled: bool, *, total: int, initial: int, task: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="sample", desc=task, disable=not enabled, dynamic_ncols=True)

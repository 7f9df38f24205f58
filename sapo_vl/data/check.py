"""`recipe check`: is every record of a recipe usable for training?

Checks, per record:
- record:     the recipe yielded a valid Record (not a Skip), with a non-empty UTF-8 answer and JSON-able fields;
- images:     every image opens through the image pipeline (confinement, decoding, bomb guard, resize);
- verifier:   the ground truth scores 1.0 under its own verifier as the perfect response
              `<answer>{answer}</answer>`; the bare answer is also tried and a miss is only noted;
- tokens:     prompt tokens, image tokens included, are at most `max_prompt_tokens`. Image tokens are
              (h/32)*(w/32) after resizing (Qwen3-VL). Text tokens come from the processor's tokenizer and
              chat template when one is given, else from an estimate (1 token per 3.5 characters plus
              chat-template overhead), and the report says which;
- duplicates: an id seen before, or the same images with the same prompt.

`--text-only` (`CheckSettings(image_config=None)`) reads a release without its image files: the rows, golds and options are
checked, images and image tokens are not. The report then says how many rows of the split were kept, how
many the recipe skipped (by reason) and how many golds failed their own verifier, against the split's
published size (the recipe's SIZES): the row-by-row check of a benchmark release.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sapo_vl.data.build import BadRecord, prepare
from sapo_vl.data.images import BadImage, ImageConfig, image_tokens
from sapo_vl.data.recipe import Recipe, Skip
from sapo_vl.data.record import Record
from sapo_vl.data.sources import text_only

CHECKS = ("record", "images", "verifier", "tokens", "duplicates")


@dataclass
class Problem:
    check: str
    id: str
    message: str


@dataclass
class CheckReport:
    recipe: str
    records: int = 0
    """Items the recipe yielded (Skips included)."""
    passed: dict[str, int] = field(default_factory=lambda: {c: 0 for c in CHECKS})
    failed: dict[str, int] = field(default_factory=lambda: {c: 0 for c in CHECKS})
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    token_method: str = ""
    max_prompt_tokens: int = 0
    largest_prompt: int = 0
    mean_prompt: float = 0.0
    split: str = ""
    published: int | None = None
    """The split's published size (the recipe's SIZES), when the whole split was checked."""
    skip_reasons: dict[str, int] = field(default_factory=dict)
    """Rows the recipe skipped, by the first part of the reason ("missing image", "answer 'F' is not ...")."""
    text_only: bool = False
    """Image files were not needed (`--text-only`): the images check did not run."""

    @property
    def usable(self) -> int:
        """Records that passed the record check and scored their own answer 1.0 (when the verifier check ran)."""
        verifier_failed = {p.id for p in self.problems if p.check == "verifier"}
        return self.passed["record"] - len(verifier_failed)

    @property
    def ok(self) -> bool:
        return self.records > 0 and not any(self.failed.values())

    def fail(self, check: str, rid: str, message: str) -> None:
        self.failed[check] += 1
        self.problems.append(Problem(check, rid, message))


class TokenCounter:
    """Prompt tokens of a record: exact with a processor/tokenizer folder, estimated without one."""

    def __init__(self, processor: str | Path | None = None):
        self.tokenizer = None
        self.method = "estimate (~3.5 characters per token + chat overhead; pass --processor for exact counts)"
        if processor is not None:
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(str(processor))
            has_template = bool(getattr(self.tokenizer, "chat_template", None))
            self.method = f"tokenizer of {processor}" + (" with its chat template" if has_template else
                                                         " (no chat template: texts joined, overhead estimated)")

    def text_tokens(self, rec: Record) -> int:
        """Tokens of the prompt without the image tokens (one image placeholder per image is not counted)."""
        texts = [c.get("text", "") for m in rec.prompt for c in (m["content"] if isinstance(m["content"], list)
                 else [{"type": "text", "text": m["content"]}]) if c.get("type") == "text"]
        overhead = 5 * len(rec.prompt) + 3 + 2 * len(rec.images)  # <|im_start|>role ... <|im_end|>, vision start/end
        tok = self.tokenizer
        if tok is None:
            return overhead + sum(math.ceil(len(t) / 3.5) for t in texts)
        if getattr(tok, "chat_template", None):
            ids = tok.apply_chat_template(rec.prompt, tokenize=True, add_generation_prompt=True)
            ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
            pad = tok.convert_tokens_to_ids("<|image_pad|>")
            return len(ids) - sum(1 for i in ids if i == pad and pad != tok.unk_token_id)
        return overhead + sum(len(tok.encode(t, add_special_tokens=False)) for t in texts)


def _score(verifier: str, response: str, answer: str, params: dict[str, Any]) -> tuple[float, str]:
    from sapo_vl.verifiers import score

    r = score(verifier, response, answer, **params)
    return float(r.score), str(getattr(r, "reason", ""))


def _self_check(report: CheckReport, rec: Record, known: set[str]) -> bool | None:
    """The verifier check of one record; True when the bare answer (no tags) misses, None when not run."""
    if rec.verifier not in known:
        report.fail("verifier", rec.id, f"unknown verifier {rec.verifier!r}; known: {', '.join(sorted(known))}")
        return None
    try:
        tagged, why = _score(rec.verifier, f"<answer>{rec.answer}</answer>", rec.answer, rec.verifier_params)
        bare, _ = _score(rec.verifier, rec.answer, rec.answer, rec.verifier_params)
    except Exception as e:  # a verifier must not raise; report it as a failure of this record
        report.fail("verifier", rec.id, f"verifier {rec.verifier!r} raised {type(e).__name__}: {e}")
        return None
    if tagged < 1.0 - 1e-6:
        report.fail("verifier", rec.id, f"{rec.verifier} scores its own answer {rec.answer!r} {tagged:g}: {why}")
    else:
        report.passed["verifier"] += 1
    return bare < 1.0 - 1e-6


def _check_record(report: CheckReport, item: Record, seen: dict[str, dict], root: str | Path | None,
                  config: ImageConfig | None, counter: TokenCounter) -> None:
    """Every check of one record; `seen` holds the ids, content digests, prompt sizes and bare misses so far."""
    try:
        rec, sizes = prepare(item, root=root, config=config or ImageConfig(), load_images=config is not None)
    except BadRecord as e:
        report.fail("images" if isinstance(e.__cause__, BadImage) else "record", item.id, str(e))
        return
    report.passed["record"] += 1
    if config is not None:
        report.passed["images"] += 1
    if seen["known"]:
        seen["bare_misses"]["n"] += bool(_self_check(report, rec, seen["known"]))
    factor = (config or ImageConfig()).factor
    n_tokens = counter.text_tokens(rec) + sum(image_tokens(h, w, factor) for h, w in sizes)
    seen["totals"].append(n_tokens)
    if n_tokens > report.max_prompt_tokens:
        report.fail("tokens", rec.id, f"{n_tokens} prompt tokens > {report.max_prompt_tokens} "
                                      f"(images {' '.join(f'{w}x{h}' for h, w in sizes)})")
    else:
        report.passed["tokens"] += 1
    digest = hashlib.sha256(json.dumps(rec.prompt, sort_keys=True).encode() + b"".join(
        hashlib.sha256(b if isinstance(b, bytes) else str(b).encode()).digest() for b in rec.images)).hexdigest()
    if rec.id in seen["ids"]:
        report.fail("duplicates", rec.id, "duplicate id")
    elif digest in seen["contents"] and config is not None:  # without images, prompts alone may repeat
        report.fail("duplicates", rec.id, f"same images and prompt as {seen['contents'][digest]}")
    else:
        report.passed["duplicates"] += 1
    seen["ids"].add(rec.id)
    seen["contents"].setdefault(digest, rec.id)


@dataclass(frozen=True)
class CheckSettings:
    """How each record is measured (`sapo-vl recipe check`'s --max-prompt-tokens, --processor, --text-only)."""

    image_config: ImageConfig | None = ImageConfig()
    """The image pipeline every image goes through; None is the text-only check (image files not needed)."""
    max_prompt_tokens: int = 2048
    """Prompt budget, image tokens included."""
    processor: str | Path | None = None
    """A local processor/tokenizer folder for exact text token counts; None: an estimate."""


def check(recipe: Recipe, *, split: str | None = None, seed: int = 0, limit: int | None = None,
          root: str | Path | None = None, options: dict[str, Any] | None = None,
          settings: CheckSettings = CheckSettings()) -> CheckReport:
    """Run every check on the recipe's records (all of `split`, or the first `limit`). With
    `settings.image_config=None` (text-only) image files are not needed (a release's rows, golds and options
    without its pictures), the images check is not run and image tokens are not counted."""
    config, max_prompt_tokens = settings.image_config, settings.max_prompt_tokens
    split = split or recipe.default_split
    published = recipe.sizes.get(str((options or {}).get("config")), recipe.sizes.get(split))  # by config, else split
    report = CheckReport(recipe.name, max_prompt_tokens=max_prompt_tokens, split=split,
                         published=published if limit is None else None, text_only=config is None)
    counter = TokenCounter(settings.processor)
    report.token_method = counter.method
    try:
        import sapo_vl.verifiers as verifiers
        known = set(verifiers.VERIFIERS)
        verifiers.score  # noqa: B018 (present, or the check is not run)
    except (ImportError, AttributeError) as e:
        known = set()
        report.notes.append(f"verifier check not run: sapo_vl.verifiers is not available ({e})")
    seen: dict[str, Any] = {"known": known, "ids": set(), "contents": {}, "totals": [], "bare_misses": {"n": 0}}
    try:
        with text_only() if config is None else contextlib.nullcontext():
            for item in recipe.records(split, seed=seed, limit=limit, root=root, **(options or {})):
                report.records += 1
                rid = str(getattr(item, "id", f"#{report.records - 1}"))
                if isinstance(item, Skip):
                    report.fail("record", rid, f"skipped by the recipe: {item.reason}")
                    kind = item.reason.split(":")[0]
                    report.skip_reasons[kind] = report.skip_reasons.get(kind, 0) + 1
                else:
                    _check_record(report, item, seen, root, config, counter)
    except Exception as e:  # the recipe itself raised
        report.fail("record", f"after #{report.records}", f"recipe raised {type(e).__name__}: {e}")
    if seen["totals"]:
        report.largest_prompt, report.mean_prompt = max(seen["totals"]), sum(seen["totals"]) / len(seen["totals"])
    if seen["bare_misses"]["n"]:
        report.notes.append(f"{seen['bare_misses']['n']} bare answers (without <answer> tags) did not score 1.0")
    if report.records == 0:
        report.notes.append("the recipe yielded no records")
    return report


def format_report(report: CheckReport, max_problems: int = 20) -> str:
    """The summary table, the first problems and the notes, as printed by `sapo-vl recipe check`."""
    lines = [f"recipe {report.recipe}: {report.records} records" + (f" (split {report.split})" if report.split else ""),
             f"{'check':<12} {'passed':>8} {'failed':>8}"]
    lines += [f"{c:<12} {report.passed[c]:>8} {report.failed[c]:>8}" + ("   (not run: --text-only)" if c == "images"
                                                                        and report.text_only else "")
              for c in CHECKS]
    lines.append(rows_line(report))
    lines.append(f"prompt tokens: largest {report.largest_prompt}, mean {report.mean_prompt:.1f}, "
                 f"limit {report.max_prompt_tokens}; text tokens by {report.token_method}")
    for p in report.problems[:max_problems]:
        lines.append(f"  FAIL {p.check:<10} {p.id}: {p.message}")
    if len(report.problems) > max_problems:
        lines.append(f"  ... and {len(report.problems) - max_problems} more problems")
    lines += [f"  note: {n}" for n in report.notes]
    lines.append("OK" if report.ok else "FAILED")
    return "\n".join(lines)


def rows_line(report: CheckReport) -> str:
    """"rows: 3040 read, 3040 kept and scoring 1.0 against themselves, 0 skipped, 0 self-check failures;
    published 3040" (the row-by-row check's figures, on one line)."""
    skipped = sum(report.skip_reasons.values())
    reasons = ", ".join(f"{k}: {v}" for k, v in sorted(report.skip_reasons.items(), key=lambda kv: -kv[1]))
    line = (f"rows: {report.records} read, {report.usable} kept and scoring 1.0 against themselves, {skipped} skipped"
            + (f" ({reasons})" if reasons else "") + f", {report.failed['verifier']} self-check failures")
    if report.published is not None:
        line += f"; published {report.published}"
        if report.usable < report.published:
            line += f" -- {report.published - report.usable} short of the published size"
    return line

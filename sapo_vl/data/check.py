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
"""
from __future__ import annotations

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


def check(recipe: Recipe, *, split: str | None = None, seed: int = 0, limit: int | None = None,
          root: str | Path | None = None, options: dict[str, Any] | None = None,
          config: ImageConfig = ImageConfig(), max_prompt_tokens: int = 2048,
          processor: str | Path | None = None) -> CheckReport:
    """Run every check on the recipe's records (all of `split`, or the first `limit`)."""
    report = CheckReport(recipe.name, max_prompt_tokens=max_prompt_tokens)
    counter = TokenCounter(processor)
    report.token_method = counter.method
    try:
        import sapo_vl.verifiers as verifiers
        known = set(verifiers.VERIFIERS)
        verifiers.score  # noqa: B018 (present, or the check is not run)
    except (ImportError, AttributeError) as e:
        verifiers, known = None, set()
        report.notes.append(f"verifier check not run: sapo_vl.verifiers is not available ({e})")
    ids: set[str] = set()
    contents: dict[str, str] = {}
    totals: list[int] = []
    bare_misses = 0
    try:
        stream = recipe.records(split, seed=seed, limit=limit, root=root, **(options or {}))
        for item in stream:
            report.records += 1
            rid = str(getattr(item, "id", f"#{report.records - 1}"))
            if isinstance(item, Skip):
                report.fail("record", rid, f"skipped by the recipe: {item.reason}")
                continue
            try:
                rec, sizes = prepare(item, root=root, config=config)
            except BadRecord as e:
                report.fail("images" if isinstance(e.__cause__, BadImage) else "record", rid, str(e))
                continue
            report.passed["record"] += 1
            report.passed["images"] += 1
            if verifiers is not None:
                if rec.verifier not in known:
                    report.fail("verifier", rid,
                                f"unknown verifier {rec.verifier!r}; known: {', '.join(sorted(known))}")
                else:
                    try:
                        tagged, why = _score(rec.verifier, f"<answer>{rec.answer}</answer>", rec.answer,
                                             rec.verifier_params)
                        bare, _ = _score(rec.verifier, rec.answer, rec.answer, rec.verifier_params)
                    except Exception as e:  # a verifier must not raise; report it as a failure of this record
                        report.fail("verifier", rid, f"verifier {rec.verifier!r} raised {type(e).__name__}: {e}")
                    else:
                        if tagged < 1.0 - 1e-6:
                            report.fail("verifier", rid, f"{rec.verifier} scores its own answer {rec.answer!r} "
                                                         f"{tagged:g}: {why}")
                        else:
                            report.passed["verifier"] += 1
                        bare_misses += bare < 1.0 - 1e-6
            n_tokens = counter.text_tokens(rec) + sum(image_tokens(h, w, config.factor) for h, w in sizes)
            totals.append(n_tokens)
            if n_tokens > max_prompt_tokens:
                report.fail("tokens", rid, f"{n_tokens} prompt tokens > {max_prompt_tokens} "
                                           f"(images {' '.join(f'{w}x{h}' for h, w in sizes)})")
            else:
                report.passed["tokens"] += 1
            digest = hashlib.sha256(json.dumps(rec.prompt, sort_keys=True).encode()
                                    + b"".join(hashlib.sha256(b).digest() for b in rec.images)).hexdigest()
            if rec.id in ids:
                report.fail("duplicates", rid, "duplicate id")
            elif digest in contents:
                report.fail("duplicates", rid, f"same images and prompt as {contents[digest]}")
            else:
                report.passed["duplicates"] += 1
            ids.add(rec.id)
            contents.setdefault(digest, rec.id)
    except Exception as e:  # the recipe itself raised
        report.fail("record", f"after #{report.records}", f"recipe raised {type(e).__name__}: {e}")
    if totals:
        report.largest_prompt, report.mean_prompt = max(totals), sum(totals) / len(totals)
    if bare_misses:
        report.notes.append(f"{bare_misses} bare answers (without <answer> tags) did not score 1.0")
    if report.records == 0:
        report.notes.append("the recipe yielded no records")
    return report


def format_report(report: CheckReport, max_problems: int = 20) -> str:
    """The summary table, the first problems and the notes, as printed by `sapo-vl recipe check`."""
    lines = [f"recipe {report.recipe}: {report.records} records",
             f"{'check':<12} {'passed':>8} {'failed':>8}"]
    lines += [f"{c:<12} {report.passed[c]:>8} {report.failed[c]:>8}" for c in CHECKS]
    lines.append(f"prompt tokens: largest {report.largest_prompt}, mean {report.mean_prompt:.1f}, "
                 f"limit {report.max_prompt_tokens}; text tokens by {report.token_method}")
    for p in report.problems[:max_problems]:
        lines.append(f"  FAIL {p.check:<10} {p.id}: {p.message}")
    if len(report.problems) > max_problems:
        lines.append(f"  ... and {len(report.problems) - max_problems} more problems")
    lines += [f"  note: {n}" for n in report.notes]
    lines.append("OK" if report.ok else "FAILED")
    return "\n".join(lines)

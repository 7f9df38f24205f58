"""Helpers shared by the eval tests: score a (response, gold) pair the way a task scores it, and restate
published scoring rules in our own words (written from their papers and repositories, to check that the
hand-written expected scores of the parity tables follow the rule)."""
from __future__ import annotations

import json
import re
from pathlib import Path

from sapo_vl.data.record import Record, user_prompt
from sapo_vl.evaluation.registry import get_task
from sapo_vl.verifiers import score


def task_score(task_name: str, response: str, answer: str, verifier: str, params: dict | None = None) -> float:
    """The score `task_name` gives `response` for a record whose recipe assigned `verifier` and `params`."""
    record = Record(id="parity/0", prompt=user_prompt("q", n_images=0), answer=answer, verifier=verifier,
                    verifier_params=dict(params or {}))
    name, spec = get_task(task_name).score_spec(record)
    return score(name, response, answer, **spec).score


def samples(out_dir: Path) -> dict[tuple[str, int], dict]:
    """samples.jsonl keyed by (id, sample), without the wall-clock field."""
    rows = [json.loads(line) for line in (Path(out_dir) / "samples.jsonl").read_text().splitlines() if line]
    return {(r["id"], r.get("sample", -1)): {k: v for k, v in r.items() if k != "seconds"} for r in rows}


def without_timing(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k != "timing"}


# ------------------------------------------------------------------------------------ published rules, restated
def chartqa_relaxed(prediction: str, target: str, max_relative_change: float = 0.05) -> float:
    """ChartQA relaxed accuracy as pix2struct implements it: both sides read with Python's float() (a trailing
    "%" divides by 100); a numeric, non-zero gold accepts a relative error up to 5%; anything else is a
    case-insensitive string comparison of the raw texts."""
    def as_float(text: str):
        try:
            return float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
        except ValueError:
            return None

    p, t = as_float(prediction), as_float(target)
    if p is not None and t:
        return float(abs(p - t) / abs(t) <= max_relative_change)
    return float(prediction.lower() == target.lower())


def mmmu_pick(response: str, options: list[str]) -> str | None:
    """MMMU's multiple-choice parsing; None where MMMU would pick a random option."""
    letters = [chr(ord("A") + i) for i in range(len(options))]
    for ch in ",.!?;:'":
        response = response.strip(ch)
    text = f" {response} "
    found = [c for c in letters if f"({c})" in text]
    where = lambda c: text.rfind(f"({c})")  # noqa: E731
    if not found:
        found = [c for c in letters if f" {c} " in text]
        where = lambda c: text.rfind(f" {c} ")  # noqa: E731
    if not found and len(text.split()) > 5:
        found = [c for c, o in zip(letters, options) if o.lower() in text.lower()]
        where = lambda c: text.lower().rfind(options[letters.index(c)].lower())  # noqa: E731
    if not found:
        return None
    return max(found, key=lambda c: (where(c), -found.index(c)))


def mmmu_score(response: str, gold: str, options: list[str]) -> float:
    """1 / 0, or 1/n for the random pick MMMU makes when nothing parses (its expected credit)."""
    pick = mmmu_pick(response, options)
    return 1.0 / len(options) if pick is None else float(pick == gold)


def r1v_count(response: str, truth: int) -> float:
    """R1-V's counting check: the first <answer> holding only an integer (and spaces) must equal the truth."""
    m = re.search(r"<answer>\s*(\d+)\s*</answer>", response)
    return float(m is not None and int(m.group(1)) == truth)

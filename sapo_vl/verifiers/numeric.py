"""`numeric`: ChartQA-style relaxed accuracy for chart and table answers.

The rule is the one ChartQA (Masry et al., 2022) published: a numeric answer is correct when it lies
within 5% of the gold value, |pred − gold| / |gold| ≤ 0.05 (`tolerance`); a non-numeric answer must
match exactly, ignoring case and surrounding whitespace. Like the published rule it also applies the 5%
to numbers such as years (2016 is within 5% of 2017). Our details:

- Numbers are read with thousands separators ("1,234", and "1 234" when that is the whole answer), a
  currency sign, a sign (also the unicode minus), exponents ("1.2e3", "1.2 × 10^3"), as fractions ("1/4",
  "7/2", "\\frac{28}{2}" are one number each) and in full-width digits ("１４"); LaTeX dressing (`\\%`,
  `{,}`, `\\text{}`, `$`) is dropped.
- A percent sign reads as `percent` says: "number" (default: "45%" is 45, so percent answers and percent
  golds compare as written and 45% vs 0.45 does not match) or "fraction" ("45%" is 0.45, as ChartQA's
  published code reads it; then "45%" matches 0.45 and not 45).
- A gold of 0 needs an exact 0 (relative error is undefined there): "0", "0.0" and "0%" match.
- The prediction is the extracted answer (see `extract.py`). When that is not a number by itself, the
  number inside it is used: the first one after an "answer is" phrase, otherwise the last one (in
  `<answer>`/`\\boxed{}` content or, without tags, in the whole response).
"""
from __future__ import annotations

import math

from .extract import PERCENT_MODES, find_answer, find_numbers, parse_number, strip_latex, strip_think
from .result import VerifierConfigError, VerifierResult, clip_extracted, hit, miss


def _norm_text(text: str) -> str:
    return " ".join(strip_latex(text).lower().split()).rstrip(".").strip()


def _fmt(value: float) -> str:
    return f"{value:.12g}"


def verify(response: str, answer: str, *, tolerance: float = 0.05, percent: str = "number",
           tags_only: bool = False) -> VerifierResult:
    """Score 1 when the answer is within `tolerance` (relative) of a numeric gold, or equals a text gold.

    Params:
        tolerance: allowed relative error for numeric golds, in [0, 1); 0.05 is ChartQA's.
        percent: how "45%" reads, in the answer and the gold: "number" (45) or "fraction" (0.45, ChartQA's code).
        tags_only: only read the answer from `<answer>` or `\\boxed{}`.
    """
    if not (isinstance(tolerance, (int, float)) and math.isfinite(tolerance) and 0 <= tolerance < 1):
        raise VerifierConfigError(f"numeric: tolerance must be a number in [0, 1), got {tolerance!r}")
    if percent not in PERCENT_MODES:
        raise VerifierConfigError(f"numeric: percent must be one of {', '.join(PERCENT_MODES)}, got {percent!r}")
    gold_text = str(answer)
    if not gold_text.strip():
        raise VerifierConfigError("numeric: the ground-truth answer is empty")
    found = find_answer(response, tags_only=tags_only)
    if found is None:
        _, cut = strip_think(response)
        return miss("unterminated <think>" if cut else "no answer found")

    gold = parse_number(gold_text, percent=percent)
    if gold is None:  # ChartQA: non-numeric golds need an exact (case-insensitive) match
        pred = _norm_text(found.text)
        if pred == _norm_text(gold_text):
            return hit("exact text match", clip_extracted(found.text))
        return miss("text differs", clip_extracted(found.text))

    value = parse_number(found.text, percent=percent)
    if value is None:
        numbers = find_numbers(strip_latex(found.text), percent=percent)
        if not numbers:
            return miss("no number found", clip_extracted(found.text))
        value = numbers[0][0] if found.source == "anchor" else numbers[-1][0]
    extracted = _fmt(value)
    if gold == 0:
        return hit("exact zero", extracted) if value == 0 else miss("gold is 0, answer is not", extracted)
    error = abs(value - gold) / abs(gold)
    if error <= tolerance + 1e-12:  # the epsilon keeps exactly-5% answers in despite float rounding
        return hit(f"relative error {error:.3g} <= {tolerance:g}", extracted)
    return miss(f"relative error {error:.3g} > {tolerance:g}", extracted)

"""`numeric`: ChartQA-style relaxed accuracy for chart and table answers.

The rule is the one ChartQA (Masry et al., 2022) published: a numeric answer is correct when it lies
within 5% of the gold value, |pred − gold| / |gold| ≤ 0.05 (`tolerance`); a non-numeric answer must
match exactly, ignoring case and surrounding whitespace. Like the published rule it also applies the 5%
to numbers such as years (2016 is within 5% of 2017). Our details:

- Numbers are read with thousands separators ("1,234"), a percent sign ("45%" reads as 45: percent
  answers and percent golds compare as written, 45% vs 0.45 does not match), a currency sign, a sign
  (also the unicode minus) and exponents ("1.2e3"); LaTeX dressing (`\\%`, `{,}`, `\\text{}`, `$`) is
  dropped.
- A gold of 0 needs an exact 0 (relative error is undefined there): "0", "0.0" and "0%" match.
- The prediction is the extracted answer (see `extract.py`). When that is not a number by itself, the
  number inside it is used: the first one after an "answer is" phrase, otherwise the last one (in
  `<answer>`/`\\boxed{}` content or, without tags, in the whole response).
"""
from __future__ import annotations

import math

from .extract import find_answer, find_numbers, parse_number, strip_latex, strip_think
from .result import VerifierConfigError, VerifierResult, clip_extracted, hit, miss


def _norm_text(text: str) -> str:
    return " ".join(strip_latex(text).lower().split()).rstrip(".").strip()


def _fmt(value: float) -> str:
    return f"{value:.12g}"


def verify(response: str, answer: str, *, tolerance: float = 0.05, tags_only: bool = False) -> VerifierResult:
    """Score 1 when the answer is within `tolerance` (relative) of a numeric gold, or equals a text gold.

    Params:
        tolerance: allowed relative error for numeric golds, in [0, 1); 0.05 is ChartQA's.
        tags_only: only read the answer from `<answer>` or `\\boxed{}`.
    """
    if not (isinstance(tolerance, (int, float)) and math.isfinite(tolerance) and 0 <= tolerance < 1):
        raise VerifierConfigError(f"numeric: tolerance must be a number in [0, 1), got {tolerance!r}")
    gold_text = str(answer)
    if not gold_text.strip():
        raise VerifierConfigError("numeric: the ground-truth answer is empty")
    found = find_answer(response, tags_only=tags_only)
    if found is None:
        _, cut = strip_think(response)
        return miss("unterminated <think>" if cut else "no answer found")

    gold = parse_number(gold_text)
    if gold is None:  # ChartQA: non-numeric golds need an exact (case-insensitive) match
        pred = _norm_text(found.text)
        if pred == _norm_text(gold_text):
            return hit("exact text match", clip_extracted(found.text))
        return miss("text differs", clip_extracted(found.text))

    value = parse_number(found.text)
    if value is None:
        numbers = find_numbers(strip_latex(found.text))
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

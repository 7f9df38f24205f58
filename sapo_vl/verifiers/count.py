"""`count`: counting questions (CLEVR "how many", object counting); the integer must be exact.

Counts are read as digits ("7", "1,024", "7.0") or English number words from zero to 999,999
("three", "twelve", "twenty-one", "one hundred and five", "none"). A count has no partial credit:
off by one is wrong, as CLEVR and CountBench score it. The answer is the extracted one (see
`extract.py`); inside it, or in the whole response when there are no tags, the *last* number mentioned
wins ("I first saw 3, but recounting there are 4" → 4), except after an "answer is" phrase, where the
first number is the answer. A lone "one" ("the red one") only counts when no other number is mentioned.
Non-integers ("3.5") and negative numbers are never a count.
"""
from __future__ import annotations

import re

from .extract import find_answer, find_numbers, strip_latex, strip_think
from .result import VerifierConfigError, VerifierResult, clip_extracted, hit, miss

_UNITS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen".split())}
_TENS = {w: 10 * (i + 2) for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())}
_OTHER = {"none": 0, "dozen": 12}
_WORD_RE = re.compile(
    r"(?<![A-Za-z])(?:" + "|".join(sorted([*_UNITS, *_TENS, "hundred", "thousand", "none", "dozen", "and"],
                                          key=len, reverse=True)) + r")(?![A-Za-z])",
    re.IGNORECASE,
)


def _below_thousand(words: list[str]) -> tuple[int, int] | None:
    """Parse the longest prefix of `words` that spells 0–999; returns (value, words used)."""
    i, value = 0, 0
    if i < len(words) and words[i] in _UNITS and i + 1 < len(words) and words[i + 1] == "hundred":
        value, i = 100 * _UNITS[words[i]], i + 2
        if i + 1 < len(words) and words[i] == "and" and (words[i + 1] in _UNITS or words[i + 1] in _TENS):
            i += 1
    tail = 0
    if i < len(words) and words[i] in _TENS:
        tail, i = _TENS[words[i]], i + 1
        if i < len(words) and words[i] in _UNITS and 0 < _UNITS[words[i]] < 10:
            tail, i = tail + _UNITS[words[i]], i + 1
    elif i < len(words) and words[i] in _UNITS and not (value and words[i] == "zero"):
        tail, i = _UNITS[words[i]], i + 1
    return (value + tail, i) if i else None


def _spell(words: list[str]) -> list[int]:
    """All numbers in a run of number words, e.g. ["twenty", "one"] → [21], ["three", "four"] → [3, 4]."""
    out, i = [], 0
    while i < len(words):
        if words[i] in ("none", "dozen"):
            out.append(_OTHER[words[i]])
            i += 1
            continue
        head = _below_thousand(words[i:])
        if head is None:
            i += 1  # a stray "and", "hundred" or "thousand"
            continue
        value, used = head
        j = i + used
        if j < len(words) and words[j] == "thousand" and value > 0:
            rest = _below_thousand(words[j + 2:] if j + 2 < len(words) and words[j + 1] == "and" else words[j + 1:])
            skip = 2 if j + 1 < len(words) and words[j + 1] == "and" and rest else 1
            value, j = value * 1000 + (rest[0] if rest else 0), j + skip + (rest[1] if rest else 0)
        out.append(value)
        i = j
    return out


def _mentions(text: str) -> list[tuple[int, int, bool]]:
    """Every count mentioned, as (position, value, is_lone_one), in order of position."""
    found: list[tuple[int, int, bool]] = []
    for value, pos in find_numbers(text):
        if value >= 0 and value == int(value):
            found.append((pos, int(value), False))
        else:
            found.append((pos, -1, False))  # a non-count number still counts as "the last number"
    run: list[str] = []
    run_start = run_end = -1
    for m in _WORD_RE.finditer(text):
        if run and text[run_end:m.start()].strip(" -") == "":
            run.append(m.group().lower())
        else:
            found.extend(_run_values(run, run_start))
            run, run_start = [m.group().lower()], m.start()
        run_end = m.end()
    found.extend(_run_values(run, run_start))
    found.sort()
    if len(found) > 1:
        found = [f for f in found if not f[2]] or found
    return found


def _run_values(run: list[str], start: int) -> list[tuple[int, int, bool]]:
    while run and run[0] == "and":
        run = run[1:]
    values = _spell(run)
    lone_one = run == ["one"]
    return [(start + k, v, lone_one) for k, v in enumerate(values)]


def _gold_count(answer: str) -> int:
    text = strip_latex(str(answer)).strip().rstrip(".")
    mentions = _mentions(text)
    if len(mentions) == 1 and mentions[0][1] >= 0 and not re.search(r"[0-9][^0-9,.]+[0-9]", text):
        return mentions[0][1]
    raise VerifierConfigError(f"count: ground truth {answer!r} is not a non-negative integer")


def verify(response: str, answer: str, *, tags_only: bool = False) -> VerifierResult:
    """Score 1 when the count in the response equals the gold count exactly.

    Params:
        tags_only: only read the answer from `<answer>` or `\\boxed{}`.
    """
    gold = _gold_count(answer)
    found = find_answer(response, tags_only=tags_only)
    if found is None:
        _, cut = strip_think(response)
        return miss("unterminated <think>" if cut else "no answer found")
    mentions = _mentions(strip_latex(found.text))
    if not mentions:
        return miss("no count found", clip_extracted(found.text))
    value = mentions[0][1] if found.source == "anchor" else mentions[-1][1]
    if value < 0:
        return miss("not a non-negative integer", clip_extracted(found.text))
    if value == gold:
        return hit("exact count", str(value))
    return miss(f"counted {value}, gold {gold}", str(value))

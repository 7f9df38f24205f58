"""`choice`: multiple-choice questions (MMMU, MathVista, MathVerse, ScienceQA style); the letter picked
must be the gold letter.

The gold `answer` is a letter ("B", "(B)", "b") or, when `choices` (the option texts, A first) is given,
one of the option texts. What the response picked is read as follows, and nothing is ever guessed (no
random fallback as in some published evaluation scripts: an unreadable response scores 0):

1. In `<answer>` / `\\boxed{}` content: a letter at the start ("B", "(B)", "B. 42", "Option B"); else
   the option text it names; else the last standalone letter in it.
2. Otherwise, the last "answer is" / "Answer:" / "correct option is" phrase followed by a letter or an
   option text (the last such phrase wins).
3. Otherwise, a response that is one letter ("b"); else whichever comes last in the text: an opening
   letter mark ("B.", "(B) 42"), a parenthesised letter "(C)", "option C", or an option text (the
   longest at a tie).

Letters are capitals A… (up to the number of `choices`, else up to `num_options`, default 10 = A–J), so
the article "a" is never a choice; a lone "A" counts only in the positions above, not as a word.
Option texts match case-insensitively on word boundaries, so "the answer is the second option text"
maps to B. The MMMU evaluation parses options in a similar order: explicit letter marks first, then
option content; the "last wins" rule is ours, because RL responses revise themselves.
"""
from __future__ import annotations

import re
import string
from typing import Sequence

from .extract import anchor_regions, last_answer_tag, last_boxed, strip_latex, strip_think
from .result import VerifierConfigError, VerifierResult, hit, miss

_MARK_WORDS = r"(?i:(?:the\s+)?(?:option|choice|letter|answer)\s*[:=]?\s*)?"


def _letters(choices: Sequence[str] | None, num_options: int) -> str:
    n = len(choices) if choices else num_options
    return string.ascii_uppercase[:n]


def _leading_letter(text: str, letters: str, loose_end: bool) -> tuple[int, str] | None:
    """(end, letter) of a letter mark at the start of `text`: "B", "(B)", "[B]", "**B**", "Option B", "B. text",
    "B) text". Unless `loose_end`, a bare letter must be followed by punctuation or the end of its line, so
    that "A triangle has…" is no answer."""
    after = r"(?:[.:)\],*]|\s|$)" if loose_end else r"(?:[.:)\]*]|[ \t]*(?:\n|$))"
    m = re.match(rf"[\s*_\"'`]*{_MARK_WORDS}(?:[(\[]([{letters}])[)\]]|([{letters}]){after})", text)
    return (m.end(), m.group(1) or m.group(2)) if m else None


def _option_hits(text: str, choices: Sequence[str]) -> list[tuple[int, int, int]]:
    """Every mention of an option text as (end, length, index). Options that are a single letter ("A", as
    some datasets list them) are left to the letter rules, or every article "a" would pick option A."""
    hits = []
    for i, option in enumerate(choices):
        words = option.strip().split()
        if not words or (len(words) == 1 and len(words[0]) == 1 and words[0].isalpha()):
            continue
        pattern = r"(?<!\w)" + r"\s+".join(map(re.escape, words)) + r"(?!\w)"
        hits.extend((m.end(), len(m.group()), i) for m in re.finditer(pattern, text, re.IGNORECASE))
    return hits


def _last_option(text: str, choices: Sequence[str] | None) -> tuple[int, str] | None:
    hits = _option_hits(text, choices) if choices else []
    if not hits:
        return None
    end, _, index = max(hits)
    return end, string.ascii_uppercase[index]


def _lone_letter(text: str, letters: str) -> str | None:
    """A text that is nothing but one letter, in either case: "b", "(b)", "B." ."""
    lone = re.fullmatch(r"[\s*_(\[]*([A-Za-z])[\s*_)\].]*", text)
    return lone.group(1).upper() if lone and lone.group(1).upper() in letters else None


def _from_region(region: str, letters: str, choices: Sequence[str] | None, tagged: bool) -> str | None:
    """The pick inside tag content (`tagged`) or after an answer phrase."""
    region = strip_latex(region)
    lone = _lone_letter(region, letters)
    if lone:
        return lone
    lead = _leading_letter(region, letters, loose_end=True)
    if lead:
        return lead[1]
    named = _last_option(region, choices)
    if named:
        return named[1]
    if not tagged:
        return None
    loose = re.findall(rf"(?<![A-Za-z])[(\[]?([{letters}])[)\]]?(?![A-Za-z])", region)
    return loose[-1] if loose else None


def _from_free_text(text: str, letters: str, choices: Sequence[str] | None) -> str | None:
    """Last of: an opening letter mark, "(C)", "option C", an option text; or the whole text is one letter."""
    lone = _lone_letter(text, letters)
    if lone:
        return lone
    lead = _leading_letter(text, letters, loose_end=False)
    marks = [(m.end(), m.group(1) or m.group(2))
             for m in re.finditer(rf"[(\[]([{letters}])[)\]]|\b(?i:option|choice)\s+([{letters}])\b", text)]
    named = _last_option(text, choices)
    candidates = marks + [c for c in (lead, named) if c]
    return max(candidates)[1] if candidates else None


def _gold_letter(answer: str, letters: str, choices: Sequence[str] | None) -> str:
    text = strip_latex(str(answer)).strip()
    m = re.fullmatch(r"[(\[]?([A-Za-z])[)\].]?", text)
    if m and m.group(1).upper() in letters:
        return m.group(1).upper()
    if choices:
        norm = " ".join(text.lower().split())
        for i, option in enumerate(choices):
            if " ".join(str(option).lower().split()) == norm:
                return string.ascii_uppercase[i]
    raise VerifierConfigError(f"choice: ground truth {answer!r} is neither a letter in {letters[0]}–{letters[-1]}"
                              + (" nor one of the option texts" if choices else ""))


def verify(response: str, answer: str, *, choices: Sequence[str] | None = None, num_options: int = 10,
           tags_only: bool = False) -> VerifierResult:
    """Score 1 when the option the response picks is the gold option.

    Params:
        choices: the option texts in order (A first); lets the response name an option by its text and
            lets `answer` be an option text. At most 26.
        num_options: how many letters (from A) are valid when `choices` is not given.
        tags_only: only read the pick from `<answer>` or `\\boxed{}`.
    """
    if choices is not None:
        if isinstance(choices, str) or not all(isinstance(c, str) for c in choices) or not 1 <= len(choices) <= 26:
            raise VerifierConfigError("choice: `choices` must be a list of 1 to 26 option texts")
    if not (isinstance(num_options, int) and 1 <= num_options <= 26):
        raise VerifierConfigError(f"choice: num_options must be an int in [1, 26], got {num_options!r}")
    letters = _letters(choices, num_options)
    gold = _gold_letter(answer, letters, choices)

    visible, cut = strip_think(response)
    picked, where = None, ""
    tagged = last_answer_tag(visible)
    region = tagged if tagged is not None else last_boxed(visible)
    if region is not None and region.strip():
        picked, where = _from_region(region, letters, choices, tagged=True), "tag"
    elif not tags_only:
        for region in anchor_regions(visible):
            picked = _from_region(region, letters, choices, tagged=False)
            if picked:
                where = "answer phrase"
                break
        if picked is None:
            picked, where = _from_free_text(visible, letters, choices), "text"
    if picked is None:
        return miss("unterminated <think>" if cut else "no option found")
    if picked == gold:
        return hit(f"picked {picked} ({where})", picked)
    return miss(f"picked {picked}, gold {gold}", picked)

"""`exact`: the answer must equal the gold string after normalisation (colours, names, yes/no, words).

Normalisation follows the SQuAD answer normalisation that VQA-style benchmarks reuse: lower case,
punctuation removed, the articles "a", "an", "the" removed, whitespace collapsed; LaTeX dressing
(`\\text{}`, `$`) is dropped too. Punctuation is tried both as a space and dropped, so "The Red."
equals "red", "yes" equals "Yes!", "New-York" equals "new york" and "U.S." equals "US". Anything else
must be identical: "dark red" is not "red". `alternatives` lists further accepted golds (e.g. "grey" for "gray").
A gold that is nothing but an article ("a", "A", "(a)": a subplot or option label, as in CharXiv) keeps its
articles, and the answer is then compared with its articles kept too ("(a)" and "A" match, "b" does not).
The answer is the extracted one (see `extract.py`); without tags or an "answer is" phrase the whole
response (outside `<think>`) is compared, so a one-word reply works and a paragraph does not.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Sequence

from .extract import find_answer, strip_latex, strip_think
from .result import VerifierConfigError, VerifierResult, clip_extracted, hit, miss

_ARTICLES = re.compile(r"\b(?:[Aa]|[Aa]n|[Tt]he)\b")


def normalize(text: str, *, case_sensitive: bool = False, punctuation: str = " ", articles: bool = False) -> str:
    """SQuAD-style normalisation: case, punctuation (replaced by `punctuation`), articles (kept when
    `articles`), whitespace, and LaTeX dressing."""
    text = strip_latex(text)
    if not case_sensitive:
        text = text.lower()
    text = "".join(punctuation if unicodedata.category(ch)[0] in "PS" else ch for ch in text)
    if not articles:
        text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _forms(text: str, case_sensitive: bool, articles: bool = False) -> set[str]:
    """Punctuation as a space ("new-york" → "new york") and dropped ("U.S." → "us"), as SQuAD does."""
    forms = {normalize(text, case_sensitive=case_sensitive, punctuation=p, articles=articles) for p in (" ", "")}
    forms.discard("")
    return forms


def verify(response: str, answer: str, *, alternatives: Sequence[str] = (), case_sensitive: bool = False,
           tags_only: bool = False) -> VerifierResult:
    """Score 1 when the normalised answer equals the normalised gold (or an alternative).

    Params:
        alternatives: other accepted golds.
        case_sensitive: keep letter case when comparing.
        tags_only: only read the answer from `<answer>` or `\\boxed{}`.
    """
    if isinstance(alternatives, str) or not all(isinstance(a, str) for a in alternatives):
        raise VerifierConfigError("exact: `alternatives` must be a list of strings")
    accepted = (str(answer), *alternatives)
    golds = set().union(*(_forms(g, case_sensitive) for g in accepted))
    articles = not golds  # a gold that is only an article ("a", "(A)") keeps its articles, and so does the reply
    if articles:
        golds = set().union(*(_forms(g, case_sensitive, articles=True) for g in accepted))
    if not golds:
        raise VerifierConfigError(f"exact: ground truth {answer!r} is empty after normalisation")
    found = find_answer(response, tags_only=tags_only)
    if found is None:
        _, cut = strip_think(response)
        return miss("unterminated <think>" if cut else "no answer found")
    preds = _forms(found.text, case_sensitive, articles)
    if preds & golds:
        return hit("match", clip_extracted(found.text))
    return miss("no match" if preds else "answer is empty after normalisation", clip_extracted(found.text))

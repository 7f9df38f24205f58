"""`choice`: multiple-choice questions (MMMU, MathVista, MathVerse, MATH-Vision, ScienceQA style); the letter
picked must be the gold letter.

The gold `answer` is a letter ("B", "(B)", "b") or, when `choices` (the option texts, A first) is given,
one of the option texts. What the response picked is read as follows, and nothing is ever guessed (no
random fallback as in MMMU's published evaluation script, which picks a random option when nothing
parses: here an unreadable response scores 0, so the same reply always gets the same score):

1. In `<answer>` / `\\boxed{}` content: a letter at the start ("B", "(B)", "B. 42", "Option B"); else the
   option whose *value* the content has (below); else the last letter named in a phrase (below) or option
   text; else the last standalone letter in it.
2. Otherwise, the last "answer is" / "Answer:" / "correct option is" phrase followed by a letter, an option's
   value or an option text (the last such phrase wins).
3. Otherwise, a response that is one letter ("b") or one value; else whichever comes last in the text: an
   opening letter mark ("B.", "(B) 42"), a parenthesised letter "(C)", "option C", a letter named in a
   phrase, or an option text (the longest at a tie).

Phrases that name a letter inside a sentence: "C is correct", "It is C.", "it's B", "I pick A.", "I choose
C", "go with D", "答案是 C" / "选C", and a letter ending the reply ("… therefore C."). The letter must be
followed by punctuation, the end of the text, or "because"/"since", so "It is a triangle" and "I pick A
triangle" pick nothing; the pronoun "I" never counts as the ending letter.

Letters are capitals A… (up to the number of `choices`, else up to `num_options`, default 10 = A–J), so
the article "a" is never a choice; a lone "A" counts only in the positions above, not as a word.

Option texts match case-insensitively on word boundaries, so "the answer is the second option text" maps
to B. Options and replies are compared after the same LaTeX clean-up (`$…$`, `\\(…\\)`, `\\text{}`,
`\\dfrac`, `\\left`/`\\right`, spaces around braces), so the option `$\\frac{2}{3}$` matches a reply
`\\boxed{\\frac{2}{3}}`. Options that are numbers or numeric LaTeX are also compared by value
(`extract.parse_value`: "2/3", "0.667" for `\\frac{2}{3}`): equal values match, and with `float_rounding`
set, values equal at that many decimals (MATH-V compares at 2: "0.67" picks `\\frac{2}{3}`); when several
options share the value, nothing is picked.

The MMMU evaluation parses options in a similar order: explicit letter marks first, then option content;
the "last wins" rule is ours, because RL responses revise themselves.
"""
from __future__ import annotations

import math
import re
import string
from typing import Sequence

from .extract import anchor_regions, fold_width, last_answer_tag, last_boxed, parse_value, strip_latex, strip_think
from .result import VerifierConfigError, VerifierResult, hit, miss

_MARK_WORDS = r"(?i:(?:the\s+)?(?:option|choice|letter|answer)\s*(?:[:=]\s*)?)?"
_END = r"(?=[ \t]*(?:[.,;:!?)\]]|\n|$)|\s+(?i:because|since)\b)"  # what may follow a letter named in a phrase
_VERBS = (r"(?i:choose|chose|choosing|pick|picked|picking|select|selected|selecting|go\s+with|going\s+with|"
          r"went\s+with|opt\s+for|answer\s+with)")
_OPTION_WORD = r"(?:(?i:the\s+)?(?i:option|choice|answer|letter)\s+)?"


def _canon(text: str) -> str:
    """The LaTeX-light form replies and option texts are compared in: `$`, `\\(`, `\\text{}`, spacing commands,
    `\\left`/`\\right`/`\\displaystyle` removed, `\\dfrac`/`\\tfrac` as `\\frac`, no spaces inside or before braces."""
    text = strip_latex(fold_width(text))
    text = re.sub(r"\\(?:left|right|displaystyle)(?![A-Za-z])", "", text)
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    # each pattern starts at a brace, a command or where a run of spaces starts (the lookbehinds), so a long run
    # of spaces is scanned once, not once per space
    text = re.sub(r"(?<![ \t])[ \t]+(?=\})|(?<=\{)[ \t]+", "", text)  # "{ 2 }" -> "{2}"
    text = re.sub(r"(\\[A-Za-z]+|\})[ \t]+(?=\{)", r"\1", text)  # "\\frac {2} {3}" -> "\\frac{2}{3}"
    return re.sub(r"(?<![ \t])[ \t]*\^[ \t]*", "^", text)


def _letters(choices: Sequence[str] | None, num_options: int) -> str:
    n = len(choices) if choices else num_options
    return string.ascii_uppercase[:n]


def _leading_letter(text: str, letters: str, loose_end: bool) -> tuple[int, str] | None:
    """(end, letter) of a letter mark at the start of `text`: "B", "(B)", "[B]", "**B**", "Option B", "B. text",
    "B) text". Unless `loose_end`, a bare letter must be followed by punctuation or the end of its line, so
    that "A triangle has…" is no answer; with `loose_end` (tag content) "B because…" counts but the article
    "A" and the pronoun "I" before a lower-case word ("A triangle", "I think") do not."""
    after = r"(?:[.:)\],*]|\s|$)" if loose_end else r"(?:[.:)\]*]|[ \t]*(?:\n|$))"
    m = re.match(rf"[\s*_\"'`]*{_MARK_WORDS}(?:[(\[]([{letters}])[)\]]|([{letters}]){after})", text)
    if not m:
        return None
    letter = m.group(1) or m.group(2)
    if m.group(2) in ("A", "I") and re.match(r"\s+(?!(?:because|since)\b)[a-z]", text[m.end() - 1:]):
        return None
    return m.end(), letter


def _phrase_marks(text: str, letters: str) -> list[tuple[int, str]]:
    """Letters named inside a sentence, as (end, letter): "C is correct", "It is C.", "I pick A.", "I choose C",
    "答案是 C", or a letter (not "I") ending the text."""
    L = letters
    patterns = [
        rf"(?<![A-Za-z]){_VERBS}\s+{_OPTION_WORD}[(\[]?([{L}])[)\]]?{_END}",
        rf"(?<![A-Za-z])(?i:it|this|that|which)(?:\s+(?i:is|must\s+be|should\s+be|would\s+be|will\s+be)|['’]s)\s+"
        rf"{_OPTION_WORD}[(\[]?([{L}])[)\]]?{_END}",
        rf"(?<![A-Za-z])[(\[]?([{L}])[)\]]?\s+(?i:is|seems|looks)\s+(?i:(?:the\s+)?(?:correct|right|true|best|answer))\b",
        rf"(?:答案|选项|故选|应选|选择|选)\s*(?:(?:是|为|应为|应该是|应选)\s*)?(?:[:：]\s*)?[(\[]?([{L}])(?![A-Za-z])",
    ]
    marks = [(m.end(), m.group(1)) for p in patterns for m in re.finditer(p, text)]
    ending = L.replace("I", "")  # "…than I." is the pronoun
    if ending:  # a letter ending the text; searched in its last characters only, so the scan stays linear
        text = text.rstrip()
        m = re.compile(rf"(?<![^\s:,])[(\[]?([{ending}])[)\]]?[ \t]*[.!]?\Z").search(text, max(0, len(text) - 12))
        if m:
            marks.append((m.end(), m.group(1)))
    return marks


def _option_hits(text: str, choices: Sequence[str]) -> list[tuple[int, int, int]]:
    """Every mention of an option text as (end, length, index). Options that are a single letter ("A", as
    some datasets list them) are left to the letter rules, or every article "a" would pick option A."""
    hits = []
    for i, option in enumerate(choices):
        words = _canon(option).split()
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


def _by_value(text: str, choices: Sequence[str] | None, float_rounding: int | None) -> str | None:
    """The option whose value the text has (the part after its last "=" or "\\approx"): equal values, else with
    `float_rounding`, values equal at that many decimals; None when no option or several options match."""
    if not choices:
        return None
    value = parse_value(re.split(r"=|\\approx|≈", text)[-1])
    if value is None:
        return None
    values = [parse_value(c) for c in choices]
    same = [i for i, v in enumerate(values) if v is not None and math.isclose(v, value, rel_tol=1e-9, abs_tol=1e-12)]
    if not same and float_rounding is not None:
        same = [i for i, v in enumerate(values) if v is not None and round(v, float_rounding) == round(value, float_rounding)]
    return string.ascii_uppercase[same[0]] if len(same) == 1 else None


def _lone_letter(text: str, letters: str) -> str | None:
    """A text that is nothing but one letter, in either case: "b", "(b)", "B." ."""
    lone = re.fullmatch(r"[\s*_(\[]*([A-Za-z])[\s*_)\].]*", text)
    return lone.group(1).upper() if lone and lone.group(1).upper() in letters else None


def _from_region(region: str, letters: str, choices: Sequence[str] | None, tagged: bool,
                 float_rounding: int | None) -> str | None:
    """The pick inside tag content (`tagged`) or after an answer phrase."""
    region = region.strip()
    lone = _lone_letter(region, letters)
    if lone:
        return lone
    lead = _leading_letter(region, letters, loose_end=True)
    if lead:
        return lead[1]
    valued = _by_value(region, choices, float_rounding)  # a region that is one value: "2\\sqrt{3}" is not option "3"
    if valued:
        return valued
    named = _phrase_marks(region, letters) + [c for c in [_last_option(region, choices)] if c]
    if named or not tagged:
        return max(named)[1] if named else None
    loose = re.findall(rf"(?<![A-Za-z])[(\[]?([{letters}])[)\]]?(?![A-Za-z])", region)
    return loose[-1] if loose else None


def _from_free_text(text: str, letters: str, choices: Sequence[str] | None, float_rounding: int | None) -> str | None:
    """The whole text is one letter or one value; else the last of: an opening letter mark, "(C)", "option C",
    a letter named in a phrase, an option text."""
    lone = _lone_letter(text, letters)
    if lone:
        return lone
    valued = _by_value(text.strip(), choices, float_rounding)
    if valued:
        return valued
    lead = _leading_letter(text, letters, loose_end=False)
    marks = [(m.end(), m.group(1) or m.group(2))
             for m in re.finditer(rf"[(\[]([{letters}])[)\]]|\b(?i:option|choice)\s+([{letters}])\b", text)]
    named = _last_option(text, choices)
    candidates = marks + _phrase_marks(text, letters) + [c for c in (lead, named) if c]
    return max(candidates)[1] if candidates else None


def _gold_letter(answer: str, letters: str, choices: Sequence[str] | None) -> str:
    text = _canon(str(answer)).strip()
    m = re.fullmatch(r"[(\[]?([A-Za-z])[)\].]?", text)
    if m and m.group(1).upper() in letters:
        return m.group(1).upper()
    if choices:
        norm = " ".join(text.lower().split())
        for i, option in enumerate(choices):
            if " ".join(_canon(str(option)).lower().split()) == norm:
                return string.ascii_uppercase[i]
    raise VerifierConfigError(f"choice: ground truth {answer!r} is neither a letter in {letters[0]}–{letters[-1]}"
                              + (" nor one of the option texts" if choices else ""))


def verify(response: str, answer: str, *, choices: Sequence[str] | None = None, num_options: int = 10,
           float_rounding: int | None = None, tags_only: bool = False) -> VerifierResult:
    """Score 1 when the option the response picks is the gold option.

    Params:
        choices: the option texts in order (A first); lets the response name an option by its text or value
            and lets `answer` be an option text. At most 26.
        num_options: how many letters (from A) are valid when `choices` is not given.
        float_rounding: decimal places at which a reply's value matches a numeric option (MATH-V: 2); None
            (default): values must be equal.
        tags_only: only read the pick from `<answer>` or `\\boxed{}`.
    """
    if choices is not None:
        if isinstance(choices, str) or not all(isinstance(c, str) for c in choices) or not 1 <= len(choices) <= 26:
            raise VerifierConfigError("choice: `choices` must be a list of 1 to 26 option texts")
    if not (isinstance(num_options, int) and 1 <= num_options <= 26):
        raise VerifierConfigError(f"choice: num_options must be an int in [1, 26], got {num_options!r}")
    if float_rounding is not None and not (isinstance(float_rounding, int) and 0 <= float_rounding <= 15):
        raise VerifierConfigError(f"choice: float_rounding must be None or an int in [0, 15], got {float_rounding!r}")
    letters = _letters(choices, num_options)
    gold = _gold_letter(answer, letters, choices)

    visible, cut = strip_think(response)
    visible = _canon(visible)
    picked, where = None, ""
    tagged = last_answer_tag(visible)
    region = tagged if tagged is not None else last_boxed(visible)
    if region is not None and region.strip():
        picked, where = _from_region(region, letters, choices, True, float_rounding), "tag"
    elif not tags_only:
        for region in anchor_regions(visible):
            picked = _from_region(region, letters, choices, False, float_rounding)
            if picked:
                where = "answer phrase"
                break
        if picked is None:
            picked, where = _from_free_text(visible, letters, choices, float_rounding), "text"
    if picked is None:
        return miss("unterminated <think>" if cut else "no option found")
    if picked == gold:
        return hit(f"picked {picked} ({where})", picked)
    return miss(f"picked {picked}, gold {gold}", picked)

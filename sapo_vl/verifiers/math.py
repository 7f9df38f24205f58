"""`math`: is the response's final answer mathematically equal to the ground truth? (math-verify)

Equivalence is math-verify's (Hugging Face, 0.9): both sides are parsed from LaTeX to SymPy and compared
numerically (6 decimal places by default) and symbolically, so 1/2 = 0.5 = \\frac{1}{2},
2\\sqrt{221} = \\sqrt{884}, \\pi/2 ≠ 90, 50\\% = 0.5, intervals and sets compare as sets, and units
(cm, degrees, \\text{ m}^2) are dropped.

What this module adds around it:
- Extraction (see `extract.py`): the content of `<answer>` or the last `\\boxed{}` is parsed *wrapped
  in `\\boxed{…}`*. Two traps in peers motivate this: math-verify finds nothing in `<answer>3</answer>`
  unless the tags are stripped first, and raw LaTeX such as `2 \\sqrt { 221 }` (a common gold format)
  parses as 221 unless it is wrapped. Leading words ("The answer is 3") and trailing words ("5 red
  apples") around a number are dropped first, unicode symbols (π, √, °, −, ×, ², full-width digits) become
  LaTeX, and scientific notation becomes a power of ten ("2.4e1" and "1.2 × 10^3" are numbers, not
  2.4·e). Without any
  tag, math-verify's own free-text extraction reads the last 2,000 characters ("final answer is $x$",
  the last formula, the last number), unless `tags_only=True`.
- A hard wall-clock limit: math-verify runs with its own signal-based timeouts off, inside a worker
  process that is killed after `timeout` seconds (see `guard.py`); `10^{10^{10^{10}}}` scores 0,
  "timeout", instead of hanging the trainer.
- Fast paths that skip SymPy: identical answers after whitespace clean-up score 1 (the gold's leading and
  trailing words are dropped as the answer's are, so a gold that is a structured phrase, such as
  "slope =-4" or "domain: (2,8] and range: [6,8)", scores 1 against itself and against "-4" or the same
  phrase; math-verify alone parses neither); two plain integers are compared exactly.
"""
from __future__ import annotations

import re
from functools import lru_cache

from .extract import find_answer, strip_think
from .guard import GuardTimeout, WorkerCrashed, run_guarded
from .result import VerifierConfigError, VerifierResult, clip_extracted, hit, miss

_UNICODE = {
    "\u2212": "-", "π": "\\pi ", "√": "\\sqrt ", "°": "^\\circ ", "×": "\\times ", "÷": "\\div ",
    "∞": "\\infty ", "≤": "\\le ", "≥": "\\ge ", "≠": "\\ne ", "·": "\\cdot ",
}
_UNICODE_RE = re.compile("|".join(map(re.escape, _UNICODE)))
_FUNCTION_WORDS = {"sin", "cos", "tan", "cot", "sec", "csc", "log", "ln", "exp", "lg", "arcsin", "arccos",
                   "arctan", "sinh", "cosh", "tanh", "max", "min", "mod", "gcd", "lcm", "det"}
_WORD = r"(?<![\\A-Za-z])[A-Za-z]{2,}(?![A-Za-z])"
_LEADING_WORDS = re.compile(rf"^\s*(?:{_WORD}[\s,:]*)+(?:[:=]\s*)?")
_TRAILING_WORDS = re.compile(rf"(?:\s+{_WORD}\.?)+\s*$")
_PLAIN_INT = re.compile(r"[-+]?[0-9]+")
_FREE_TEXT_TAIL = 2000
_MAX_ANSWER_CHARS = 2000


_SUPERSCRIPT = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺", "0123456789-+")
_SUPERSCRIPT_RUN = re.compile("[⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺]+")
_E_NOTATION = re.compile(r"(?<![A-Za-z0-9_.\\])([0-9]+(?:\.[0-9]+)?|\.[0-9]+)[eE]([-+]?[0-9]{1,3})(?![0-9.])")
_X_TEN = re.compile(r"(?<=[0-9])\s*[xX*]\s*(?=10\s*\^)")


def _unicode_to_latex(text: str) -> str:
    """Unicode maths as LaTeX (π, √, °, ×, superscript digits) and scientific notation as a power of ten:
    "2.4e1" → 2.4\\times 10^{1} (math-verify would read the e as Euler's number), "1.2x10^3" → 1.2\\times10^3."""
    text = _SUPERSCRIPT_RUN.sub(lambda m: "^{" + m.group().translate(_SUPERSCRIPT) + "}", text)
    text = _UNICODE_RE.sub(lambda m: _UNICODE[m.group()], text)
    text = _E_NOTATION.sub(r"\1\\times 10^{\2}", text)
    return _X_TEN.sub("\\\\times ", text)


def _drop_words(content: str) -> str:
    """ "The answer is 3" → "3", "5 red apples" → "5"; kept as is when no digit or LaTeX would remain."""
    out = content
    lead = _LEADING_WORDS.match(out)
    if lead and not any(w.lower() in _FUNCTION_WORDS for w in re.findall(r"[A-Za-z]+", lead.group())):
        out = out[lead.end():]
    out = _TRAILING_WORDS.sub("", out)
    return out if re.search(r"[0-9\\]", out) else content


def _as_latex(text: str) -> str:
    """Wrap in \\boxed{} unless the text already carries its own math delimiters."""
    if "$" in text or "\\boxed" in text or "\\(" in text or "\\[" in text:
        return text
    return "\\boxed{" + text + "}"


_LATEX_COMMAND = re.compile(r"\\[A-Za-z]+")


def _bare_expression(text: str) -> bool:
    """A short one-line reply that is only an expression ("2\\sqrt{17}", "9\\pi", "x^2+1"): no prose words."""
    if len(text) > 60 or "\n" in text:
        return False
    return re.search(r"[A-Za-z]{2,}", _LATEX_COMMAND.sub(" ", text)) is None


def _squash(text: str) -> str:
    text = re.sub(r"\\left|\\right|\\[,;:! ]|\s+|\$", "", text)
    return text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")


# ---------------------------------------------------------------------------------------------- in the worker
@lru_cache(maxsize=4096)
def _parse_gold(gold: str) -> tuple:
    from math_verify import parse

    return tuple(parse(gold, parsing_timeout=None))


def _equivalent(gold: str, pred: str, free_text: bool, float_rounding: int) -> tuple[str, str | None]:
    """Runs under the guard. Returns (verdict, the prediction as math-verify matched it)."""
    from math_verify import parse, verify

    gold_parsed = list(_parse_gold(gold))
    if not gold_parsed:
        return "gold_unparsed", None
    pred_parsed = parse(pred, parsing_timeout=None)
    if not pred_parsed and not free_text:  # the boxed wrapping found nothing: let math-verify look itself
        pred_parsed = parse(pred.removeprefix("\\boxed{").removesuffix("}"), parsing_timeout=None)
    if not pred_parsed:
        return "pred_unparsed", None
    matched = next((p for p in pred_parsed if isinstance(p, str)), None)
    ok = verify(gold_parsed, pred_parsed, float_rounding=float_rounding, timeout_seconds=None)
    return ("equivalent" if ok else "not_equivalent"), matched


# ---------------------------------------------------------------------------------------------- the verifier
def verify(response: str, answer: str, *, timeout: float = 5.0, float_rounding: int = 6,
           tags_only: bool = False) -> VerifierResult:
    """Score 1 when the final answer equals `answer` under math-verify.

    Params:
        timeout: wall-clock seconds for parsing and comparing (the worker is killed past it), > 0.
        float_rounding: decimal places used by math-verify's numeric comparison.
        tags_only: only read answers from `<answer>` or `\\boxed{}`; no free-text fallback.
    """
    if not (isinstance(timeout, (int, float)) and timeout > 0):
        raise VerifierConfigError(f"math: timeout must be a positive number of seconds, got {timeout!r}")
    if not (isinstance(float_rounding, int) and 0 <= float_rounding <= 30):
        raise VerifierConfigError(f"math: float_rounding must be an int in [0, 30], got {float_rounding!r}")
    gold_text = _unicode_to_latex(str(answer)).strip()
    if not gold_text:
        raise VerifierConfigError("math: the ground-truth answer is empty")

    found = find_answer(response, tags_only=True)
    if found is None and not tags_only:
        # an "answer is X" / "Answer: X" phrase, or a reply that is nothing but an expression, is read as LaTeX
        # like a tagged answer (else math-verify would read "2\sqrt{17}" as 2); other prose stays free text
        loose = find_answer(response)
        if loose is not None and (loose.source == "anchor" or _bare_expression(loose.text)):
            found = loose
    if found is not None:
        if len(found.text) > _MAX_ANSWER_CHARS:
            return miss(f"answer longer than {_MAX_ANSWER_CHARS} characters", clip_extracted(found.text))
        content = _drop_words(_unicode_to_latex(found.text))
        extracted = found.text
        if _squash(content) in (_squash(gold_text), _squash(_drop_words(gold_text))):
            return hit("identical", extracted)
        if _PLAIN_INT.fullmatch(content.strip()) and _PLAIN_INT.fullmatch(gold_text) and len(content) < 100:
            same = int(content) == int(gold_text)
            return hit("equal integers", extracted) if same else miss("different integers", extracted)
        pred, free_text = _as_latex(content), False
    elif tags_only:
        return miss("no <answer> or \\boxed{} found")
    else:
        visible, cut = strip_think(response)
        if not visible.strip():
            return miss("unterminated <think>" if cut else "empty response")
        pred, free_text, extracted = _unicode_to_latex(visible[-_FREE_TEXT_TAIL:]), True, None

    try:
        verdict, matched = run_guarded(_equivalent, _as_latex(gold_text), pred, free_text, float_rounding,
                                       timeout=timeout)
    except GuardTimeout:
        return miss("timeout", clip_extracted(extracted))
    except WorkerCrashed:
        return miss("math-verify worker crashed", clip_extracted(extracted))
    extracted = clip_extracted(extracted if extracted is not None else matched)
    if verdict == "equivalent":
        return hit("equivalent", extracted)
    if verdict == "gold_unparsed":
        return miss("ground truth did not parse", extracted)
    if verdict == "pred_unparsed":
        return miss("answer did not parse" if found else "no answer found", extracted)
    return miss("not equivalent", extracted)

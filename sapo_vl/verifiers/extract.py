"""Answer extraction shared by the verifiers: where in a response the final answer sits.

The rules are ours, written for R1-style RL rollouts (reasoning in `<think>`, answer in `<answer>` or
`\\boxed{}`) and for plain chat answers:

1. Reasoning is never the answer. Complete `<think>…</think>` blocks are dropped; text before a lone
   `</think>` is dropped too (the opening tag was in the prompt, as Qwen3 thinking templates do); an
   unclosed `<think>` hides everything after it (the response was cut off while thinking).
2. The answer is then, in this order of preference:
   - `answer_tag`: the content of the last `<answer>…</answer>` (an unclosed last `<answer>` runs to the
     end); if that content holds a `\\boxed{}`, the box's content;
   - `boxed`: the content of the last complete `\\boxed{…}` (or `\\fbox{…}`);
   - `anchor`: the text after the last "answer is" / "Answer:" / "correct option is" phrase, to the end of
     its sentence or line ("the options are" and "the first option is" are no answer phrases);
   - `text`: all the remaining text.
   `tags_only=True` stops after `boxed`.
3. `\\boxed` parsing counts braces, skips escaped `\\{` `\\}`, unwraps nested boxes (`\\boxed{\\boxed{3}}`
   is 3), and ignores boxes whose closing brace never comes.

Every scan here is linear in the length of the response, so a 100 KB response or one made of
ten thousand `\\boxed{` costs milliseconds, not minutes.
"""
from __future__ import annotations

import re
from typing import NamedTuple

__all__ = [
    "Answer", "as_text", "strip_think", "last_boxed", "last_answer_tag", "anchor_regions", "find_answer",
    "strip_latex", "parse_number", "find_numbers", "NUMBER_RE",
]


class Answer(NamedTuple):
    text: str
    """The extracted answer, stripped of surrounding whitespace; never empty."""
    source: str
    """Where it came from: "answer_tag", "boxed", "anchor" or "text"."""


def as_text(value: object) -> str:
    """Model output as a str: bytes decoded as UTF-8 with replacement, None as "", anything else via str()."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


# ---------------------------------------------------------------------------------------------- think
_THINK_TAG = re.compile(r"<(/?)think>", re.IGNORECASE)


def strip_think(text: str) -> tuple[str, bool]:
    """Drop reasoning: returns (visible text, True when an unclosed `<think>` hid the rest)."""
    kept: list[str] = []
    pos = 0
    inside = False
    for tag in _THINK_TAG.finditer(text):
        closing = tag.group(1) == "/"
        if not inside and not closing:  # <think> opens a block
            kept.append(text[pos:tag.start()])
            inside = True
        elif inside and closing:  # </think> closes it
            inside = False
        elif not inside and closing:  # lone </think>: the opening tag was in the prompt
            kept.clear()
        # a nested <think> while inside changes nothing
        pos = tag.end()
    if inside:
        return " ".join(kept), True
    kept.append(text[pos:])
    return " ".join(kept), False


# ---------------------------------------------------------------------------------------------- boxed
_BOX_TOKEN = re.compile(r"\\(?:boxed|fbox)\s*\{|\\.|[{}]", re.DOTALL)
_BOX_BARE = re.compile(r"\\boxed\s+([^\s${}\\]+)")


def _last_box(text: str) -> str | None:
    """Content of the complete box that closes last (the outermost of a nest), or of a bare `\\boxed x`."""
    stack: list[tuple[bool, int]] = []  # (opened by \boxed{, start of content)
    last: tuple[int, int] | None = None  # (start, end) of the content; sliced once at the end
    for tok in _BOX_TOKEN.finditer(text):
        s = tok.group()
        if s == "{":
            stack.append((False, tok.end()))
        elif s == "}":
            if stack:
                is_box, content = stack.pop()
                if is_box:
                    last = (content, tok.start())
        elif s.startswith(("\\boxed", "\\fbox")):
            stack.append((True, tok.end()))
        # any other escaped character (\{, \}, \\, \frac…) is skipped
    if last is None:
        bare = None
        for bare in _BOX_BARE.finditer(text):
            pass
        return bare.group(1) if bare else None
    return text[last[0]:last[1]]


def last_boxed(text: str) -> str | None:
    """Content of the last complete `\\boxed{…}`, nested boxes unwrapped; None if there is none."""
    content = _last_box(text)
    for _ in range(16):  # each unwrap is linear; real nests are 2 deep
        if content is None or ("\\boxed" not in content and "\\fbox" not in content):
            return content
        inner = _last_box(content)
        if inner is None:
            return content
        content = inner
    return content


# ---------------------------------------------------------------------------------------------- <answer>
_ANSWER_OPEN = re.compile(r"<answer>", re.IGNORECASE)
_ANSWER_CLOSE = re.compile(r"</answer>", re.IGNORECASE)


def last_answer_tag(text: str) -> str | None:
    """Content of the last `<answer>…</answer>`; an unclosed last `<answer>` runs to the end of the text."""
    last = None
    for last in _ANSWER_OPEN.finditer(text):
        pass
    if last is None:
        return None
    close = _ANSWER_CLOSE.search(text, last.end())
    return text[last.end(): close.start() if close else len(text)]


# ---------------------------------------------------------------------------------------------- anchors
_ANCHOR = re.compile(
    r"\b(?:(?:(?:final|correct|right|best)\s+)?answers?|(?:final|correct|right|best)\s+(?:option|choice))\b[*_ \t]*"
    r"(?:(?:is|are|would\s+be|should\s+be|must\s+be|will\s+be)(?![A-Za-z])|[:=])[*_:\s]*",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"\n|(?<![A-Z])\.(?=\s|$)")  # "B." and "D.C." do not end a sentence


def anchor_regions(text: str, limit: int = 16) -> list[str]:
    """Text after the last `limit` answer phrases ("answer is", "Answer:"), last phrase first; each region
    ends at its sentence's full stop or line break."""
    starts = [m.end() for m in _ANCHOR.finditer(text)][-limit:]
    regions = []
    for start in reversed(starts):
        end = _SENTENCE_END.search(text, start)
        region = text[start: end.start() if end else len(text)].strip(" \t*_")
        if region:
            regions.append(region)
    return regions


def find_answer(response: str, *, tags_only: bool = False) -> Answer | None:
    """The final answer in a response by the order of rule 2 above; None when there is none."""
    visible, _ = strip_think(response)
    tagged = last_answer_tag(visible)
    if tagged is not None:
        boxed = last_boxed(tagged)
        text = (boxed if boxed is not None and boxed.strip() else tagged).strip()
        return Answer(text, "answer_tag") if text else None
    boxed = last_boxed(visible)
    if boxed is not None:
        return Answer(boxed.strip(), "boxed") if boxed.strip() else None
    if tags_only:
        return None
    regions = anchor_regions(visible, limit=1)
    if regions:
        return Answer(regions[0], "anchor")
    text = visible.strip()
    return Answer(text, "text") if text else None


# ---------------------------------------------------------------------------------------------- LaTeX / numbers
_LATEX_TEXT = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")
_LATEX_SPACING = re.compile(r"\\[,;:! ]|\\q?quad\b|~")


def strip_latex(text: str) -> str:
    """Light LaTeX clean-up for string and number answers: `\\text{x}` → x, `\\%` → %, `{,}` → ",",
    spacing commands and `$` / `\\(` `\\)` delimiters removed."""
    for _ in range(3):  # \text{\textbf{x}}
        text = _LATEX_TEXT.sub(r"\1", text)
    text = text.replace("{,}", ",").replace("\\%", "%").replace("\\$", "$")
    text = text.replace("\\(", " ").replace("\\)", " ").replace("\\[", " ").replace("\\]", " ")
    text = _LATEX_SPACING.sub(" ", text)
    return text.replace("$", " ").strip()


NUMBER_RE = re.compile(
    r"(?<![A-Za-z0-9_.])"
    r"(?P<sign>[-+\u2212]?)\s?"
    r"(?P<body>[0-9]{1,3}(?:,[0-9]{3})+(?![0-9])(?:\.[0-9]+)?|[0-9]+(?:\.[0-9]+)?|\.[0-9]+)"
    r"(?P<exp>[eE][-+]?[0-9]+)?"
    r"(?![0-9])"
    r"(?P<pct>\s?%)?"
)
def _to_float(match: re.Match) -> float | None:
    raw = match.group("body").replace(",", "") + (match.group("exp") or "")
    try:
        value = float(raw)
    except (ValueError, OverflowError):
        return None
    if value != value or value in (float("inf"), float("-inf")):
        return None
    return -value if match.group("sign") in ("-", "\u2212") else value


_CURRENCY = re.compile(r"^([-+\u2212]?)\s*[€£¥]\s*")


def parse_number(text: str) -> float | None:
    """The number a whole string spells ("1,234", "-3.5", "45%", "$12", "1.2e3", "7."), else None.
    A percent sign is dropped (45% reads as 45), as ChartQA compares them."""
    s = strip_latex(text).rstrip(".").strip()  # strip_latex also drops "$"
    m = NUMBER_RE.fullmatch(_CURRENCY.sub(r"\1", s))
    return _to_float(m) if m else None


def find_numbers(text: str) -> list[tuple[float, int]]:
    """Every number in a text as (value, position), in order of position."""
    out = []
    for m in NUMBER_RE.finditer(text):
        value = _to_float(m)
        if value is not None:
            out.append((value, m.start()))
    return out

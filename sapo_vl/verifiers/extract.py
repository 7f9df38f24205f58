"""Answer extraction shared by the verifiers: where in a response the final answer sits.

The rules are ours, written for R1-style RL rollouts (reasoning in `<think>`, answer in `<answer>` or
`\\boxed{}`) and for plain chat answers:

1. Reasoning is never the answer. Complete `<think>…</think>` blocks are dropped; text before a lone
   `</think>` is dropped too (the opening tag was in the prompt, as Qwen3 thinking templates do); an
   unclosed `<think>` hides everything after it (the response was cut off while thinking). The text that
   remains has its full-width forms folded to ASCII ("１４" → "14", "（Ｃ）" → "(C)"), as CJK replies write them.
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

import math
import re
from typing import NamedTuple

__all__ = [
    "Answer", "as_text", "fold_width", "strip_think", "last_boxed", "last_answer_tag", "anchor_regions",
    "find_answer", "strip_latex", "parse_number", "find_numbers", "parse_value", "NUMBER_RE", "PERCENT_MODES",
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


_FULL_WIDTH = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}


def fold_width(text: str) -> str:
    """Full-width ASCII forms (U+FF01–U+FF5E: "１４", "Ｃ", "％") and the ideographic space as plain ASCII."""
    return text.translate(_FULL_WIDTH)


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
        return fold_width(" ".join(kept)), True
    kept.append(text[pos:])
    return fold_width(" ".join(kept)), False


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


_NUM = r"(?:[0-9]{1,3}(?:,[0-9]{3})+(?![0-9])(?:\.[0-9]+)?|[0-9]+(?:\.[0-9]+)?|\.[0-9]+)"
_TIMES_TEN = r"\s*(?:\\times|\\cdot|×|·|x|\*)\s*10\s*\^\s*(?:\{\s*(?P<pow>[-+\u2212]?[0-9]{1,3})\s*\}|(?P<pow2>[-+\u2212]?[0-9]{1,3}))"
NUMBER_RE = re.compile(
    r"(?<![A-Za-z0-9_.])"
    r"(?P<sign>[-+\u2212]?)\s?"
    r"(?:\\[dt]?frac\s*\{\s*(?P<fnum>[-+\u2212]?" + _NUM + r")\s*\}\s*\{\s*(?P<fden>" + _NUM + r")\s*\}"
    r"|(?P<snum>" + _NUM + r")\s*/\s*(?P<sden>" + _NUM + r")(?![0-9.])"
    r"|(?P<body>" + _NUM + r")(?P<exp>[eE][-+]?[0-9]{1,3})?(?![0-9])(?:" + _TIMES_TEN + r")?)"
    r"(?![0-9])"
    r"(?P<pct>\s?%)?"
)
"""A number as replies write it: "1,234.5", "-3", "2.4e1", "1.2 × 10^3", "1/4", "\\frac{28}{2}", "45%"."""
PERCENT_MODES = ("number", "fraction")
"""How a percent sign reads: "number" (45% is 45) or "fraction" (45% is 0.45, as ChartQA's published code)."""


def _float(text: str) -> float:
    return float(text.replace(",", "").replace("\u2212", "-"))


def _to_float(match: re.Match, percent: str = "number") -> float | None:
    """The value of a NUMBER_RE match; None when it is not a finite number (1e999, 1/0)."""
    try:
        if match.group("fnum") is not None:
            value = _float(match.group("fnum")) / _float(match.group("fden"))
        elif match.group("snum") is not None:
            value = _float(match.group("snum")) / _float(match.group("sden"))
        else:
            value = _float(match.group("body") + (match.group("exp") or ""))
            power = match.group("pow") or match.group("pow2")
            if power is not None:
                value *= 10.0 ** int(power.replace("\u2212", "-"))
    except (ValueError, OverflowError, ZeroDivisionError):
        return None
    if value != value or value in (float("inf"), float("-inf")):
        return None
    if match.group("pct") and percent == "fraction":
        value /= 100.0
    return -value if match.group("sign") in ("-", "\u2212") else value


_CURRENCY = re.compile(r"^([-+\u2212]?)\s*[€£¥]\s*")
_SPACED_GROUPS = re.compile(r"[-+\u2212]?[0-9]{1,3}(?:[ \u00a0\u2009\u202f][0-9]{3})+(?:\.[0-9]+)?\s?%?")


def parse_number(text: str, *, percent: str = "number") -> float | None:
    """The number a whole string spells ("1,234", "1 234", "-3.5", "45%", "$12", "1.2e3", "1.2 × 10^3", "7.",
    "1/4", "\\frac{28}{2}"), else None. `percent` is one of PERCENT_MODES: by default 45% reads as 45."""
    s = strip_latex(fold_width(text)).rstrip(".").strip()  # strip_latex also drops "$"
    s = _CURRENCY.sub(r"\1", s)
    if _SPACED_GROUPS.fullmatch(s):  # digit groups split by spaces: "1 234" is 1234
        s = re.sub(r"(?<=[0-9])[ \u00a0\u2009\u202f](?=[0-9]{3})", "", s)
    m = NUMBER_RE.fullmatch(s)
    return _to_float(m, percent) if m else None


def find_numbers(text: str, *, percent: str = "number") -> list[tuple[float, int]]:
    """Every number in a text as (value, position), in order of position; a fraction ("1/4", "\\frac{1}{4}") or
    a number in scientific notation is one number."""
    out = []
    for m in NUMBER_RE.finditer(fold_width(text)):
        value = _to_float(m, percent)
        if value is not None:
            out.append((value, m.start()))
    return out


# ---------------------------------------------------------------------------------------------- values
_MAX_VALUE_CHARS = 200
_VALUE_TOKENS = re.compile(r"\s*(?:(?P<num>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)|(?P<name>pi)|(?P<op>\*\*|[-+*/()]))")


def _latex_to_arithmetic(text: str) -> str | None:
    """A numeric LaTeX or plain expression as arithmetic over numbers, pi, + - * / ** and parentheses; None when
    it holds anything else (a variable, a comparison, a tuple)."""
    s = strip_latex(fold_width(text))
    s = re.sub(r"\\(?:left|right|displaystyle)\b", "", s).replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = re.sub(r"(?<=[0-9]),(?=[0-9]{3}(?![0-9]))", "", s)  # thousands separators
    s = re.sub(r"\^\s*\\circ|°", "", s)
    s = re.sub(r"\\frac\s*([0-9])\s*([0-9])", r"{\1}/{\2}", s)  # \frac12
    for _ in range(8):  # innermost \frac{a}{b} and \sqrt{a} first
        before = s
        s = re.sub(r"\\frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}", r"((\1)/(\2))", s)
        s = re.sub(r"\\sqrt\s*\[([^\[\]{}]*)\]\s*\{([^{}]*)\}", r"((\2)**(1/(\1)))", s)
        s = re.sub(r"\\sqrt\s*\{([^{}]*)\}", r"((\1)**(1/2))", s)
        if s == before:
            break
    s = re.sub(r"\\sqrt\s*([0-9]+(?:\.[0-9]+)?)", r"((\1)**(1/2))", s)
    s = re.sub(r"\\pi\b|π", " pi ", s)
    s = re.sub(r"\\times|\\cdot|×|·", "*", s)
    s = re.sub(r"\\div|÷", "/", s).replace("\u2212", "-").replace("%", "*(1/100)")
    s = s.replace("^", "**").replace("{", "(").replace("}", ")")
    if "\\" in s or re.search(r"[A-Za-z]", s.replace("pi", "")):
        return None
    s = re.sub(r"\s+", " ", s).strip()
    s = re.sub(r"(?<=[0-9)i])\s*(?=[(p])", "*", s)  # implicit products: 2pi, 2(3), 2\sqrt{3}
    return re.sub(r"(?<=\))\s*(?=[0-9.])", "*", s)  # (1/2)3


def _evaluate(tokens: list[tuple[str, str]]) -> float:
    """Recursive descent over (kind, text) tokens: sum := product (+|- product)*, product := power ((*|/) power)*,
    power := unary (** power)?, unary := (+|-) unary | atom, atom := number | pi | ( sum )."""
    pos = 0

    def peek() -> str:
        return tokens[pos][1] if pos < len(tokens) else ""

    def take() -> tuple[str, str]:
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    def atom() -> float:
        kind, text = take()
        if kind == "num":
            return float(text)
        if kind == "name":
            return math.pi
        if text == "(":
            value = total()
            if take()[1] != ")":
                raise ValueError("unbalanced")
            return value
        raise ValueError(f"unexpected {text!r}")

    def unary() -> float:
        if peek() in ("-", "+"):
            return -unary() if take()[1] == "-" else unary()
        return atom()

    def power() -> float:
        base = unary()
        if peek() == "**":
            take()
            exponent = power()
            if abs(exponent) > 64 or abs(base) > 1e12:
                raise ValueError("power too large")
            return float(base ** exponent)
        return base

    def product() -> float:
        value = power()
        while peek() in ("*", "/"):
            value = value * power() if take()[1] == "*" else value / power()
        return value

    def total() -> float:
        value = product()
        while peek() in ("+", "-"):
            value = value + product() if take()[1] == "+" else value - product()
        return value

    value = total()
    if pos != len(tokens):
        raise ValueError("trailing tokens")
    return value


def parse_value(text: str) -> float | None:
    """The real value of a numeric expression written in LaTeX or plain text ("2/3", "\\frac{2}{3}", "0.67",
    "2\\sqrt{3}", "\\frac{\\pi}{2}", "1,234", "45%" as 0.45); None for anything else (variables, tuples,
    intervals, complex results) or longer than 200 characters. Pure Python, bounded work: no SymPy."""
    if not text or len(text) > _MAX_VALUE_CHARS:
        return None
    arithmetic = _latex_to_arithmetic(text)
    if not arithmetic:
        return None
    tokens, pos = [], 0
    for m in _VALUE_TOKENS.finditer(arithmetic):
        if m.start() != pos:
            return None
        pos = m.end()
        kind = m.lastgroup
        tokens.append((kind, m.group(kind)))
    if pos != len(arithmetic.rstrip()) or not tokens:
        return None
    try:
        value = _evaluate(tokens)
    except (ValueError, ZeroDivisionError, OverflowError, IndexError, RecursionError, TypeError):
        return None
    if isinstance(value, complex) or value != value or value in (float("inf"), float("-inf")):
        return None
    return float(value)

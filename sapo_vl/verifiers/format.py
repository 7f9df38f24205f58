"""`format`: does the response follow the answer format the prompt asked for? (the ground truth is ignored)

This is the format reward of R1-style RL (DeepSeek-R1's "format reward": reasoning inside think tags;
R1-style VLM recipes add the answer tags or a `\\boxed{}`), binary and strict, with the style chosen by
a parameter:

- "think_answer": `<think>reasoning</think>` then `<answer>answer</answer>`, each exactly once, both
  non-empty, nothing but whitespace around them.
- "think_boxed": `<think>reasoning</think>` then text holding a complete, non-empty `\\boxed{}`.
- "answer": exactly one non-empty `<answer>…</answer>`, with nothing after it.
- "boxed": at least one complete, non-empty `\\boxed{}` outside any `<think>` block.

`think_prefilled=True` is for chat templates that open `<think>` in the prompt (Qwen3 thinking
models): the response must then *not* open it again, and starts with the reasoning. The reason names
the first rule broken.
"""
from __future__ import annotations

import re

from .extract import last_boxed, strip_think
from .result import VerifierConfigError, VerifierResult, hit, miss

STYLES = ("think_answer", "think_boxed", "answer", "boxed")
_TAG = re.compile(r"</?(?:think|answer)>", re.IGNORECASE)


def _split_once(text: str, tag: str) -> tuple[str, str] | None:
    """(before, after) the first `tag`, case-insensitively; None when absent."""
    m = re.search(re.escape(tag), text, re.IGNORECASE)
    return (text[:m.start()], text[m.end():]) if m else None


def _check_think(text: str, tags: list[str], prefilled: bool) -> tuple[str | None, str]:
    """(the first rule broken or None, the text after </think>)."""
    opens, closes = tags.count("<think>"), tags.count("</think>")
    if prefilled and opens:
        return "<think> repeated (the prompt opened it)", ""
    if not prefilled and opens != 1:
        return ("missing <think>" if opens == 0 else f"{opens} <think> tags"), ""
    if closes != 1:
        return ("missing </think>" if closes == 0 else f"{closes} </think> tags"), ""
    head, rest = _split_once(text, "</think>")
    if not prefilled:
        parts = _split_once(head, "<think>")
        if parts is None:
            return "</think> before <think>", ""
        if parts[0].strip():
            return "text before <think>", ""
        head = parts[1]
    if not head.strip():
        return "empty <think>", ""
    return None, rest


def _check_answer(text: str, tags: list[str], nothing_before: bool) -> str | None:
    opens, closes = tags.count("<answer>"), tags.count("</answer>")
    if opens == 0:
        return "missing <answer>"
    if closes == 0:
        return "missing </answer>"
    if opens > 1 or closes > 1:
        return f"{opens} <answer> and {closes} </answer> tags"
    before, rest = _split_once(text, "<answer>")
    parts = _split_once(rest, "</answer>")
    if parts is None:
        return "</answer> before <answer>"
    content, after = parts
    if not content.strip():
        return "empty <answer>"
    if after.strip():
        return "text after </answer>"
    if nothing_before and before.strip():
        return "text between </think> and <answer>"
    return None


def _check_boxed(text: str) -> str | None:
    boxed = last_boxed(text)
    if boxed is None:
        return "no complete \\boxed{}"
    if not boxed.strip():
        return "empty \\boxed{}"
    return None


def verify(response: str, answer: str = "", *, style: str = "think_answer",
           think_prefilled: bool = False) -> VerifierResult:
    """Score 1 when the response follows `style` (one of STYLES); `answer` is not used.

    Params:
        style: "think_answer", "think_boxed", "answer" or "boxed" (see the module docstring).
        think_prefilled: the prompt already opened `<think>`; the response starts inside it.
    """
    if style not in STYLES:
        raise VerifierConfigError(f"format: style must be one of {STYLES}, got {style!r}")
    if not response.strip():
        return miss("empty response")
    tags = [t.lower() for t in _TAG.findall(response)]
    rest = response
    if style.startswith("think_"):
        error, rest = _check_think(response, tags, think_prefilled)
        if error:
            return miss(error)
        tags = [t.lower() for t in _TAG.findall(rest)]
    if style in ("think_answer", "answer"):
        error = _check_answer(rest, tags, nothing_before=style == "think_answer")
    elif style == "boxed":
        rest, cut = strip_think(response)
        error = "unterminated <think>" if cut else _check_boxed(rest)
    else:  # think_boxed
        error = _check_boxed(rest)
    return miss(error) if error else hit("ok", None)

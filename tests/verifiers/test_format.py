"""Table-driven tests of the `format` verifier: (response, params, expected score, where it comes from).

The expected values follow the R1 format reward (`<think>…</think><answer>…</answer>`, strict) and the
styles documented in `sapo_vl/verifiers/format.py`.
"""
import pytest

from sapo_vl.verifiers import VerifierConfigError, score

TA = {"style": "think_answer"}
PRE = {"style": "think_answer", "think_prefilled": True}
ANS = {"style": "answer"}
BOX = {"style": "boxed"}
TB = {"style": "think_boxed"}
CASES = [
    # --- think_answer (the default)
    ("<think>x</think><answer>3</answer>", {}, 1.0, "R1 format, the default style"),
    ("<think>\nsteps\n</think>\n\n<answer>\n3\n</answer>\n", TA, 1.0, "whitespace around tags is fine"),
    ("<THINK>x</THINK><ANSWER>3</ANSWER>", TA, 1.0, "tags are case-insensitive"),
    ("<answer>3</answer>", TA, 0.0, "missing <think>"),
    ("<think></think><answer>3</answer>", TA, 0.0, "empty <think>"),
    ("<think>x</think><answer> </answer>", TA, 0.0, "empty <answer>"),
    ("<think>x</think><answer>3</answer> extra", TA, 0.0, "text after </answer>"),
    ("intro <think>x</think><answer>3</answer>", TA, 0.0, "text before <think>"),
    ("<think>x</think>so<answer>3</answer>", TA, 0.0, "text between </think> and <answer>"),
    ("<think>x</think><answer>3</answer><answer>4</answer>", TA, 0.0, "two <answer> tags"),
    ("<think>x</think><think>y</think><answer>3</answer>", TA, 0.0, "two <think> tags"),
    ("<think>x<answer>3</answer></think>", TA, 0.0, "<answer> inside <think>"),
    ("<think>x</think><answer>3", TA, 0.0, "missing </answer> (truncated)"),
    ("<think>x</think></answer>3<answer>", TA, 0.0, "</answer> before <answer>"),
    ("<think>x", TA, 0.0, "missing </think> (truncated while thinking)"),
    # --- think_prefilled: the prompt opened <think>
    ("x</think><answer>3</answer>", PRE, 1.0, "Qwen3 thinking template: <think> is in the prompt"),
    ("<think>x</think><answer>3</answer>", PRE, 0.0, "<think> repeated although prefilled"),
    ("x</think><answer>3</answer>", TA, 0.0, "not prefilled: <think> missing"),
    ("</think><answer>3</answer>", PRE, 0.0, "prefilled but empty reasoning"),
    # --- answer
    ("Let me see. <answer>3</answer>", ANS, 1.0, "answer style: text before the tag is fine"),
    ("<answer>3</answer> done", ANS, 0.0, "answer style: nothing after </answer>"),
    ("3", ANS, 0.0, "answer style: no tag"),
    # --- boxed
    (r"so \boxed{3}", BOX, 1.0, "a complete \\boxed{}"),
    (r"\boxed{\boxed{3}}", BOX, 1.0, "nested boxes are one answer"),
    (r"<think>x</think> \boxed{\frac{1}{2}}", BOX, 1.0, "box outside <think>"),
    (r"\boxed{}", BOX, 0.0, "empty \\boxed{}"),
    (r"\boxed{3", BOX, 0.0, "unclosed \\boxed{"),
    (r"<think>\boxed{3}</think> done", BOX, 0.0, "a box only inside <think> does not count"),
    (r"<think>x \boxed{3}", BOX, 0.0, "unterminated <think>"),
    ("the answer is 3", BOX, 0.0, "no box"),
    # --- think_boxed
    (r"<think>x</think> The answer is \boxed{3}.", TB, 1.0, "think then box"),
    ("<think>x</think> The answer is 3.", TB, 0.0, "think without a box"),
    (r"\boxed{3}", TB, 0.0, "box without think"),
    # --- any style
    ("", {}, 0.0, "empty response"),
    ("   \n", BOX, 0.0, "blank response"),
]


@pytest.mark.parametrize("response,params,expected,source", CASES,
                         ids=[f"{i}-{c[3][:40]}" for i, c in enumerate(CASES)])
def test_format(response, params, expected, source):
    result = score("format", response, "ignored", **params)
    assert result.score == expected, f"{source}: got {result}"
    assert result.reason


def test_ground_truth_is_ignored():
    good = "<think>x</think><answer>3</answer>"
    assert score("format", good, "").score == score("format", good, "anything at all").score == 1.0


def test_reason_names_the_broken_rule():
    assert score("format", "<think>x</think><answer>3", "").reason == "missing </answer>"


def test_unknown_style_raises():
    with pytest.raises(VerifierConfigError):
        score("format", "x", "", style="xml")

"""Table-driven tests of the shared answer extraction (`sapo_vl/verifiers/extract.py`)."""
import pytest

from sapo_vl.verifiers.extract import (Answer, as_text, find_answer, find_numbers, fold_width, last_boxed,
                                      parse_number, parse_value, strip_think)

BOXED = [
    (r"\boxed{3}", "3", "plain"),
    (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}", "braces inside are balanced"),
    (r"\boxed{\boxed{3}}", "3", "nested boxes unwrapped"),
    (r"\boxed{x = \boxed{3}}", "3", "the inner box is the answer"),
    (r"\boxed{\{1,2\}}", r"\{1,2\}", "escaped braces do not count"),
    (r"\boxed{1} then \boxed{2}", "2", "last box wins"),
    (r"\boxed{1} then \boxed{2", "1", "an unclosed last box is ignored"),
    (r"\boxed{3", None, "unclosed"),
    (r"}}} \boxed{4} {{{", "4", "stray braces around"),
    (r"\fbox{5}", "5", "\\fbox counts as a box"),
    (r"\boxed 7 is it", "7", "bare \\boxed 7"),
    (r"\boxed {8}", "8", "space before the brace"),
    ("no box", None, "nothing"),
]


@pytest.mark.parametrize("text,expected,why", BOXED, ids=[b[2] for b in BOXED])
def test_last_boxed(text, expected, why):
    assert last_boxed(text) == expected, why


THINK = [
    ("<think>a</think>b", ("b", False), "block removed"),
    ("x<think>a</think>y<think>b</think>z", ("x y z", False), "two blocks"),
    ("a</think>b", ("b", False), "lone </think>: prefilled prompt"),
    ("b<think>a", ("b", True), "unclosed: the rest is hidden"),
    ("<THINK>a</THINK>b", ("b", False), "case-insensitive"),
    ("plain", ("plain", False), "no tags"),
]


@pytest.mark.parametrize("text,expected,why", THINK, ids=[t[2] for t in THINK])
def test_strip_think(text, expected, why):
    visible, cut = strip_think(text)
    assert (" ".join(visible.split()), cut) == expected, why


FIND = [
    ("<answer>3</answer>", Answer("3", "answer_tag"), "tag"),
    ("<answer> \\boxed{4} </answer>", Answer("4", "answer_tag"), "box inside the tag"),
    ("<answer>1</answer><answer>2</answer>", Answer("2", "answer_tag"), "last tag"),
    ("<answer>5", Answer("5", "answer_tag"), "unclosed last tag runs to the end"),
    ("<Answer>6</ANSWER>", Answer("6", "answer_tag"), "case-insensitive tags"),
    (r"so \boxed{7}. The answer is 8", Answer("7", "boxed"), "a box beats an answer phrase"),
    ("The answer is 9. Done.", Answer("9", "anchor"), "answer phrase to the sentence end"),
    ("The answer is 3.5. Done.", Answer("3.5", "anchor"), "a decimal point does not end the sentence"),
    ("The answer is B. Because", Answer("B. Because", "anchor"), "'B.' does not end the sentence"),
    ("Answer:\n\n**C**", Answer("C", "anchor"), "answer on the next line, markdown stripped"),
    ("The answers are 1 and 2", Answer("1 and 2", "anchor"), "plural phrase"),
    ("To answer this, look", Answer("To answer this, look", "text"), "'answer' without 'is' is no phrase"),
    ("just text", Answer("just text", "text"), "whole text"),
    ("<think>x</think>", None, "nothing visible"),
    ("", None, "empty"),
    ("<answer></answer>", None, "empty tag"),
]


@pytest.mark.parametrize("text,expected,why", FIND, ids=[f[2] for f in FIND])
def test_find_answer(text, expected, why):
    assert find_answer(text) == expected, why


def test_tags_only_skips_phrases_and_text():
    assert find_answer("The answer is 9.", tags_only=True) is None
    assert find_answer(r"\boxed{9}", tags_only=True) == Answer("9", "boxed")


NUMBERS = [
    ("1,234.5", 1234.5), ("-3", -3.0), ("\u22123", -3.0), ("45%", 45.0), (r"45\%", 45.0), ("$12", 12.0),
    ("€5", 5.0), ("1.2e3", 1200.0), ("7.", 7.0), (".5", 0.5), (r"1{,}000", 1000.0), (r"\text{12}", 12.0),
    ("12 cm", None), ("1,23", None), ("abc", None), ("9" * 400, None), ("", None),
    # fractions, digit groups, full-width digits, scientific notation
    ("1/4", 0.25), ("7/2", 3.5), (r"\frac{28}{2}", 14.0), (r"-\dfrac{3}{4}", -0.75), ("1 234", 1234.0),
    ("1 234 567.5", 1234567.5), ("\uff11\uff14", 14.0), ("2.4e1", 24.0), ("1.2 × 10^3", 1200.0),
    (r"1.2\times10^{3}", 1200.0), ("3 * 10^{-2}", 0.03), ("1/0", None), ("12 34", None), ("1 2345", None),
]


@pytest.mark.parametrize("text,expected", NUMBERS, ids=[n[0][:20] for n in NUMBERS])
def test_parse_number(text, expected):
    assert parse_number(text) == expected


def test_as_text_coerces_anything():
    assert as_text(b"\xffab") == "\ufffdab"
    assert as_text(None) == ""
    assert as_text(3) == "3"


def test_percent_modes():
    assert parse_number("45%") == 45.0 and parse_number("45%", percent="fraction") == 0.45
    assert find_numbers("up 12.5% from 8", percent="fraction") == [(0.125, 3), (8.0, 14)]


def test_find_numbers_reads_fractions_and_powers_as_one_number():
    assert [v for v, _ in find_numbers(r"ratio 1/4, then \frac{28}{2}, then 1.2 × 10^3 and 3e2")] == [0.25, 14.0, 1200.0, 300.0]


def test_fold_width_and_strip_think_fold_full_width_forms():
    assert fold_width("\uff08\uff23\uff09\u3000\uff11\uff14\uff05") == "(C) 14%"
    assert strip_think("<think>\uff11</think>\uff12")[0].strip() == "2"


VALUES = [
    ("2/3", 2 / 3), (r"\frac{2}{3}", 2 / 3), (r"$\dfrac{2}{3}$", 2 / 3), ("0.67", 0.67), (r"2\sqrt{3}", 2 * 3 ** 0.5),
    (r"\sqrt[3]{8}", 2.0), (r"\frac{\pi}{2}", 3.141592653589793 / 2), ("3π", 3 * 3.141592653589793), ("1,234", 1234.0),
    ("45%", 0.45), (r"\frac12", 0.5), ("-(2+3)*4", -20.0), ("2^{10}", 1024.0), (r"90^\circ", 90.0), ("45°", 45.0),
    ("x+1", None), ("(1,2)", None), (r"\sqrt{-1}", None), ("10^{10^{10}}", None), ("1/0", None), ("((", None),
    ("1 2", None), ("2" * 201, None), ("", None), ("e", None),
]


@pytest.mark.parametrize("text,expected", VALUES, ids=[v[0][:20] for v in VALUES])
def test_parse_value(text, expected):
    value = parse_value(text)
    assert value == (pytest.approx(expected) if expected is not None else None)

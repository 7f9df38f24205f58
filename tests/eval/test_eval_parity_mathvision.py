"""Scoring parity, MATH-Vision: `mathvision` scoring against MATH-V's published evaluation, row by row.

The rule (Wang et al., "Measuring Multimodal Mathematical Reasoning with MATH-Vision Dataset", NeurIPS 2024
Datasets and Benchmarks; mathllm/MATH-V evaluation/evaluate.py and utils.py), in our words:
1. The model answer is the reply, stripped; a reply ending in " C." or " (C)." or opening with "C\\n" /
   "(C)\\n" is the letter C; a number after the last "is " is taken; without a \\boxed{}, the text after
   "the answer is" (and three similar phrases) up to the end of its line or sentence is taken; with several
   \\boxed{}, the last one.
2. `find_math_answer`: lower-case; the content of the last \\boxed{...} (greedy up to the last brace); the
   part after the last "=" or "\\approx"; spaces, \\left / \\right, degree signs, \\text, "units" and "km"
   removed; "0.5" rewritten as \\frac{1}{2}, "a/b" as \\frac{a}{b}.
3. Correct when `is_equal` holds against the gold (a letter for multiple choice, else the value) or against
   the gold option's text: equal strings (case-insensitive), equal tuples, or latex2sympy values that agree
   to 2 decimals (an expression that fails to parse or evaluate is wrong).

The expected scores were derived by hand from those steps and are checked against `parity_rules.mathv_score`,
our restatement of them (latex2sympy2_extended, math-verify's parser, stands in for latex2sympy2). Our scoring
is the `mathvision` task: the `choice` verifier (rows with options, given the option texts) or `math`
(math-verify), both at 2 decimals as MATH-V (`float_rounding=2`), on the same reply. OURS_DIFFER lists where
it differs, and why; each is a deliberate departure documented in eval/mathvision.py.
"""
import pytest

from eval_helpers import task_score
from parity_rules import mathv_score

OPT = ["1", "2", "3", "4", "5"]
FR = [r"\frac{1}{3}", r"\frac{1}{2}", r"\frac{2}{3}", r"\frac{3}{4}", "1"]
FRD = [r"$\frac{1}{3}$", r"$\frac{1}{2}$", r"$\frac{2}{3}$", r"$\frac{3}{4}$", "$1$"]

TABLE = [  # (reply, gold, options or None, published score, what is tricky)
    ("\\boxed{5}", "5", None, 1, "boxed integer"),
    ("The answer is 5.", "5", None, 1, "number after the last 'is '"),
    ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}", None, 1, "nested braces, greedy to the last brace"),
    ("\\boxed{0.5}", "\\frac{1}{2}", None, 1, "0.5 is rewritten as \\frac{1}{2}"),
    ("\\boxed{3.14}", "\\pi", None, 1, "pi agrees with 3.14 to 2 decimals"),
    ("\\boxed{1.499}", "1.5", None, 1, "1.499 rounds to 1.5"),
    ("\\boxed{1.51}", "1.5", None, 0, "1.51 is not 1.5 at 2 decimals"),
    ("\\boxed{x = 5}", "5", None, 1, "the part after '=' is kept"),
    ("\\boxed{5 cm}", "5", None, 0, "'cm' stays: 5*c*m does not evaluate"),
    ("\\boxed{5^\\circ}", "5", None, 1, "degree sign removed"),
    ("\\boxed{30^{\\circ}}", "30", None, 1, "braced degree sign removed"),
    ("\\boxed{\\sqrt{2}}", "\\sqrt{2}", None, 1, "same string"),
    ("\\boxed{1.41}", "\\sqrt{2}", None, 1, "sqrt(2) agrees with 1.41 to 2 decimals"),
    ("\\boxed{2\\sqrt{3}}", "\\sqrt{12}", None, 1, "same value"),
    ("\\boxed{(1,2)}", "(1,2)", None, 1, "same tuple"),
    ("\\boxed{(2,1)}", "(1,2)", None, 0, "tuples are ordered"),
    ("\\boxed{12}", "12", None, 1, "boxed integer"),
    ("\\boxed{13}", "12", None, 0, "wrong integer"),
    ("The answer is 12", "12", None, 1, "phrase, no box"),
    ("So x is 12 and y is 3", "12", None, 0, "the number after the last 'is ' is 3"),
    ("12", "12", None, 1, "bare number"),
    ("", "12", None, 0, "empty reply"),
    ("\\boxed{}", "12", None, 0, "empty box"),
    ("\\boxed{12} and later \\boxed{15}", "15", None, 1, "the last box"),
    ("\\boxed{12} and later \\boxed{15}", "12", None, 0, "an earlier box does not count"),
    ("\\boxed{\\dfrac{3}{4}}", "0.75", None, 1, "\\dfrac is \\frac; 3/4 = 0.75"),
    ("\\boxed{75\\%}", "75", None, 1, "the percent sign is removed"),
    ("\\boxed{B}", "B", OPT, 1, "boxed letter (lower-cased on both sides)"),
    ("The answer is B.", "B", OPT, 1, "reply ending in ' B.'"),
    ("\\boxed{3}", "C", OPT, 1, "the gold option's text"),
    ("\\boxed{C}", "B", OPT, 0, "wrong letter"),
    ("(B)\nBecause it fits.", "B", OPT, 1, "reply opening with '(B)\\n'"),
    ("B\nThe rest follows.", "B", OPT, 1, "reply opening with 'B\\n'"),
    ("I choose (D).", "D", OPT, 1, "reply ending in ' (D).'"),
    ("\\boxed{(D)}", "D", OPT, 1, "'(d)' is rewritten as 'd'"),
    ("\\boxed{\\text{B}}", "B", OPT, 1, "\\text removed, '{b}' rewritten as 'b'"),
    ("The answer is 3", "C", OPT, 1, "option text after 'is '"),
    ("\\boxed{6}", "C", OPT, 0, "neither the letter nor the option's text"),
    # LaTeX options, compared as written and by value (2 decimals)
    ("\\boxed{\\frac{2}{3}}", "C", FR, 1, "the gold option's text"),
    ("\\boxed{2/3}", "C", FR, 1, "2/3 is rewritten as \\frac{2}{3}"),
    ("\\boxed{0.67}", "C", FR, 1, "2/3 to 2 decimals"),
    ("\\boxed{0.6667}", "C", FR, 1, "2/3 to 2 decimals"),
    ("\\boxed{\\dfrac{2}{3}}", "C", FR, 1, "\\dfrac is \\frac"),
    ("\\boxed{\\frac{4}{6}}", "C", FR, 1, "the same value"),
    ("\\boxed{\\frac{1}{2}}", "C", FR, 0, "another option's value"),
    ("The answer is $\\frac{2}{3}$.", "C", FR, 1, "after 'the answer is', $ removed"),
    ("<answer>C</answer>", "C", FR, 0, "the tags stay in the model answer"),
    ("<answer>\\frac{2}{3}</answer>", "C", FR, 0, "the tags stay in the model answer"),
    ("\\boxed{C}", "C", FRD, 1, "the letter, options in $...$"),
    # letters in a sentence
    ("It is C.", "C", OPT, 1, "reply ending in ' C.'"),
    ("So I choose D.", "D", OPT, 1, "reply ending in ' D.'"),
    ("C is correct", "C", OPT, 0, "no rule reads a letter opening a sentence"),
    ("The answer is (B).", "B", OPT, 1, "reply ending in ' (B).'"),
    # scientific notation, precision, full-width digits
    ("\\boxed{2.4e1}", "24", None, 0, "latex2sympy reads e as Euler's number, which eval() cannot name"),
    ("\\boxed{1.2 \\times 10^{3}}", "1200", None, 1, "a power of ten"),
    ("\\boxed{6.666}", "6.67", None, 1, "equal at 2 decimals"),
    ("\\boxed{\\frac{20}{3}}", "6.67", None, 1, "20/3 to 2 decimals"),
    ("\\boxed{6.6}", "6.67", None, 0, "different at 2 decimals"),
    ("\\boxed{\\sqrt{3}}", "1.73", None, 1, "sqrt(3) to 2 decimals"),
    ("\\boxed{2\\pi}", "6.28", None, 1, "2 pi to 2 decimals"),
    ("\\boxed{\\frac{\\sqrt{3}}{2}}", "0.87", None, 1, "sqrt(3)/2 to 2 decimals"),
    ("\\boxed{-\\frac{1}{2}}", "-0.5", None, 1, "negative fraction"),
    ("\\boxed{\\frac{1}{2}}", "0.5", None, 1, "value against a decimal gold"),
    ("\\boxed{\uff11\uff14}", "14", None, 0, "full-width digits do not parse"),
    ("\\boxed{12\\%}", "12", None, 1, "\\% removed"),
    ("\\boxed{x=4}", "4", None, 1, "after '='"),
    ("\\boxed{90^\\circ}", "90", None, 1, "degree sign removed"),
    ("\\boxed{4 \\text{ cm}}", "4", None, 0, "'{cm}' stays after \\text is removed"),
    ("\\boxed{4\\text{cm}}", "4", None, 0, "'{cm}' stays"),
    ("The answer is 4 cm", "4", None, 0, "'4cm' does not evaluate"),
    ("\\boxed{(1, 2)}", "(1,2)", None, 1, "spaces removed: the same tuple"),
    ("\\boxed{[1,2]}", "(1,2)", None, 0, "brackets differ"),
    ("The final answer is 7.", "7", None, 1, "number after the last 'is '"),
    ("I think it is 7 or 8", "7", None, 0, "two numbers: nothing evaluates"),
    ("\\boxed{7} \\boxed{8}", "8", None, 1, "the last box"),
]

OURS_DIFFER = {  # (reply, gold): (our score, why)
    ("\\boxed{5 cm}", "5"): (1, "math-verify drops units"),
    ("\\boxed{4 \\text{ cm}}", "4"): (1, "math-verify drops units"),
    ("\\boxed{4\\text{cm}}", "4"): (1, "math-verify drops units"),
    ("The answer is 4 cm", "4"): (1, "the answer after 'answer is', units dropped"),
    ("<answer>C</answer>", "C"): (1, "the <answer> content is read (our prompt asks for it)"),
    ("<answer>\\frac{2}{3}</answer>", "C"): (1, "the <answer> content is read (our prompt asks for it)"),
    ("C is correct", "C"): (1, "a letter named as correct is the pick"),
    ("\\boxed{2.4e1}", "24"): (1, "scientific notation is a number, not 2.4·e"),
    ("\\boxed{\uff11\uff14}", "14"): (1, "full-width digits are folded to ASCII"),
}


def test_table_has_60_rows_and_unique_replies():
    assert len(TABLE) >= 60
    pairs = [(r, g) for r, g, *_ in TABLE]
    assert len(set(pairs)) == len(pairs) and set(OURS_DIFFER) <= set(pairs)
    published = {(row[0], row[1]): row[-2] for row in TABLE}  # rows end with (published, why)
    stale = [key for key, (ours, _) in OURS_DIFFER.items() if ours == published[key]]
    assert not stale, f"listed as departures but equal to the published score: {stale}"


@pytest.mark.parametrize("reply,gold,options,published,why", TABLE, ids=[f"{r!r}-{g}" for r, g, *_ in TABLE])
def test_expected_scores_follow_the_published_rule(reply, gold, options, published, why):
    assert mathv_score(reply, gold, options) == published, why


@pytest.mark.parametrize("reply,gold,options,published,why", TABLE, ids=[f"{r!r}-{g}" for r, g, *_ in TABLE])
def test_mathvision_task_reproduces_the_rule(reply, gold, options, published, why):
    verifier, params = ("choice", {"choices": options}) if options else ("math", {})
    ours = task_score("mathvision", reply, gold, verifier, params)
    assert ours == OURS_DIFFER.get((reply, gold), (published,))[0], f"{why}; published {published}"

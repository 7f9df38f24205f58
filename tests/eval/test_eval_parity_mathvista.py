"""Scoring parity, MathVista: `mathvista_testmini` scoring against MathVista's published normalisation, row by row.

The rule (Lu et al., "MathVista", ICLR 2024; lupantech/MathVista evaluation/calculate_score.py, reused by
lmms-eval 0.7.3 tasks/mathvista/mathvista_evals.py), restated in `parity_rules.mathvista_score`: the extracted
answer is normalised by the row's type and compared as a string with the gold. Multiple choice: "(B)" or "B"
becomes the option's text, anything else the most similar option (edit distance); integer: int(float(x)),
truncated; float: rounded to the row's `precision` decimals; list: as written.

The published extraction asks GPT-4 when the reply is not already a choice, an integer or a float. No LLM runs
here: the content of the last <answer> stands in for what it would extract (our prompt asks for the tag), so
this table checks the normalisation and comparison, the part a rule decides.

Our scoring is the `mathvista_testmini` task on the same reply, with the verifier and params the mathvista
recipe assigns to the row (`data_recipes.mathvista.scoring`: `choice` with the options, `math` at the row's
precision for floats, `exact` for lists). OURS_DIFFER lists where it differs, and why; each is a deliberate
departure documented in eval/mathvista_testmini.py.
"""
import pytest

from sapo_vl.recipes.mathvista import scoring
from eval_helpers import task_score
from parity_rules import mathvista_score

DEG = ["30°", "45°", "60°", "90°"]
NUMS = ["2", "4", "6", "8"]
FRAC = [r"$\frac{1}{2}$", r"$\frac{2}{3}$", r"$\frac{3}{4}$"]


def mc(choices: list[str], gold: str) -> dict:
    return {"question_type": "multi_choice", "answer_type": "text", "choices": choices, "answer": gold}


def free(gold: str, kind: str, precision: int | None = None) -> dict:
    return {"question_type": "free_form", "answer_type": kind, "answer": gold, "precision": precision}


TABLE = [  # (reply, source row, published score, what is tricky)
    # multiple choice
    ("<answer>B</answer>", mc(DEG, "45°"), 1, "letter"),
    ("<answer>(B)</answer>", mc(DEG, "45°"), 1, "bracketed letter"),
    ("<answer>45°</answer>", mc(DEG, "45°"), 1, "the option text"),
    ("<answer>45</answer>", mc(DEG, "45°"), 1, "closest option to '45'"),
    ("<answer>B. 45°</answer>", mc(DEG, "45°"), 1, "letter and text: closest option"),
    ("<answer>C</answer>", mc(DEG, "45°"), 0, "wrong letter"),
    ("<answer>45 degrees</answer>", mc(DEG, "45°"), 1, "closest option by edit distance"),
    ("<answer>I am not sure</answer>", mc(DEG, "45°"), 0, "the closest option is another one"),
    ("B", mc(DEG, "45°"), 1, "bare letter"),
    ("45°", mc(DEG, "45°"), 1, "the reply is a choice"),
    ("<answer>b</answer>", mc(DEG, "45°"), 0, "lower-case letter: the closest option is A"),
    ("<think>30° is too small</think><answer>B</answer>", mc(DEG, "45°"), 1, "another option in the reasoning"),
    ("<answer>C</answer>", mc(NUMS, "6"), 1, "numeric options, letter"),
    ("<answer>6</answer>", mc(NUMS, "6"), 1, "numeric options, the text"),
    ("<answer>6.0</answer>", mc(NUMS, "6"), 1, "closest option to '6.0'"),
    ("<answer>(C) 6</answer>", mc(NUMS, "6"), 1, "bracketed letter and text"),
    ("<answer>D</answer>", mc(NUMS, "6"), 0, "wrong letter"),
    ("<answer>3 + 3 = 6</answer>", mc(NUMS, "6"), 1, "closest option to the working is '6'"),
    ("<answer>B</answer>", mc(FRAC, r"$\frac{2}{3}$"), 1, "LaTeX options, letter"),
    ("<answer>2/3</answer>", mc(FRAC, r"$\frac{2}{3}$"), 1, "closest option to '2/3'"),
    (r"<answer>\frac{2}{3}</answer>", mc(FRAC, r"$\frac{2}{3}$"), 1, "the option without $"),
    (r"<answer>$\frac{2}{3}$</answer>", mc(FRAC, r"$\frac{2}{3}$"), 1, "the option text"),
    ("<answer>0.67</answer>", mc(FRAC, r"$\frac{2}{3}$"), 0, "a decimal is closest to another option"),
    # integers
    ("<answer>12</answer>", free("12", "integer"), 1, "integer"),
    ("12", free("12", "integer"), 1, "bare integer"),
    ("12.0", free("12", "integer"), 1, "bare 12.0"),
    ("<answer>12.0</answer>", free("12", "integer"), 1, "int(float('12.0'))"),
    ("<answer>12.7</answer>", free("12", "integer"), 1, "int(float('12.7')) truncates to 12"),
    ("<answer>13</answer>", free("12", "integer"), 0, "wrong"),
    ("<answer>12 apples</answer>", free("12", "integer"), 0, "float() fails on words"),
    ("<answer>twelve</answer>", free("12", "integer"), 0, "number word"),
    ("<answer>1.2e1</answer>", free("12", "integer"), 1, "float() reads exponents"),
    ("<answer>\uff11\uff12</answer>", free("12", "integer"), 1, "float() reads full-width digits"),
    ("<answer>1,200</answer>", free("1200", "integer"), 0, "float() fails on separators"),
    ("<answer>-3</answer>", free("-3", "integer"), 1, "negative"),
    ("<answer>3</answer>", free("-3", "integer"), 0, "sign"),
    # floats at the row's precision
    ("<answer>1.5</answer>", free("1.5", "float", 1), 1, "precision 1"),
    ("<answer>1.50</answer>", free("1.5", "float", 1), 1, "trailing zero"),
    ("<answer>1.46</answer>", free("1.5", "float", 1), 1, "1.46 rounds to 1.5"),
    ("<answer>1.44</answer>", free("1.5", "float", 1), 0, "1.44 rounds to 1.4"),
    ("<answer>3/2</answer>", free("1.5", "float", 1), 0, "float() fails on a fraction"),
    ("1.5", free("1.5", "float", 1), 1, "bare float"),
    ("<answer>1.5 cm</answer>", free("1.5", "float", 1), 0, "float() fails on a unit"),
    ("<answer>2</answer>", free("1.5", "float", 1), 0, "wrong"),
    ("<answer>1.45</answer>", free("1.45", "float", 2), 1, "precision 2"),
    ("<answer>1.449</answer>", free("1.45", "float", 2), 1, "1.449 rounds to 1.45"),
    ("<answer>1.4</answer>", free("1.45", "float", 2), 0, "1.40 is not 1.45"),
    ("<answer>1.454</answer>", free("1.45", "float", 2), 1, "1.454 rounds to 1.45"),
    ("<answer>1.456</answer>", free("1.45", "float", 2), 0, "1.456 rounds to 1.46"),
    ("<answer>$1.45</answer>", free("1.45", "float", 2), 0, "float() fails on a currency sign"),
    ("<answer>0.6</answer>", free("0.6", "float", 1), 1, "precision 1"),
    ("<answer>.6</answer>", free("0.6", "float", 1), 1, "no leading zero"),
    ("<answer>60%</answer>", free("0.6", "float", 1), 0, "float() fails on a percent sign"),
    ("<answer>0.64</answer>", free("0.6", "float", 1), 1, "0.64 rounds to 0.6"),
    # lists
    ("<answer>[2007, 2008]</answer>", free("[2007, 2008]", "list"), 1, "the list as written"),
    ("<answer>[2007,2008]</answer>", free("[2007, 2008]", "list"), 0, "spacing differs"),
    ("<answer>2007, 2008</answer>", free("[2007, 2008]", "list"), 0, "no brackets"),
    ("<answer>[2008, 2007]</answer>", free("[2007, 2008]", "list"), 0, "order matters"),
]

OURS_DIFFER = {  # (reply, gold): (our score, why)
    ("<answer>45 degrees</answer>", "45°"): (0, "no fuzzy pick: '45 degrees' names no option, so it scores 0"),
    ("<answer>b</answer>", "45°"): (1, "a tag holding one letter in either case is that letter"),
    ("<answer>12.7</answer>", "12"): (0, "no truncation: 12.7 is not the integer 12"),
    ("<answer>12 apples</answer>", "12"): (1, "trailing words after the number are dropped"),
    ("<answer>1,200</answer>", "1200"): (1, "thousands separators are read"),
    ("<answer>3/2</answer>", "1.5"): (1, "a fraction is compared by value"),
    ("<answer>1.5 cm</answer>", "1.5"): (1, "units are dropped"),
    ("<answer>$1.45</answer>", "1.45"): (1, "a currency sign is dropped"),
    ("<answer>60%</answer>", "0.6"): (1, "math-verify reads 60% as 0.6"),
    ("<answer>[2007,2008]</answer>", "[2007, 2008]"): (1, "`exact` ignores punctuation and spacing"),
    ("<answer>2007, 2008</answer>", "[2007, 2008]"): (1, "`exact` ignores the brackets"),
}


def _ours(reply: str, row: dict) -> float:
    verifier, answer, params, _ = scoring(row)
    return task_score("mathvista_testmini", reply, answer, verifier, params)


def test_table_has_50_rows_and_unique_replies():
    assert len(TABLE) >= 50
    pairs = [(r, row["answer"]) for r, row, *_ in TABLE]
    keys = [(r, repr(row)) for r, row, *_ in TABLE]
    assert len(set(keys)) == len(keys) and set(OURS_DIFFER) <= set(pairs)
    published = {(r, row["answer"]): p for r, row, p, _ in TABLE}
    stale = [key for key, (ours, _) in OURS_DIFFER.items() if ours == published[key]]
    assert not stale, f"listed as departures but equal to the published score: {stale}"


def test_float_rows_are_scored_at_their_precision():
    assert scoring(free("1.45", "float", 2))[2] == {"float_rounding": 2}
    assert scoring(free("1.5", "float", None))[2] == {"float_rounding": 1}  # MathVista's default precision
    assert scoring(free("12", "integer"))[2] == {}


@pytest.mark.parametrize("reply,row,published,why", TABLE, ids=[f"{r!r}-{row['answer']}" for r, row, *_ in TABLE])
def test_expected_scores_follow_the_published_rule(reply, row, published, why):
    rule = mathvista_score(reply, row["answer"], row["answer_type"], int(row.get("precision") or 1), row.get("choices"))
    assert rule == published, why


@pytest.mark.parametrize("reply,row,published,why", TABLE, ids=[f"{r!r}-{row['answer']}" for r, row, *_ in TABLE])
def test_mathvista_task_reproduces_the_rule(reply, row, published, why):
    expected = OURS_DIFFER.get((reply, row["answer"]), (published,))[0]
    assert _ours(reply, row) == expected, f"{why}; published {published}"

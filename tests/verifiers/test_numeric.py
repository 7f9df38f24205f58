"""Table-driven tests of the `numeric` verifier: (response, gold, params, expected score, where it comes from)."""
import pytest

from sapo_vl.verifiers import VerifierConfigError, score

RA = "ChartQA relaxed accuracy: |p-t|/|t| <= 0.05"
EM = "ChartQA: non-numeric golds need an exact (case-insensitive) match"
CASES = [
    ("<answer>45</answer>", "45", {}, 1.0, RA),
    ("<answer>47</answer>", "45", {}, 1.0, f"{RA}: 2/45 = 0.044"),
    ("<answer>47.5</answer>", "45", {}, 0.0, f"{RA}: 2.5/45 = 0.056"),
    ("<answer>105</answer>", "100", {}, 1.0, f"{RA}: exactly 5% is inside"),
    ("<answer>105.1</answer>", "100", {}, 0.0, f"{RA}: 5.1% is outside"),
    ("<answer>95</answer>", "100", {}, 1.0, f"{RA}: 5% below"),
    ("<answer>-5</answer>", "-5.2", {}, 1.0, f"{RA}: 0.2/5.2 = 0.038, negative values"),
    ("<answer>5</answer>", "-5", {}, 0.0, f"{RA}: the sign matters"),
    ("<answer>2016</answer>", "2017", {}, 1.0, f"{RA}: applied to years too, as published"),
    ("<answer>45%</answer>", "45", {}, 1.0, "percent sign dropped (ChartQA compares 45% and 45)"),
    ("<answer>45</answer>", "45%", {}, 1.0, "percent sign dropped in the gold too"),
    ("<answer>0.45</answer>", "45%", {}, 0.0, "no percent-to-fraction conversion: 0.45 vs 45"),
    (r"\boxed{12.5\%}", "12.5", {}, 1.0, "LaTeX \\% dropped"),
    ("<answer>1,234</answer>", "1234", {}, 1.0, "thousands separators"),
    ("<answer>1234</answer>", "1,234", {}, 1.0, "thousands separators in the gold"),
    (r"\boxed{1{,}234}", "1234", {}, 1.0, "LaTeX thousands separator {,}"),
    (r"\boxed{\$1,234}", "1234", {}, 1.0, "currency sign"),
    ("<answer>1.2e3</answer>", "1200", {}, 1.0, "scientific notation"),
    ("<answer>\u22123</answer>", "-3", {}, 1.0, "unicode minus"),
    ("<answer>0</answer>", "0", {}, 1.0, "gold 0 needs an exact 0"),
    ("<answer>0.0</answer>", "0", {}, 1.0, "0.0 is exactly 0"),
    ("<answer>0.01</answer>", "0", {}, 0.0, "relative error undefined at 0; 0.01 is not 0"),
    ("<answer>yes</answer>", "Yes", {}, 1.0, EM),
    ("Yes.", "Yes", {}, 1.0, f"{EM}; trailing full stop ignored"),
    ("No", "Yes", {}, 0.0, EM),
    ("<answer>united  states</answer>", "United States", {}, 1.0, f"{EM}; whitespace collapsed"),
    ("<answer>yes, it is</answer>", "Yes", {}, 0.0, f"{EM}: no partial match"),
    ("The value is about 44.5 million.", "45", {}, 1.0, "no tags: the last number in the response"),
    ("In 2019 the value was 12", "12", {}, 1.0, "no tags: the last number, not the year"),
    ("The answer is 12 (up from 8 in 2018).", "12", {}, 1.0, "after an answer phrase: the first number"),
    ("<think>it's 10</think><answer>20</answer>", "20", {}, 1.0, "<think> is never the answer"),
    ("<think>it's 10</think><answer>20</answer>", "10", {}, 0.0, "<think> is never the answer"),
    ("<answer>45.1</answer>", "45", {"tolerance": 0.0}, 0.0, "tolerance=0: exact"),
    ("<answer>45</answer>", "45", {"tolerance": 0.0}, 1.0, "tolerance=0: exact"),
    ("<answer>49</answer>", "45", {"tolerance": 0.1}, 1.0, "tolerance=0.1: 4/45 = 0.089"),
    # --- fractions, digit groups, full-width digits, scientific notation, percent modes
    ("<answer>1/4</answer>", "0.25", {}, 1.0, "1/4 is one number, not 4"),
    (r"<answer>\frac{28}{2}</answer>", "14", {}, 1.0, "\\frac{28}{2} is 14, not 2"),
    ("<answer>7/2</answer>", "3.5", {}, 1.0, "7/2 = 3.5"),
    (r"\boxed{-\dfrac{3}{4}}", "-0.75", {}, 1.0, "signed \\dfrac"),
    ("The ratio is 1/4 of the total.", "0.25", {}, 1.0, "a fraction in prose is one number"),
    ("<answer>1 234</answer>", "1234", {}, 1.0, "'1 234' (digit groups) is 1234, not 234"),
    ("<answer>1 234 567</answer>", "1234567", {}, 1.0, "several space-separated groups"),
    ("<answer>１４</answer>", "14", {}, 1.0, "full-width digits"),
    ("<answer>１，２３４</answer>", "1234", {}, 1.0, "full-width digits and comma"),
    ("<answer>2.4e1</answer>", "24", {}, 1.0, "scientific notation"),
    ("<answer>1.2 × 10^3</answer>", "1200", {}, 1.0, "scientific notation with × 10^"),
    (r"\boxed{1.2\times 10^{3}}", "1200", {}, 1.0, "LaTeX scientific notation"),
    ("<answer>45%</answer>", "0.45", {"percent": "fraction"}, 1.0, "percent='fraction' (ChartQA's code): 45% = 0.45"),
    ("<answer>45%</answer>", "45", {"percent": "fraction"}, 0.0, "percent='fraction': 45% is not 45"),
    ("<answer>0.45</answer>", "45%", {"percent": "fraction"}, 1.0, "percent='fraction' in the gold too"),
    ("<answer>45%</answer>", "45%", {"percent": "fraction"}, 1.0, "percent='fraction': both percentages"),
    ("<answer>1/0</answer>", "5", {}, 0.0, "division by zero is no number"),
    ("<answer>no idea</answer>", "12", {}, 0.0, "no number in the answer"),
    ("The value is 12.", "12", {"tags_only": True}, 0.0, "tags_only: free text ignored"),
]


@pytest.mark.parametrize("response,answer,params,expected,source", CASES,
                         ids=[f"{i}-{c[4][:40]}" for i, c in enumerate(CASES)])
def test_numeric(response, answer, params, expected, source):
    result = score("numeric", response, answer, **params)
    assert result.score == expected, f"{source}: got {result}"
    assert result.reason


def test_extracted_is_the_number():
    assert score("numeric", "<answer>1,234</answer>", "1234").extracted == "1234"


@pytest.mark.parametrize("params", [{"tolerance": -0.1}, {"tolerance": 1.5}, {"tolerance": float("nan")},
                                    {"percent": "ratio"}])
def test_bad_tolerance_or_percent_raises(params):
    with pytest.raises(VerifierConfigError):
        score("numeric", "1", "1", **params)

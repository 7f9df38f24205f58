"""Table-driven tests of the `count` verifier: (response, gold, params, expected score, where it comes from)."""
import pytest

from sapo_vl.verifiers import VerifierConfigError, score

EX = "CLEVR counting: exact integer"
CASES = [
    ("<answer>3</answer>", "3", {}, 1.0, EX),
    ("<answer>4</answer>", "3", {}, 0.0, f"{EX}: off by one is wrong"),
    (r"\boxed{7}", "7", {}, 1.0, EX),
    ("<answer>3 cubes</answer>", "3", {}, 1.0, "number with a noun"),
    ("three", "3", {}, 1.0, "number word 'three' → 3"),
    ("Thirteen.", "13", {}, 1.0, "capitalised number word"),
    ("There are twelve cubes.", "12", {}, 1.0, "'twelve'"),
    ("twenty-one", "21", {}, 1.0, "hyphenated 'twenty-one'"),
    ("twenty one", "21", {}, 1.0, "'twenty one' with a space"),
    ("one hundred and five", "105", {}, 1.0, "compound with 'hundred and'"),
    ("two thousand three hundred", "2300", {}, 1.0, "compound with 'thousand'"),
    ("a dozen", "12", {}, 1.0, "'dozen'"),
    ("zero", "0", {}, 1.0, "'zero'"),
    ("<answer>none</answer>", "0", {}, 1.0, "'none' is 0"),
    ("There are no red cubes.", "0", {}, 0.0, "'no' is not read as 0 ('No, there are 3' would break)"),
    ("fourteen", "4", {}, 0.0, "'fourteen' is not 'four'"),
    ("eighty", "8", {}, 0.0, "'eighty' is not 'eight'"),
    ("someone counted seven", "7", {}, 1.0, "'someone' holds no 'one'"),
    ("I first counted 3, but recounting there are 4", "4", {}, 1.0, "last number wins"),
    ("I first counted 3, but recounting there are 4", "3", {}, 0.0, "last number wins"),
    ("There are 3 cubes; the red one is largest.", "3", {}, 1.0, "a lone 'one' yields to other numbers"),
    ("There is only one cube.", "1", {}, 1.0, "a lone 'one' counts when it is the only number"),
    ("The answer is 4 (out of 10 objects).", "4", {}, 1.0, "after an answer phrase: the first number"),
    ("<answer>three cubes and two spheres</answer>", "2", {}, 1.0, "last number in the tag"),
    ("2 + 2 = 4", "4", {}, 1.0, "last number"),
    ("<answer>3.0</answer>", "3", {}, 1.0, "an integral decimal is an integer"),
    ("<answer>3.5</answer>", "3", {}, 0.0, "3.5 is not a count"),
    ("<answer>-3</answer>", "3", {}, 0.0, "negative numbers are not counts"),
    ("<answer>1,024</answer>", "1024", {}, 1.0, "thousands separator"),
    ("<answer>3</answer>", "three", {}, 1.0, "gold written as a word"),
    ("<think>I see 5</think><answer>6</answer>", "6", {}, 1.0, "<think> is never the answer"),
    ("<think>I see 5</think><answer>6</answer>", "5", {}, 0.0, "<think> is never the answer"),
    ("There are 3.", "3", {"tags_only": True}, 0.0, "tags_only: free text ignored"),
    ("<answer>１４</answer>", "14", {}, 1.0, "full-width digits"),
    ("<answer>1/2</answer>", "2", {}, 0.0, "a fraction is one number (0.5), not its denominator"),
    ("<answer>3e0</answer>", "3", {}, 1.0, "scientific notation reads as its value"),
    ("<answer>many</answer>", "3", {}, 0.0, "no count in the answer"),
]


@pytest.mark.parametrize("response,answer,params,expected,source", CASES,
                         ids=[f"{i}-{c[4][:40]}" for i, c in enumerate(CASES)])
def test_count(response, answer, params, expected, source):
    result = score("count", response, answer, **params)
    assert result.score == expected, f"{source}: got {result}"
    assert result.reason


def test_extracted_is_the_integer():
    assert score("count", "twenty-one", "21").extracted == "21"


@pytest.mark.parametrize("answer", ["3.5", "-2", "many", "3 or 4", ""])
def test_unreadable_gold_raises(answer):
    with pytest.raises(VerifierConfigError):
        score("count", "3", answer)

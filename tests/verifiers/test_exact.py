"""Table-driven tests of the `exact` verifier: (response, gold, params, expected score, where it comes from)."""
import pytest

from sapo_vl.verifiers import VerifierConfigError, score

SQ = "SQuAD normalisation: case, punctuation, articles, whitespace"
CASES = [
    ("red", "red", {}, 1.0, "identical"),
    ("Red", "red", {}, 1.0, f"{SQ}: case"),
    ("RED", "Red", {}, 1.0, f"{SQ}: case"),
    ("The red.", "red", {}, 1.0, f"{SQ}: article and full stop"),
    ("a red", "red", {}, 1.0, f"{SQ}: article 'a'"),
    ("an apple", "apple", {}, 1.0, f"{SQ}: article 'an'"),
    ("yes", "Yes!", {}, 1.0, f"{SQ}: punctuation in the gold"),
    ("  red  \n", "red", {}, 1.0, f"{SQ}: whitespace"),
    ("New-York", "new york", {}, 1.0, "punctuation as a space"),
    ("U.S.", "US", {}, 1.0, "punctuation dropped (SQuAD)"),
    ("café", "Café", {}, 1.0, "unicode letters keep their accents, case folded"),
    ("dark red", "red", {}, 0.0, "extra words are a different answer"),
    ("redd", "red", {}, 0.0, "typos are a different answer"),
    ("r e d", "red", {}, 0.0, "spaces inside a word matter"),
    ("no", "yes", {}, 0.0, "different words"),
    ("two", "2", {}, 0.0, "exact does not read numbers"),
    ("The red one", "red", {}, 0.0, "'one' is a word, not an article"),
    ("the", "red", {}, 0.0, "empty after normalisation"),
    ("<answer>Blue</answer>", "blue", {}, 1.0, "<answer> content"),
    (r"\boxed{\text{blue}}", "blue", {}, 1.0, "\\boxed{\\text{}} content"),
    ("$red$", "red", {}, 1.0, "LaTeX $ dropped"),
    ("The answer is blue.", "blue", {}, 1.0, "answer phrase, sentence end"),
    ("Answer: green", "green", {}, 1.0, "'Answer:' phrase"),
    ("Final answer: **green**", "green", {}, 1.0, "markdown bold after 'Final answer:'"),
    ("After looking closely, the answer is the Eiffel Tower.", "Eiffel Tower", {}, 1.0, "phrase + article"),
    ("The colour is blue", "blue", {}, 0.0, "no tag or phrase: the whole reply is compared"),
    ("<answer>red</answer> <answer>blue</answer>", "blue", {}, 1.0, "last <answer> wins"),
    ("<answer>red</answer> <answer>blue</answer>", "red", {}, 0.0, "last <answer> wins"),
    ("<think>red</think><answer>blue</answer>", "red", {}, 0.0, "<think> is never the answer"),
    ("<answer></answer>", "red", {}, 0.0, "empty tag"),
    # a gold that is only an article (CharXiv's subplot labels "a", "(a)", "A") keeps it, and so does the reply
    ("<answer>(a)</answer>", "(a)", {}, 1.0, "article gold: itself"),
    ("<answer>a</answer>", "(a)", {}, 1.0, "article gold: brackets are punctuation"),
    ("<answer>A</answer>", "a)", {}, 1.0, "article gold: case"),
    ("The answer is (a).", "A", {}, 1.0, "article gold: answer phrase"),
    ("<answer>b</answer>", "(a)", {}, 0.0, "article gold: another label"),
    ("<answer>the a</answer>", "a", {}, 0.0, "article gold: the reply's articles are kept too"),
    ("<answer>the</answer>", "the", {}, 1.0, "article gold 'the'"),
    ("<answer>a red</answer>", "red", {}, 1.0, "a word gold still drops the reply's articles"),
    ("grey", "gray", {"alternatives": ["grey"]}, 1.0, "alternatives accepted"),
    ("grey", "gray", {}, 0.0, "without alternatives"),
    ("Red", "red", {"case_sensitive": True}, 0.0, "case_sensitive"),
    ("red", "red", {"case_sensitive": True}, 1.0, "case_sensitive"),
    ("red", "red", {"tags_only": True}, 0.0, "tags_only: free text ignored"),
]


@pytest.mark.parametrize("response,answer,params,expected,source", CASES,
                         ids=[f"{i}-{c[4][:40]}" for i, c in enumerate(CASES)])
def test_exact(response, answer, params, expected, source):
    result = score("exact", response, answer, **params)
    assert result.score == expected, f"{source}: got {result}"
    assert result.reason


@pytest.mark.parametrize("answer,params", [("", {}), ("?!", {}), ("red", {"alternatives": "grey"})])
def test_bad_config_raises(answer, params):
    with pytest.raises(VerifierConfigError):
        score("exact", "red", answer, **params)

"""Table-driven tests of the `choice` verifier: (response, gold, params, expected score, where it comes from)."""
import pytest

from sapo_vl.verifiers import VerifierConfigError, score

SIDES = {"choices": ["3 cm", "4 cm", "5 cm", "6 cm"]}
MMMU = "MMMU option parsing"
CASES = [
    # --- letters in their usual dresses
    ("B", "B", {}, 1.0, f"{MMMU}: a bare letter"),
    ("b", "B", {}, 1.0, "a response that is one letter, in either case"),
    ("(C)", "C", {}, 1.0, f"{MMMU}: parenthesised letter"),
    ("<answer>C</answer>", "C", {}, 1.0, "R1 format: <answer> content"),
    (r"\boxed{D}", "D", {}, 1.0, "\\boxed content"),
    (r"\boxed{\text{D}}", "D", {}, 1.0, "\\boxed{\\text{}} content"),
    (r"\boxed{(B)}", "B", {}, 1.0, "\\boxed{(B)}"),
    ("<answer>B. 4 cm</answer>", "B", SIDES, 1.0, "letter at the start of the tag content"),
    ("<answer>Option B</answer>", "B", SIDES, 1.0, "'Option B' in the tag"),
    ("A. 3 cm", "A", SIDES, 1.0, f"{MMMU}: response opening with 'A.'"),
    ("B\n\nExplanation: since A is too small...", "B", {}, 1.0, "opening letter; a bare 'A' in prose is no mark"),
    # --- answer phrases; the last one wins
    ("The answer is A.", "A", {}, 1.0, "answer phrase"),
    ("The answer is: B", "B", {}, 1.0, "answer phrase with a colon"),
    ("Answer: **B**", "B", {}, 1.0, "markdown bold after 'Answer:'"),
    ("Final answer: c", "C", {}, 1.0, "lower-case lone letter after an answer phrase"),
    ("The correct option is (D) 6 cm", "D", SIDES, 1.0, "'correct option is (D)'"),
    ("I think the answer is B", "B", {}, 1.0, "the pronoun 'I' is not option I"),
    ("The answer is A. Wait, no: the answer is C.", "C", {}, 1.0, "last answer wins"),
    ("The answer is A. Wait, no: the answer is C.", "A", {}, 0.0, "last answer wins"),
    ("A triangle with sides 3, 4, 5 is right-angled, so the answer is D", "D", SIDES, 1.0,
     "the article 'A' is not a pick; the phrase is"),
    ("A triangle with sides 3, 4, 5 is right-angled, so the answer is D", "A", SIDES, 0.0,
     "the article 'A' is not a pick"),
    ("The answer is 5 cm.", "C", SIDES, 1.0, "answer phrase naming an option text"),
    ("The options are (A) 3 cm and (B) 4 cm; the hypotenuse is 5 cm", "C", SIDES, 1.0,
     "'options are' restates the options, it is no answer phrase"),
    ("The first option is 3 cm, too short; the best option is (D)", "D", SIDES, 1.0,
     "'first option is' describes, 'best option is' answers"),
    # --- option texts (choices=...)
    ("the hypotenuse is 5 cm", "C", SIDES, 1.0, "issue 3: an option text maps to its letter"),
    ("It is not 4 cm; it is 5 cm", "C", SIDES, 1.0, "last option text wins"),
    ("<answer>4 cm</answer>", "B", SIDES, 1.0, "option text inside the tag"),
    ("<answer>C</answer>", "5 cm", SIDES, 1.0, "gold given as option text maps to C"),
    ("the colour is dark red", "B", {"choices": ["red", "dark red"]}, 1.0, "longest option at the same end wins"),
    ("it is red", "A", {"choices": ["red", "dark red"]}, 1.0, "'red' alone is option A"),
    ("I pick option B since a square has four sides", "B", {"choices": ["A", "B", "C", "D"]}, 1.0,
     "options listed as bare letters: the article 'a' is not option A"),
    ("(A) is wrong and (B) is wrong, so (C)", "C", {}, 1.0, "last parenthesised letter wins"),
    ("I would go with option C.", "C", {}, 1.0, "'option C' mark"),
    ("Comparing (A) and (B), the answer must be the 3 cm one", "A", SIDES, 1.0,
     "the option text comes after the marks, so it wins"),
    # --- inside/outside <think>
    ("<think>The answer is A</think><answer>B</answer>", "B", {}, 1.0, "<think> is never the answer"),
    ("<think>The answer is A</think><answer>B</answer>", "A", {}, 0.0, "<think> is never the answer"),
    ("<think>maybe (A)", "A", {}, 0.0, "unterminated <think>"),
    # --- nothing is guessed
    ("I don't know", "A", {}, 0.0, "no random fallback (unlike MMMU's eval script)"),
    ("", "A", {}, 0.0, "empty response"),
    ("Between A and B, I choose B", "B", {}, 0.0, "bare capitals in prose are not read (the article 'A')"),
    ("E", "A", SIDES, 0.0, "E is not among 4 options"),
    ("(J)", "J", {}, 1.0, "no choices: letters A–J by default"),
    ("(E)", "A", {"num_options": 4}, 0.0, "num_options=4: E is no option"),
    ("(D)", "D", {"num_options": 4}, 1.0, "num_options=4: D is the last option"),
    ("The answer is B", "B", {"tags_only": True}, 0.0, "tags_only: free text ignored"),
    ("<answer>B</answer>", "B", {"tags_only": True}, 1.0, "tags_only: tag read"),
]


@pytest.mark.parametrize("response,answer,params,expected,source", CASES,
                         ids=[f"{i}-{c[4][:40]}" for i, c in enumerate(CASES)])
def test_choice(response, answer, params, expected, source):
    result = score("choice", response, answer, **params)
    assert result.score == expected, f"{source}: got {result}"
    assert result.reason


def test_extracted_is_the_letter():
    assert score("choice", "the hypotenuse is 5 cm", "A", **SIDES).extracted == "C"


@pytest.mark.parametrize("answer,params", [
    ("Z", {}),  # beyond A–J
    ("7 cm", SIDES),  # not an option text
    ("B", {"choices": "abc"}),  # a string, not a list
    ("B", {"num_options": 0}),
])
def test_bad_config_raises(answer, params):
    with pytest.raises(VerifierConfigError):
        score("choice", "B", answer, **params)

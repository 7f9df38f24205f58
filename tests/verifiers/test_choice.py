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
    ("the hypotenuse is 5 cm", "C", SIDES, 1.0, "an option text maps to its letter"),
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
    ("Between A and B, I choose B", "B", {}, 1.0, "'I choose B' names a letter; the bare 'A' does not"),
    ("E", "A", SIDES, 0.0, "E is not among 4 options"),
    ("(J)", "J", {}, 1.0, "no choices: letters A–J by default"),
    ("(E)", "A", {"num_options": 4}, 0.0, "num_options=4: E is no option"),
    ("(D)", "D", {"num_options": 4}, 1.0, "num_options=4: D is the last option"),
    # --- letters named inside a sentence
    ("C is correct", "C", {}, 1.0, "'C is correct'"),
    ("It is C.", "C", {}, 1.0, "'It is C.'"),
    ("I think it's B.", "B", {}, 1.0, "\"it's B.\""),
    ("I pick A.", "A", {}, 1.0, "'I pick A.': the pronoun is not option I, A is picked"),
    ("After checking each one, I choose C", "C", {}, 1.0, "'...I choose C' at the end"),
    ("答案是 C", "C", {}, 1.0, "Chinese answer phrase"),
    ("故选C。", "C", {}, 1.0, "Chinese 'therefore choose C'"),
    ("答案：（Ｂ）", "B", {}, 1.0, "full-width brackets and letter fold to ASCII"),
    ("I would go with D because the angle is obtuse", "D", {}, 1.0, "'go with D because'"),
    ("Comparing the lengths, therefore C.", "C", {}, 1.0, "a letter ending the reply"),
    ("It is a triangle.", "A", {}, 0.0, "the article 'a' after 'it is' is no pick"),
    ("It is A triangle, so it has three sides", "A", {}, 0.0, "'It is A triangle': a letter before a noun is no pick"),
    ("I pick A triangle with the longest side", "A", {}, 0.0, "'pick A triangle': the article again"),
    ("The statement holds for me and I", "I", {}, 0.0, "the pronoun 'I' ending the reply is no pick"),
    ("C is not correct; B is correct", "B", {}, 1.0, "'is not correct' names nothing; the last phrase wins"),
    ("<answer>I pick A.</answer>", "A", {}, 1.0, "inside the tag the pronoun 'I' is not a leading letter"),
    ("<answer>A triangle</answer>", "A", {"choices": ["A triangle", "A square"]}, 1.0,
     "'A triangle' in a tag is the option text, not the letter A"),
    # --- LaTeX options, compared as written and by value
    (r"<answer>$\frac{2}{3}$</answer>", "B", {"choices": [r"$\frac{1}{3}$", r"$\frac{2}{3}$"]}, 1.0,
     "the option's $…$ is stripped like the reply's"),
    (r"\boxed{\frac{2}{3}}", "B", {"choices": [r"$\frac{1}{3}$", r"$\frac{2}{3}$"]}, 1.0,
     "boxed option text without $"),
    (r"\boxed{\dfrac{2}{3}}", "B", {"choices": [r"$\frac{1}{3}$", r"$\frac{2}{3}$"]}, 1.0, "\\dfrac is \\frac"),
    ("<answer>2/3</answer>", "B", {"choices": [r"$\frac{1}{3}$", r"$\frac{2}{3}$"]}, 1.0,
     "2/3 equals the option's value (MATH-V accepts it)"),
    ("The answer is 2/3.", "B", {"choices": [r"$\frac{1}{3}$", r"$\frac{2}{3}$"]}, 1.0, "value after an answer phrase"),
    ("2/3", "B", {"choices": [r"$\frac{1}{3}$", r"$\frac{2}{3}$"]}, 1.0, "a reply that is one value"),
    ("<answer>0.67</answer>", "B", {"choices": [r"$\frac{1}{3}$", r"$\frac{2}{3}$"]}, 0.0,
     "0.67 is not 2/3 unless float_rounding says so"),
    ("<answer>0.67</answer>", "B", {"choices": [r"$\frac{1}{3}$", r"$\frac{2}{3}$"], "float_rounding": 2}, 1.0,
     "float_rounding=2 (MATH-V): 0.67 matches 2/3"),
    (r"<answer>x = \frac{4}{6}</answer>", "B", {"choices": ["1/3", "2/3"]}, 1.0, "the value after '='"),
    (r"<answer>2\sqrt{3}</answer>", "C", {"choices": ["2", "3", r"$\sqrt{12}$"]}, 1.0, "2√3 = √12 by value"),
    ("<answer>0.5</answer>", "A", {"choices": ["1/2", "2/4", "3/4"]}, 0.0, "two options share the value: no pick"),
    ("<answer>1.5</answer>", "A", {"choices": ["3/2", "5/2"], "float_rounding": 2}, 1.0, "plain decimal vs a/b option"),
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
    ("B", {"float_rounding": -1}),
    ("B", {"float_rounding": 2.5}),
    ("Z", {}),  # beyond A–J
    ("7 cm", SIDES),  # not an option text
    ("B", {"choices": "abc"}),  # a string, not a list
    ("B", {"num_options": 0}),
])
def test_bad_config_raises(answer, params):
    with pytest.raises(VerifierConfigError):
        score("choice", "B", answer, **params)

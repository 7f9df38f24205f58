"""Scoring parity, MMMU: `mmmu_val` scoring against MMMU's published parsing, row by row.

Multiple choice (Yue et al., "MMMU", CVPR 2024; MMMU-Benchmark/MMMU eval/eval_utils.py,
`parse_multi_choice_response`; lmms-eval 0.7.3 tasks/mmmu/utils.py reuses it), restated in
`eval_helpers.mmmu_pick`: strip , . ! ? ; : ' from both ends, pad with spaces; candidates are the letters
written "(B)"; if none, letters standing alone " B "; if none and the reply has more than 5 words, the options
whose text occurs in it; several candidates: the last occurrence wins; none: a random option (expected credit
1/n, written as 0.25 below for 4 options). Open questions (`parse_open_response`, `eval_open`), restated in
`parity_rules.mmmu_open_score`: the shortest tail after a key phrase ("is ", "so ", "answer ", "=" ...) and
the numbers in it; numbers compare rounded to 2 decimals, strings by containment of the gold.

`published` is what that rule gives for the raw reply. Our scoring is the `mmmu_val` task on the same reply:
the `choice` verifier with the option texts (what the mmmu recipe assigns), or for open questions (options
None) what the recipe's `open_scoring` assigns: `math` at 2 decimals for numbers, `exact` (case-insensitive,
every accepted answer) for words. OURS_DIFFER lists where it differs, and why; each is a deliberate departure
documented in eval/mmmu_val.py (no random pick; the answer in <answer> or after "answer is" first; a letter
only where the reply marks it as its pick).
"""
import pytest

from eval_helpers import mmmu_score, task_score
from parity_rules import mmmu_open_score
from sapo_vl.recipes.mmmu import open_scoring

CM = ["12 cm", "15 cm", "18 cm", "21 cm"]
NUM = ["1", "12", "2", "21"]
FR = [r"$\frac{1}{2}$", r"$\frac{1}{3}$", r"$\frac{2}{3}$", r"$\frac{3}{4}$"]

TABLE = [  # (reply, gold, options, published score, what is tricky)
    ("B", "B", CM, 1, "bare letter"),
    ("(B)", "B", CM, 1, "bracketed letter"),
    ("B.", "B", CM, 1, "letter and full stop"),
    ("The answer is (C).", "C", CM, 1, "bracketed letter in a sentence"),
    ("The answer is C", "C", CM, 1, "letter after a phrase"),
    ("I think it's B.", "B", CM, 1, "letter ending a sentence"),
    ("(A) is wrong, so the answer is (B)", "B", CM, 1, "last bracketed letter wins"),
    ("The answer is (B), not (A).", "B", CM, 0, "last bracketed letter wins even when it is the rejected one"),
    ("A", "A", CM, 1, "letter A alone"),
    ("A triangle has three sides, so the answer is B", "B", CM, 1, "the article 'A' loses to the later B"),
    ("A triangle has three sides", "B", CM, 0, "the article 'A' is read as option A"),
    ("15 cm", "B", CM, 0.25, "option text in a short reply: not parsed, random pick"),
    ("The length of the side is 15 cm as computed", "B", CM, 1, "option text in a reply of more than 5 words"),
    ("I cannot tell.", "A", CM, 0.25, "nothing to parse: random pick"),
    ("Option D", "D", CM, 1, "'Option D'"),
    ("D) 21 cm", "D", CM, 0.25, "'D)' is neither '(D)' nor ' D ': random pick"),
    ("**B**", "B", CM, 0.25, "markdown bold: random pick"),
    ("Answer: B", "B", CM, 1, "'Answer: B'"),
    ("b", "B", CM, 0.25, "lower-case letter is not a letter mark: random pick"),
    ("The correct option is C because 18 cm fits", "C", CM, 1, "letter first, option text later"),
    ("Between B and C, I choose C", "C", CM, 1, "last bare letter wins"),
    ("Between B and C, I choose B", "B", CM, 1, "last bare letter wins (B repeated)"),
    ("(B) 15 cm", "B", CM, 1, "bracketed letter with its text"),
    ("The answer is 18 cm.", "C", CM, 0.25, "option text in a 5-word reply: random pick"),
    ("Therefore the final answer is 18 cm.", "C", CM, 1, "option text in a 6-word reply"),
    ("The answer is (E)", "A", CM, 0.25, "a letter that is no option: random pick"),
    ("The value we computed is exactly 12 here", "B", NUM, 0, "option '2' occurs inside '12' and last"),
    ("It is C.", "C", CM, 1, "short sentence ending in the letter"),
    ("C is correct", "C", CM, 1, "sentence opening with the letter"),
    ("Let me think.\n\n(C)", "C", CM, 1, "bracketed letter after reasoning"),
    ("I pick A.", "A", CM, 1, "letter A ending a sentence"),
    ("The answer is A", "A", CM, 1, "letter A after a phrase"),
    ("Neither (A) nor (B); the answer is (D)", "D", CM, 1, "three bracketed letters, last wins"),
    ("The answer is B. Option A is wrong.", "B", CM, 0, "' A ' is a bare letter, 'B.' inside the text is not"),
    ("B, because 15 cm is the length", "B", CM, 1, "'B,' is no letter mark, but the option text is"),
    # letters named inside a sentence
    ("I choose C.", "C", CM, 1, "' C ' once the full stop is stripped"),
    ("\u7b54\u6848\u662f C", "C", CM, 1, "Chinese phrase, letter after a space"),
    ("\u7b54\u6848\u662fC", "C", CM, 0.25, "Chinese phrase, no space before the letter: random pick"),
    ("C is correct because 18 cm fits", "C", CM, 1, "' C ' standing alone"),
    ("A is wrong, C is correct", "C", CM, 1, "the last bare letter"),
    ("A is correct, C is wrong", "A", CM, 0, "the last bare letter is the rejected one"),
    ("Option A is a distractor; I choose D.", "D", CM, 1, "the last bare letter"),
    ("Answer: B\nExplanation: option A is too short", "B", CM, 0, "'B\\n' is not ' B ', ' A ' is"),
    # letters and option texts in other dresses
    ("<answer>B</answer>", "B", CM, 0.25, "a tagged letter is no letter mark: random pick"),
    ("\\boxed{B}", "B", CM, 0.25, "a boxed letter: random pick"),
    ("[B]", "B", CM, 0.25, "a bracketed letter: random pick"),
    ("B) 15 cm", "B", CM, 0.25, "'B)': random pick"),
    ("**Answer: B**", "B", CM, 0.25, "markdown around the letter: random pick"),
    ("The answer is B.", "B", CM, 1, "letter ending the reply"),
    ("Answer: (C) 18 cm", "C", CM, 1, "bracketed letter with its text"),
    ("The answer is a) 12 cm", "A", CM, 1, "lower-case 'a)', the option text in a 6-word reply"),
    ("(A)", "A", CM, 1, "bracketed A"),
    ("A.", "A", CM, 1, "'A.' once the full stop is stripped"),
    ("Let me compute: 3*6 = 18, so 18 cm. Answer: C", "C", CM, 1, "letter at the end"),
    ("The correct choice is (D) 21 cm.", "D", CM, 1, "bracketed letter"),
    ("Neither 12 cm nor 15 cm; it must be 18 cm", "C", CM, 1, "the last option text"),
    ("I think the answer is 15 cm", "B", CM, 1, "option text in a 6-word reply"),
    ("It is 18 cm.", "C", CM, 0.25, "option text in a 3-word reply: random pick"),
    ("The answer is D.", "C", CM, 0, "wrong letter"),
    ("E", "A", CM, 0.25, "E is no option: random pick"),
    # LaTeX options
    ("<answer>$\\frac{2}{3}$</answer>", "C", FR, 0.25, "tagged option text: random pick"),
    ("The answer is $\\frac{2}{3}$, option C", "C", FR, 1, "the letter at the end"),
    ("So the probability is $\\frac{2}{3}$ in total here", "C", FR, 1, "the option text, $ included, in a long reply"),
    ("So the probability is \\frac{2}{3} in total here", "C", FR, 0.25, "the option text without $ is not found"),
    ("The probability is 2/3, which is option C", "C", FR, 1, "the letter at the end"),
    # open questions: numbers at 2 decimals
    ("The area is 6.67", "6.67", None, 1, "the number after 'is '"),
    ("The area is 6.666", "6.67", None, 1, "6.666 rounds to 6.67"),
    ("<answer>6.666</answer>", "6.67", None, 1, "every number in the reply is a candidate"),
    ("<answer>1.449</answer>", "1.45", None, 1, "1.449 rounds to 1.45"),
    ("So the answer is 2.4e1", "24", None, 1, "scientific notation"),
    ("<answer>\\frac{1}{4}</answer>", "0.25", None, 0, "a LaTeX fraction is two numbers, 1 and 4"),
    ("Thus the speed is 12 m/s", "12", None, 1, "number with a unit"),
    ("The answer is 1,234", "1234", None, 1, "thousands separator"),
    ("x = 3", "3", None, 1, "after '='"),
    ("The value is 3.14159", "3.14", None, 1, "rounded to 2 decimals"),
    ("The value is 3.15", "3.14", None, 0, "different at 2 decimals"),
    ("It is about 45%", "45", None, 1, "the number before the percent sign"),
    ("The answer is 0.5", "1/2", None, 0, "gold '1/2' is a string, not in '0.5'"),
    ("<answer>12</answer>", "12", None, 1, "tagged integer"),
    ("<answer>13</answer>", "12", None, 0, "wrong integer"),
    # open questions with word answers; MMMU lower-cases and accepts any of several answers
    ("The answer is mitosis", "Mitosis", None, 1, "word gold, case folded"),
    ("<answer>MITOSIS</answer>", "Mitosis", None, 1, "word gold, upper-case reply"),
    ("The answer is Lisbon", "['Porto', 'Lisbon']", None, 1, "the second accepted answer"),
    ("The answer is Madrid", "['Porto', 'Lisbon']", None, 0, "none of the accepted answers"),
    ("<answer>the larval stage</answer>", "larval", None, 1, "MMMU: the gold occurs in the reply"),
    ("<answer>meiosis</answer>", "Mitosis", None, 0, "another word"),
]

OURS_DIFFER = {  # (reply, gold): (our score, why)
    ("The answer is (B), not (A).", "B"): (1, "the letter right after 'answer is' is the answer"),
    ("15 cm", "B"): (1, "an option's text names it, whatever the reply's length"),
    ("It is 18 cm.", "C"): (1, "an option's text names it, whatever the reply's length"),
    ("I cannot tell.", "A"): (0, "no random pick: an unreadable reply scores 0"),
    ("E", "A"): (0, "no random pick: E is no option, the reply scores 0"),
    ("D) 21 cm", "D"): (1, "'D)' opening the reply is a letter mark"),
    ("B) 15 cm", "B"): (1, "'B)' opening the reply is a letter mark"),
    ("**B**", "B"): (1, "a reply that is one letter, markdown removed"),
    ("[B]", "B"): (1, "a reply that is one letter, brackets removed"),
    ("b", "B"): (1, "a reply that is one letter, either case"),
    ("**Answer: B**", "B"): (1, "the letter after 'Answer:', markdown removed"),
    ("Answer: B\nExplanation: option A is too short", "B"): (1, "the letter after 'Answer:' is the answer"),
    ("<answer>B</answer>", "B"): (1, "the <answer> content is read (our prompt asks for it)"),
    ("<answer>$\\frac{2}{3}$</answer>", "C"): (1, "the <answer> content is read; LaTeX options compare without $"),
    ("\\boxed{B}", "B"): (1, "the \\boxed{} content is read"),
    ("\u7b54\u6848\u662fC", "C"): (1, "a Chinese answer phrase names the letter"),
    ("A is correct, C is wrong", "A"): (1, "the letter named as correct is the pick, not the last bare letter"),
    ("So the probability is \\frac{2}{3} in total here", "C"): (1, "LaTeX options compare without $"),
    ("The answer is 18 cm.", "C"): (1, "an option's text after 'answer is'"),
    ("The answer is (E)", "A"): (0, "no random pick: E is no option, the reply scores 0"),
    ("The value we computed is exactly 12 here", "B"): (1, "option texts match whole words only: 12, not 2"),
    ("The answer is B. Option A is wrong.", "B"): (1, "the letter right after 'answer is' is the answer"),
    ("<answer>\\frac{1}{4}</answer>", "0.25"): (1, "math-verify reads the fraction's value"),
    ("The answer is 0.5", "1/2"): (1, "math-verify compares values: 0.5 = 1/2"),
    ("<answer>the larval stage</answer>", "larval"): (0, "`exact` needs the whole answer, not a part"),
}


def test_table_has_60_rows_and_unique_replies():
    assert len(TABLE) >= 60
    pairs = [(r, g) for r, g, *_ in TABLE]
    assert len(set(pairs)) == len(pairs) and set(OURS_DIFFER) <= set(pairs)
    published = {(row[0], row[1]): row[-2] for row in TABLE}  # rows end with (published, why)
    stale = [key for key, (ours, _) in OURS_DIFFER.items() if ours == published[key]]
    assert not stale, f"listed as departures but equal to the published score: {stale}"


@pytest.mark.parametrize("reply,gold,options,published,why", TABLE, ids=[repr(r) for r, *_ in TABLE])
def test_expected_scores_follow_the_published_rule(reply, gold, options, published, why):
    rule = mmmu_score(reply, gold, options) if options else mmmu_open_score(reply, gold)
    assert rule == published, why


@pytest.mark.parametrize("reply,gold,options,published,why", TABLE, ids=[repr(r) for r, *_ in TABLE])
def test_mmmu_task_reproduces_the_rule(reply, gold, options, published, why):
    if options:
        verifier, answer, params = "choice", gold, {"choices": options}
    else:
        verifier, answer, params = open_scoring(gold)  # as the mmmu recipe assigns
    ours = task_score("mmmu_val", reply, answer, verifier, params)
    assert ours == OURS_DIFFER.get((reply, gold), (published,))[0], f"{why}; published {published}"

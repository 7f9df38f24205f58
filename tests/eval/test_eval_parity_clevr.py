"""Scoring parity, CLEVR counting: `clevr_count` scoring against R1-V's published counting check.

The rule (R1-V, Chen et al. 2025, src/eval/test_qwen2vl_counting_superclevr.py, used for its Super-CLEVR
and CLEVR counting numbers), restated in `eval_helpers.r1v_count`: the first `<answer>` holding only an
integer and spaces (regular expression `<answer>\\s*(\\d+)\\s*</answer>`, case-sensitive) is read with int()
and must equal the ground truth; otherwise the reply is wrong.

`published` is what that rule gives. Our scoring is the `count` verifier with `tags_only=True` (only
`<answer>` or `\\boxed{}` content is read, as R1-V reads only the tag). OURS_DIFFER lists where it differs,
and why; each is a deliberate departure, documented in eval/clevr_count.py: we are more lenient about what
the tag holds (a number word, "3.0", "3 cubes", a box) and the last tag wins where R1-V reads the first.
"""
import pytest

from eval_helpers import r1v_count, task_score

TABLE = [  # (reply, ground truth, published score, what is tricky)
    ("<answer>3</answer>", 3, 1, "plain"),
    ("<answer> 3 </answer>", 3, 1, "spaces inside the tag"),
    ("<answer>\n3\n</answer>", 3, 1, "newlines inside the tag"),
    ("<think>there are 3</think><answer>3</answer>", 3, 1, "R1 format"),
    ("<answer>4</answer>", 3, 0, "off by one"),
    ("3", 3, 0, "no tag"),
    ("The answer is 3", 3, 0, "answer phrase, no tag"),
    ("\\boxed{3}", 3, 0, "boxed, no tag"),
    ("<answer>three</answer>", 3, 0, "number word"),
    ("<answer>3 cubes</answer>", 3, 0, "number with a noun"),
    ("<answer>3.0</answer>", 3, 0, "decimal point"),
    ("<answer>-3</answer>", 3, 0, "negative"),
    ("<answer>03</answer>", 3, 1, "leading zero"),
    ("<answer>3</answer><answer>4</answer>", 3, 1, "two tags: the first is read"),
    ("<answer>3</answer><answer>4</answer>", 4, 0, "two tags: the last is not read"),
    ("<answer>10</answer>", 10, 1, "two digits"),
    ("<answer>1,000</answer>", 1000, 0, "thousands separator"),
    ("<answer></answer>", 3, 0, "empty tag"),
    ("<answer>3", 3, 0, "unclosed tag"),
    ("<Answer>3</Answer>", 3, 0, "tag case"),
    ("<answer>3 </answer> extra text", 3, 1, "text after the tag"),
    ("<think>maybe 4</think> <answer>3</answer>", 3, 1, "another number in the reasoning"),
    ("<think><answer>4</answer></think><answer>3</answer>", 3, 0, "a tag inside <think> is read first"),
    ("<answer>0</answer>", 0, 1, "zero"),
    ("<answer>There are 5 objects</answer>", 5, 0, "a sentence in the tag"),
    ("<answer>5</answer>", 6, 0, "wrong"),
    ("<answer> 7</answer>", 7, 1, "leading space"),
    ("I count 7 objects. <answer>7</answer>", 7, 1, "text before the tag"),
    ("<answer>7.5</answer>", 7, 0, "not an integer"),
    ("<answer>12</answer>", 12, 1, "two digits"),
    ("<answer>\u0663</answer>", 3, 1, "Arabic-Indic digit three: \\d and int() read it"),
    ("<answer>1 2</answer>", 1, 0, "two numbers in the tag"),
    ("<answer>\uff11\uff14</answer>", 14, 1, "full-width digits: \\d and int() read them"),
    ("<answer>1/2</answer>", 2, 0, "a fraction is no count (we used to read its last number, 2)"),
    ("<answer>3/4</answer>", 4, 0, "a fraction is no count"),
    ("<think>Count: 1, 2, 3.</think>\n<answer>3</answer>", 3, 1, "numbers while counting in <think>"),
    ("<answer> 5</answer> I am confident.", 5, 1, "text after the tag"),
    ("<answer>5 </answer>", 4, 0, "off by one with a space"),
    ("There are 6 objects.\n<answer>6</answer>", 6, 1, "the count also said in prose"),
    ("<answer>6 objects</answer>", 6, 0, "a noun in the tag"),
    ("<answer>six</answer>", 6, 0, "a number word"),
    ("<answer>zero</answer>", 0, 0, "the word zero"),
    ("<answer>2</answer>\n", 2, 1, "trailing newline"),
    ("<answer>7</answer>", 8, 0, "off by one"),
    ("<answer>10</answer>", 1, 0, "10 is not 1"),
    ("<answer>1</answer>", 10, 0, "1 is not 10"),
    ("the answer is <answer>4</answer>", 4, 1, "a phrase before the tag"),
    ("<answer>4.</answer>", 4, 0, "a full stop inside the tag"),
    ("<answer>0</answer>", 1, 0, "zero for one"),
    ("<answer>11</answer>", 11, 1, "eleven"),
    ("<answer>2 + 3 = 5</answer>", 5, 0, "working inside the tag"),
    ("I think 3.\n<answer>3</answer>", 3, 1, "prose then the tag"),
    ("<answer>\\boxed{4}</answer>", 4, 0, "a box inside the tag"),
]

OURS_DIFFER = {  # (reply, ground truth): (our score, why)
    ("\\boxed{3}", 3): (1, "a boxed answer counts as a tagged one"),
    ("<answer>three</answer>", 3): (1, "number words are read"),
    ("<answer>3 cubes</answer>", 3): (1, "the number inside the answer is read"),
    ("<answer>3.0</answer>", 3): (1, "3.0 is the integer 3"),
    ("<answer>3</answer><answer>4</answer>", 3): (0, "the last answer tag wins"),
    ("<answer>3</answer><answer>4</answer>", 4): (1, "the last answer tag wins"),
    ("<answer>1,000</answer>", 1000): (1, "thousands separators are read"),
    ("<answer>3", 3): (1, "an unclosed last tag runs to the end"),
    ("<Answer>3</Answer>", 3): (1, "tags are case-insensitive"),
    ("<think><answer>4</answer></think><answer>3</answer>", 3): (1, "<think> blocks are never read"),
    ("<answer>There are 5 objects</answer>", 5): (1, "the number inside the answer is read"),
    ("<answer>\u0663</answer>", 3): (0, "only ASCII and full-width digits are read"),
    ("<answer>6 objects</answer>", 6): (1, "the number inside the answer is read"),
    ("<answer>six</answer>", 6): (1, "number words are read"),
    ("<answer>zero</answer>", 0): (1, "number words are read"),
    ("<answer>4.</answer>", 4): (1, "a full stop after the number is punctuation"),
    ("<answer>2 + 3 = 5</answer>", 5): (1, "the last number in the answer is read"),
    ("<answer>\\boxed{4}</answer>", 4): (1, "a box inside the tag is unwrapped"),
}


def test_table_has_50_rows_and_unique_replies():
    assert len(TABLE) >= 50
    pairs = [(r, g) for r, g, *_ in TABLE]
    assert len(set(pairs)) == len(pairs) and set(OURS_DIFFER) <= set(pairs)
    published = {(row[0], row[1]): row[-2] for row in TABLE}  # rows end with (published, why)
    stale = [key for key, (ours, _) in OURS_DIFFER.items() if ours == published[key]]
    assert not stale, f"listed as departures but equal to the published score: {stale}"


@pytest.mark.parametrize("reply,truth,published,why", TABLE, ids=[f"{r!r}-{t}" for r, t, *_ in TABLE])
def test_expected_scores_follow_the_published_rule(reply, truth, published, why):
    assert r1v_count(reply, truth) == published, why


@pytest.mark.parametrize("reply,truth,published,why", TABLE, ids=[f"{r!r}-{t}" for r, t, *_ in TABLE])
def test_clevr_task_reproduces_the_rule(reply, truth, published, why):
    ours = task_score("clevr_count", reply, str(truth), "count")
    assert ours == OURS_DIFFER.get((reply, truth), (published,))[0], f"{why}; published {published}"

"""The parity tables together, value by value: every gold answer in the five rule-scored tables,
handed back in the form its published harness reads, scores 1 under the published rule (restated
independently of our verifiers in parity_rules.py / eval_helpers.py) and 1 under our task; the next integer
instead of an integer gold scores 0 under both. A gold that scored 0 against itself would be a row that can
never be won, whatever the model answers."""
import importlib

import pytest

from eval_helpers import chartqa_relaxed, mmmu_score, r1v_count, task_score
from parity_rules import mathv_score, mathvista_score, mmmu_open_score
from sapo_vl.recipes.mathvista import scoring as mathvista_scoring
from sapo_vl.recipes.mmmu import open_scoring


def _rows(name: str) -> list[tuple]:
    return importlib.import_module(f"test_eval_parity_{name}").TABLE


def _golds() -> list[tuple]:
    """(task, gold, options or source row), each distinct gold of each table once."""
    found: dict[tuple, tuple] = {}
    for reply, gold, *_ in _rows("chartqa"):
        found.setdefault(("chartqa_test", gold), ("chartqa_test", gold, None))
    for reply, truth, *_ in _rows("clevr"):
        found.setdefault(("clevr_count", truth), ("clevr_count", truth, None))
    for reply, gold, options, *_ in _rows("mathvision"):
        found.setdefault(("mathvision", gold, repr(options)), ("mathvision", gold, options))
    for reply, gold, options, *_ in _rows("mmmu"):
        found.setdefault(("mmmu_val", gold, repr(options)), ("mmmu_val", gold, options))
    for reply, row, *_ in _rows("mathvista"):
        found.setdefault(("mathvista_testmini", repr(row)), ("mathvista_testmini", row["answer"], row))
    return list(found.values())


def _published_and_ours(task: str, gold, extra, reply_value) -> tuple[float, float]:
    """(published rule's score, our task's score) of a reply naming `reply_value` for the gold `gold`."""
    if task == "chartqa_test":
        return (chartqa_relaxed(str(reply_value), gold),
                task_score(task, f"<answer>{reply_value}</answer>", gold, "numeric", {"tolerance": 0.05}))
    if task == "clevr_count":
        reply = f"<answer>{reply_value}</answer>"
        return r1v_count(reply, gold), task_score(task, reply, str(gold), "count")
    if task == "mathvision":
        reply = f"\\boxed{{{reply_value}}}"
        verifier, params = ("choice", {"choices": extra}) if extra else ("math", {})
        return mathv_score(reply, gold, extra), task_score(task, reply, gold, verifier, params)
    if task == "mmmu_val":
        if extra:
            reply = f"({reply_value})"
            return mmmu_score(reply, gold, extra), task_score(task, reply, gold, "choice", {"choices": extra})
        reply = f"The answer is {reply_value}"
        verifier, answer, params = open_scoring(gold)
        return mmmu_open_score(reply, gold), task_score(task, reply, answer, verifier, params)
    row = extra
    verifier, answer, params, _ = mathvista_scoring(row)
    reply = f"<answer>{reply_value}</answer>"
    published = mathvista_score(reply, row["answer"], row["answer_type"], int(row.get("precision") or 1),
                                row.get("choices"))
    return published, task_score(task, reply, answer, verifier, params)


def _first_accepted(task: str, gold, extra):
    """An MMMU open gold may list accepted answers ("['Porto', 'Lisbon']"): the reply names the first."""
    return open_scoring(gold)[1] if task == "mmmu_val" and not extra and gold.startswith("[") else gold


GOLDS = _golds()


def test_the_tables_hold_golds_of_every_kind():
    assert len(GOLDS) >= 80
    assert {t for t, *_ in GOLDS} == {"chartqa_test", "clevr_count", "mathvision", "mmmu_val", "mathvista_testmini"}


@pytest.mark.parametrize("task,gold,extra", GOLDS, ids=[f"{t}-{g!r}" for t, g, _ in GOLDS])
def test_every_gold_scores_1_against_itself_under_both_rules(task, gold, extra):
    published, ours = _published_and_ours(task, gold, extra, _first_accepted(task, gold, extra))
    assert (published, ours) == (1, 1)


INTEGERS = [(t, g, x) for t, g, x in GOLDS if str(g).isdigit() and not (t == "mathvista_testmini" and x.get("choices"))]


@pytest.mark.parametrize("task,gold,extra", INTEGERS, ids=[f"{t}-{g!r}" for t, g, _ in INTEGERS])
def test_the_next_integer_scores_0_under_both_rules(task, gold, extra):
    wrong = int(gold) + 1 if task != "chartqa_test" else 2 * int(gold) + 1  # outside ChartQA's 5% as well
    assert _published_and_ours(task, gold, extra, wrong) == (0, 0)

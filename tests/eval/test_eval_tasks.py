"""Every registered task: declared well, documented, scoring its own ground truth 1 (synthetic tasks from their
recipes, real ones from local copies in the hub schema), and listed; suites and name errors."""
import importlib
import inspect

import pytest

from hub_fixtures import WRITERS, charxiv_release, logicvista_hub
from sapo_vl.evaluation.registry import SUITES, TASKS, get_task, suite
from sapo_vl.evaluation.task import Task, TaskError, override_prompt
from sapo_vl.verifiers import VERIFIERS, check_params, score

SYNTHETIC = {"synthetic_color", "synthetic_count", "synthetic_spatial", "synthetic_chart", "synthetic_geometry"}
PARITY = {"chartqa_test": "chartqa", "mmmu_val": "mmmu", "mathvision": "mathvision",
          "mathvision_testmini": "mathvision", "clevr_count": "clevr"}
"""Rule-scored task -> its parity table, tests/eval/test_eval_parity_<name>.py."""


def test_the_promised_benchmark_and_synthetic_tasks_are_all_there():
    wanted = {"mathvista_testmini", "mathverse_testmini", "mathvision", "geometry3k_test", "synthetic_geometry",
              "chartqa_test", "charxiv_reasoning_val", "synthetic_chart", "clevr_count", "mmmu_val", "logicvista",
              "synthetic_count", "synthetic_color", "synthetic_spatial"}
    assert wanted <= set(TASKS)


def test_every_task_is_tested_here():
    assert set(TASKS) == SYNTHETIC | set(WRITERS)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_is_declared_and_documented(name):
    task = TASKS[name]
    module = importlib.import_module(f"sapo_vl.eval_tasks.{name}")
    doc = inspect.getdoc(module)
    assert doc.startswith(f"{name}:") and f"sapo-vl eval --task {name}" in doc, "docstring: name, then the command"
    assert task.description and task.rule and task.source and task.split
    for verifier in [task.verifier] if task.verifier else task.row_verifiers:
        assert verifier in VERIFIERS
    if task.verifier:
        check_params(task.verifier, task.verifier_params)
    if task.scoring == "judge":
        assert "LLM" in doc and ("GPT-4" in doc or "judge" in doc)
    if task.scoring == "rule":
        assert "Published rule reproduced" in doc and name in PARITY
        assert (importlib.util.find_spec(f"test_eval_parity_{PARITY[name]}") is not None)


@pytest.mark.parametrize("name", sorted(SYNTHETIC))
def test_synthetic_tasks_score_their_own_answers_1(name):
    task = get_task(name)
    records, skipped = task.load(limit=4)
    assert len(records) == 4 and not skipped and all(r.split == task.split for r in records)
    for r in records:
        verifier, params = task.score_spec(r)
        assert score(verifier, f"<answer>{r.answer}</answer>", r.answer, **params).score == 1.0, r.id
        assert score(verifier, r.answer, r.answer, **params).score == 1.0, r.id


def test_synthetic_geometry_bare_exact_answers_score_1():
    """A bare LaTeX reply ('2\\sqrt{17}', no tags, no $) is read as LaTeX, not as its leading 2."""
    task = get_task("synthetic_geometry")
    records, _ = task.load(limit=8)
    r = next(r for r in records if "sqrt" in r.answer)
    assert score("math", r.answer, r.answer).score == 1.0


EXPECTED_SKIPS = {"chartqa_test": [("chartqa/test/3", "empty answer")],
                  "logicvista": [("logicvista/test/v1_382", "empty answer")]}
"""The fixtures' rows that cannot be scored: an empty ChartQA label, LogicVista's empty gold (a listed data error)."""


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_real_tasks_read_local_copies_in_the_hub_schema(name, tmp_path):
    task = get_task(name).with_options(path=str(WRITERS[name](tmp_path)))
    records, skipped = task.load()
    assert len(records) >= 2 and all(bool(r.images) != (name == "mathverse_text_only") for r in records)
    assert skipped == EXPECTED_SKIPS.get(name, [])
    assert all(i in task.data_errors for i, _ in skipped if name == "logicvista")
    for r in records:
        verifier, params = task.score_spec(r)
        assert score(verifier, f"<think>...</think><answer>{r.answer}</answer>", r.answer, **params).score == 1.0, r.id
        assert score("format", f"<answer>{r.answer}</answer>", "", style=task.format_style).score == 1.0


def test_logicvista_verifiers_per_answer_kind(tmp_path):
    records, _ = get_task("logicvista").with_options(path=str(WRITERS["logicvista"](tmp_path))).load()
    kinds = {r.answer: (r.verifier, r.verifier_params) for r in records}
    assert kinds == {"C": ("choice", {"num_options": 4}), "A, C": ("math", {"tags_only": True}),
                     "3": ("count", {}), "G": ("choice", {"num_options": 9})}
    verifier, params = kinds["A, C"]
    assert score(verifier, "<answer>C and A</answer>", "A, C", **params).score == 1.0
    assert score(verifier, "<answer>C</answer>", "A, C", **params).score == 0.0
    # the release's capability keys are broad_capability / specific_capability
    assert [(r.id, r.meta["broad_capability"], r.meta["specific_capability"]) for r in records[:2]] == [
        ("logicvista/test/v1_0", ["diagram"], ["sequence pattern"]), ("logicvista/test/v1_1", ["diagram"], ["grouping"])]


def test_logicvista_reads_the_hub_copy_with_an_image_column(tmp_path):
    github, _ = get_task("logicvista").with_options(path=str(WRITERS["logicvista"](tmp_path / "gh"))).load()
    hub, skipped = get_task("logicvista").with_options(path=str(logicvista_hub(tmp_path / "hub"))).load()
    assert len(hub) == len(github) == 4 and [s for _, s in skipped] == ["empty answer"]
    assert [(r.answer, r.verifier, r.verifier_params) for r in hub] == [
        (r.answer, r.verifier, r.verifier_params) for r in github]
    assert [r.images for r in hub] == [r.images for r in github]  # the same pictures, from the cell
    assert hub[2].meta["specific_capability"] == ["puzzles"]


def test_charxiv_prompts_and_verifiers(tmp_path):
    records, _ = get_task("charxiv_reasoning_val").with_options(path=str(WRITERS["charxiv_reasoning_val"](tmp_path))).load()
    assert [(r.verifier, r.verifier_params) for r in records] == [
        ("exact", {}), ("numeric", {"tolerance": 0.0}), ("numeric", {"tolerance": 0.0}), ("numeric", {"tolerance": 0.0}),
        ("exact", {})]
    assert score("exact", "<answer>a</answer>", "(a)").score == 1.0  # the article-only gold is a label
    assert score("exact", "<answer>(b)</answer>", "(a)").score == 0.0
    texts = [r.prompt[-1]["content"][-1]["text"] for r in records]
    assert "2 decimal places" in texts[2] and "exact integer" in texts[3] and "decimal" not in texts[1]
    assert score("numeric", "<answer>12.250</answer>", "12.25", tolerance=0.0).score == 1.0
    assert score("numeric", "<answer>12.3</answer>", "12.25", tolerance=0.0).score == 0.0


def test_suites_partition_the_tasks_by_domain():
    parts = [set(t.name for t in suite(s)) for s in SUITES if s != "all"]
    assert set().union(*parts) == set(TASKS) == {t.name for t in suite("all")}
    assert sum(map(len, parts)) == len(TASKS)
    assert {"chartqa_test", "charxiv_reasoning_val", "synthetic_chart"} == {t.name for t in suite("chart")}
    assert [t.name for t in suite("synthetic_count,synthetic_color")] == ["synthetic_count", "synthetic_color"]


@pytest.mark.parametrize("typo,closest", [("chartqa", "chartqa_test"), ("mmmu", "mmmu_val"),
                                          ("synthetic_colour", "synthetic_color"), ("mathvista", "mathvista_testmini"),
                                          ("clevr", "clevr_count")])
def test_unknown_task_names_the_closest(typo, closest):
    with pytest.raises(TaskError, match=f"did you mean '{closest}'"):
        get_task(typo)


def test_unknown_suite_names_the_closest():
    with pytest.raises(TaskError, match="did you mean 'chart'"):
        suite("charts")


def test_prompt_override_replaces_the_recipe_instruction():
    prompt = [{"role": "user", "content": [{"type": "image"},
                                           {"type": "text", "text": "How many?\nThink step by step, then give the "
                                                                    "number inside <answer></answer>."}]}]
    recipe = "{question}\nThink step by step, then give the number inside <answer></answer>."
    out = override_prompt(prompt, recipe, "{question} Put the final answer in \\boxed{{}}.")
    assert out[0]["content"][1]["text"] == "How many? Put the final answer in \\boxed{}."
    assert prompt[0]["content"][1]["text"].startswith("How many?\nThink")  # the record's prompt is not touched
    task = Task(name="x", domain="reasoning", description="d", split="test", scoring="ours", rule="r", source="s",
                recipe="synthetic_count", verifier="count", prompt="{question} Answer in <answer></answer>.")
    (r,), _ = task.load(limit=1)
    text = r.prompt[-1]["content"][-1]["text"]
    assert text.startswith("How many") and text.endswith("Answer in <answer></answer>.") and "single number" not in text


@pytest.mark.parametrize("bad,match", [
    (dict(domain="charts"), "domain"), (dict(scoring="llm"), "scoring"), (dict(recipe=""), "recipe"),
    (dict(verifier=None), "row_verifiers"), (dict(prompt="no placeholder"), "question"),
])
def test_bad_task_declarations_are_refused(bad, match):
    fields = dict(name="x", domain="reasoning", description="d", split="test", scoring="ours", rule="r", source="s",
                  recipe="synthetic_count", verifier="count")
    with pytest.raises(TaskError, match=match):
        Task(**{**fields, **bad})


def test_charxiv_reads_the_release_repository_layout(tmp_path):
    """data/reasoning_val.json keyed by figure, pictures in images/<figure_id>.jpg, categories beside it."""
    folder = charxiv_release(tmp_path / "CharXiv")
    for path in (folder, folder / "data", folder / "data" / "reasoning_val.json"):
        records, skipped = get_task("charxiv_reasoning_val").with_options(path=str(path)).load()
        assert not skipped and [r.id for r in records] == ["charxiv/validation/12", "charxiv/validation/40"]
    label, value = records
    assert (label.verifier, label.answer, label.meta["category"]) == ("exact", "A", "cs")
    assert (value.verifier, value.meta["answer_type"]) == ("numeric", "number-in-general")
    assert "a number with 1 decimal places" in value.prompt[-1]["content"][-1]["text"]
    assert label.images == [(folder / "images" / "12.jpg").read_bytes()]


def test_mathvision_keeps_multi_part_rows_as_the_release_harness_does(tmp_path):
    """One merged picture per row: <image2>... stay as text, the slot sits at <image1>; options A-E get no
    option block; a form feed eaten from "\\frac" is put back."""
    records, skipped = get_task("mathvision").with_options(path=str(WRITERS["mathvision"](tmp_path))).load()
    assert not skipped and len(records) == 5
    parts, kites, fraction = records[2:]
    text = parts.prompt[-1]["content"]
    assert [c["type"] for c in text] == ["text", "image", "text"] and len(parts.images) == 1
    assert "<image2> or <image3>" in text[0]["text"] and "A. <image2>" in text[2]["text"]
    assert "Choices" not in kites.prompt[-1]["content"][-1]["text"] and kites.verifier_params == {"choices": list("ABCDE")}
    assert fraction.answer == "\\frac{3}{4}"
    assert score("math", "<answer>0.75</answer>", fraction.answer).score == 1.0

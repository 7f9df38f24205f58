"""mathverse on AI4Math/MathVerse's schema: testmini.parquet (beside testmini.json) and the text-only config."""
from __future__ import annotations

import datasets as ds

FEATURES = {"sample_index": ds.Value("string"), "problem_index": ds.Value("string"),
            "problem_version": ds.Value("string"), "question": ds.Value("string"), "image": ds.Image(),
            "answer": ds.Value("string"), "question_type": ds.Value("string"),
            "metadata": {"split": ds.Value("string"), "source": ds.Value("string"), "subject": ds.Value("string"),
                         "subfield": ds.Value("string")},
            "query_wo": ds.Value("string"), "query_cot": ds.Value("string"), "question_for_eval": ds.Value("string")}
CHOICES = "As shown in the figure, DE ∥ BC. Find the size of angle CED.\nChoices:\nA:40°\nB:60°\nC:120°\nD:140°"


def _row(kit, index, version, question, answer, qtype="multi-choice", image=True):
    return {"sample_index": index, "problem_index": "1", "problem_version": version, "question": question,
            "image": kit.image() if image else None, "answer": answer, "question_type": qtype,
            "metadata": {"split": "testmini", "source": "GeoQA", "subject": "Plane Geometry", "subfield": "Angle"},
            "query_wo": "Please directly answer ...", "query_cot": "Please first conduct reasoning ...",
            "question_for_eval": question}


def write(folder, kit, malformed=True):
    good = [_row(kit, "1", "Text Dominant", CHOICES, "D"),
            _row(kit, "2", "Vision Only", "", "D"),  # the question is in the image: letters only
            _row(kit, "3", "Text Lite", "Find the length of AB.", "5", "free-form")]
    bad = [_row(kit, "4", "Text Dominant", CHOICES, "E"),  # no option E
           _row(kit, "5", "Vision Intensive", "Find x.", "3", "free-form", image=False)]  # no image
    kit.parquet(folder / "testmini.parquet", good + bad * malformed, FEATURES)
    (folder / "testmini.json").write_text("[]")  # the repo ships json too; parquet wins


def test_mathverse(tmp_path, kit):
    write(tmp_path, kit)
    records, skips = kit.run("mathverse", "testmini", path=str(tmp_path))
    kit.check(records, "mathverse", "testmini")
    text_dominant, vision_only, free_form = records
    assert [r.id for r in records] == ["mathverse/testmini/1", "mathverse/testmini/2", "mathverse/testmini/3"]
    assert text_dominant.verifier == "choice"
    assert text_dominant.verifier_params == {"choices": ["40°", "60°", "120°", "140°"]}
    assert (vision_only.verifier, vision_only.verifier_params) == ("choice", {})
    assert "shown in the image" in kit.text(vision_only)
    assert (free_form.verifier, free_form.answer) == ("math", "5") and free_form.meta["version"] == "Text Lite"
    assert [s.id for s in skips] == ["mathverse/testmini/4", "mathverse/testmini/5"]
    assert "bad answer: 'E'" in skips[0].reason and "(of 4)" in skips[0].reason and skips[1].reason == "missing image"


TRUE_FALSE = "Is the angle at C a right angle?\nChoice:\nA. True\nB. False"
BEARING = "Find the true bearing of B from A.\nChoice:\nA. 090^\\circ T\nB. 180^\\circ T\nC. 270^\\circ T"
TWO = "Which two expressions equal sin(x)? Choose 2 answers:\nChoices:\nA:cos(90-x)\nB:cos(x)\nC:-sin(-x)\nD:tan(x)"


def test_mathverse_golds_written_as_brackets_option_texts_or_two_letters(tmp_path, kit):
    """The release writes some multiple-choice golds as "(C)", as an option's text, or as two letters on two
    lines: each is kept, as the letter (or "A, C"), and scores 1 against itself."""
    rows = [_row(kit, "1", "Text Lite", CHOICES, "(C)"), _row(kit, "2", "Text Lite", TRUE_FALSE, "False"),
            _row(kit, "3", "Text Lite", BEARING, "090^\\circ T"), _row(kit, "4", "Text Lite", TWO, "C\nA"),
            _row(kit, "5", "Text Lite", "Find x.", "slope =-4", "free-form"),
            _row(kit, "6", "Text Lite", "Give the domain and range.", "domain: (2,8] and range: [6,8)", "free-form")]
    kit.parquet(tmp_path / "testmini.parquet", rows, FEATURES)
    records, skips = kit.run("mathverse", "testmini", path=str(tmp_path))
    assert not skips and len(records) == 6
    kit.check(records, "mathverse", "testmini")
    assert [(r.verifier, r.answer) for r in records[:4]] == [("choice", "C"), ("choice", "B"), ("choice", "A"),
                                                              ("math", "C, A")]
    assert records[2].verifier_params == {"choices": ["090^\\circ T", "180^\\circ T", "270^\\circ T"]}
    from sapo_vl.verifiers import score

    assert score("math", "<answer>A, C</answer>", "C, A", tags_only=True).score == 1.0
    assert score("math", "<answer>C</answer>", "C, A", tags_only=True).score == 0.0
    assert score("math", "<answer>-4</answer>", records[4].answer).score == 1.0  # "slope =-4" is -4
    assert score("math", "<answer>-3</answer>", records[4].answer).score == 0.0


def test_mathverse_text_only(tmp_path, kit):
    kit.parquet(tmp_path / "testmini_text_only.parquet",
                [_row(kit, "1", "Text Only", CHOICES, "B", image=False)], FEATURES)
    records, skips = kit.run("mathverse", "testmini", path=str(tmp_path), config="testmini_text_only")
    kit.check(records, "mathverse", "testmini")
    assert len(records) == 1 and not skips and records[0].images == [] and kit.layout(records[0]) == ["text"]


def test_mathverse_text_only_asks_the_hub_for_its_own_split(monkeypatch, kit):
    """On the hub the text-only config's split is named "testmini_text_only", not "testmini"."""
    import datasets

    asked = []

    def load_dataset(name, config, split, **kwargs):
        asked.append((name, config, split))
        if split != "testmini_text_only":
            raise ValueError(f'Unknown split "{split}". Should be one of [\'testmini_text_only\'].')
        return datasets.Dataset.from_list([_row(kit, "1", "Text Only", CHOICES, "B", image=False)],
                                          features=datasets.Features(FEATURES))

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    records, skips = kit.run("mathverse", "testmini", config="testmini_text_only")
    assert asked == [("AI4Math/MathVerse", "testmini_text_only", "testmini_text_only")]
    assert [r.id for r in records] == ["mathverse/testmini/1"] and not skips and records[0].answer == "B"


def test_mathverse_passes_recipe_check(tmp_path, kit):
    write(tmp_path, kit, malformed=False)
    assert kit.cli_check("mathverse", "testmini", path=tmp_path) == 0

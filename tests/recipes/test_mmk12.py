"""mmk12 on FanqingM/MMK12's schema: open math answers (train), inline multiple choice (test)."""
from __future__ import annotations

import datasets as ds

FEATURES = {"id": ds.Value("string"), "subject": ds.Value("string"), "image": ds.Image(),
            "question": ds.Value("string"), "answer": ds.Value("string")}


def write(folder, kit, malformed=True):
    train = [{"id": "m1", "subject": "math", "image": kit.image(), "question": "In the figure, find x.",
              "answer": "\\frac{3}{2}"},
             {"id": "m2", "subject": "math", "image": kit.image(), "question": "Find the area of ABCD.",
              "answer": "24"}]
    test = [{"id": "p1", "subject": "physics", "image": kit.image((0, 0, 0)),
             "question": "The circuit is shown. What is the current?\nA. 1 A\nB. 2 A\nC. 3 A\nD. 4 A", "answer": "C"},
            {"id": "c1", "subject": "chemistry", "image": kit.image((0, 99, 0)),
             "question": "Which molecule is polar? A. CO2 B. H2O C. CH4 D. N2", "answer": "B"}]
    if malformed:
        train.append({"id": "m3", "subject": "math", "image": None, "question": "Find y.", "answer": "2"})  # no image
        test.append({"id": "b1", "subject": "biology", "image": kit.image(),  # no option E
                     "question": "Which organ is shown?\nA. heart\nB. lung\nC. liver\nD. kidney", "answer": "E"})
    kit.parquet(folder / "data" / "train-00000-of-00001.parquet", train, FEATURES)
    kit.parquet(folder / "data" / "test-00000-of-00001.parquet", test, FEATURES)


def test_mmk12(tmp_path, kit):
    write(tmp_path, kit)

    records, skips = kit.run("mmk12", "train", path=str(tmp_path))
    kit.check(records, "mmk12", "train")
    assert [(r.id, r.answer, r.verifier) for r in records] == [("mmk12/train/m1", "\\frac{3}{2}", "math"),
                                                               ("mmk12/train/m2", "24", "math")]
    assert [s.reason for s in skips] == ["missing image"]

    records, skips = kit.run("mmk12", "test", path=str(tmp_path))
    kit.check(records, "mmk12", "test")
    physics, chemistry = records
    assert (physics.verifier, physics.verifier_params) == ("choice", {"choices": ["1 A", "2 A", "3 A", "4 A"]})
    assert chemistry.verifier_params == {"choices": ["CO2", "H2O", "CH4", "N2"]}
    assert chemistry.meta["subject"] == "chemistry"
    assert [s.id for s in skips] == ["mmk12/test/b1"] and "not one of the 4 options" in skips[0].reason


def test_mmk12_passes_recipe_check(tmp_path, kit):
    write(tmp_path, kit, malformed=False)
    assert kit.cli_check("mmk12", "test", path=tmp_path) == 0

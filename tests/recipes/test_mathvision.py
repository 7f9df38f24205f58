"""mathvision on MathLLMs/MathVision's schema: "<image1>" placeholders, five options or none."""
from __future__ import annotations

import datasets as ds

FEATURES = {"id": ds.Value("string"), "question": ds.Value("string"), "options": ds.List(ds.Value("string")),
            "image": ds.Value("string"), "decoded_image": ds.Image(), "answer": ds.Value("string"),
            "solution": ds.Value("string"), "level": ds.Value("int64"), "subject": ds.Value("string")}


def _row(kit, i, question, options, answer, image=True):
    return {"id": str(i), "question": question, "options": options, "image": f"images/{i}.jpg",
            "decoded_image": kit.image((30 * i, 60, 90)) if image else None, "answer": answer, "solution": None,
            "level": 2, "subject": "metric geometry - length"}


FIVE = ["1", "2", "3", "4", "5"]


def write(folder, kit, malformed=True):
    good = [_row(kit, 1, "How many squares are in the picture?\n<image1>", FIVE, "C"),
            _row(kit, 2, "<image1>\nThe perimeter of the figure is 20. What is x?", [], "7")]
    bad = [_row(kit, 3, "Which number is missing? <image1> Pick one.", FIVE, "F"),  # no option F
           _row(kit, 4, "How long is the path? <image1>", [], "12", image=False)]  # no image
    kit.parquet(folder / "data" / "testmini-00000-of-00001-f8ff70fcb2f29b1d.parquet", good + bad * malformed,
                FEATURES)


def test_mathvision(tmp_path, kit):
    write(tmp_path, kit)
    records, skips = kit.run("mathvision", "testmini", path=str(tmp_path))
    kit.check(records, "mathvision", "testmini")
    options, free = records
    assert (options.id, options.verifier, options.verifier_params) == ("mathvision/testmini/1", "choice",
                                                                        {"choices": FIVE})
    assert kit.layout(options) == ["text", "image", "text"]  # the slot sits where <image1> was
    assert "E. 5" in kit.text(options) and "<image1>" not in kit.text(options)
    assert (free.verifier, free.answer, kit.layout(free)) == ("math", "7", ["image", "text"])
    assert [s.id for s in skips] == ["mathvision/testmini/3", "mathvision/testmini/4"]
    assert "not an option letter" in skips[0].reason and "missing image" in skips[1].reason


def test_mathvision_passes_recipe_check(tmp_path, kit):
    write(tmp_path, kit, malformed=False)
    assert kit.cli_check("mathvision", "testmini", path=tmp_path) == 0

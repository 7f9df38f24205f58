"""mathvista on AI4Math/MathVista's testmini schema: choice / math / exact per row."""
from __future__ import annotations

import datasets as ds

FEATURES = {
    "pid": ds.Value("string"), "question": ds.Value("string"), "image": ds.Value("string"),
    "decoded_image": ds.Image(), "choices": ds.List(ds.Value("string")), "unit": ds.Value("string"),
    "precision": ds.Value("float64"), "answer": ds.Value("string"), "question_type": ds.Value("string"),
    "answer_type": ds.Value("string"),
    "metadata": {"category": ds.Value("string"), "context": ds.Value("string"), "grade": ds.Value("string"),
                 "img_height": ds.Value("int64"), "img_width": ds.Value("int64"), "language": ds.Value("string"),
                 "skills": ds.List(ds.Value("string")), "source": ds.Value("string"), "split": ds.Value("string"),
                 "task": ds.Value("string")},
    "query": ds.Value("string"),
}


def _row(kit, pid, question, answer, qtype="free_form", atype="integer", choices=None, precision=None,
         unit=None, image=True):
    meta = {"category": "math-targeted-vqa", "context": "geometry diagram", "grade": "high school",
            "img_height": 32, "img_width": 48, "language": "english", "skills": ["geometry reasoning"],
            "source": "Geometry3K", "split": "testmini", "task": "geometry problem solving"}
    return {"pid": pid, "question": question, "image": f"images/{pid}.png",
            "decoded_image": kit.image() if image else None, "choices": choices, "unit": unit, "precision": precision,
            "answer": answer, "question_type": qtype, "answer_type": atype, "metadata": meta, "query": f"Hint: ...\nQuestion: {question}"}


def write(folder, kit, malformed=True):
    (folder / "images").mkdir(parents=True)
    (folder / "images" / "5.png").write_bytes(kit.png((1, 2, 3)))  # a row whose image is only a path
    good = [_row(kit, "1", "Find the measure of angle 1.", "45°", "multi_choice", "text", ["30°", "45°", "60°"]),
            _row(kit, "2", "How many bars are taller than 5?", "12"),
            _row(kit, "3", "What is the slope of the line?", "1.5", atype="float", precision=1.0, unit="cm"),
            _row(kit, "5", "How many dots?", "4", image=False)]  # decoded_image missing, images/5.png present
    bad = [_row(kit, "4", "Which is larger?", "70°", "multi_choice", "text", ["30°", "45°"]),  # not a choice
           _row(kit, "6", "How many circles?", "2", image=False)]  # no image anywhere
    kit.parquet(folder / "data" / "testmini-00000-of-00001-725687bf7a18d64b.parquet", good + bad * malformed,
                FEATURES)


def test_mathvista(tmp_path, kit):
    write(tmp_path, kit)
    records, skips = kit.run("mathvista", "testmini", path=str(tmp_path))
    kit.check(records, "mathvista", "testmini")
    assert [r.id for r in records] == ["mathvista/testmini/1", "mathvista/testmini/2", "mathvista/testmini/3",
                                       "mathvista/testmini/5"]
    mc, integer, number, from_path = records
    assert (mc.answer, mc.verifier, mc.verifier_params) == ("B", "choice", {"choices": ["30°", "45°", "60°"]})
    assert "A. 30°" in kit.text(mc) and "letter" in kit.text(mc)
    assert (integer.answer, integer.verifier, integer.verifier_params) == ("12", "math", {})
    assert number.verifier == "math" and "1 decimal place" in kit.text(number) and "(Unit: cm)" in kit.text(number)
    assert number.meta["precision"] == 1.0 and number.meta["metadata"]["source"] == "Geometry3K"
    assert from_path.images == [kit.png((1, 2, 3))]  # read from the copy's images/ folder
    assert [s.id for s in skips] == ["mathvista/testmini/4", "mathvista/testmini/6"]
    assert "not one of the choices" in skips[0].reason and "missing image" in skips[1].reason


def test_mathvista_passes_recipe_check(tmp_path, kit):
    write(tmp_path, kit, malformed=False)
    assert kit.cli_check("mathvista", "testmini", root=tmp_path) == 0  # images/5.png as a root-relative path

"""mmmu on MMMU/MMMU's schema, hub layout <Subject>/<split>-*.parquet: image_1..7, options as a list repr."""
from __future__ import annotations

import datasets as ds

FEATURES = {"id": ds.Value("string"), "question": ds.Value("string"), "options": ds.Value("string"),
            "explanation": ds.Value("string"), **{f"image_{k}": ds.Image() for k in range(1, 8)},
            "img_type": ds.Value("string"), "answer": ds.Value("string"), "topic_difficulty": ds.Value("string"),
            "question_type": ds.Value("string"), "subfield": ds.Value("string")}


def _row(kit, id_, question, options, answer, images=1, qtype="multiple-choice"):
    row = {"id": id_, "question": question, "options": options, "explanation": "", "img_type": "['Diagrams']",
           "answer": answer, "topic_difficulty": "Medium", "question_type": qtype, "subfield": "Geometry"}
    row.update({f"image_{k}": kit.image((30 * k, 100, 100)) if k <= images else None for k in range(1, 8)})
    return row


def write(folder, kit, malformed=True):
    good = [_row(kit, "validation_Math_1", "<image 1> What is the area of the triangle?", "['6', '8', '10', '12']",
                 "B"),
            _row(kit, "validation_Math_2", "Which graph shows y = x^2, <image 1> or the other?",
                 "['<image 2>', '<image 3>']", "A", images=3),
            _row(kit, "validation_Math_3", "Compute the limit shown in <image 1>.", "[]", "['2.5', '5/2']",
                 qtype="open")]
    bad = [_row(kit, "validation_Math_4", "<image 1> Which is right?", "['1', '2'", "A"),  # unparsable options
           _row(kit, "validation_Math_5", "Compare <image 1> and <image 2>.", "['a', 'b']", "A")]  # no image 2
    kit.parquet(folder / "Math" / "validation-00000-of-00001.parquet", good + bad * malformed, FEATURES)
    kit.parquet(folder / "Art" / "validation-00000-of-00001.parquet",
                [_row(kit, "validation_Art_1", "Who painted <image 1>?", "['Monet', 'Manet']", "A")], FEATURES)
    kit.parquet(folder / "Art" / "dev-00000-of-00001.parquet",
                [_row(kit, "dev_Art_1", "Which style is <image 1>?", "['Baroque', 'Rococo']", "B")], FEATURES)


def test_mmmu(tmp_path, kit):
    write(tmp_path, kit)

    records, skips = kit.run("mmmu", "validation", path=str(tmp_path))  # every subject the folder holds
    kit.check(records, "mmmu", "validation")
    assert [r.id for r in records] == ["mmmu/validation/validation_Art_1", "mmmu/validation/validation_Math_1",
                                       "mmmu/validation/validation_Math_2", "mmmu/validation/validation_Math_3"]
    art, area, graphs, limit = records
    assert (area.answer, area.verifier, area.verifier_params) == ("B", "choice", {"choices": ["6", "8", "10", "12"]})
    assert kit.layout(area) == ["image", "text"] and "B. 8" in kit.text(area)
    # images 2 and 3 are options: their slots come after the question, beside "A." and "B."
    assert kit.layout(graphs) == ["text", "image", "text", "image", "text", "image", "text"]
    assert graphs.images == [kit.png((30, 100, 100)), kit.png((60, 100, 100)), kit.png((90, 100, 100))]
    assert graphs.verifier_params == {"choices": ["<image 2>", "<image 3>"]}
    assert (limit.verifier, limit.answer, limit.verifier_params) == ("math", "2.5", {})
    assert [s.id for s in skips] == ["mmmu/validation/validation_Math_4", "mmmu/validation/validation_Math_5"]
    assert "unparsable options" in skips[0].reason and "no image 2" in skips[1].reason

    records, skips = kit.run("mmmu", "dev", path=str(tmp_path), subject="Art")
    assert [r.id for r in records] == ["mmmu/dev/dev_Art_1"] and not skips


def test_mmmu_passes_recipe_check(tmp_path, kit):
    write(tmp_path, kit, malformed=False)
    assert kit.cli_check("mmmu", "validation", path=tmp_path) == 0

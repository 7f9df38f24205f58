"""geometry3k on a local copy in the hub layout (data/<split>-*.parquet), schema of hiyouga/geometry3k."""
from __future__ import annotations

import datasets as ds

FEATURES = {"images": ds.List(ds.Image()), "problem": ds.Value("string"), "answer": ds.Value("string"),
            "id": ds.Value("int64"), "choices": ds.List(ds.Value("string")), "ground_truth": ds.Value("string")}


def _row(kit, i, problem, answer, images=1):
    return {"images": [kit.image((40 * i % 255, 90, 160))] * images, "problem": problem, "answer": answer, "id": i,
            "choices": ["3", "4", "5", "6"], "ground_truth": "A"}


def write(folder, kit, malformed=True):
    good = [_row(kit, 0, "<image>Find x.", "3"),
            _row(kit, 1, "<image>Find the length of \\overline{AB}.", "2\\sqrt{221}"),
            _row(kit, 2, "<image>Find the area of the figure.", "\\frac{40}{3}")]
    bad = [_row(kit, 3, "<image>Find y.", "7", images=0),  # no image
           _row(kit, 4, "<image>Find z.", " ")]  # empty answer
    kit.parquet(folder / "data" / "train-00000-of-00001.parquet", good + bad * malformed, FEATURES)
    kit.parquet(folder / "data" / "test-00000-of-00001.parquet", [_row(kit, 9, "<image>Find m.", "12")], FEATURES)


def test_geometry3k(tmp_path, kit):
    write(tmp_path, kit)
    records, skips = kit.run("geometry3k", "train", path=str(tmp_path))
    kit.check(records, "geometry3k", "train")
    assert [r.id for r in records] == ["geometry3k/train/0", "geometry3k/train/1", "geometry3k/train/2"]
    assert [r.answer for r in records] == ["3", "2\\sqrt{221}", "\\frac{40}{3}"]
    assert {r.verifier for r in records} == {"math"} and all(r.domain == "math" for r in records)
    assert kit.layout(records[0]) == ["image", "text"] and "<image>" not in kit.text(records[0])
    assert kit.text(records[0]).startswith("Find x.") and records[0].meta["choices"] == ["3", "4", "5", "6"]
    assert [(s.id, s.reason) for s in skips] == [("geometry3k/train/3", "missing image"),
                                                 ("geometry3k/train/4", "empty answer")]

    records, skips = kit.run("geometry3k", "test", root=tmp_path)  # --root alone reads the local copy
    assert [r.id for r in records] == ["geometry3k/test/9"] and not skips
    assert records[0].source == str(tmp_path)


def test_geometry3k_passes_recipe_check(tmp_path, kit):
    write(tmp_path, kit, malformed=False)
    assert kit.cli_check("geometry3k", "train", path=tmp_path) == 0

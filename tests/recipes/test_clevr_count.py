"""clevr_count on BUAADreamer/clevr_count_70k's schema, and on leonardPKU/clevr_cogen_a_train's."""
from __future__ import annotations

import datasets as ds

Q = "<image>How many items are there in the image?"


def write(folder, kit, malformed=True):
    features = {"images": ds.List(ds.Image()), "problem": ds.Value("string"), "answer": ds.Value("string")}
    good = [{"images": [kit.image((200, 0, 0))], "problem": Q, "answer": "3"},
            {"images": [kit.image((0, 200, 0))], "problem": Q, "answer": "10"},
            {"images": [kit.image((0, 0, 200))], "problem": Q, "answer": "0"}]
    bad = [{"images": [kit.image()], "problem": Q, "answer": "three"},  # not a count
           {"images": None, "problem": Q, "answer": "4"}]  # no image
    kit.parquet(folder / "data" / "test-00000-of-00001.parquet", good + bad * malformed, features)


def test_clevr_count_70k(tmp_path, kit):
    write(tmp_path, kit)
    records, skips = kit.run("clevr_count", "test", path=str(tmp_path))
    kit.check(records, "clevr_count", "test")
    assert [r.answer for r in records] == ["3", "10", "0"]
    assert [r.id for r in records] == ["clevr_count/test/0", "clevr_count/test/1", "clevr_count/test/2"]
    assert all(r.verifier == "count" and r.domain == "reasoning" and len(r.images) == 1 for r in records)
    assert kit.layout(records[0]) == ["image", "text"]
    assert [s.reason.split(":")[0] for s in skips] == ["answer is not a count", "missing image"]


def test_clevr_cogen_a_train(tmp_path, kit):
    features = {"image": ds.Image(), "problem": ds.Value("string"), "solution": ds.Value("string")}
    q = "How many items are there in the image?"
    path = kit.parquet(tmp_path / "train.parquet", [
        {"image": kit.image(), "problem": q, "solution": "<answer> 3 </answer>"},
        {"image": kit.image((9, 9, 9)), "problem": q, "solution": "<answer>5</answer>"},
        {"image": kit.image(), "problem": q, "solution": ""},  # malformed
    ], features)
    records, skips = kit.run("clevr_count", "train", path=str(path))
    kit.check(records, "clevr_count", "train")
    assert [r.answer for r in records] == ["3", "5"] and [s.reason for s in skips] == ["empty answer"]


def test_clevr_count_passes_recipe_check(tmp_path, kit):
    write(tmp_path, kit, malformed=False)
    assert kit.cli_check("clevr_count", "test", path=tmp_path) == 0

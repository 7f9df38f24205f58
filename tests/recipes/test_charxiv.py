"""charxiv on both layouts: the hub's val.parquet (split "validation") and the release repository's
data/reasoning_val.json with images/<figure_id>.jpg beside data/."""
from __future__ import annotations

import json

import datasets as ds

FEATURES = {"image": ds.Image(), "category": ds.Value("string"), "figure_path": ds.Value("string"),
            "reasoning_q": ds.Value("string"), "reasoning_q_source": ds.Value("int64"),
            "reasoning_a": ds.Value("string"), "reasoning_a_type": ds.Value("int64")}


def _row(kit, n, question, answer, kind):
    return {"image": kit.image((30 * n, 80, 80)), "category": "math", "figure_path": f"images/{n}.jpg",
            "reasoning_q": question, "reasoning_q_source": 2, "reasoning_a": answer, "reasoning_a_type": kind}


def test_charxiv_hub_layout(tmp_path, kit):
    kit.parquet(tmp_path / "val.parquet", [_row(kit, 1, "Which panel is brightest?", "(b)", 1),
                                           _row(kit, 2, "What is the gap at t = 2?", "0.25", 4),
                                           _row(kit, 3, "Which curve dips?", "A", 9)], FEATURES)  # no such type
    kit.parquet(tmp_path / "test.parquet", [_row(kit, 4, "How many peaks?", None, 3)], FEATURES)
    records, skips = kit.run("charxiv", "validation", path=str(tmp_path))
    kit.check(records, "charxiv", "validation")
    assert [(r.verifier, r.answer) for r in records] == [("exact", "(b)"), ("numeric", "0.25")]
    assert "2 decimal places" in kit.text(records[1])
    assert [s.reason for s in skips] == ["bad answer type: reasoning_a_type 9 is not 1-4"]
    records, skips = kit.run("charxiv", "test", path=str(tmp_path))
    assert not records and [s.reason for s in skips] == ["empty answer (withheld: test split)"]


def test_charxiv_release_layout_passes_recipe_check(tmp_path, kit):
    (tmp_path / "data").mkdir()
    (tmp_path / "images").mkdir()
    rows = {"0": {"figure_id": 5, "query": "Which label marks the outlier?", "answer": "a", "inst_category": 1,
                  "qa_source": 1}}
    (tmp_path / "data" / "reasoning_val.json").write_text(json.dumps(rows))
    (tmp_path / "images" / "5.jpg").write_bytes(kit.png())
    records, skips = kit.run("charxiv", "validation", path=str(tmp_path))
    kit.check(records, "charxiv", "validation")
    assert [r.id for r in records] == ["charxiv/validation/5"] and not skips
    assert kit.cli_check("charxiv", "validation", path=tmp_path) == 0

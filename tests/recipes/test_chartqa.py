"""chartqa on HuggingFaceM4/ChartQA's schema: image, query, label (a list), human_or_machine (class label)."""
from __future__ import annotations

import datasets as ds

FEATURES = {"image": ds.Image(), "query": ds.Value("string"), "label": ds.List(ds.Value("string")),
            "human_or_machine": ds.ClassLabel(names=["human", "machine"])}


def write(folder, kit, malformed=True):
    good = [{"image": kit.image(), "query": "What is the highest value?", "label": ["14"], "human_or_machine": 0},
            {"image": kit.image((0, 90, 200)), "query": "Which party leads?", "label": ["Democrats"],
             "human_or_machine": 1},
            {"image": kit.image((0, 150, 0)), "query": "What is the share in 2019?", "label": ["45.5"],
             "human_or_machine": 0}]
    bad = [{"image": kit.image(), "query": "What is the sum?", "label": [], "human_or_machine": 1},  # no answer
           {"image": None, "query": "What is the lowest value?", "label": ["3"], "human_or_machine": 0}]  # no image
    kit.parquet(folder / "data" / "val-00000-of-00001.parquet", good + bad * malformed, FEATURES)


def test_chartqa(tmp_path, kit):
    write(tmp_path, kit)
    records, skips = kit.run("chartqa", "val", path=str(tmp_path))
    kit.check(records, "chartqa", "val")
    assert [r.answer for r in records] == ["14", "Democrats", "45.5"]
    assert all(r.verifier == "numeric" and r.verifier_params == {"tolerance": 0.05} and r.domain == "chart"
               for r in records)
    assert [r.meta["author"] for r in records] == ["human", "machine", "human"]
    assert [s.reason for s in skips] == ["empty answer", "missing image"]

    from sapo_vl.verifiers import score  # relaxed accuracy is wired: 14.5 is within 5% of 14, 15 is not

    assert score("numeric", "<answer>14.5</answer>", "14", **records[0].verifier_params).score == 1.0
    assert score("numeric", "<answer>15</answer>", "14", **records[0].verifier_params).score == 0.0


def test_chartqa_passes_recipe_check(tmp_path, kit):
    write(tmp_path, kit, malformed=False)
    assert kit.cli_check("chartqa", "val", path=tmp_path) == 0

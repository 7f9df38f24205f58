"""virl39k on TIGER-Lab/ViRL39K's release: 39Krelease.parquet beside the unzipped images/ folder."""
from __future__ import annotations

import datasets as ds

FEATURES = {"question": ds.Value("string"), "answer": ds.Value("string"), "PassRate_32BTrained": ds.Value("float64"),
            "PassRate_7BBase": ds.Value("float64"), "category": ds.Value("string"), "source": ds.Value("string"),
            "qid": ds.Value("string"), "image": ds.List(ds.Value("string"))}


def _row(qid, question, answer, images, category="(GradeSchool) Geometric", rate=0.5):
    return {"question": question, "answer": answer, "PassRate_32BTrained": rate, "PassRate_7BBase": -1.0,
            "category": category, "source": "MM-Eureka", "qid": qid, "image": images}


def write(folder, kit, malformed=True):
    (folder / "images").mkdir(parents=True)
    for name, color in (("a.png", (200, 0, 0)), ("b.png", (0, 0, 200))):
        (folder / "images" / name).write_bytes(kit.png(color))
    good = [_row("q1", "<image>In the triangle, what is x?", "\\boxed{5}", ["images/a.png"]),
            _row("q2", "<image><image>Which shape is symmetric?\nA. left\nB. right", "\\boxed{B}",
                 ["images/a.png", "images/b.png"], "Spatial Reasoning", rate=0.9),
            _row("q3", "<image>What fraction of the bars are red?", "\\boxed{\\frac{1}{2}}", ["images/b.png"],
                 "Tables/Diagrams/Charts", rate=0.2)]
    bad = [_row("q4", "<image>What is y?", "\\boxed{2}", ["images/missing.png"]),  # image not there
           _row("q5", "<image>What is z?", "", ["images/a.png"])]  # empty answer
    kit.parquet(folder / "39Krelease.parquet", good + bad * malformed, FEATURES)


def test_virl39k(tmp_path, kit):
    write(tmp_path, kit)
    records, skips = kit.run("virl39k", "train", root=tmp_path)
    kit.check(records, "virl39k", "train", root=tmp_path)
    geo, spatial, chart = records
    assert [r.id for r in records] == ["virl39k/train/q1", "virl39k/train/q2", "virl39k/train/q3"]
    assert geo.images == ["images/a.png"] and spatial.images == ["images/a.png", "images/b.png"]  # root-relative
    assert (geo.answer, geo.verifier, geo.domain) == ("5", "math", "math")
    assert (spatial.answer, spatial.verifier, spatial.domain) == ("B", "choice", "reasoning")
    assert spatial.verifier_params == {"choices": ["left", "right"]}
    assert kit.layout(spatial) == ["image", "image", "text"]
    assert (chart.answer, chart.domain) == ("\\frac{1}{2}", "chart")
    assert chart.meta["pass_rate_32b_trained"] == 0.2 and chart.meta["origin"] == "MM-Eureka"
    assert [s.id for s in skips] == ["virl39k/train/q4", "virl39k/train/q5"]
    assert "missing image" in skips[0].reason and skips[1].reason == "empty answer"


def test_virl39k_without_root_embeds_bytes_and_filters_by_pass_rate(tmp_path, kit):
    write(tmp_path, kit)
    records, skips = kit.run("virl39k", "train", path=str(tmp_path / "39Krelease.parquet"), min_pass_rate=0.3,
                             max_pass_rate=0.8)
    kit.check(records, "virl39k", "train")
    assert [r.id for r in records] == ["virl39k/train/q1"] and records[0].images == [kit.png((200, 0, 0))]
    assert len(skips) == 2  # q4, q5 (pass rate 0.5) are still read, and skipped


def test_virl39k_passes_recipe_check(tmp_path, kit):
    write(tmp_path, kit, malformed=False)
    assert kit.cli_check("virl39k", "train", root=tmp_path) == 0

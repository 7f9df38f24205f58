"""mathvision on MathLLMs/MathVision's schema: "<image1>" placeholders, five options or none."""
from __future__ import annotations

import datasets as ds

from sapo_vl.data.cli import main

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
    assert "bad answer: 'F' is not an option letter" in skips[0].reason and "missing image" in skips[1].reason


def test_mathvision_passes_recipe_check(tmp_path, kit):
    write(tmp_path, kit, malformed=False)
    assert kit.cli_check("mathvision", "testmini", path=tmp_path) == 0


RELEASE = [  # the release's data/test.jsonl rows (images/<id>.jpg not downloaded)
    {"id": "1", "question": "How many dots are there?\n<image1>", "options": [], "answer": "9"},
    {"id": "2", "question": "Which of <image2>, <image3> is the mirror image of <image1>?",
     "options": ["<image2>", "<image3>", "<image4>", "<image5>", "<image6>"], "answer": "C"},
    {"id": "3", "question": "Which path is shortest?\n<image1>", "options": list("ABCDE"), "answer": "E"},
    {"id": "4", "question": "What part of the circle is grey?\n<image1>", "options": [], "answer": "\frac{1}{6}"},
    {"id": "5", "question": "Which tile fits? <image1>", "options": list("ABCDE"), "answer": "F"},  # no option F
]


def test_recipe_check_text_only_counts_a_release_row_by_row(tmp_path, kit, capsys):
    """`recipe check --text-only` reads the release's jsonl without its pictures and prints kept / skipped (by
    reason) / self-check failures against the published size; without --text-only the same rows need images."""
    import json

    data = tmp_path / "MATH-V" / "data"
    data.mkdir(parents=True)
    # json.dumps writes "\f" of "\frac" (a form feed here) as \f: the release's own damage, read back as a form feed
    (data / "test.jsonl").write_text("".join(json.dumps({**r, "image": f"images/{r['id']}.jpg", "level": 1,
                                                         "subject": "logic", "solution": None}) + "\n"
                                             for r in RELEASE))
    assert kit.cli_check("mathvision", "test", **{"path": data}) == 1  # rows fail: no pictures
    assert "5 skipped (missing image: 5)" in capsys.readouterr().out
    code = main(["recipe", "check", "mathvision", "--split", "test", "--text-only", "-o", f"path={data}"])
    out = capsys.readouterr().out
    assert code == 1 and "images              0        0   (not run: --text-only)" in out
    assert ("rows: 5 read, 4 kept and scoring 1.0 against themselves, 1 skipped (bad answer: 1), 0 self-check "
            "failures; published 3040 -- 3036 short of the published size") in out
    records, skips = kit.run("mathvision", "test", path=str(data))  # outside text_only(): pictures needed
    assert not records and len(skips) == 5


def test_text_only_keeps_the_picture_slot_as_a_note(tmp_path, kit):
    from sapo_vl.data.sources import text_only

    data = tmp_path / "data"
    data.mkdir()
    (data / "test.jsonl").write_text("".join(
        __import__("json").dumps({**r, "image": f"images/{r['id']}.jpg"}) + "\n" for r in RELEASE[:4]))
    with text_only():
        records, skips = kit.run("mathvision", "test", path=str(data))
    assert not skips and [r.answer for r in records] == ["9", "C", "E", "\\frac{1}{6}"]
    assert records[0].images == ["missing image: images/1.jpg not found under " + str(data)]
    assert records[1].verifier_params == {"choices": ["<image2>", "<image3>", "<image4>", "<image5>", "<image6>"]}

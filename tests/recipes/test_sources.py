"""load_rows on local copies (file, folder, HF `data/` layout, configs), the offline hub error, and the row
helpers (image cells, interleaved prompts, options, bad rows become Skips)."""
from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image

from sapo_vl.data.recipe import Skip, get_recipe
from sapo_vl.data.record import Record, user_prompt
from sapo_vl.data.sources import (BadRow, SourceError, image_entry, inline_options, interleaved_prompt, is_local,
                                  load_rows, parse_options, rows_to_records)


def test_parquet_jsonl_and_json_files_read_alike(tmp_path, kit):
    import datasets

    rows = [{"q": "a", "n": 1}, {"q": "b", "n": 2}]
    kit.parquet(tmp_path / "x.parquet", rows, {"q": datasets.Value("string"), "n": datasets.Value("int64")})
    kit.jsonl(tmp_path / "x.jsonl", rows)
    (tmp_path / "x.json").write_text('[{"q": "a", "n": 1}, {"q": "b", "n": 2}]')
    (tmp_path / "y.json").write_text('{"1": {"q": "a", "n": 1}, "2": {"q": "b", "n": 2}}')  # MathVista's annot form
    kit.jsonl(tmp_path / "z.json", rows)  # JSON lines under a .json name
    for name in ("x.parquet", "x.jsonl", "x.json", "z.json"):
        assert list(load_rows(tmp_path / name, "whatever")) == rows, name
    # {key: row} without an id column: the key becomes the row's id (LogicVista's "v1_0": {...})
    assert list(load_rows(tmp_path / "y.json", "whatever")) == [{**rows[0], "id": "1"}, {**rows[1], "id": "2"}]
    (tmp_path / "w.json").write_text('{"7": {"pid": "7", "q": "a"}}')  # a row with its own id keeps it as is
    assert list(load_rows(tmp_path / "w.json", "whatever")) == [{"pid": "7", "q": "a"}]
    assert list(load_rows(tmp_path / "x.parquet", "train", limit=1)) == rows[:1]
    assert list(load_rows("x.jsonl", "train", root=tmp_path)) == rows  # a relative path under root


def test_validation_split_reads_val_files(tmp_path, kit):
    """CharXiv's release names its files val.parquet / test.parquet; the split is called "validation"."""
    import datasets

    features = {"s": datasets.Value("string")}
    kit.parquet(tmp_path / "val.parquet", [{"s": "val"}], features)
    kit.parquet(tmp_path / "test.parquet", [{"s": "test"}], features)
    assert [r["s"] for r in load_rows(tmp_path, "validation")] == ["val"]
    assert [r["s"] for r in load_rows(tmp_path, "test")] == ["test"]
    with pytest.raises(SourceError, match="no .parquet file for split 'train'"):
        list(load_rows(tmp_path, "train"))


def test_folder_picks_the_split_files(tmp_path, kit):
    d = tmp_path / "repo"
    kit.jsonl(d / "data" / "test-00000-of-00001.jsonl", [{"s": "test"}])
    kit.jsonl(d / "data" / "testmini-00000-of-00001-f8ff.jsonl", [{"s": "testmini"}])
    kit.jsonl(d / "data" / "train-00000-of-00002.jsonl", [{"s": "train0"}])
    kit.jsonl(d / "data" / "train-00001-of-00002.jsonl", [{"s": "train1"}])
    kit.jsonl(d / ".cache" / "train.jsonl", [{"s": "hidden"}])
    assert [r["s"] for r in load_rows(d, "train")] == ["train0", "train1"]
    assert [r["s"] for r in load_rows(d, "test")] == ["test"]  # not testmini
    assert [r["s"] for r in load_rows(d, "testmini")] == ["testmini"]
    with pytest.raises(SourceError, match="no .jsonl file for split 'validation'"):
        list(load_rows(d, "validation"))


def test_folder_parquet_beats_json_and_unsplit_folder_is_one_split(tmp_path, kit):
    import datasets

    kit.parquet(tmp_path / "a" / "testmini.parquet", [{"s": "parquet"}], {"s": datasets.Value("string")})
    (tmp_path / "a" / "testmini.json").write_text('[{"s": "json"}]')
    assert [r["s"] for r in load_rows(tmp_path / "a", "testmini")] == ["parquet"]
    kit.jsonl(tmp_path / "b" / "39Krelease.jsonl", [{"s": "all"}])
    assert [r["s"] for r in load_rows(tmp_path / "b", "train")] == ["all"]
    with pytest.raises(SourceError, match="no such file"):
        list(load_rows(tmp_path / "nope.parquet", "train"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no .parquet, .jsonl or .json"):
        list(load_rows(tmp_path / "empty", "train"))


def test_config_is_a_subfolder_or_a_file(tmp_path, kit):
    kit.jsonl(tmp_path / "Math" / "validation-00000-of-00001.jsonl", [{"s": "math"}])
    kit.jsonl(tmp_path / "Art" / "validation-00000-of-00001.jsonl", [{"s": "art"}])
    kit.jsonl(tmp_path / "testmini_text_only.jsonl", [{"s": "text only"}])
    assert [r["s"] for r in load_rows(tmp_path, "validation", config="Math")] == ["math"]
    assert sorted(r["s"] for r in load_rows(tmp_path / "Art", "validation")) == ["art"]
    assert [r["s"] for r in load_rows(tmp_path, "testmini", config="testmini_text_only")] == ["text only"]
    with pytest.raises(SourceError, match="'Music'"):
        list(load_rows(tmp_path, "validation", config="Music"))


def test_hub_id_vs_path():
    assert not is_local("MMMU/MMMU") and not is_local("clevr")
    assert is_local("./data") and is_local("/abs/x") and is_local("a/b/c") and is_local("x.parquet")


def test_unreachable_hub_gives_one_line_naming_the_dataset_and_the_path_option(monkeypatch, tmp_path):
    import datasets
    import huggingface_hub.constants

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.setenv(var, "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True, raising=False)
    for limit in (None, 1):  # a download, and (with a limit) a stream
        with pytest.raises(SourceError) as e:
            list(load_rows("sapo-vl-test/no-such-dataset", "train", limit=limit))
        msg = str(e.value)
        assert "\n" not in msg and "sapo-vl-test/no-such-dataset" in msg and "`path`" in msg
    with pytest.raises(SourceError) as e:  # the same through a recipe, its config named
        next(iter(get_recipe("mmmu").records("validation", subject="Math")))
    assert "\n" not in str(e.value) and "MMMU/MMMU" in str(e.value) and "'Math'" in str(e.value)


def test_image_entry_takes_every_cell_form(tmp_path, kit):
    png = kit.png()
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "1.png").write_bytes(png)
    assert image_entry({"bytes": png, "path": "1.png"}) == png
    assert image_entry({"bytes": None, "path": "images/1.png"}, base=tmp_path) == png  # embedded without a root
    assert image_entry("images/1.png", base=tmp_path, root=tmp_path) == "images/1.png"  # root-relative with one
    assert image_entry("1.png", base=tmp_path / "images", root=tmp_path) == "images/1.png"
    assert Image.open(io.BytesIO(image_entry(Image.new("RGB", (5, 5))))).size == (5, 5)
    for bad, match in ((None, "missing image"), ({"bytes": None, "path": None}, "missing image"),
                       (b"", "zero bytes"), ("images/2.png", "not found"), (3, "int")):
        with pytest.raises(BadRow, match=match):
            image_entry(bad, base=tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    with pytest.raises(BadRow, match="outside the dataset root"):
        image_entry("images/1.png", base=tmp_path, root=outside)


def test_interleaved_prompt_puts_slots_where_placeholders_are():
    prompt, slots = interleaved_prompt("Compare <image 1> with <image 2>. Is <image 1> larger?",
                                       {"1": b"one", "2": b"two", "3": b"three"})
    content = prompt[0]["content"]
    assert [c["type"] for c in content] == ["image", "text", "image", "text", "image", "text"]
    assert slots == [b"three", b"one", b"two"]  # unreferenced first; a back reference gets no second slot
    assert content[5]["text"] == ". Is <image 1> larger?"
    prompt, slots = interleaved_prompt("<image><image> Which one is symmetric?", {"1": b"a", "2": b"b"})
    assert [c["type"] for c in prompt[0]["content"]] == ["image", "image", "text"] and slots == [b"a", b"b"]
    with pytest.raises(BadRow, match="no image 2"):
        interleaved_prompt("See <image1> and <image2>", {"1": b"a"})


def test_options_parsing():
    assert parse_options("['$6', '$7', '<image 2>']") == ["$6", "$7", "<image 2>"]
    assert parse_options(["1", 2]) == ["1", "2"] and parse_options(None) == [] and parse_options("") == []
    for bad in ("['a', 'b'", "{'a': 1}", [["nested"]]):
        with pytest.raises(BadRow, match="unparsable options"):
            parse_options(bad)
    assert inline_options("Find x.\nChoices:\nA:40°\nB:60°\nC:120°") == ["40°", "60°", "120°"]
    assert inline_options("Which?\n(A) red\n(B) blue") == ["red", "blue"]
    assert inline_options("Which? A. 1 B. 2 C. 3 D. 4") == ["1", "2", "3", "4"]
    assert inline_options("Point A is on line BC.") is None


def test_bad_rows_become_skips_and_the_run_goes_on():
    def to_record(row, rid):
        if row.get("boom"):
            raise KeyError("answer")
        if not row.get("answer"):
            raise BadRow("empty answer")
        return Record(id=rid, prompt=user_prompt("q", 0), answer=row["answer"])

    out = list(rows_to_records([{"id": "a", "answer": "1"}, {"answer": ""}, {"boom": 1}, "junk",
                                {"_bad_row": "x.jsonl line 5: not JSON"}, {"pid": 7, "answer": "2"}],
                               to_record, name="t", split="train"))
    assert [type(x).__name__ for x in out] == ["Record", "Skip", "Skip", "Skip", "Skip", "Record"]
    assert [x.id for x in out] == ["t/train/a", "t/train/1", "t/train/2", "t/train/3", "t/train/4", "t/train/7"]
    assert out[1].reason == "empty answer" and out[2].reason == "KeyError: 'answer'"
    assert "not JSON" in out[4].reason and "not an object" in out[3].reason


def test_a_broken_jsonl_line_is_a_skip(tmp_path, kit):
    path = kit.jsonl(tmp_path / "train.jsonl", [{"images": [], "problem": "p", "answer": "3"}, "{not json"])
    records, skips = kit.run("clevr_count", "train", path=str(path))
    assert not records and len(skips) == 2 and "not JSON" in skips[1].reason


def test_hub_rows_are_undecoded_like_local_ones(tmp_path, kit, monkeypatch):
    """The hub branch, without the network: load_dataset is pointed at a local parquet file, as the hub
    would serve it, and its rows must equal what the local reader gives (image structs, class-label ints)."""
    import datasets

    features = {"image": datasets.Image(), "label": datasets.ClassLabel(names=["human", "machine"]),
                "q": datasets.Value("string")}
    path = kit.parquet(tmp_path / "train.parquet", [{"image": kit.image(), "label": 1, "q": "a"},
                                                    {"image": kit.image((1, 1, 1)), "label": 0, "q": "b"}], features)
    real = datasets.load_dataset
    calls = []

    def fake(name, config=None, **kw):
        calls.append((name, config, kw["split"], kw["streaming"]))
        return real("parquet", data_files={"train": str(path)}, split="train", streaming=kw["streaming"],
                    cache_dir=str(tmp_path / "cache"))

    monkeypatch.setattr(datasets, "load_dataset", fake)
    local = list(load_rows(path, "train"))
    assert isinstance(local[0]["image"]["bytes"], bytes) and local[0]["label"] == 1
    assert list(load_rows("org/name", "train", config="c")) == local  # downloaded
    assert list(load_rows("org/name", "train", limit=1)) == local[:1]  # streamed
    assert calls == [("org/name", "c", "train", False), ("org/name", None, "train", True)]


@pytest.mark.parametrize("gold,options,letters", [
    ("C", ["1", "2", "3"], ["C"]), ("(C)", ["1", "2", "3"], ["C"]), ("c.", None, None), ("B.", None, ["B"]),
    ("False", ["True", "False"], ["B"]), ("090^\\circ T", ["090^\\circ T", "180^\\circ T"], ["A"]),
    ("C\nD", ["w", "x", "y", "z"], ["C", "D"]), ("A, C", None, ["A", "C"]), ("A and C", None, ["A", "C"]),
    ("D", ["1", "2", "3"], None), ("Maybe", ["True", "False"], None), ("A, Z", ["1", "2"], None),
])
def test_gold_letters(gold, options, letters):
    from sapo_vl.data.sources import gold_letters

    if letters is None:
        with pytest.raises(BadRow, match="bad answer"):
            gold_letters(gold, options)
    else:
        assert gold_letters(gold, options) == letters


def test_unknown_placeholders_can_stay_text_and_eaten_escapes_are_repaired():
    from sapo_vl.data.sources import cell_text

    prompt, slots = interleaved_prompt("Which of <image2> or <image3> fits <image1>?", {"1": b"a"}, unknown="text")
    assert slots == [b"a"] and [c["type"] for c in prompt[0]["content"]] == ["text", "image", "text"]
    assert prompt[0]["content"][0]["text"] == "Which of <image2> or <image3> fits"
    with pytest.raises(BadRow, match="no image 2"):
        interleaved_prompt("Which of <image2> fits <image1>?", {"1": b"a"})
    assert cell_text({"a": "\x0crac{36}{13}"}, "a") == "\\frac{36}{13}"  # a JSON "\f" that was LaTeX
    assert cell_text({"a": " \x08eta "}, "a") == "\\beta"

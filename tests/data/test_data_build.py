"""Build: bad input never ends a build (each bad record skipped, counted and named; every good one lands),
resume after an interruption without duplicates, weighted mixing, and loading the set back."""
from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from sapo_vl.data.build import BuildError, BuildSettings, Mix, build, load_built, parse_mix, quotas, summary

# A recipe file written by the tests: one record per case, images from the `image_dir` fixture folder.
BAD_INPUTS = '''
import io, os
from PIL import Image
from sapo_vl.data.record import Record, user_prompt
from sapo_vl.data.recipe import Skip
NAME, DOMAIN, SOURCE, VERIFIER, DESCRIPTION, PROMPT = "fx", "reasoning", "test", "exact", "fixture", "{q}"
GOOD = ["rgb.png", "rgba.png", "p_transparent.png", "l.png", "la.png", "cmyk.jpg", "i16.png", "i32.tif",
        "float.tif", "animated.gif", "tiny_1x1.png", "exif_rot6.jpg"]
BAD_FILES = ["bomb_20000.png", "truncated.png", "corrupt.png", "zero.png", "text.png", "thin_1x300.png",
             "missing.png", "../escape.png", "link_out.png", "https://example.com/cat.png"]

def rec(rid, images, answer="red"):
    return Record(id="fx/" + rid, prompt=user_prompt("What color?", n_images=len(images)), answer=answer,
                  images=images)

def records(split="train", *, seed=0, limit=None, root=None):
    for name in GOOD:
        yield rec(name, ["imgs/" + name])
    buf = io.BytesIO(); Image.new("RGB", (50, 50), "red").save(buf, "PNG")
    yield rec("embedded", [buf.getvalue()])
    yield rec("text_only", [])
    for name in BAD_FILES:
        yield rec(name, [name if "/" in name else "imgs/" + name])
    yield rec("empty_answer", ["imgs/rgb.png"], answer="")
    yield rec("blank_answer", ["imgs/rgb.png"], answer="  ")
    yield rec("latin1_answer", ["imgs/rgb.png"], answer=b"caf\\xe9")
    yield rec("surrogate_answer", ["imgs/rgb.png"], answer=b"caf\\xe9".decode("utf-8", "surrogateescape"))
    yield rec("rgb.png", ["imgs/rgb.png"])  # duplicate id
    yield Skip("fx/unparsable_row", "line 9: bad JSON")
    yield "not a record"
'''
GOOD_IDS = ["rgb.png", "rgba.png", "p_transparent.png", "l.png", "la.png", "cmyk.jpg", "i16.png", "i32.tif",
            "float.tif", "animated.gif", "tiny_1x1.png", "exif_rot6.jpg", "embedded", "text_only"]
BAD = {  # id -> words in the reason
    "bomb_20000.png": "decompression-bomb", "truncated.png": "truncated", "corrupt.png": "cannot decode",
    "zero.png": "zero-byte", "text.png": "not a recognised image", "thin_1x300.png": "aspect ratio",
    "missing.png": "no such file", "../escape.png": "escapes", "link_out.png": "escapes",
    "https://example.com/cat.png": "URLs are refused", "empty_answer": "empty answer",
    "blank_answer": "empty answer", "latin1_answer": "not valid UTF-8", "surrogate_answer": "not valid UTF-8",
    "rgb.png": "duplicate id", "unparsable_row": "bad JSON",
}

# 10 small records; FX_INTERRUPT_AT=k raises KeyboardInterrupt (like Ctrl-C) and FX_RAISE_AT=k a bug at item k.
COUNTER = '''
import io, os
from PIL import Image
from sapo_vl.data.record import Record, user_prompt
NAME, DOMAIN, SOURCE, VERIFIER, DESCRIPTION, PROMPT = "ctr", "reasoning", "test", "count", "counter", "{q}"

def records(split="train", *, seed=0, limit=None, root=None, n=10):
    for i in range(n):
        if os.environ.get("FX_INTERRUPT_AT") == str(i):
            raise KeyboardInterrupt
        if os.environ.get("FX_RAISE_AT") == str(i):
            raise RuntimeError("recipe bug")
        buf = io.BytesIO(); Image.new("RGB", (64, 64), (i * 20, 0, 0)).save(buf, "PNG")
        yield Record(id=f"ctr/{i}", prompt=user_prompt(f"Count {i}?"), answer=str(i) if i != 4 else "",
                     images=[buf.getvalue()], verifier="count")
'''


@pytest.fixture()
def bad_inputs(image_dir, tmp_path):
    root, _ = image_dir
    (root.parent / "escape.png").write_bytes((root / "imgs" / "rgb.png").read_bytes())
    if not (root / "imgs" / "link_out.png").is_symlink():
        (root / "imgs" / "link_out.png").symlink_to(root.parent / "escape.png")  # a file outside the root
    path = tmp_path / "fx_recipe.py"
    path.write_text(BAD_INPUTS)
    return Mix(str(path), root=str(root))


def test_bad_input_is_skipped_named_and_the_good_all_land(bad_inputs, tmp_path):
    m = build([bad_inputs], tmp_path / "out", BuildSettings(shard_size=4))
    assert m["complete"] and m["records"] == len(GOOD_IDS)
    reasons = {s["id"].removeprefix("fx/"): s["reason"] for s in m["skipped"]}
    assert reasons.pop("train/#30").startswith("recipe yielded a str")  # no id of its own: named by position
    assert set(reasons) == set(BAD)
    for rid, words in BAD.items():
        assert words in reasons[rid], (rid, reasons[rid])
    assert len(m["skipped"]) == len(BAD) + 1 and m["recipes"][0]["skipped"] == len(BAD) + 1
    assert any("not a Record" in s["reason"] for s in m["skipped"])
    recs = load_built(tmp_path / "out", verify=True)
    assert [r.id.removeprefix("fx/") for r in recs] == GOOD_IDS
    for r in recs:
        for data in r.images:
            img = Image.open(io.BytesIO(data))
            assert img.format == "PNG" and img.mode == "RGB" and img.width % 32 == 0 and img.height % 32 == 0
    text = summary(m)
    assert "14 records, 17 skipped" in text
    assert "skipped fx/zero.png (fx): imgs/zero.png: empty (zero-byte) image" in text


@pytest.fixture()
def counter(tmp_path):
    path = tmp_path / "ctr_recipe.py"
    path.write_text(COUNTER)
    return str(path)


def test_interrupted_build_resumes_without_duplicates(counter, tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setenv("FX_INTERRUPT_AT", "8")
    with pytest.raises(KeyboardInterrupt):
        build([counter], out, BuildSettings(shard_size=3))
    partial = json.loads((out / "manifest.json").read_text())
    assert not partial["complete"] and [c["records"] for c in partial["chunks"]] == [3, 3]  # 0-2, 3-6 less 4
    with pytest.raises(BuildError, match="incomplete"):
        load_built(out)
    first = out / partial["chunks"][0]["file"]
    stamp = first.stat().st_mtime_ns
    (out / "data" / "ctr-00002.parquet.tmp").write_bytes(b"half-written")  # interrupted mid-write
    monkeypatch.delenv("FX_INTERRUPT_AT")
    m = build([counter], out, BuildSettings(shard_size=3))
    assert m["complete"] and m["records"] == 9 and [s["id"] for s in m["skipped"]] == ["ctr/4"]
    assert [r.id for r in load_built(out)] == [f"ctr/{i}" for i in range(10) if i != 4]
    assert first.stat().st_mtime_ns == stamp and not list(out.glob("data/*.tmp"))
    again = build([counter], out, BuildSettings(shard_size=3))  # finished: nothing rebuilt
    assert again == m and first.stat().st_mtime_ns == stamp


def test_a_damaged_shard_is_rebuilt_on_resume(counter, tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setenv("FX_INTERRUPT_AT", "8")
    with pytest.raises(KeyboardInterrupt):
        build([counter], out, BuildSettings(shard_size=3))
    partial = json.loads((out / "manifest.json").read_text())
    (out / partial["chunks"][1]["file"]).write_bytes(b"garbage")
    monkeypatch.delenv("FX_INTERRUPT_AT")
    m = build([counter], out, BuildSettings(shard_size=3))
    assert [r.id for r in load_built(out, verify=True)] == [f"ctr/{i}" for i in range(10) if i != 4]
    assert m["records"] == 9


def test_other_settings_in_the_same_folder_are_refused(counter, tmp_path):
    out = tmp_path / "out"
    build([counter], out, BuildSettings(limit=5))
    with pytest.raises(BuildError, match="other settings .*limit"):
        build([counter], out, BuildSettings(limit=6))
    assert build([counter], out, BuildSettings(limit=6), overwrite=True)["records"] == 6


def test_weighted_mix_quotas_shortfall_and_a_failing_recipe(counter, tmp_path, monkeypatch):
    monkeypatch.setenv("FX_RAISE_AT", "2")
    mixes = [Mix("synthetic_color", 3.0), Mix("synthetic_count", 1.0, {"size": 3}), Mix(counter, 1.0)]
    m = build(mixes, tmp_path / "out", BuildSettings(limit=20, shard_size=4))
    st = {s["name"]: s for s in m["recipes"]}
    assert [r["quota"] for r in m["settings"]["recipes"]] == [12, 4, 4]
    assert st["synthetic_color"]["records"] == 12 and not st["synthetic_color"]["short"]
    assert st["synthetic_count"]["records"] == 3 and st["synthetic_count"]["short"]  # size=3 < quota 4
    assert st["ctr"]["records"] == 2 and "RuntimeError: recipe bug" in st["ctr"]["error"]
    assert "short of quota" in summary(m) and "recipe bug" in summary(m)
    recs = load_built(tmp_path / "out", shuffle_seed=0)
    names = [r.id.split("/")[0] for r in recs]
    assert len(recs) == 17 and names != sorted(names, key=["synthetic_color", "synthetic_count", "ctr"].index)


@pytest.mark.parametrize("weights, limit, expected", [
    ([1, 1], 10, [5, 5]),
    ([2, 1], 10, [7, 3]),
    ([1, 1, 1], 10, [4, 3, 3]),
    ([0.5, 0.25, 0.25], 7, [3, 2, 2]),  # 3.5, 1.75, 1.75: the two .75 remainders win
    ([1], 0, [0]),
    ([3, 1], None, [None, None]),
])
def test_quotas_largest_remainder(weights, limit, expected):
    got = quotas(weights, limit)
    assert got == expected and (limit is None or sum(got) == limit)


@pytest.mark.parametrize("spec, recipe, weight", [
    ("synthetic_color", "synthetic_color", 1.0),
    ("synthetic_color:2.5", "synthetic_color", 2.5),
    ("./my_recipe.py:3", "./my_recipe.py", 3.0),
    ("C:/data/x.py", "C:/data/x.py", 1.0),
])
def test_parse_mix(spec, recipe, weight):
    m = parse_mix(spec)
    assert (m.recipe, m.weight) == (recipe, weight)


def test_bad_weight_and_unknown_option_fail_before_building(tmp_path):
    with pytest.raises(BuildError, match="positive"):
        parse_mix("synthetic_color:0")
    with pytest.raises(ValueError, match="did you mean 'n_colors'"):
        build([Mix("synthetic_color", 1.0, {"n_color": 3})], tmp_path / "out")
    assert not (tmp_path / "out" / "manifest.json").exists()

"""`sapo-vl recipe list|preview|check|build`, run in-process through `sapo_vl.data.cli.main`: outputs,
files written and exit statuses; the template recipe on a real image folder; exact token counts with a
local tokenizer folder."""
from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from sapo_vl.data.build import load_built
from sapo_vl.data.check import CheckSettings, check
from sapo_vl.data.cli import main
from sapo_vl.data.recipe import get_recipe

TEMPLATE = Path(__file__).resolve().parents[2] / "data_recipes" / "_template.py"


def test_list_prints_a_table_of_recipes(capsys):
    assert main(["recipe", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:4] == ["NAME", "DOMAIN", "VERIFIER", "SOURCE"]
    row = next(line for line in out if line.startswith("synthetic_geometry"))
    assert row.split()[1:4] == ["math", "math", "synthetic:geometry"]


def test_unknown_recipe_exits_2_with_the_closest_name(capsys):
    assert main(["recipe", "check", "synthetic_colour", "--limit", "2"]) == 2
    assert "did you mean 'synthetic_color'" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["synthetic_color", "synthetic_count", "synthetic_clevr", "synthetic_chart",
                                  "synthetic_geometry"])
def test_check_passes_on_synthetic_recipes(name, capsys):
    assert main(["recipe", "check", name, "--limit", "12"]) == 0
    out = capsys.readouterr().out
    assert "OK" in out.splitlines()[-1] and "estimate" in out and "record" in out and "duplicates" in out


@pytest.mark.slow
@pytest.mark.parametrize("split", ["train", "test"])
@pytest.mark.parametrize("name", ["synthetic_color", "synthetic_count", "synthetic_clevr", "synthetic_chart",
                                  "synthetic_geometry"])
def test_check_passes_on_synthetic_recipes_in_full(name, split):
    report = check(get_recipe(name), split=split)
    assert report.ok and report.records == {"train": 1000, "test": 200}[split], report.problems[:5]


def test_check_fails_on_tokens_and_names_the_records(capsys):
    code = main(["recipe", "check", "synthetic_chart", "--limit", "3", "--max-prompt-tokens", "50"])
    out = capsys.readouterr().out
    assert code == 1 and out.splitlines()[-1] == "FAILED"
    assert "FAIL tokens     synthetic_chart/train/0:" in out and "384x288" in out


def test_check_finds_duplicates(tmp_path):
    path = tmp_path / "dups.py"
    path.write_text(
        "import io\nfrom PIL import Image\nfrom sapo_vl.data.record import Record, user_prompt\n"
        "NAME, DOMAIN, SOURCE, VERIFIER, DESCRIPTION, PROMPT = 'dups', 'reasoning', 't', 'exact', 'd', 'Q'\n"
        "def records(split='train', *, seed=0, limit=None, root=None):\n"
        "    buf = io.BytesIO(); Image.new('RGB', (64, 64), 'red').save(buf, 'PNG')\n"
        "    for rid in ('a', 'b', 'a'):\n"
        "        yield Record(id=rid, prompt=user_prompt('Which color?'), answer='red', images=[buf.getvalue()])\n")
    report = check(get_recipe(str(path)))
    assert not report.ok and report.failed["duplicates"] == 2
    assert [(p.id, p.message) for p in report.problems if p.check == "duplicates"] == [
        ("b", "same images and prompt as a"), ("a", "duplicate id")]


def test_check_verifies_each_answer_with_its_verifier(capsys):
    verifiers = pytest.importorskip("sapo_vl.verifiers")
    if not hasattr(verifiers, "score"):
        pytest.skip("sapo_vl.verifiers has no score() yet")
    report = check(get_recipe("synthetic_geometry"), limit=20)
    assert report.passed["verifier"] == 20 and report.failed["verifier"] == 0


def test_preview_writes_contact_sheet_and_html(tmp_path, capsys):
    out = tmp_path / "preview"
    assert main(["recipe", "preview", "synthetic_count", "--n", "6", "--out", str(out), "-o", "max_count=3"]) == 0
    sheet = Image.open(out / "contact_sheet.png")
    assert sheet.size == (4 * 256, 2 * (256 + 84))  # 6 cells: 4 columns, 2 rows
    page = (out / "index.html").read_text()
    recs = list(get_recipe("synthetic_count").records("train", limit=6, max_count=3))
    for r in recs:
        assert r.id in page and f"<code>{r.answer}</code>" in page
    assert page.count("<img src='images/") == 6 and len(list((out / "images").glob("*.png"))) == 6
    assert "256x256 = 64 tokens" in page


def test_build_command_mixes_and_reports(tmp_path, capsys):
    out = tmp_path / "built"
    code = main(["recipe", "build", "synthetic_color:3", "synthetic_count:1", "--out", str(out), "--limit", "8",
                 "--seed", "3", "--quiet", "-o", "n_colors=2"])
    text = capsys.readouterr().out
    assert code == 0 and "total: 8 records, 0 skipped" in text
    recs = load_built(out)
    assert [r.id.split("/")[0] for r in recs] == ["synthetic_color"] * 6 + ["synthetic_count"] * 2
    assert {r.answer for r in recs[:6]} <= {"red", "green"}  # n_colors=2 reached the color recipe only
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["recipes"][0]["options"] == {"n_colors": 2} and manifest["settings"]["seed"] == 3
    assert main(["recipe", "build", "synthetic_color", "--out", str(out), "-o", "colours=2"]) == 2
    assert "no recipe here has option 'colours'" in capsys.readouterr().err


def _folder(root: Path, rows: list[str]) -> None:
    (root / "photos").mkdir(parents=True)
    for name, color in (("a.png", "red"), ("b.jpg", "blue")):
        Image.new("RGB", (100, 60), color).save(root / "photos" / name)
    (root / "train.jsonl").write_bytes(b"\n".join(r if isinstance(r, bytes) else r.encode() for r in rows) + b"\n")


def test_template_recipe_on_an_image_folder(tmp_path, capsys):
    good = ['{"image": "photos/a.png", "question": "Which color?", "answer": "Red"}',
            '{"image": "photos/b.jpg", "question": "Which color is it?", "answer": "blue"}']
    _folder(tmp_path / "ok", good)
    assert main(["recipe", "check", str(TEMPLATE), "--root", str(tmp_path / "ok")]) == 0
    assert "record" in capsys.readouterr().out
    _folder(tmp_path / "bad", good + ['{"image": "photos/zz.png", "question": "?", "answer": "x"}', "{not json",
                                      b'{"image": "photos/a.png", "question": "?", "answer": "caf\xe9"}'])
    assert main(["recipe", "check", str(TEMPLATE), "--root", str(tmp_path / "bad")]) == 1
    out = capsys.readouterr().out
    assert "FAIL images     my_images/train/2: photos/zz.png: no such file" in out
    assert "FAIL record     my_images/train/3: skipped by the recipe: line 4: JSONDecodeError" in out
    assert "FAIL record     my_images/train/4: skipped by the recipe: line 5: UnicodeDecodeError" in out
    assert main(["recipe", "build", f"{TEMPLATE}:1", "--root", str(tmp_path / "bad"), "--out",
                 str(tmp_path / "out"), "--quiet"]) == 0
    recs = load_built(tmp_path / "out")
    assert [r.answer for r in recs] == ["red", "blue"]  # lowercase option on by default
    assert Image.open(io.BytesIO(recs[0].images[0])).size == (96, 64)  # 100x60 -> multiples of 32


def test_exact_token_counts_with_a_local_tokenizer(tmp_path):
    """A word-level tokenizer with a Qwen-like chat template: 13 ids, one of them the image pad, so
    12 text tokens; the 64x64 image adds (64/32)^2 = 4 tokens."""
    pytest.importorskip("tokenizers")
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<unk>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|image_pad|>", "<|vision_end|>"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", additional_special_tokens=words[1:])
    fast.chat_template = (
        "{% for m in messages %}<|im_start|> {{ m.role }} {% for c in m.content %}{% if c.type == 'image' %}"
        "<|vision_start|><|image_pad|><|vision_end|> {% else %}{{ c.text }} {% endif %}{% endfor %}<|im_end|> "
        "{% endfor %}{% if add_generation_prompt %}<|im_start|> assistant {% endif %}")
    fast.save_pretrained(tmp_path / "tok")
    path = tmp_path / "one.py"
    path.write_text(
        "import io\nfrom PIL import Image\nfrom sapo_vl.data.record import Record, user_prompt\n"
        "NAME, DOMAIN, SOURCE, VERIFIER, DESCRIPTION, PROMPT = 'one', 'reasoning', 't', 'exact', 'd', 'Q'\n"
        "def records(split='train', *, seed=0, limit=None, root=None):\n"
        "    buf = io.BytesIO(); Image.new('RGB', (64, 64), 'red').save(buf, 'PNG')\n"
        "    yield Record(id='x', prompt=user_prompt('How many red cubes ?'), answer='2', images=[buf.getvalue()])\n")
    settings = CheckSettings(processor=tmp_path / "tok", max_prompt_tokens=16)
    report = check(get_recipe(str(path)), settings=settings)
    assert report.largest_prompt == 16 and report.failed["tokens"] == 0 and "chat template" in report.token_method
    assert not check(get_recipe(str(path)), settings=replace(settings, max_prompt_tokens=15)).passed["tokens"]

"""The training prompt stream: weighted mix, rank sharding, resumable state, bad and over-long records skipped."""
import pytest

from sapo_vl.config import load_config
from sapo_vl.models.loading import load_processor
from sapo_vl.data.stream import PromptStream

BAD_RECIPE = '''
"""Test recipe: every third record has a corrupt image, every fifth a very long question."""
from PIL import Image
from sapo_vl.data.images import encode_png
from sapo_vl.data.record import Record, user_prompt

NAME, DOMAIN, SOURCE, VERIFIER = "bad_test", "reasoning", "synthetic:test", "exact"
DESCRIPTION, PROMPT = "good, corrupt and long records", "{question}"


def records(split="train", *, seed=0, limit=None, root=None):
    for i in range(limit or 30):
        img = b"\\x89PNG not really" if i % 3 == 1 else encode_png(Image.new("RGB", (64, 64), (i * 8, 0, 0)))
        q = "word " * 400 if i % 5 == 4 else f"question {i}?"
        yield Record(id=f"bad/{i}", prompt=user_prompt(q), answer="x", images=[img], source=SOURCE)
'''


@pytest.fixture(scope="module")
def processor(tiny_dense):
    return load_processor(str(tiny_dense), min_pixels=1024, max_pixels=4096)


def _cfg(*over):
    return load_config(None, ["model.min_pixels=1024", "model.max_pixels=4096", "data.max_prompt_tokens=200", *over])


def test_ranks_partition_the_global_stream_and_state_resumes(processor):
    cfg = _cfg("data.recipes=[{name: synthetic_color, weight: 2}, {name: synthetic_count, weight: 1, limit: 50}]")
    one = PromptStream(cfg.data, cfg.model, processor, seed=3, rank=0, world=1)
    r0 = PromptStream(cfg.data, cfg.model, processor, seed=3, rank=0, world=2, pool=one.pool)
    r1 = PromptStream(cfg.data, cfg.model, processor, seed=3, rank=1, world=2, pool=one.pool)
    for _ in range(3):
        full = [p.record.id for p in one.next_batch(6)]
        a = [p.record.id for p in r0.next_batch(6)]
        b = [p.record.id for p in r1.next_batch(6)]
        assert full[0::2] == a and full[1::2] == b
    sources = {i.split("/")[0] for i in full}
    assert sources <= {"synthetic_color", "synthetic_count"}
    state = one.state_dict()
    expected = [p.record.id for p in one.next_batch(8)]
    again = PromptStream(cfg.data, cfg.model, processor, seed=3, rank=0, world=1, pool=one.pool)
    again.load_state_dict(state)
    assert [p.record.id for p in again.next_batch(8)] == expected


def test_bad_images_and_long_prompts_are_skipped_and_counted(tmp_path, processor):
    path = tmp_path / "bad_test.py"
    path.write_text(BAD_RECIPE)
    cfg = _cfg(f"data.recipes=[{{name: {path}}}]", "data.shuffle=false")
    s = PromptStream(cfg.data, cfg.model, processor, seed=0, rank=0, world=1)
    got = s.next_batch(10)
    ids = [int(p.record.id.split("/")[1]) for p in got]
    assert all(i % 3 != 1 and i % 5 != 4 for i in ids) and len(ids) == 10
    assert s.stats.skipped["bad_image"] > 0 and s.stats.skipped["too_long"] > 0
    assert any("bad/1: bad_image" in e for e in s.stats.examples)
    assert all(p.tokens <= 200 for p in got)
    # the counted length is exactly what the processor encodes (pixels included)
    from sapo_vl.models.loading import encode_prompts

    for p in got[:3]:
        assert p.tokens == encode_prompts(processor, [p.record.prompt], [p.images])["input_ids"].shape[1]


def test_a_stream_of_only_bad_records_fails_with_a_clear_message(tmp_path, processor):
    path = tmp_path / "bad_test.py"
    path.write_text(BAD_RECIPE)
    cfg = _cfg(f"data.recipes=[{{name: {path}}}]", "data.max_prompt_tokens=5")
    s = PromptStream(cfg.data, cfg.model, processor, seed=0, rank=0, world=1)
    with pytest.raises(RuntimeError, match="skipped .* records in a row"):
        s.next_batch(4, max_draws=40)


@pytest.mark.parametrize("size", [(64, 64), (100, 60), (300, 40), (20, 20)])
def test_prompt_tokens_match_the_processor_for_images_it_resizes(processor, size):
    from PIL import Image

    from sapo_vl.data.record import user_prompt
    from sapo_vl.models.loading import encode_prompts
    from sapo_vl.data.stream import prompt_tokens

    prompt, images = user_prompt("How many?", n_images=2), [Image.new("RGB", size), Image.new("RGB", (64, 32))]
    assert prompt_tokens(processor, prompt, images) == encode_prompts(processor, [prompt], [images])["input_ids"].shape[1]

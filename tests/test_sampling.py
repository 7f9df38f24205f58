"""Rollout sampling on the tiny Qwen3-VL: shared prefill, positions, stop tokens, banned tokens, log-probs."""
import pytest
import torch
from PIL import Image, ImageDraw

from sapo_vl.data.record import Record, user_prompt
from sapo_vl.logprobs import PolicyLogprobs, chunked_logprobs, naive_logprobs
from sapo_vl.models.loading import load_policy, load_processor
from sapo_vl.rollout import Rollout
from sapo_vl.engines.base import SamplingSettings
from sapo_vl.sampling import NEVER_SAMPLE, RowCache, process_logits, rope_positions, sample_completions, token_ids


@pytest.fixture(scope="module")
def policy(tiny_dense):
    return load_policy(str(tiny_dense)).eval(), load_processor(str(tiny_dense))


def _batch():
    a = Image.new("RGB", (96, 64), (220, 30, 30))
    b = Image.new("RGB", (64, 128), "white")
    ImageDraw.Draw(b).ellipse((5, 5, 50, 60), fill=(0, 0, 200))
    recs = [
        Record(id="a", prompt=user_prompt("What color?"), answer="red", images=[b"-"]),
        Record(id="b", prompt=user_prompt("A longer question about the blue shape here?"), answer="1", images=[b"-"]),
        Record(id="c", prompt=[{"role": "user", "content": [{"type": "text", "text": "Text only: 2+2?"}]}], answer="4"),
    ]
    return recs, [[a], [b], []]


def test_shared_prefill_samples_what_expanded_prefill_samples(policy):
    model, proc = policy
    recs, imgs = _batch()
    st = SamplingSettings(group_size=3, max_new_tokens=10, temperature=1.0)
    s1 = sample_completions(model, proc, [r.prompt for r in recs], imgs, st, generator=torch.Generator().manual_seed(5))
    s2 = sample_completions(model, proc, [r.prompt for r in recs], imgs, st, generator=torch.Generator().manual_seed(5),
                            shared_prefill=False)
    assert s1.completion_ids.shape[0] == 9
    assert torch.equal(s1.completion_ids, s2.completion_ids)
    torch.testing.assert_close(s1.sample_logprobs, s2.sample_logprobs, atol=1e-5, rtol=0)
    assert s1.prefill_tokens * 3 == s2.prefill_tokens  # the prompt went through the model once, not G times


def test_sampled_logprobs_match_teacher_forced_forward(policy):
    """Positions (M-RoPE), cache expansion and left padding are right iff the decode loop's distributions equal
    those of one full forward over prompt + completion."""
    model, proc = policy
    recs, imgs = _batch()
    s = sample_completions(model, proc, [r.prompt for r in recs], imgs,
                           SamplingSettings(group_size=2, max_new_tokens=12),
                           generator=torch.Generator().manual_seed(1))
    ro = Rollout.from_samples(recs, s)
    mb = ro.row_batch(range(ro.n))
    with torch.no_grad():
        out = model(input_ids=mb.input_ids, attention_mask=mb.attention_mask, mm_token_type_ids=mb.mm_token_type_ids,
                    pixel_values=mb.pixel_values, image_grid_thw=mb.image_grid_thw)
    lc = mb.n_completion
    banned = torch.tensor(token_ids(proc.tokenizer, NEVER_SAMPLE))
    logits = out.logits[:, -lc - 1 : -1]  # (N, Lc, V)
    ref = process_logits(logits.reshape(-1, logits.shape[-1]), temperature=1.0, top_k=0, top_p=1.0, banned=banned)
    ref = ref.gather(-1, mb.input_ids[:, -lc:].reshape(-1, 1)).view(ro.n, lc)
    m = mb.mask.bool()
    torch.testing.assert_close(ref[m], s.sample_logprobs[:, :lc][m], atol=2e-4, rtol=0)
    # and the training-side chunked log-probs agree with the naive full log-softmax
    with torch.no_grad():
        lp, ent = mb.logprobs(PolicyLogprobs(model, chunk_size=7))
    torch.testing.assert_close(lp[m], naive_logprobs(logits, mb.input_ids[:, -lc:])[m], atol=1e-5, rtol=0)
    assert (ent[m] > 0).all()


def test_greedy_equals_transformers_generate(policy):
    model, proc = policy
    recs, imgs = _batch()
    from sapo_vl.models.loading import encode_prompts

    s = sample_completions(model, proc, [r.prompt for r in recs[:2]], imgs[:2],
                           SamplingSettings(group_size=1, max_new_tokens=8, top_k=1))
    inputs = encode_prompts(proc, [r.prompt for r in recs[:2]], imgs[:2])
    banned = token_ids(proc.tokenizer, NEVER_SAMPLE)
    g = model.generate(**inputs, max_new_tokens=8, do_sample=False, suppress_tokens=banned)
    hf = g[:, inputs["input_ids"].shape[1]:]
    for row in range(2):
        n = int(s.completion_mask[row].sum())
        assert s.completion_ids[row, :n].tolist() == hf[row, :n].tolist()


def test_stop_token_ends_row_and_banned_tokens_never_sampled(policy):
    model, proc = policy
    tok = proc.tokenizer
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    image_pad = tok.convert_tokens_to_ids("<|image_pad|>")
    # a distribution that puts nearly all mass on <|image_pad|>, then <|im_end|>: the ban must win
    logits = torch.zeros(4, len(tok))
    logits[:, image_pad] = 50.0
    logits[:, im_end] = 20.0
    logp = process_logits(logits, temperature=1.0, top_k=0, top_p=1.0, banned=torch.tensor([image_pad]))
    assert torch.isinf(logp[:, image_pad]).all() and logp.argmax(-1).eq(im_end).all()
    # top-p keeps the smallest prefix reaching p; top-k keeps k
    lg = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isfinite(process_logits(lg, temperature=1, top_k=0, top_p=0.7, banned=None)).sum() == 2
    assert torch.isfinite(process_logits(lg, temperature=1, top_k=3, top_p=1.0, banned=None)).sum() == 3
    recs, imgs = _batch()
    s = sample_completions(model, proc, [r.prompt for r in recs], imgs,
                           SamplingSettings(group_size=4, max_new_tokens=24),
                           generator=torch.Generator().manual_seed(0))
    assert not torch.isin(s.completion_ids, torch.tensor(token_ids(tok, NEVER_SAMPLE))).any()
    stops = torch.tensor(token_ids(tok, ("<|im_end|>", "<|endoftext|>")))
    for row in range(s.completion_ids.shape[0]):
        n = int(s.completion_mask[row].sum())
        ids = s.completion_ids[row]
        assert s.completion_mask[row, :n].all() and not s.completion_mask[row, n:].any()
        hit = torch.isin(ids[:n], stops)
        if s.truncated[row]:
            assert not hit.any() and n == 24
        else:
            assert hit[-1] and not hit[:-1].any()  # the stop token is the last kept token


def test_chunked_logprobs_gradient_matches_naive():
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 50, bias=False).double()
    h = torch.randn(3, 5, 8, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 50, (3, 5))
    lp, _ = chunked_logprobs(h, head, t, temperature=0.7, chunk_size=4)
    (g1,) = torch.autograd.grad(lp.sum(), h)
    h2 = h.detach().clone().requires_grad_(True)
    ref = naive_logprobs(head(h2), t, temperature=0.7)
    (g2,) = torch.autograd.grad(ref.sum(), h2)
    torch.testing.assert_close(lp, ref)
    torch.testing.assert_close(g1, g2)


def test_chunked_entropy_under_grad_is_exact_and_costs_one_projection_per_chunk():
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 50, bias=False).double()
    calls = []
    head.register_forward_hook(lambda m, a, o: calls.append(a[0].shape[0]))
    h = torch.randn(3, 5, 8, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 50, (3, 5))
    lp, ent = chunked_logprobs(h, head, t, temperature=0.7, chunk_size=4)  # 15 tokens: chunks of 4, 4, 4, 3
    assert calls == [4, 4, 4, 3]  # the entropy came from the forward's own logits, no second projection
    logp_all = torch.log_softmax(head(h.detach()) / 0.7, -1)  # (3, 5, 50), the reference: H = −Σ p log p
    torch.testing.assert_close(ent, -(logp_all.exp() * logp_all).sum(-1).float())  # (_logits is float32)
    calls.clear()
    lp.sum().backward()
    assert calls == [3, 4, 4, 4]  # the backward recomputes each chunk once (log-probs only), last chunk first


# ---------------------------------------------------------------------------------------------------- positions and decode
def _text(words: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": "text", "text": words}]}]


SHORT = _text("2+2?")
LONG = _text("Read this long question carefully, it goes on and on about shapes and colors. " * 8 + "Answer?")


def _teacher_forced(model, proc, recs, s, *, positions: bool):
    """Log-probs of the sampled tokens under one full forward over prompt + completion, banned tokens masked as
    the sampler masks them; with or without the sampler's positions (`rope_positions`)."""
    ro = Rollout.from_samples(recs, s)
    mb = ro.row_batch(range(ro.n))
    kw = dict(input_ids=mb.input_ids, attention_mask=mb.attention_mask, mm_token_type_ids=mb.mm_token_type_ids,
              pixel_values=mb.pixel_values, image_grid_thw=mb.image_grid_thw)
    if positions:
        kw["position_ids"] = rope_positions(model, mb.input_ids, mb.mm_token_type_ids, mb.attention_mask,
                                            mb.image_grid_thw)[0]
    with torch.no_grad():
        logits = model(**kw).logits
    lc = mb.n_completion
    banned = torch.tensor(token_ids(proc.tokenizer, NEVER_SAMPLE))
    logits = logits[:, -lc - 1 : -1]  # (N, Lc, V)
    ref = process_logits(logits.reshape(-1, logits.shape[-1]), temperature=1.0, top_k=0, top_p=1.0, banned=banned)
    return ref.gather(-1, mb.input_ids[:, -lc:].reshape(-1, 1)).view(ro.n, lc), mb.mask.bool(), lc


def test_text_only_batch_of_mixed_lengths_samples_at_the_teacher_forced_positions(policy):
    """Issue 9.1: with no image in the batch, the short (left-padded) prompt's rows were decoded at positions that
    did not continue its prefill (gap 2e-2..1e-1 on the padded rows, 0 on the others)."""
    model, proc = policy
    recs = [Record(id="s", prompt=SHORT, answer="4"), Record(id="l", prompt=LONG, answer="x")]
    s = sample_completions(model, proc, [r.prompt for r in recs], [[], []],
                           SamplingSettings(group_size=2, max_new_tokens=16),
                           generator=torch.Generator().manual_seed(3))
    pads = s.inputs["attention_mask"].eq(0).sum(-1)
    assert pads[0] > 50 and pads[1] == 0  # the short prompt is heavily left-padded
    for positions in (True, False):  # the sampler's positions, and the model's own numbering across the padding
        ref, m, lc = _teacher_forced(model, proc, recs, s, positions=positions)
        gap = (ref - s.sample_logprobs[:, :lc]).abs().masked_fill(~m, 0)
        assert gap.max() <= 1e-5, (positions, gap.amax(-1))


def _row_gens(ids: list[int]) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(1000 + i) for i in ids]


def test_a_rows_tokens_do_not_depend_on_its_batch_or_the_generation_chunks(policy):
    model, proc = policy
    G = 2
    st = SamplingSettings(group_size=G, max_new_tokens=20, temperature=1.0)
    alone = sample_completions(model, proc, [SHORT], [[]], st, generator=_row_gens([0, 1]))
    recs, imgs = _batch()
    batches = [  # the short text-only prompt first, then others of very different lengths, with and without images
        ([SHORT, LONG], [[], []], 0),
        ([SHORT, LONG, recs[1].prompt], [[], [], imgs[1]], 0),
        ([SHORT, LONG, recs[1].prompt], [[], [], imgs[1]], 3),  # chunks of 3 rows: a group split between chunks
    ]
    for prompts, images, chunk in batches:
        n = len(prompts) * G
        s = sample_completions(model, proc, prompts, images, st, generation_batch_size=chunk,
                               generator=_row_gens(list(range(n))))
        lc = alone.completion_ids.shape[1]
        assert torch.equal(s.completion_ids[:G, :lc], alone.completion_ids), (len(prompts), chunk)
        assert not s.completion_mask[:G, lc:].any()
        torch.testing.assert_close(s.sample_logprobs[:G, :lc], alone.sample_logprobs, atol=1e-5, rtol=0)


def _legacy():
    """The decode loop as it was before the preallocated KV cache, vendored in the benchmark that compares against it."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "bench_rollout.py"
    spec = importlib.util.spec_from_file_location("bench_rollout", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.legacy_sample_completions


def test_decode_path_reproduces_the_old_loop(policy):
    """Pre-allocated cache, stop flags read every 16 tokens and finished rows dropped: same tokens and log-probs as
    the old loop (DynamicCache, a sync per token, every row to the end) under the same seed."""
    model, proc = policy
    legacy = _legacy()
    recs, imgs = _batch()  # an image batch with a text-only prompt: positions were right there before too
    prompts = [r.prompt for r in recs]
    kw = dict(group_size=4, max_new_tokens=48)
    old = legacy(model, proc, prompts, imgs, generator=torch.Generator().manual_seed(3), **kw)
    st = SamplingSettings(**kw)
    new = sample_completions(model, proc, prompts, imgs, st, generator=torch.Generator().manual_seed(3))
    assert old.truncated.any() and not old.truncated.all()  # some rows stopped early and were dropped
    assert torch.equal(new.completion_ids, old.completion_ids)
    assert torch.equal(new.completion_mask, old.completion_mask) and torch.equal(new.truncated, old.truncated)
    torch.testing.assert_close(new.sample_logprobs, old.sample_logprobs, atol=1e-6, rtol=0)
    # per-row generators: the same rows again whatever the chunking
    gens = lambda: _row_gens(list(range(12)))  # noqa: E731
    old = legacy(model, proc, prompts, imgs, generator=gens(), **kw)
    for chunk in (4, 5):
        new = sample_completions(model, proc, prompts, imgs, st, generator=gens(), generation_batch_size=chunk)
        assert torch.equal(new.completion_ids, old.completion_ids), chunk
        torch.testing.assert_close(new.sample_logprobs, old.sample_logprobs, atol=1e-6, rtol=0)


def test_chunks_bound_the_cache_and_finished_rows_leave_it(policy, monkeypatch):
    model, proc = policy
    seen = []  # (rows in the cache, address of layer 0's key buffer) at every decode forward

    def record(mod, args, kwargs):
        cache = kwargs.get("cache")
        if isinstance(cache, RowCache) and cache.get_seq_length() > 0:
            layer = cache.layers[0]
            seen.append((layer.keys.shape[0], layer.keys.data_ptr()))

    handle = model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        recs, imgs = _batch()
        s = sample_completions(model, proc, [r.prompt for r in recs], imgs,
                               SamplingSettings(group_size=4, max_new_tokens=48),
                               generation_batch_size=4, generator=torch.Generator().manual_seed(3))
    finally:
        handle.remove()
    assert max(rows for rows, _ in seen) == 4  # never more than one chunk's rows (and never 12)
    assert min(rows for rows, _ in seen) < 4  # finished rows left the batch before the chunk ended
    assert len({ptr for _, ptr in seen}) <= len(seen) // 8  # buffers re-allocated only when rows leave
    assert s.completion_ids.shape[0] == 12


def test_row_cache_writes_in_place_and_selects_rows():
    cache = RowCache(num_layers=1, capacity=6)
    k = torch.arange(2 * 3 * 4, dtype=torch.float32).view(2, 1, 3, 4)  # (B=2, H=1, 3 positions, D=4)
    keys, _ = cache.update(k, -k, 0)
    ptr = cache.layers[0].keys.data_ptr()
    keys, values = cache.update(k[:, :, :1] + 100, -k[:, :, :1], 0)
    assert keys.shape == (2, 1, 4, 4) and cache.get_seq_length() == 4
    assert cache.layers[0].keys.data_ptr() == ptr  # written in place
    torch.testing.assert_close(keys[:, :, :3], k)
    cache.select_rows(torch.tensor([1, 1, 0]), capacity=8)
    assert cache.layers[0].keys.shape == (3, 1, 8, 4)
    torch.testing.assert_close(cache.layers[0].keys[:, :, :4], torch.cat([keys[1:], keys[1:], keys[:1]]))
    with pytest.raises(RuntimeError, match="capacity"):
        cache.update(torch.zeros(3, 1, 5, 4), torch.zeros(3, 1, 5, 4), 0)

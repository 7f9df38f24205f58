"""Rollout sampling on the tiny Qwen3-VL: shared prefill, positions, stop tokens, banned tokens, log-probs."""
import pytest
import torch
from PIL import Image, ImageDraw

from sapo_vl.data.record import Record, user_prompt
from sapo_vl.logprobs import PolicyLogprobs, chunked_logprobs, naive_logprobs
from sapo_vl.models.loading import load_policy, load_processor
from sapo_vl.rollout import Rollout
from sapo_vl.sampling import NEVER_SAMPLE, process_logits, sample_completions, token_ids


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
    kw = dict(group_size=3, max_new_tokens=10, temperature=1.0)
    s1 = sample_completions(model, proc, [r.prompt for r in recs], imgs, generator=torch.Generator().manual_seed(5), **kw)
    s2 = sample_completions(model, proc, [r.prompt for r in recs], imgs, generator=torch.Generator().manual_seed(5),
                            shared_prefill=False, **kw)
    assert s1.completion_ids.shape[0] == 9
    assert torch.equal(s1.completion_ids, s2.completion_ids)
    torch.testing.assert_close(s1.sample_logprobs, s2.sample_logprobs, atol=1e-5, rtol=0)
    assert s1.prefill_tokens * 3 == s2.prefill_tokens  # the prompt went through the model once, not G times


def test_sampled_logprobs_match_teacher_forced_forward(policy):
    """Positions (M-RoPE), cache expansion and left padding are right iff the decode loop's distributions equal
    those of one full forward over prompt + completion."""
    model, proc = policy
    recs, imgs = _batch()
    s = sample_completions(model, proc, [r.prompt for r in recs], imgs, group_size=2, max_new_tokens=12,
                           generator=torch.Generator().manual_seed(1))
    ro = Rollout.from_samples(recs, s)
    mb = ro.micro_batch(range(ro.n))
    with torch.no_grad():
        out = model(input_ids=mb["input_ids"], attention_mask=mb["attention_mask"],
                    mm_token_type_ids=mb["mm_token_type_ids"], pixel_values=mb["pixel_values"],
                    image_grid_thw=mb["image_grid_thw"])
    lc = mb["n_completion"]
    banned = torch.tensor(token_ids(proc.tokenizer, NEVER_SAMPLE))
    logits = out.logits[:, -lc - 1 : -1]  # (N, Lc, V)
    ref = process_logits(logits.reshape(-1, logits.shape[-1]), temperature=1.0, top_k=0, top_p=1.0, banned=banned)
    ref = ref.gather(-1, mb["input_ids"][:, -lc:].reshape(-1, 1)).view(ro.n, lc)
    m = mb["extras"]["mask"].bool()
    torch.testing.assert_close(ref[m], s.sample_logprobs[:, :lc][m], atol=2e-4, rtol=0)
    # and the training-side chunked log-probs agree with the naive full log-softmax
    with torch.no_grad():
        lp, ent = PolicyLogprobs(model, chunk_size=7)(**{k: v for k, v in mb.items() if k != "extras"})
    torch.testing.assert_close(lp[m], naive_logprobs(logits, mb["input_ids"][:, -lc:])[m], atol=1e-5, rtol=0)
    assert (ent[m] > 0).all()


def test_greedy_equals_transformers_generate(policy):
    model, proc = policy
    recs, imgs = _batch()
    from sapo_vl.models.loading import encode_prompts

    s = sample_completions(model, proc, [r.prompt for r in recs[:2]], imgs[:2], group_size=1, max_new_tokens=8, top_k=1)
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
    s = sample_completions(model, proc, [r.prompt for r in recs], imgs, group_size=4, max_new_tokens=24,
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

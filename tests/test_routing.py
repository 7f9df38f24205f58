"""Routing replay (R3, `sapo_vl.routing`) on the tiny Qwen3-VL-MoE: the hf sampler's recorded experts are aligned
to the trainer's token positions, replay forces them exactly, shrinks the sampler/trainer log-prob gap under a
perturbed router (a stand-in for kernel differences) by ≥ 10×, keeps the router's gradient, gives the same
log-probs and gradients on the packed path as on the row path and under activation checkpointing; bad records and
dense models are refused with errors that name them; a demo-sized run with `routing_replay: r3` trains (1 rank,
and 2 ranks under ZeRO-3)."""
from unittest import mock

import pytest
import torch
from PIL import Image, ImageDraw

from sapo_vl import packing, routing, sampling
from sapo_vl.config import ConfigError, load_config
from sapo_vl.data.record import Record, user_prompt
from sapo_vl.engines.base import SamplingSettings
from sapo_vl.models.loading import load_policy, load_processor
from sapo_vl.packing import PackedPolicyLogprobs
from sapo_vl.rollout import Rollout
from sapo_vl.sampling import NEVER_SAMPLE, sample_completions, token_ids

from train_helpers import launch, metrics, small_overrides

G = 3
EPS = 0.05  # router perturbation, in units of each router weight's std: flips a few percent of the routes


def _prompts():
    red = Image.new("RGB", (96, 64), (220, 30, 30))
    disc = Image.new("RGB", (64, 128), "white")
    ImageDraw.Draw(disc).ellipse((5, 5, 50, 60), fill=(0, 0, 200))
    green = Image.new("RGB", (128, 96), (10, 200, 10))
    text = [{"role": "user", "content": [{"type": "text", "text": "A text-only question, 2+2?"}]}]
    return [user_prompt("What color is it?", n_images=1), text, user_prompt("Compare both.", n_images=2)], \
        [[red], [], [disc, green]]


@pytest.fixture(scope="module")
def sampled(tiny_moe):
    """The tiny MoE with hooked routers, and a rollout sampled (and routed) by the hf sampler, float32."""
    torch.manual_seed(0)
    model, proc = load_policy(str(tiny_moe)), load_processor(str(tiny_moe))
    tracker = routing.install(model, replay=True)
    prompts, images = _prompts()
    with routing.recording(model) as rec, mock.patch.object(sampling, "CHECK_EVERY", 2):  # rows dropped early
        samples = sample_completions(model, proc, prompts, images, SamplingSettings(group_size=G, max_new_tokens=10),
                                     generator=torch.Generator().manual_seed(0))
        rec.fill(samples)
    records = [Record(id=str(i), prompt=p, answer="x", images=[b"-"] * len(im))
               for i, (p, im) in enumerate(zip(prompts, images))]
    module = PackedPolicyLogprobs(model, chunk_size=16, banned_ids=token_ids(proc.tokenizer, NEVER_SAMPLE))
    base = [r.weight.detach().clone() for r in tracker.routers]
    yield model, tracker, module, samples, Rollout.from_samples(records, samples)
    with torch.no_grad():
        for r, w in zip(tracker.routers, base):
            r.weight.copy_(w)


@pytest.fixture
def perturbed(sampled):
    """`sampled` with every router's weight moved by EPS · std · N(0, 1) (seeded), restored afterwards."""
    model, tracker, module, samples, ro = sampled
    base = [r.weight.detach().clone() for r in tracker.routers]
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for r, w in zip(tracker.routers, base):
            r.weight.add_(EPS * w.std() * torch.randn(w.shape, generator=gen))
    tracker.take_mismatch()
    yield sampled
    with torch.no_grad():
        for r, w in zip(tracker.routers, base):
            r.weight.copy_(w)
    tracker.replay = True
    model.zero_grad()


def _row_logprobs(module, ro, *, grad: bool = False):
    mb = ro.row_batch(range(ro.n))
    with torch.set_grad_enabled(grad):
        lp, _ = mb.logprobs(module, with_entropy=False)
    return lp, mb.mask.bool()


def _used_experts(model):
    """Hooks on every MoE block's experts: the top-k indices each forward actually computed with."""
    seen: list[torch.Tensor] = []
    handles = [m.experts.register_forward_pre_hook(lambda mod, args: seen.append(args[1].clone()))
               for m in model.modules() if type(m).__name__.endswith("SparseMoeBlock")]
    return seen, handles


def test_capture_is_plausible_and_aligned_with_the_trainer_positions(sampled):
    model, tracker, module, samples, ro = sampled
    L, k = tracker.num_layers, tracker.top_k
    assert ro.prompt_routing.shape == (*ro.prompt_ids.shape, L, k) and ro.prompt_routing.dtype == torch.int16
    assert ro.completion_routing.shape == (*ro.completion_ids.shape, L, k)
    routing.check_sampled_routes(samples, tracker.num_experts, "hf")
    real = ro.prompt_mask.bool()
    assert (ro.prompt_routing[real] >= 0).all() and (ro.prompt_routing[~real] == -1).all()
    assert (ro.prompt_mm_types == 1).any()  # image tokens are among the recorded prompt tokens
    # independent of the capture code: in float32 the trainer's own top-k is the sampler's (same weights), so a
    # misaligned record would show up as mismatches here
    tracker.replay = False
    tracker.take_mismatch()
    _row_logprobs(module, ro)
    missed, compared = tracker.take_mismatch()
    tracker.replay = True
    fed = int(ro.prompt_mask.sum()) * G + int(ro.completion_mask.sum()) - int((ro.completion_mask.sum(-1) > 0).sum())
    assert missed == 0 and compared >= fed * L * k  # every fed token compared (the last ones when recorded)


def test_replay_forces_exactly_the_recorded_experts(perturbed):
    model, tracker, module, samples, ro = perturbed
    seen, handles = _used_experts(model)
    try:
        tracker.replay = False
        _row_logprobs(module, ro)
        own, seen[:] = list(seen), []
        tracker.replay = True
        _row_logprobs(module, ro)
    finally:
        for h in handles:
            h.remove()
    mb = ro.row_batch(range(ro.n))
    want = mb.routing.reshape(-1, tracker.num_layers, tracker.top_k)  # (T, layers, k)
    known = (want >= 0).all(-1).all(-1)  # (T,)
    used = torch.stack(seen, 1)  # (T, layers, k)
    own = torch.stack(own, 1)
    assert torch.equal(used[known], want[known].long())
    assert not torch.equal(own[known], want[known].long())  # the perturbation did flip some routes


def test_replay_shrinks_the_sampler_trainer_gap_tenfold(perturbed):
    model, tracker, module, samples, ro = perturbed
    gaps = {}
    for replay in (False, True):
        tracker.replay = replay
        lp, m = _row_logprobs(module, ro)
        gaps[replay] = float((lp - ro.sample_logprobs[:, : lp.shape[1]])[m].abs().mean())
    missed, compared = tracker.take_mismatch()
    assert 0 < missed / compared < 0.2  # a few routes flipped (counted in both passes)
    assert gaps[True] * 10 <= gaps[False], gaps


def test_the_router_keeps_its_gradient_under_replay(perturbed):
    model, tracker, module, samples, ro = perturbed
    lp, m = _row_logprobs(module, ro, grad=True)
    lp[m].sum().backward()
    for r in tracker.routers:
        assert r.weight.grad is not None and torch.isfinite(r.weight.grad).all() and r.weight.grad.abs().sum() > 0


def test_replay_of_the_own_routing_changes_nothing(sampled):
    """With the sampler's weights the recorded experts are the trainer's own: replay must give the very same
    log-probs and gradients as no replay (the recomputed weights are the router's own formula)."""
    model, tracker, module, samples, ro = sampled
    out = {}
    for replay in (False, True):
        tracker.replay = replay
        model.zero_grad()
        lp, m = _row_logprobs(module, ro, grad=True)
        lp[m].sum().backward()
        out[replay] = lp.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    tracker.replay = True
    model.zero_grad()
    assert torch.equal(out[True][0], out[False][0])
    assert all(torch.allclose(out[True][1][n], g, rtol=1e-5, atol=1e-8) for n, g in out[False][1].items())


def _packed(module, ro):
    src = packing.PackedSource(ro, module.policy, micro_rows=2, micro_tokens=0, device="cpu")
    out = torch.zeros(ro.completion_ids.shape)
    for plan in src.plan(range(ro.n)):
        b = src.batch(plan)
        lp, _ = b.logprobs(module, with_entropy=False)
        (lp * ro.completion_mask[b.rows, : b.n_completion]).sum().backward()
        out[b.rows, : b.n_completion] = lp.detach()
    return out


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_packed_path_equals_row_path_with_replay(perturbed):
    model, tracker, module, samples, ro = perturbed
    model.zero_grad()
    row, m = _row_logprobs(module, ro, grad=True)
    row[m].sum().backward()
    g_row = _grads(model)
    model.zero_grad()
    packed = _packed(module, ro)[:, : row.shape[1]]
    g_packed = _grads(model)
    assert (packed[m] - row.detach()[m]).abs().max() <= 1e-5
    for n, g in g_row.items():
        # relative to the tensor's norm, as the packing tests hold the two paths (float32 rounding differs)
        assert float((g_packed[n] - g).norm()) <= 1e-5 * float(g.norm()), n
    assert any("mlp.gate" in n for n in g_row)


def test_activation_checkpointing_recomputes_with_the_recorded_experts(perturbed):
    model, tracker, module, samples, ro = perturbed
    out = []
    for ckpt in (False, True):
        if ckpt:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.train()
        model.zero_grad()
        lp, m = _row_logprobs(module, ro, grad=True)
        lp[m].sum().backward()
        out.append(_grads(model))
    model.gradient_checkpointing_disable()
    for n, g in out[0].items():
        assert torch.allclose(out[1][n], g, rtol=1e-5, atol=1e-7), n


@pytest.mark.parametrize("bad, message", [
    (lambda r: r.fill_(0), "every recorded expert index is 0"),
    (lambda r: r.__setitem__((0, 0, 0, 0), 9), "out of range"),
    (lambda r: r[..., 1].copy_(r[..., 0]), "repeat an index"),
    (lambda r: r.__setitem__((0, -1, 0, 0), -1), "no recorded experts"),
])
def test_implausible_routes_are_refused(bad, message):
    routes = torch.tensor([[0, 1], [2, 3], [1, 3]], dtype=torch.int16).view(1, 3, 1, 2).repeat(1, 1, 2, 1)
    routing.check_routes(routes, torch.ones(1, 3), 4, "test")  # the good one passes
    bad(routes)
    with pytest.raises(routing.RoutingError, match=message):
        routing.check_routes(routes, torch.ones(1, 3), 4, "test")


def test_whole_sequence_routes_are_laid_out_as_the_trainer_s():
    """vLLM-style routes (one array per sequence, prompt then completion, the last sampled token not routed)
    → left-padded prompt routes and right-padded completion routes, by hand."""
    G, prompt_len, completion_len = 2, [3, 2], [2, 1, 3, 2]
    seqs = [torch.tensor([[[10 * r + t, 10 * r + t + 100]] for t in range(prompt_len[r // G] + c - 1)])
            for r, c in enumerate(completion_len)]  # (T_r, 1 layer, k=2): expert ids that name (row, token)
    prompt, completion = routing.routes_from_sequences(seqs, prompt_len, completion_len, G, Lp=3, Lc=3)
    assert prompt[0, :, 0, 0].tolist() == [0, 1, 2]  # prompt 0 from row 0
    assert prompt[1, :, 0, 0].tolist() == [-1, 20, 21]  # prompt 1 (2 tokens, left-padded) from row 2
    assert completion[0, :, 0, 0].tolist() == [3, -1, -1]  # row 0: token 0 routed, its last token not
    assert completion[1, :, 0, 0].tolist() == [-1, -1, -1]  # a 1-token completion has no routed token
    assert completion[2, :, 0, 1].tolist() == [122, 123, -1]
    with pytest.raises(routing.RoutingError, match="row 1 .*5 routed tokens"):
        routing.routes_from_sequences([seqs[0], seqs[0][:0].new_zeros(5, 1, 2)] + seqs[2:], prompt_len,
                                      completion_len, G, Lp=3, Lc=3)


def test_dense_models_are_refused(tiny_dense):
    with pytest.raises(ConfigError, match="algorithm.routing_replay.*dense"):
        load_config("configs/demo.yaml", ["algorithm.routing_replay=r3"])
    load_config("configs/demo.yaml", ["algorithm.routing_replay=r3", "model.name_or_path=sapo-vl/tiny-qwen3-vl-moe"])
    with pytest.raises(routing.RoutingError, match="no MoE router"):
        routing.install(load_policy(str(tiny_dense)), replay=True)


def test_memory_plan_counts_the_recorded_routes():
    from sapo_vl.memplan import plan_memory

    cfg = load_config("configs/demo.yaml", ["model.name_or_path=sapo-vl/tiny-qwen3-vl-moe"])
    off = {n for n, _ in plan_memory(cfg, 1).host}
    on = dict(plan_memory(load_config("configs/demo.yaml", ["model.name_or_path=sapo-vl/tiny-qwen3-vl-moe",
                                                            "algorithm.routing_replay=r3"]), 1).host)
    name = next(n for n in on if "routing replay" in n)
    assert name not in off
    rows = cfg.rollout.prompts_per_step * cfg.rollout.group_size
    want = rows * (cfg.data.max_prompt_tokens + cfg.rollout.max_new_tokens) * 2 * 2 * 2  # layers × k × int16
    assert on[name] == pytest.approx(want / 2**30)


# ---------------------------------------------------------------------------------------------------- runs
def _r3_run(tmp_path, name, ranks, **extra):
    ov = small_overrides(tmp_path, name, **{"model.name_or_path": "sapo-vl/tiny-qwen3-vl-moe",
                                            "algorithm.routing_replay": "r3", "train.format_warmup_steps": 0,
                                            "rollout.max_new_tokens": 8, "algorithm.kl_beta": 0.01,
                                            "rollout.group_size": 2, **extra})
    res = launch(ov, ranks=ranks)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = metrics(tmp_path / name)
    assert len(rows) == 2 and all(0.0 <= r["moe_route_mismatch_frac"] < 1.0 for r in rows)
    assert max(r["rollout_logprob_gap"] for r in rows) <= 1e-5  # π_old replayed: the sampler's own log-probs
    return rows


@pytest.mark.slow
def test_demo_sized_run_with_r3_on_one_rank(tmp_path, tiny_moe):
    _r3_run(tmp_path, "r3", 1, **{"model.gradient_checkpointing": "true", "algorithm.shared_prefix": "false"})


@pytest.mark.slow
def test_r3_run_on_two_ranks_under_zero3(tmp_path, tiny_moe):
    _r3_run(tmp_path, "r3z3", 2, **{"deepspeed.zero_stage": 3})

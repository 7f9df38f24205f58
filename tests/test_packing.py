"""Packed update micro-batches (`sapo_vl.packing`): planning arithmetic, the shared-prefix mask, and equality of
log-probs and gradients with the one-row-per-completion path on the tiny Qwen3-VL (dense and MoE), in one process
and on 2 ranks under ZeRO-3."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

from sapo_vl import packing
from sapo_vl.data.record import Record, user_prompt
from sapo_vl.logprobs import PolicyLogprobs
from sapo_vl.models.loading import encode_prompts, load_policy, load_processor
from sapo_vl.rollout import Rollout
from sapo_vl.engines.base import Samples

REPO = Path(__file__).resolve().parents[1]
G = 3
TOL = 1e-5  # relative, float32


# ---------------------------------------------------------------------------------------------------- planning
def test_group_minibatches_hold_whole_groups_and_every_row_once():
    mbs = packing.group_minibatches(24, 4, 3, torch.Generator().manual_seed(0))
    assert sorted(r for mb in mbs for r in mb) == list(range(24))
    for mb in mbs:
        assert len(mb) == 8 and len({r // 4 for r in mb}) == 2  # two whole groups
    again = packing.group_minibatches(24, 4, 3, torch.Generator().manual_seed(0))
    other = packing.group_minibatches(24, 4, 3, torch.Generator().manual_seed(1))
    assert mbs == again and mbs != other
    # one group, two minibatches: the group straddles them, rows still each once
    assert sorted(sum(packing.group_minibatches(4, 4, 2, torch.Generator()), [])) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="groups of 4"):
        packing.group_minibatches(10, 4, 1, torch.Generator())


def test_plan_fits_the_budget_and_packs_a_group_per_row():
    # prompts 0, 1 of 10 and 4 tokens; completions (G=3) of 2, 3, 1 | 5, 5, 5 tokens
    plen, clen = [10, 4], [2, 3, 1, 5, 5, 5]
    rows = list(range(6))
    plan = packing.plan_micro_batches(rows, 3, plen, clen)
    assert plan == [[(1, (3, 4, 5)), (0, (0, 1, 2))]]  # longest row (4+15=19) first, then 10+6=16
    assert packing.padding_counts(plan, plen, clen) == (35, 38)  # 19+16 real, 2 rows × 19
    plan = packing.plan_micro_batches(rows, 3, plen, clen, token_budget=16)
    # prompt 1's row (19 tokens) is cut into 4+5+5=14 and 4+5=9; prompt 0 (16 tokens) fits whole
    assert sorted(plan) == sorted([[(0, (0, 1, 2))], [(1, (3, 4))], [(1, (5,))]])
    for b in plan:
        lens = [plen[g] + sum(clen[r] for r in rs) for g, rs in b]
        assert len(b) * max(lens) <= 16
    assert sorted(r for b in plan for _, rs in b for r in rs) == rows
    # no sharing: one completion per row; a row cap; at least 5 micro-batches
    plan = packing.plan_micro_batches(rows, 3, plen, clen, completions_per_row=1, max_completions=2)
    assert all(len(rs) == 1 for b in plan for _, rs in b) and all(len(b) <= 2 for b in plan)
    plan = packing.plan_micro_batches(rows, 3, plen, clen, min_micro_batches=5)
    assert len(plan) == 5 and sorted(r for b in plan for _, rs in b for r in rs) == rows
    with pytest.raises(ValueError, match="cannot cut"):
        packing.plan_micro_batches([0, 1], 3, plen, clen, min_micro_batches=3)


def test_shared_prefix_mask_by_hand():
    seg = torch.tensor([[0, 0, 1, 1, 2, -1]])  # prompt of 2, completions of 2 and 1, one padding slot
    want = torch.tensor([
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 1, 0, 0],
        [1, 1, 0, 0, 1, 0],  # completion 2 sees the prompt and itself, not completion 1
        [0, 0, 0, 0, 0, 1],  # padding sees itself only
    ], dtype=torch.bool)
    assert torch.equal(packing.shared_prefix_mask(seg)[0, 0], want)


# ---------------------------------------------------------------------------------------------------- the forward
def _images():
    a = Image.new("RGB", (96, 64), (220, 30, 30))
    b = Image.new("RGB", (64, 128), "white")
    ImageDraw.Draw(b).ellipse((5, 5, 50, 60), fill=(0, 0, 200))
    c = Image.new("RGB", (128, 96), (10, 200, 10))
    return a, b, c


CASES = {  # (question, number of images) per prompt
    "one_image": [("What color is it?", 1)],
    "several_images": [("Are these the same?", 2), ("Which shape?", 1)],
    "text_only": [("Text only: 2+2?", 0), ("A longer text-only question about sums?", 0)],
    "mixed": [("What color?", 1), ("3+4?", 0), ("Compare both.", 2)],
}


def make_rollout(proc, case: str, seed: int = 0) -> Rollout:
    """A rollout of G completions per prompt with varied lengths (random tokens: teacher forcing needs no sampler)."""
    pool = _images()
    recs, imgs = [], []
    for i, (text, k) in enumerate(CASES[case]):
        prompt = user_prompt(text, n_images=k) if k else [{"role": "user", "content": [{"type": "text", "text": text}]}]
        recs.append(Record(id=f"{case}/{i}", prompt=prompt, answer="x", images=[b"-"] * k))
        imgs.append([pool[(i + j) % 3] for j in range(k)])
    gen = torch.Generator().manual_seed(seed)
    n, lc = len(recs) * G, 9
    lengths = torch.randint(1, lc + 1, (n,), generator=gen)
    lengths[0] = lc
    ids = torch.randint(0, 700, (n, lc), generator=gen)  # ordinary byte-level tokens
    mask = (torch.arange(lc)[None] < lengths[:, None]).long()
    samples = Samples(inputs=encode_prompts(proc, [r.prompt for r in recs], imgs), completion_ids=ids * mask,
                      completion_mask=mask, truncated=torch.zeros(n, dtype=torch.bool),
                      sample_logprobs=torch.zeros(n, lc), texts=[""] * n, group_size=G, prefill_tokens=0)
    return Rollout.from_samples(recs, samples)


@pytest.fixture(scope="module", params=["dense", "moe"])
def tiny(request, tiny_dense, tiny_moe):
    path = str(tiny_dense if request.param == "dense" else tiny_moe)
    torch.manual_seed(0)
    return load_policy(path), load_processor(path)


def _grads(model) -> dict[str, torch.Tensor]:
    return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp(min=1e-30))


def row_path(module, ro: Rollout, weights: torch.Tensor):
    """Today's path: all rows as prompt+completion sequences; returns (N, Lc) log-probs and the gradients."""
    module.policy.zero_grad()
    mb = ro.row_batch(range(ro.n))
    lp, _ = mb.logprobs(module)
    (lp * mb.mask * weights[:, : lp.shape[1]]).sum().backward()
    return lp.detach(), _grads(module.policy)


def packed_path(module, ro: Rollout, weights: torch.Tensor, **limits):
    module.policy.zero_grad()
    table = packing.prompt_table(ro, module.policy)
    plan = packing.plan_micro_batches(list(range(ro.n)), G, table.prompt_len, table.completion_len, **limits)
    out = torch.zeros(ro.completion_ids.shape)
    patches = 0
    for b in plan:
        batch = packing.packed_batch(table, b)
        lp, _ = packing.packed_logprobs(module, batch)
        rows, lc = batch.rows, batch.n_completion
        (lp * ro.completion_mask[rows, :lc] * weights[rows, :lc]).sum().backward()
        out[rows, :lc] = lp.detach()
        patches += packing.vision_patches(batch)
    return out, _grads(module.policy), plan, patches


@pytest.mark.parametrize("case", list(CASES))
def test_packed_logprobs_and_gradients_equal_the_row_path(tiny, case):
    model, proc = tiny
    ro = make_rollout(proc, case)
    module = PolicyLogprobs(model, chunk_size=7)
    weights = torch.randn(ro.completion_ids.shape, generator=torch.Generator().manual_seed(1))
    want, g_want = row_path(module, ro, weights)
    m = ro.completion_mask.bool()
    budget = max(int(ro.prompt_mask[b].sum()) for b in range(len(ro.records))) + 10
    for limits in ({}, {"token_budget": budget}):  # one micro-batch of whole groups; groups cut into several rows
        got, g_got, plan, _ = packed_path(module, ro, weights, **limits)
        assert _rel(got[m], want[:, : got.shape[1]][m]) <= TOL, (case, limits)
        assert g_got.keys() == g_want.keys()
        gaps = {k: _rel(g_got[k], g_want[k]) for k in g_want if g_want[k].norm() > 0}
        assert max(gaps.values()) <= TOL, (case, limits, max(gaps.items(), key=lambda kv: kv[1]))
        if ro.image_grid_thw[0] is not None:
            assert any("visual" in k for k in gaps)  # the vision tower got its gradient through shared features
    assert len(plan) > 1  # the budget did cut


def test_each_image_goes_through_the_tower_once_per_micro_batch(tiny):
    model, proc = tiny
    ro = make_rollout(proc, "several_images")
    seen = []
    hook = model.model.visual.register_forward_pre_hook(lambda mod, args: seen.append(int(args[0].shape[0])))
    try:
        ones = torch.ones(ro.completion_ids.shape)
        row_path(PolicyLogprobs(model), ro, ones)
        row_seen, seen[:] = list(seen), []
        _, _, plan, patches = packed_path(PolicyLogprobs(model), ro, ones)
    finally:
        hook.remove()
    distinct = sum(int(g.prod(-1).sum()) for g in ro.image_grid_thw if g is not None)
    assert len(plan) == 1 and seen == [distinct] and patches == distinct
    assert row_seen == [G * distinct]  # the row path encodes each image once per completion


def test_eager_model_runs_the_kernel_too(tiny_dense):
    torch.manual_seed(0)
    model, proc = load_policy(str(tiny_dense), attn_implementation="eager"), load_processor(str(tiny_dense))
    ro = make_rollout(proc, "mixed")
    module = PolicyLogprobs(model, chunk_size=7)
    weights = torch.randn(ro.completion_ids.shape)
    want, g_want = row_path(module, ro, weights)
    got, g_got, _, _ = packed_path(module, ro, weights)
    m = ro.completion_mask.bool()
    assert _rel(got[m], want[m]) <= TOL
    assert max(_rel(g_got[k], g_want[k]) for k in g_want if g_want[k].norm() > 0) <= TOL


def test_packed_forward_needs_no_mask_so_any_attention_implementation_runs_it(tiny_dense, monkeypatch):
    model, proc = load_policy(str(tiny_dense)), load_processor(str(tiny_dense))
    ro = make_rollout(proc, "one_image")
    table = packing.prompt_table(ro, model)
    batch = packing.packed_batch(table, [(0, (0, 1, 2))])
    with torch.no_grad():
        want, _ = packing.packed_logprobs(PolicyLogprobs(model), batch)
        text = model.config.get_text_config()
        text._attn_implementation = "flash_attention_2"  # the row path could not run here (no flash-attn on CPU)
        got, _ = packing.packed_logprobs(PolicyLogprobs(model), batch)
        assert torch.equal(got, want)
        text._attn_implementation = "sdpa"
        monkeypatch.setattr(packing, "route", lambda model: None)  # a forward that bypasses the kernel is refused
        from transformers.integrations.sdpa_attention import sdpa_attention_forward
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

        monkeypatch.setitem(ALL_ATTENTION_FUNCTIONS._global_mapping, "sdpa", sdpa_attention_forward)
        with pytest.raises(RuntimeError, match="shared-prefix kernel"):
            packing.packed_logprobs(PolicyLogprobs(model), batch)


# ---------------------------------------------------------------------------------------------------- the update
def test_packed_update_equals_row_update_on_the_engine(tiny_dense):
    """One rank, ZeRO-0: `update_policy` on row micro-batches (`RowSource`), on token-budget packed ones
    (`PackedSource`) and under `auto` (each packed plan run packed or as rows) give the same first-pass entropy
    and the same optimizer step from the same weights; auto logs the share it ran packed."""
    from sapo_vl import ds
    from sapo_vl.algorithms import group_advantages, sapo_loss
    from sapo_vl.config import load_config
    from sapo_vl.batch_plan import batch_plan
    from sapo_vl.update import UpdateSettings, micro_batch_source, update_policy

    # AdamW with eps = 1 and lr = 1: its first step is −g/(|g| + 1) ≈ −g, linear in the gradient, so the weight
    # change compares the two gradients (a small eps would turn it into sign(g) and amplify rounding)
    cfg = load_config(None, ["deepspeed.zero_stage=0", "optimizer.lr=1.0", "optimizer.eps=1.0",
                             "optimizer.weight_decay=0.0", "optimizer.warmup_steps=0",
                             "rollout.group_size=3", "rollout.prompts_per_step=3", "algorithm.num_minibatches=1",
                             "deepspeed.micro_batch_size=9", "model.name_or_path=" + str(tiny_dense)])
    dist = ds.init_distributed()
    p = batch_plan(cfg, dist.world_size)
    proc = load_processor(str(tiny_dense))
    ro = make_rollout(proc, "mixed")
    ro.advantages, _ = group_advantages(torch.tensor([1.0, 0, 0, 0, 1, 1, 1, 0, 1]), G)
    results = []
    cut = max(int(ro.prompt_mask[b].sum()) for b in range(len(ro.records))) + 10  # rows of mostly one completion
    for packed, tokens in ((False, 120), (True, 120), ("auto", 120), ("auto", cut)):
        torch.manual_seed(0)
        engine = ds.create_engine(packing.PackedPolicyLogprobs(load_policy(str(tiny_dense))), cfg, micro_batch=p.micro,
                                  grad_accum=p.grad_accum, dist=dist, total_optimizer_steps=10)
        u = UpdateSettings(loss_fn=sapo_loss, loss_kwargs={"agg": "seq-mean-token-mean"}, mu=1, num_minibatches=1,
                           temperature=1.0, shared_prefix=packed, micro_rows=p.micro, micro_tokens=tokens,
                           touch_vision=False)
        ro.loss_mask = ro.completion_mask
        source = micro_batch_source(ro, engine.module.policy, u, dist.device)
        stats, skipped = update_policy(engine, ro, source, u, seed=0)
        if packed == "auto":  # the tally counts what the source chose, plan by plan
            plans = source.plan(list(range(ro.n)))  # one minibatch: the same plans as the update's
            chosen = [isinstance(source.batch(b), packing.PackedBatch) for b in plans]
            assert stats["packed_frac"] == sum(chosen) / len(chosen)
            # a whole group in one micro-batch runs packed; a lone completion ties, and a tie runs as a row
            assert (0 < stats["packed_frac"] < 1) if tokens == cut else stats["packed_frac"] == 1.0
        elif packed:
            assert stats["packed_frac"] == 1.0
            assert stats["micro_batches"] > 1 and 0 <= stats["padding_frac"] < 0.5
            assert stats["micro_batches"] > 1 and 0 <= stats["padding_frac"] < 0.5
        else:  # 9 rows in one micro-batch of 9
            assert stats["micro_batches"] == 1 and stats["packed_frac"] == 0.0
        results.append((stats, {k: v.detach().clone() for k, v in engine.module.policy.named_parameters()}))
    (s_row, w_row), *others = results
    start = load_policy(str(tiny_dense)).state_dict()
    d_row = torch.cat([(w_row[k] - start[k]).flatten() for k in w_row])
    assert d_row.norm() > 0
    for s_packed, w_packed in others:
        # (loss stats are token-weighted means of micro-batch shares, so they depend on the split; entropy does not)
        assert abs(s_packed["entropy_update"] - s_row["entropy_update"]) <= TOL * s_row["entropy_update"]
        d_packed = torch.cat([(w_packed[k] - start[k]).flatten() for k in w_row])
        print("weight-update gap", _rel(d_packed, d_row), "packed_frac", s_packed["packed_frac"])
        assert _rel(d_packed, d_row) <= TOL


# ---------------------------------------------------------------------------------------------------- 2 ranks
@pytest.mark.slow
@pytest.mark.parametrize("variant", ["dense", "moe"])
def test_two_ranks_zero3_packed_equals_row_path(tmp_path, tiny_dense, tiny_moe, variant):
    """torchrun, 2 CPU ranks (gloo), ZeRO-3: rank 0 holds image prompts, rank 1 text-only ones; full gradients
    (gathered across ranks) and log-probs of both paths through the engine agree."""
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", DS_ACCELERATOR="cpu")
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    out = tmp_path / "gaps.json"
    model = str(tiny_moe if variant == "moe" else tiny_dense)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_port()),
           str(REPO / "tests" / "packing_ranks.py"), model, str(out)]
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-6000:]
    gaps = json.loads(out.read_text())
    print(variant, gaps)
    assert gaps["grad_tensors"] > 0 and gaps["vision_grad_tensors"] > 0
    assert gaps["logp"] <= TOL and gaps["grad"] <= TOL, gaps


def _port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_config_keys_are_validated_with_their_names():
    from sapo_vl.config import ConfigError, load_config

    cfg = load_config(None, [])
    assert cfg.algorithm.shared_prefix == "auto" and cfg.deepspeed.micro_batch_tokens == 0
    for value, want in (("true", True), ("false", False), ("auto", "auto")):
        assert load_config(None, [f"algorithm.shared_prefix={value}"]).algorithm.shared_prefix == want
    with pytest.raises(ConfigError, match="algorithm.shared_prefix"):
        load_config(None, ["algorithm.shared_prefix=sometimes"])
    load_config(None, ["model.attn_implementation=flash_attention_2", "algorithm.shared_prefix=true"])  # no mask
    with pytest.raises(ConfigError, match="deepspeed.micro_batch_tokens"):
        load_config(None, ["deepspeed.micro_batch_tokens=-1"])


def test_default_budget_is_what_a_row_path_micro_batch_holds(tiny_dense):
    ro = make_rollout(load_processor(str(tiny_dense)), "mixed")
    table = packing.prompt_table(ro, load_policy(str(tiny_dense)))
    longest = max(table.prompt_len) + max(table.completion_len)
    assert packing.update_limits(table, 4, 0) == {"token_budget": 4 * longest}
    assert packing.update_limits(table, 4, 500) == {"token_budget": 500}

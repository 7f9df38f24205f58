"""Hand-computed tests of the sampler/trainer mismatch corrections (sapo_vl.algorithms.rollout_correction).

The inputs are built from ratios ρ = π_old / π_sample: log π_sample = −2 and log π_old = −2 + ln ρ, so every
expected weight is a plain number; threshold C = 2, so the MIS band is [0.5, 2]. No ratio sits on a boundary.
"""
import math

import pytest
import torch

from sapo_vl.algorithms import (
    LossInputs,
    corrected_advantages,
    grpo_loss,
    mismatch_stats,
    rollout_correction,
    sapo_loss,
)
from sapo_vl.losses import LOSSES

# ρ per token; 9.0 sits on padding (mask 0) and must be ignored everywhere
RATIOS = [[1.5, 4.0, 0.25], [1.0, 0.8, 9.0], [3.0, 1.0, 9.0]]
MASK = [[1, 1, 1], [1, 1, 0], [1, 1, 0]]


def _inputs(ratios=RATIOS, mask=MASK, dtype=torch.float64):
    rho = torch.tensor(ratios, dtype=dtype)
    sample = torch.full_like(rho, -2.0)
    return sample + rho.log(), sample, torch.tensor(mask, dtype=dtype)


def _t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def test_tis_token_by_hand():
    old, sample, mask = _inputs()
    w, m, stats = rollout_correction(old, sample, mask, mode="tis", level="token", threshold=2.0)
    # min(ρ, 2) per token: 4 → 2 and 3 → 2; padding → 0; the mask is unchanged
    assert torch.allclose(w, _t([[1.5, 2.0, 0.25], [1.0, 0.8, 0.0], [2.0, 1.0, 0.0]]))
    assert torch.equal(m, mask)
    # 7 response tokens: mean (1.5 + 2 + 0.25 + 1 + 0.8 + 2 + 1) / 7 = 8.55 / 7; two capped (4 and 3) → 2/7
    assert stats["is_weight_mean"] == pytest.approx(8.55 / 7)
    assert stats["is_weight_max"] == pytest.approx(2.0)
    assert stats["is_truncated_frac"] == pytest.approx(2 / 7)
    assert stats["is_masked_frac"] == 0.0


def test_mis_token_by_hand():
    old, sample, mask = _inputs()
    w, m, stats = rollout_correction(old, sample, mask, mode="mis", level="token", threshold=2.0)
    # band [0.5, 2]: 4, 0.25 and 3 leave it and are dropped; kept tokens keep their weight ρ
    assert torch.equal(m, _t([[1, 0, 0], [1, 1, 0], [0, 1, 0]]))
    assert torch.allclose(w, _t([[1.5, 0.0, 0.0], [1.0, 0.8, 0.0], [0.0, 1.0, 0.0]]))
    # kept: 1.5, 1, 0.8, 1 → mean 4.3 / 4 = 1.075, max 1.5; dropped 3 of 7 response tokens
    assert stats["is_weight_mean"] == pytest.approx(1.075)
    assert stats["is_weight_max"] == pytest.approx(1.5)
    assert stats["is_masked_frac"] == pytest.approx(3 / 7)
    assert stats["is_truncated_frac"] == 0.0


def test_sequence_level_by_hand():
    old, sample, mask = _inputs()
    # sequence ratios: 1.5·4·0.25 = 1.5; 1·0.8 = 0.8; 3·1 = 3 (padding excluded)
    w, m, stats = rollout_correction(old, sample, mask, mode="tis", level="sequence", threshold=2.0)
    assert torch.allclose(w, _t([[1.5, 1.5, 1.5], [0.8, 0.8, 0.0], [2.0, 2.0, 0.0]]))  # 3 capped at 2
    assert torch.equal(m, mask)
    # token mean over 7: (3·1.5 + 2·0.8 + 2·2) / 7 = 10.1 / 7; row 2's two tokens were capped → 2/7
    assert stats["is_weight_mean"] == pytest.approx(10.1 / 7)
    assert stats["is_truncated_frac"] == pytest.approx(2 / 7)

    w, m, stats = rollout_correction(old, sample, mask, mode="mis", level="sequence", threshold=2.0)
    # row 2 (ratio 3) leaves [0.5, 2]: the whole sequence is dropped, even its token with ρ = 1
    assert torch.equal(m, _t([[1, 1, 1], [1, 1, 0], [0, 0, 0]]))
    assert torch.allclose(w, _t([[1.5, 1.5, 1.5], [0.8, 0.8, 0.0], [0.0, 0.0, 0.0]]))
    # kept weights (4.5 + 1.6) / 5 = 1.22; 2 of 7 tokens dropped
    assert stats["is_weight_mean"] == pytest.approx(1.22)
    assert stats["is_masked_frac"] == pytest.approx(2 / 7)


def test_mode_none_and_mismatch_diagnostics_by_hand():
    old, sample, mask = _inputs()
    w, m, stats = rollout_correction(old, sample, mask, mode="none")
    assert torch.equal(w, mask) and torch.equal(m, mask)  # weight 1 on every response token
    # k3 per token: ρ − 1 − ln ρ over the 7 response tokens
    rhos = [1.5, 4.0, 0.25, 1.0, 0.8, 3.0, 1.0]
    k3 = sum(r - 1 - math.log(r) for r in rhos) / 7  # (0.0945 + 1.6137 + 0.6363 + 0 + 0.0231 + 0.9014 + 0) / 7
    assert stats["mismatch_kl"] == pytest.approx(k3) and stats["mismatch_kl"] == pytest.approx(0.467010, abs=1e-6)
    # k1 = mean(log π_sample − log π_old) = −ln(1.5·4·0.25·1·0.8·3·1) / 7 = −ln 3.6 / 7
    assert stats["mismatch_k1"] == pytest.approx(-math.log(3.6) / 7)
    assert stats["mismatch_abs_max"] == pytest.approx(math.log(4.0))
    assert stats == {**mismatch_stats(old, sample, mask), **{k: stats[k] for k in stats if k.startswith("is_")}}


def test_equal_logprobs_are_a_no_op():
    # what the "hf" engine gives up to float noise: every weight 1, nothing masked, KL 0
    old, sample, mask = _inputs(ratios=[[1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    for mode in ("tis", "mis"):
        for level in ("token", "sequence"):
            w, m, stats = rollout_correction(old, sample, mask, mode=mode, level=level, threshold=1.5)
            assert torch.allclose(w, mask) and torch.equal(m, mask)
            assert stats["mismatch_kl"] == pytest.approx(0.0, abs=1e-12) and stats["is_masked_frac"] == 0.0


def test_weights_are_detached_finite_and_in_the_inputs_dtype():
    old = torch.tensor([[0.0, -50.0], [-1.0, 0.0]], requires_grad=True)
    sample = torch.tensor([[-60.0, 0.0], [-1.0, -1.0]])
    mask = torch.ones(2, 2)
    for mode in ("tis", "mis"):
        for level in ("token", "sequence"):
            w, m, stats = rollout_correction(old, sample, mask, mode=mode, level=level, threshold=2.0)
            assert not w.requires_grad and w.dtype == old.dtype and m.dtype == mask.dtype
            assert torch.isfinite(w).all() and all(math.isfinite(v) for v in stats.values())
    # log-ratios of ±60 and −50 are clamped to ±20 before exp: a token at −50 gets weight e^−20, not 0·inf
    w, _, _ = rollout_correction(old, sample, mask, mode="tis", threshold=2.0)
    assert w[0, 1].item() == pytest.approx(math.exp(-20.0), rel=1e-5) and w[0, 0].item() == 2.0


def test_bad_arguments_name_the_problem():
    old, sample, mask = _inputs()
    with pytest.raises(ValueError, match="unknown rollout correction mode 'is'"):
        rollout_correction(old, sample, mask, mode="is")
    with pytest.raises(ValueError, match="unknown rollout correction level 'seq'"):
        rollout_correction(old, sample, mask, mode="tis", level="seq")
    with pytest.raises(ValueError, match="threshold must be > 1"):
        rollout_correction(old, sample, mask, mode="tis", threshold=1.0)
    with pytest.raises(ValueError, match="same"):
        rollout_correction(old, sample[:, :2], mask, mode="tis")


# ---------------------------------------------------------------------------------------------------- composition
def test_corrected_advantages_weight_sapo_by_hand():
    # on-policy (r = 1): SAPO's per-token loss is −f(1)·Â·w with f(1) = 2/τ
    logp = torch.full((2, 2), -1.0, dtype=torch.float64, requires_grad=True)
    old = logp.detach().clone()
    mask = torch.ones(2, 2, dtype=torch.float64)
    w = _t([[2.0, 0.5], [1.0, 1.5]])
    adv = corrected_advantages(_t([1.0, -1.0]), w)  # (B, T): [[2, 0.5], [−1, −1.5]]
    assert torch.equal(adv, _t([[2.0, 0.5], [-1.0, -1.5]]))
    loss, _ = sapo_loss(LossInputs(logp, old, adv, mask))
    # row 0 (τ = 1): −2·2, −2·0.5 → mean −2.5; row 1 (τ = 1.05): +(2/1.05)·1, ·1.5 → mean (2/1.05)·1.25
    assert loss.item() == pytest.approx((-2.5 + 2 / 1.05 * 1.25) / 2)  # = −0.0595238
    loss.backward()
    # gradient at r = 1 is the weighted policy gradient: −Â·w / (|y_i| · N_seqs) = −Â·w / 4
    assert torch.allclose(logp.grad, -_t([[2.0, 0.5], [-1.0, -1.5]]) / 4)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_weighting_advantages_weights_every_token_loss(name):
    # each token's loss, read through a one-token mask, scales by exactly its weight w > 0 (positive homogeneity)
    g = torch.Generator().manual_seed(0)
    old = -torch.rand(2, 3, generator=g, dtype=torch.float64) - 0.5
    logp = old + 0.6 * torch.randn(2, 3, generator=g, dtype=torch.float64)  # off-policy: clips and gates bind
    adv = _t([1.3, -0.7])
    w = _t([[0.3, 1.0, 2.0], [1.7, 0.05, 1.2]])
    kw = dict(dual_clip=3.0) if name == "grpo" else {}
    for i in range(2):
        for t in range(3):
            one = torch.zeros(2, 3, dtype=torch.float64)
            one[i, t] = 1.0
            plain, _ = LOSSES[name].fn(LossInputs(logp, old, adv, one), agg="token-mean", **kw)
            weighted, _ = LOSSES[name].fn(LossInputs(logp, old, corrected_advantages(adv, w), one), agg="token-mean", **kw)
            assert weighted.item() == pytest.approx(w[i, t].item() * plain.item(), rel=1e-12, abs=1e-15)


def test_mis_mask_removes_tokens_from_the_loss():
    old, sample, mask = _inputs()
    w, m, _ = rollout_correction(old, sample, mask, mode="mis", threshold=2.0)
    logp = old.clone().requires_grad_(True)
    loss, _ = grpo_loss(LossInputs(logp, old, corrected_advantages(_t([1.0, 1.0, 1.0]), w), m))
    loss.backward()
    # dropped tokens get no gradient; kept ones −w/4 (token-mean over the 4 kept tokens, r = 1 so no clip)
    assert torch.allclose(logp.grad, -w / 4)
    assert (logp.grad[m == 0] == 0).all()


# ---------------------------------------------------------------------------------------------------- in the update
@pytest.mark.parametrize("shared_prefix", [False, True])
def test_update_phase_weights_each_tokens_loss(tiny_dense, shared_prefix):
    """`Rollout.is_weights` reaches the loss on the row path and the packed path: weights 2 double the pg loss."""
    from PIL import Image

    from sapo_vl import ds
    from sapo_vl.batch_plan import batch_plan
    from sapo_vl.config import load_config
    from sapo_vl.data.record import Record, user_prompt
    from sapo_vl.logprobs import PolicyLogprobs
    from sapo_vl.models.loading import load_policy, load_processor
    from sapo_vl.packing import PackedPolicyLogprobs
    from sapo_vl.rollout import Rollout
    from sapo_vl.engines.base import SamplingSettings
    from sapo_vl.sampling import sample_completions
    from sapo_vl.update import UpdateSettings, micro_batch_source, rollout_logprobs, update_policy

    cfg = load_config(None, ["deepspeed.zero_stage=0", "optimizer.lr=1e-12", "optimizer.warmup_steps=0",
                             "rollout.group_size=4", "rollout.prompts_per_step=2", "deepspeed.micro_batch_size=4",
                             "algorithm.updates_per_rollout=1", "model.name_or_path=" + str(tiny_dense)])
    dist = ds.init_distributed()
    plan = batch_plan(cfg, dist.world_size)
    policy = load_policy(str(tiny_dense))
    module = PackedPolicyLogprobs(policy) if shared_prefix else PolicyLogprobs(policy)
    engine = ds.create_engine(module, cfg, micro_batch=plan.micro, grad_accum=plan.grad_accum, dist=dist,
                              total_optimizer_steps=10)
    proc = load_processor(str(tiny_dense))
    recs = [Record(id=str(i), prompt=user_prompt("Dominant color?"), answer="red", images=[b"-"]) for i in range(2)]
    imgs = [[Image.new("RGB", (64, 64), c)] for c in ((200, 10, 10), (10, 10, 200))]
    s = sample_completions(policy, proc, [r.prompt for r in recs], imgs,
                           SamplingSettings(group_size=4, max_new_tokens=5),
                           generator=torch.Generator().manual_seed(3))
    ro = Rollout.from_samples(recs, s)
    ro.advantages = torch.tensor([1.0, 0.3, 0.5, -0.2, 1.0, 0.7, -1.0, 0.4])  # Σ ≠ 0
    u = UpdateSettings(loss_fn=LOSSES["grpo"].fn, loss_kwargs={"agg": "token-mean"}, mu=1, num_minibatches=1,
                       temperature=1.0, shared_prefix=shared_prefix, micro_rows=plan.micro, micro_tokens=0,
                       touch_vision=False)
    source = micro_batch_source(ro, policy, u, dist.device)
    ro.old_logprobs, _ = rollout_logprobs(engine, ro, source, u)
    ro.loss_mask = ro.completion_mask
    plain, _ = update_policy(engine, ro, source, u, seed=0)
    ro.is_weights = 2.0 * ro.completion_mask.float()
    weighted, _ = update_policy(engine, ro, source, u, seed=0)
    # on policy (r = 1), token-mean GRPO: pg = −Σ w·Â / N_tokens, so weights 2 give twice the plain value
    assert plain["pg_loss"] != 0.0
    assert weighted["pg_loss"] == pytest.approx(2.0 * plain["pg_loss"], rel=1e-5)

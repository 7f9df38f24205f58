"""Hand-computed tests of the algorithm core (sapo_vl.algorithms), with the arithmetic in comments."""
import math

import pytest
import torch

from sapo_vl.losses import LOSSES
from sapo_vl.algorithms import (
    LossInputs,
    AGG_MODES,
    aggregate,
    grpo_loss,
    group_advantages,
    gspo_loss,
    kl_penalty,
    overlong_penalty,
    sapo_gate,
    sapo_loss,
    sapo_weight,
)

LN2 = math.log(2.0)
SIG1 = 1.0 / (1.0 + math.exp(-1.0))  # σ(1) = 0.7310585786


def _inputs(delta, mask, adv, dtype=torch.float64):
    """logprobs = old + delta, so r = exp(delta)."""
    delta = torch.tensor(delta, dtype=dtype)
    old = torch.full_like(delta, -1.0)
    logp = (old + delta).clone().requires_grad_(True)
    return logp, old, torch.tensor(adv, dtype=dtype), torch.tensor(mask, dtype=dtype)


# ---------------------------------------------------------------------------------------------------- aggregation
def test_aggregate_modes_by_hand():
    loss = torch.tensor([[1.0, 2.0, 3.0], [4.0, 9.0, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    # token-mean: (1 + 2 + 3 + 4) / 4 tokens = 2.5 (masked 9s ignored)
    assert aggregate(loss, mask, "token-mean").item() == pytest.approx(2.5)
    # seq-mean-token-mean: mean(6/3, 4/1) = (2 + 4) / 2 = 3
    assert aggregate(loss, mask, "seq-mean-token-mean").item() == pytest.approx(3.0)
    # seq-mean-token-sum-norm, max_len 4: mean(6/4, 4/4) = (1.5 + 1) / 2 = 1.25
    assert aggregate(loss, mask, "seq-mean-token-sum-norm", max_len=4).item() == pytest.approx(1.25)
    # global normalisers replace the local counts: 10 / 8 tokens; (2 + 4) / 4 sequences
    assert aggregate(loss, mask, "token-mean", global_tokens=8).item() == pytest.approx(1.25)
    assert aggregate(loss, mask, "seq-mean-token-mean", global_seqs=4).item() == pytest.approx(1.5)


def test_aggregate_skips_empty_rows_and_rejects_bad_mode():
    loss = torch.tensor([[2.0, 2.0], [7.0, 7.0]])
    mask = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    # the empty row is not a sequence: mean over 1 sequence = 2, not (2 + 0) / 2
    assert aggregate(loss, mask, "seq-mean-token-mean").item() == pytest.approx(2.0)
    with pytest.raises(ValueError, match="unknown loss aggregation 'tokenmean'"):
        aggregate(loss, mask, "tokenmean")
    with pytest.raises(ValueError, match="max_len"):
        aggregate(loss, mask, "seq-mean-token-sum-norm")


# ---------------------------------------------------------------------------------------------------- SAPO
def test_sapo_loss_by_hand():
    # row 0: Â = +1 (τ = 1), ratios [1, 2]; row 1: Â = −1 (τ = 1.05), ratio [1], second token masked
    logp, old, adv, mask = _inputs([[0.0, LN2], [0.0, 5.0]], [[1, 1], [1, 0]], [1.0, -1.0])
    # f(1) = 4σ(0)/1 = 2; f(2) = 4σ(1) = 2.9242343; row 0 token losses −2, −2.9242343 → seq mean −2.4621172
    # row 1: f(1) = (4/1.05)·0.5 = 1.9047619; loss = −f·Â = +1.9047619
    row0 = -(2.0 + 4 * SIG1) / 2
    row1 = 2.0 / 1.05
    loss, stats = sapo_loss(LossInputs(logp, old, adv, mask))
    assert loss.item() == pytest.approx((row0 + row1) / 2, abs=1e-9)  # = −0.2786777
    loss_tok, _ = sapo_loss(LossInputs(logp, old, adv, mask), agg="token-mean")
    assert loss_tok.item() == pytest.approx((-2.0 - 4 * SIG1 + row1) / 3, abs=1e-9)  # = −1.0064908
    # ratio stats over the 3 response tokens [1, 2, 1]
    assert stats["ratio_mean"] == pytest.approx(4 / 3)
    assert stats["ratio_max"] == pytest.approx(2.0) and stats["ratio_min"] == pytest.approx(1.0)
    # gate weights: sech²(0) = 1, sech²(0.5) = 0.7864477, 1 → mean 0.9288159; none below 0.5
    assert stats["gate_weight_mean"] == pytest.approx((2 + 1 / math.cosh(0.5) ** 2) / 3)
    assert stats["soft_suppressed_frac"] == 0.0
    # per-sequence ratio variance: row 0 var([1, 2]) = 0.25, row 1 var([1]) = 0 → mean 0.125
    assert stats["ratio_seq_var"] == pytest.approx(0.125)


def test_sapo_gate_derivative_is_sech2():
    for tau in (0.5, 1.0, 1.05, 4.0):
        r = torch.linspace(0.0, 3.0, 61, dtype=torch.float64, requires_grad=True)
        (grad,) = torch.autograd.grad(sapo_gate(r, tau).sum(), r)
        expected = 1.0 / torch.cosh(tau * (r.detach() - 1.0) / 2.0) ** 2  # sech²(τ(r−1)/2)
        torch.testing.assert_close(grad, expected)
        torch.testing.assert_close(sapo_weight(r.detach(), tau), expected)
    # at r = 1 the weight is exactly 1; the gate value is 2/τ
    assert sapo_weight(torch.tensor(1.0), 1.05).item() == pytest.approx(1.0)
    assert sapo_gate(torch.tensor(1.0), 1.05).item() == pytest.approx(2 / 1.05)


@pytest.mark.parametrize("agg", AGG_MODES)
def test_sapo_on_policy_gradient_equals_policy_gradient(agg):
    torch.manual_seed(0)
    B, T = 6, 5
    logp0 = torch.randn(B, T, dtype=torch.float64) - 2.0
    mask = (torch.rand(B, T) > 0.3).double()
    mask[:, 0] = 1.0
    adv = torch.randn(B, dtype=torch.float64)
    logp = logp0.clone().requires_grad_(True)
    loss, stats = sapo_loss(LossInputs(logp, logp0, adv, mask), agg=agg, max_len=T)  # old = current → r = 1
    (g_sapo,) = torch.autograd.grad(loss, logp)
    logp2 = logp0.clone().requires_grad_(True)
    pg = aggregate(-adv[:, None] * logp2, mask, agg, max_len=T)  # plain REINFORCE surrogate −Â·log π
    (g_pg,) = torch.autograd.grad(pg, logp2)
    torch.testing.assert_close(g_sapo, g_pg)
    assert stats["gate_weight_mean"] == pytest.approx(1.0)
    # GRPO on-policy is the same step too (no clipping at r = 1)
    logp3 = logp0.clone().requires_grad_(True)
    (g_grpo,) = torch.autograd.grad(grpo_loss(LossInputs(logp3, logp0, adv, mask), agg=agg, max_len=T)[0], logp3)
    torch.testing.assert_close(g_grpo, g_pg)


def test_sapo_off_policy_gradient_is_weighted_by_gate():
    # one token, Â = +1, r = e^{0.8}: d loss / d logp = −sech²(τ(r−1)/2)·r (coefficient on ∇log π is w(r)·r)
    logp, old, adv, mask = _inputs([[0.8]], [[1]], [1.0])
    loss, _ = sapo_loss(LossInputs(logp, old, adv, mask))
    (g,) = torch.autograd.grad(loss, logp)
    r = math.exp(0.8)
    assert g.item() == pytest.approx(-r / math.cosh((r - 1) / 2) ** 2)


# ---------------------------------------------------------------------------------------------------- GSPO
def test_gspo_loss_by_hand():
    # row 0: token log-ratios [ln2, 0] → s = exp(ln2 / 2) = √2 = 1.41421; Â = +1 → clipped at 1 + 4e-4
    # row 1: one token, log-ratio 0 → s = 1, Â = −1 → loss = +1
    logp, old, adv, mask = _inputs([[LN2, 0.0], [0.0, 3.0]], [[1, 1], [1, 0]], [1.0, -1.0])
    loss, stats = gspo_loss(LossInputs(logp, old, adv, mask))
    # seq-mean-token-mean: (−1.0004 + 1) / 2 = −0.0002
    assert loss.item() == pytest.approx((-1.0004 + 1.0) / 2)
    assert stats["seq_ratio_mean"] == pytest.approx((math.sqrt(2) + 1) / 2)
    assert stats["clip_frac_high"] == pytest.approx(2 / 3) and stats["clip_frac_low"] == 0.0
    (g,) = torch.autograd.grad(loss, logp)
    # clipped row 0 has no gradient; row 1's token: −Â·s / |y| / N = 1·1 / 1 / 2 = 0.5
    torch.testing.assert_close(g, torch.tensor([[0.0, 0.0], [0.5, 0.0]], dtype=torch.float64))


def test_gspo_gradient_is_sequence_ratio_times_grad_logp():
    # unclipped (wide ε): token t of row i gets −Â_i·s_i / |y_i| / N
    logp, old, adv, mask = _inputs([[0.2, -0.1, 0.3], [0.05, 0.0, 0.0]], [[1, 1, 1], [1, 1, 0]], [0.5, -2.0])
    loss, _ = gspo_loss(LossInputs(logp, old, adv, mask), eps_low=10.0, eps_high=10.0)
    (g,) = torch.autograd.grad(loss, logp)
    s0, s1 = math.exp(0.4 / 3), math.exp(0.05 / 2)
    expected = torch.tensor(
        [[-0.5 * s0 / 3 / 2] * 3, [2.0 * s1 / 2 / 2, 2.0 * s1 / 2 / 2, 0.0]], dtype=torch.float64
    )
    torch.testing.assert_close(g, expected)


# ---------------------------------------------------------------------------------------------------- GRPO
def test_grpo_loss_by_hand():
    # ratios [[1.5, 0.5], [0.7, 1.0]], Â = [+1, −1], ε = (0.2, 0.28)
    d = [[math.log(1.5), math.log(0.5)], [math.log(0.7), 0.0]]
    logp, old, adv, mask = _inputs(d, [[1, 1], [1, 1]], [1.0, -1.0])
    loss, stats = grpo_loss(LossInputs(logp, old, adv, mask))
    # r=1.5, Â=+1: max(−1.5, −1.28) = −1.28 (clipped high); r=0.5, Â=+1: max(−0.5, −0.8) = −0.5
    # r=0.7, Â=−1: max(0.7, 0.8) = 0.8 (clipped low); r=1.0, Â=−1: 1.0
    # token-mean: (−1.28 − 0.5 + 0.8 + 1.0) / 4 = 0.005
    assert loss.item() == pytest.approx(0.005)
    assert stats["clip_frac_high"] == pytest.approx(0.25) and stats["clip_frac_low"] == pytest.approx(0.25)
    (g,) = torch.autograd.grad(loss, logp)
    # only unclipped tokens have gradient −Â·r / 4: r=0.5 → −0.125; r=1.0, Â=−1 → +0.25
    torch.testing.assert_close(g, torch.tensor([[0.0, -0.125], [0.0, 0.25]], dtype=torch.float64))


def test_grpo_dual_clip_by_hand():
    # Â = −1, r = 5: plain clipped loss = max(5, 0.8) = 5; dual clip c = 3 caps it at 3·|Â| = 3
    logp, old, adv, mask = _inputs([[math.log(5.0), 0.0]], [[1, 1]], [-1.0])
    loss, stats = grpo_loss(LossInputs(logp, old, adv, mask), dual_clip=3.0)
    assert loss.item() == pytest.approx((3.0 + 1.0) / 2)
    assert stats["dual_clip_frac"] == pytest.approx(0.5)
    plain, _ = grpo_loss(LossInputs(logp, old, adv, mask))
    assert plain.item() == pytest.approx((5.0 + 1.0) / 2)
    with pytest.raises(ValueError, match="dual_clip must be > 1"):
        grpo_loss(LossInputs(logp, old, adv, mask), dual_clip=0.5)


# ---------------------------------------------------------------------------------------------------- all losses
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_gradcheck_float64(name):
    torch.manual_seed(1)
    B, T = 3, 4
    old = torch.randn(B, T, dtype=torch.float64) - 1.0
    # log-ratios in ±0.05 stay clear of GSPO's ±4e-4 kinks only if scaled: keep GSPO's ε wide here
    delta = torch.tensor([[0.1, -0.15, 0.05, 0.2], [-0.1, 0.12, 0.0, 0.3], [0.07, -0.04, 0.09, 0.0]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0]], dtype=torch.float64)
    adv = torch.tensor([0.7, -1.3, 0.4], dtype=torch.float64)
    kw = {"eps_low": 0.5, "eps_high": 0.5} if name != "sapo" else {}

    def f(logp):
        return LOSSES[name].fn(LossInputs(logp, old, adv, mask), **kw)[0]

    assert torch.autograd.gradcheck(f, ((old + delta).requires_grad_(True),))


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("agg", AGG_MODES)
def test_no_nan_at_extreme_log_ratios_and_empty_rows(name, agg):
    d = [[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4], [0.0, 0.0, 0.0]]
    logp, old, adv, mask = _inputs(d, [[1, 1, 1], [1, 1, 0], [0, 0, 0]], [1.0, -1.0, 2.0], dtype=torch.float32)
    loss, stats = LOSSES[name].fn(LossInputs(logp, old, adv, mask), agg=agg, max_len=3)
    (g,) = torch.autograd.grad(loss, logp)
    assert torch.isfinite(loss) and torch.isfinite(g).all()
    assert all(math.isfinite(v) for v in stats.values()), stats
    # a batch whose mask is all zeros gives a zero loss, not NaN
    loss0, _ = LOSSES[name].fn(LossInputs(logp, old, adv, torch.zeros_like(mask)), agg=agg, max_len=3)
    assert loss0.item() == 0.0


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("agg", AGG_MODES)
def test_micro_batch_and_rank_invariance(name, agg):
    torch.manual_seed(2)
    B, T = 8, 6
    old = torch.randn(B, T, dtype=torch.float64) - 1.0
    logp0 = old + 0.3 * torch.randn(B, T, dtype=torch.float64)
    lengths = torch.tensor([6, 1, 3, 5, 2, 6, 4, 3])
    mask = (torch.arange(T)[None, :] < lengths[:, None]).double()
    adv = torch.randn(B, dtype=torch.float64)
    kw = dict(agg=agg, max_len=T)
    full = logp0.clone().requires_grad_(True)
    LOSSES[name].fn(LossInputs(full, old, adv, mask), **kw)[0].backward()
    n_tok, n_seq = float(mask.sum()), float((mask.sum(-1) > 0).sum())
    # 4 micro-batches of 2, with the global normalisers: summed gradients equal the full-batch gradient
    micro = logp0.clone().requires_grad_(True)
    for s in range(0, B, 2):
        sl = slice(s, s + 2)
        loss, _ = LOSSES[name].fn(LossInputs(micro[sl], old[sl], adv[sl], mask[sl], global_tokens=n_tok, global_seqs=n_seq), **kw)
        loss.backward()
    torch.testing.assert_close(micro.grad, full.grad)
    # 2 ranks × 2 micro-batches: each rank scales by world_size, the all-reduce averages → the same gradient
    world = 2
    rank_grads = []
    for r in range(world):
        x = logp0.clone().requires_grad_(True)
        for s in range(r * 4, r * 4 + 4, 2):
            sl = slice(s, s + 2)
            loss, _ = LOSSES[name].fn(LossInputs(x[sl], old[sl], adv[sl], mask[sl], global_tokens=n_tok, global_seqs=n_seq), **kw)
            (loss * world).backward()
        rank_grads.append(x.grad)
    torch.testing.assert_close(sum(rank_grads) / world, full.grad)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_shape_mismatch_errors_name_the_argument(name):
    logp = torch.zeros(2, 3, requires_grad=True)
    with pytest.raises(ValueError, match=r"old_logprobs has shape \(2, 4\)"):
        LOSSES[name].fn(LossInputs(logp, torch.zeros(2, 4), torch.zeros(2), torch.ones(2, 3)))
    with pytest.raises(ValueError, match=r"mask has shape \(3, 3\)"):
        LOSSES[name].fn(LossInputs(logp, torch.zeros(2, 3), torch.zeros(2), torch.ones(3, 3)))
    with pytest.raises(ValueError, match=r"advantages has shape \(5,\)"):
        LOSSES[name].fn(LossInputs(logp, torch.zeros(2, 3), torch.zeros(5), torch.ones(2, 3)))
    with pytest.raises(ValueError, match=r"logprobs must be \(B, T\)"):
        LOSSES[name].fn(LossInputs(torch.zeros(6), torch.zeros(6), torch.zeros(6), torch.ones(6)))


def test_token_level_advantages_accepted():
    logp, old, _, mask = _inputs([[0.0, 0.0]], [[1, 1]], [0.0])
    adv_bt = torch.tensor([[1.0, -1.0]], dtype=torch.float64)
    loss, _ = sapo_loss(LossInputs(logp, old, adv_bt, mask))
    # token losses −2·1 and +(2/1.05)·1 → mean (−2 + 1.9047619) / 2
    assert loss.item() == pytest.approx((-2.0 + 2 / 1.05) / 2)


def test_kl_estimators_and_beta():
    # d = log π − log π_ref = ln 2: k1 = 0.6931472; k3 = e^{−d} + d − 1 = 0.5 + 0.6931472 − 1 = 0.1931472
    logp = torch.tensor([[LN2]], dtype=torch.float64)
    ref = torch.zeros(1, 1, dtype=torch.float64)
    assert kl_penalty(logp, ref, "k1").item() == pytest.approx(LN2)
    assert kl_penalty(logp, ref, "k3").item() == pytest.approx(0.5 + LN2 - 1)
    with pytest.raises(ValueError, match="unknown KL estimator"):
        kl_penalty(logp, ref, "k2")
    lp = logp.clone().requires_grad_(True)
    mask = torch.ones(1, 1, dtype=torch.float64)
    adv = torch.zeros(1, dtype=torch.float64)
    loss, stats = sapo_loss(LossInputs(lp, logp, adv, mask, ref_logprobs=ref), kl_beta=0.1)
    assert loss.item() == pytest.approx(0.1 * (0.5 + LN2 - 1))  # Â = 0: only β·k3 remains
    assert stats["kl"] == pytest.approx(0.5 + LN2 - 1)


# ---------------------------------------------------------------------------------------------------- advantages
def test_group_advantages_by_hand():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0])
    adv, zero_frac = group_advantages(rewards, 4)
    # group 0: mean 0.25, unbiased std = √((0.75² + 3·0.25²)/3) = √0.25 = 0.5 → [1.5, −0.5, −0.5, −0.5]
    # group 1: all equal → zeros, counted as a zero-std group
    torch.testing.assert_close(adv, torch.tensor([1.5, -0.5, -0.5, -0.5, 0, 0, 0, 0]), atol=1e-5, rtol=0)
    assert zero_frac == 0.5
    adv_none, _ = group_advantages(rewards, 4, scale="none")  # Dr.GRPO: R − mean only
    torch.testing.assert_close(adv_none, torch.tensor([0.75, -0.25, -0.25, -0.25, 0, 0, 0, 0]))
    # batch: mean 0.625, Σ(dev²) = 5·0.375² + 3·0.625² = 1.875, /7 → std 0.5175492
    # → rewarded rows (1 − 0.625)/0.5175492 = 0.7245688, the others −0.625/0.5175492 = −1.2076147
    adv_b, _ = group_advantages(rewards, 4, scale="batch")
    torch.testing.assert_close(adv_b, torch.tensor([0.7245688, -1.2076147, -1.2076147, -1.2076147] + [0.7245688] * 4),
                               atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="do not split into groups"):
        group_advantages(rewards, 3)
    with pytest.raises(ValueError, match="unknown advantage scale"):
        group_advantages(rewards, 4, scale="global")


def test_overlong_penalty_by_hand():
    # max_len 10, buffer 4: no penalty up to 6; length 8 → −(2/4) = −0.5; length 10 → −1
    pen = overlong_penalty(torch.tensor([5, 6, 8, 10]), max_len=10, buffer=4)
    torch.testing.assert_close(pen, torch.tensor([0.0, 0.0, -0.5, -1.0]))


def test_every_registered_loss_has_a_config_section_a_doc_entry_and_a_hand_computed_test():
    import dataclasses
    import inspect
    from pathlib import Path

    from sapo_vl.config import AlgorithmConfig, field_docs
    from sapo_vl.losses import LOSSES

    doc = (Path(__file__).resolve().parents[1] / "docs" / "algorithm.md").read_text()
    sections = {f.name: f for f in dataclasses.fields(AlgorithmConfig)}
    for name, entry in LOSSES.items():
        assert entry.fn.__doc__ and name.upper() in entry.fn.__doc__
        assert f"\n## {name}\n" in doc, f"docs/algorithm.md has no '## {name}' section"
        assert globals().get(f"test_{name}_loss_by_hand"), f"no test_{name}_loss_by_hand"
        assert name in sections and isinstance(AlgorithmConfig().__getattribute__(name), entry.config)
        assert field_docs(AlgorithmConfig)[name]
        kwargs = inspect.signature(entry.fn).parameters
        for f in dataclasses.fields(entry.config):  # the section's keys are the function's keyword arguments
            assert f.name in kwargs and kwargs[f.name].kind is inspect.Parameter.KEYWORD_ONLY, (name, f.name)
            assert kwargs[f.name].default == f.default, (name, f.name)
        assert entry.default_agg in AGG_MODES

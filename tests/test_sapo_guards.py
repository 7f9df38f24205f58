"""The paper's per-step diagnostics (hand-computed), how they aggregate over micro-batches, and guards against
mistakes other SAPO implementations shipped: temperatures that never reach the loss, a gate not multiplied by
the advantage, a configuration that swaps the SAPO loss for another."""
import dataclasses
import math

import pytest
import torch

from sapo_vl.algorithms import (
    LossInputs,
    gate_weight_stats,
    logratio_seq_var,
    ratio_deviation_fractions,
    regime_stats,
    sapo_loss,
    sapo_weight,
    sign_case_fractions,
)
from sapo_vl.losses import COMMON_STATS, LOSS_VALUES, LOSSES, summary_stats
from sapo_vl.metrics import UpdateStats


def _t(x):
    return torch.tensor(x, dtype=torch.float64)


# ---------------------------------------------------------------------------------------------------- diagnostics
def test_logratio_seq_var_by_hand():
    # row 0: log r = [0.2, −0.2, 0.0] → mean 0, var = (0.04 + 0.04 + 0) / 3 = 0.0266667
    # row 1: [0.5, 0.1, (masked 9.0)] → mean 0.3, var = (0.04 + 0.04) / 2 = 0.04
    # row 2: one token → 0; row 3: empty → 0 (and not counted by regime_stats)
    lr = _t([[0.2, -0.2, 0.0], [0.5, 0.1, 9.0], [0.7, 0.0, 0.0], [1.0, 1.0, 1.0]])
    mask = _t([[1, 1, 1], [1, 1, 0], [1, 0, 0], [0, 0, 0]])
    torch.testing.assert_close(logratio_seq_var(lr, mask), _t([0.08 / 3, 0.04, 0.0, 0.0]))
    adv = _t([1.0, -1.0, 1.0, 1.0])
    # the mean over the three sequences with tokens: (0.0266667 + 0.04 + 0) / 3 = 0.0222222
    assert regime_stats(lr, adv, mask)["logratio_seq_var"] == pytest.approx((0.08 / 3 + 0.04) / 3)


def test_sign_cases_by_hand():
    # 6 response tokens: (Â, log r) = (+,+) (+,−) (+,0) (−,+) (−,−) (0,+); the masked one is (+,+)
    lr = _t([[0.1, -0.1, 0.0], [0.3, -0.3, 0.0], [0.2, 0.4, 0.0]])
    mask = _t([[1, 1, 1], [1, 1, 0], [1, 0, 0]])
    adv = _t([[1.0, 1.0, 1.0], [-2.0, -2.0, -2.0], [0.0, 1.0, 1.0]])
    got = sign_case_fractions(lr, adv, mask)
    # r = 1 (log r = 0) and Â = 0 are in no case: 1/6 each for the four cases, 2/6 nowhere
    assert got == pytest.approx({"frac_pos_r_gt1": 1 / 6, "frac_pos_r_lt1": 1 / 6, "frac_neg_r_gt1": 1 / 6,
                                 "frac_neg_r_lt1": 1 / 6})
    # (B,) advantages broadcast over tokens; a log-ratio within the on-policy tolerance counts as r = 1
    got = sign_case_fractions(_t([[1e-9, 0.5]]), _t([-1.0]), _t([[1, 1]]))
    assert got["frac_neg_r_gt1"] == 0.5 and sum(got.values()) == 0.5


def test_ratio_deviation_fractions_by_hand():
    # r = [1.1, 0.75, 1.3, 1.8, 0.4]: |r − 1| = [0.1, 0.25, 0.3, 0.8, 0.6] → > 0.2: 4 of 5; > 0.5: 2 of 5
    r = _t([[1.1, 0.75, 1.3, 1.8, 0.4]])
    got = ratio_deviation_fractions(torch.log(r), torch.ones(1, 5))
    assert got == pytest.approx({"ratio_dev_gt02_frac": 0.8, "ratio_dev_gt05_frac": 0.4})


def test_gate_weight_stats_by_hand():
    # τ = 1: w(r) = sech²((r − 1)/2). r = 1 → 1; r = 1.2 → sech²(0.1) = 0.990066 (not < 0.99);
    # r = 1.7 → sech²(0.35) = 0.891193; r = 3 → sech²(1) = 0.419974
    r = _t([[1.0, 1.2, 1.7, 3.0]])
    w = sapo_weight(r, 1.0)
    expected = [1.0, 1 / math.cosh(0.1) ** 2, 1 / math.cosh(0.35) ** 2, 1 / math.cosh(1.0) ** 2]
    torch.testing.assert_close(w, _t([expected]))
    got = gate_weight_stats(w, torch.ones(1, 4))
    assert got["gate_weight_mean"] == pytest.approx(sum(expected) / 4)
    assert got["gate_weight_lt099_frac"] == 0.5  # 0.891, 0.420
    assert got["gate_weight_lt09_frac"] == 0.5 and got["soft_suppressed_frac"] == 0.25
    assert got["gate_weight_token_min"] == pytest.approx(expected[3])


def test_each_loss_returns_exactly_its_declared_stats():
    """The registry's `stats` (what `compare` summarises) is what the functions return, no more, no less."""
    torch.manual_seed(0)
    logp, old = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    mask, adv = torch.ones(3, 4), _t([1.0, -1.0, 0.5])
    for name, entry in LOSSES.items():
        extra = {"dual_clip": 3.0} if name == "grpo" else {}
        _, stats = entry.fn(LossInputs(logp, old, adv, mask, ref_logprobs=old), kl_beta=0.1, **extra)
        assert set(stats) == set(COMMON_STATS) | set(entry.stats) | set(LOSS_VALUES), name
    assert summary_stats()[: len(COMMON_STATS)] == list(COMMON_STATS)
    assert len(summary_stats()) == len(set(summary_stats()))


def test_token_diagnostics_aggregate_exactly_over_micro_batches():
    """UpdateStats (token-weighted means, extremes) gives the same fractions whatever the micro-batch split."""
    torch.manual_seed(1)
    B, T = 8, 6
    logp = torch.randn(B, T, dtype=torch.float64) * 0.3
    old = torch.zeros(B, T, dtype=torch.float64)
    mask = (torch.rand(B, T) > 0.3).double()
    adv = torch.randn(B, dtype=torch.float64)
    _, full = sapo_loss(LossInputs(logp, old, adv, mask))
    acc = UpdateStats()
    for rows in ([0, 1, 2], [3], [4, 5, 6, 7]):
        _, s = sapo_loss(LossInputs(logp[rows], old[rows], adv[rows], mask[rows]))
        acc.add(s, float(mask[rows].sum()), float((mask[rows].sum(-1) > 0).sum()))
    got = acc.result(1)
    token_fracs = [k for k in COMMON_STATS + LOSSES["sapo"].stats if k.endswith("_frac") or k.startswith("frac_")]
    assert len(token_fracs) == 9
    for k in token_fracs + ["gate_weight_mean", "gate_weight_token_min", "ratio_max", "ratio_min"]:
        assert got[k] == pytest.approx(full[k], abs=1e-7), k  # float32 fractions


# ---------------------------------------------------------------------------------------------------- guards
def _one_token(log_r: float, adv: float):
    logp = torch.tensor([[log_r]], dtype=torch.float64, requires_grad=True)
    return logp, torch.zeros(1, 1, dtype=torch.float64), _t([adv]), torch.ones(1, 1, dtype=torch.float64)


@pytest.mark.parametrize("adv", [1.0, -1.0])
def test_each_temperature_changes_loss_and_gradient_as_the_formula_says(adv):
    """τ_pos acts on Â > 0 tokens only and τ_neg on Â < 0 only: loss −Â·(4/τ)σ(τ(r−1)), and its derivative in
    log π is −Â·sech²(τ(r−1)/2)·r."""
    r = math.exp(0.4)
    for tau_pos, tau_neg in ((1.0, 1.05), (2.0, 1.05), (1.0, 3.0), (0.5, 0.25)):
        logp, old, a, mask = _one_token(0.4, adv)
        loss, _ = sapo_loss(LossInputs(logp, old, a, mask), tau_pos=tau_pos, tau_neg=tau_neg)
        (g,) = torch.autograd.grad(loss, logp)
        tau = tau_pos if adv > 0 else tau_neg
        sig = 1 / (1 + math.exp(-tau * (r - 1)))
        assert loss.item() == pytest.approx(-adv * 4 / tau * sig, rel=1e-12)
        assert g.item() == pytest.approx(-adv * r / math.cosh(tau * (r - 1) / 2) ** 2, rel=1e-12)
    # and the temperature of the other sign changes nothing
    for a_val, same in ((1.0, dict(tau_pos=1.0)), (-1.0, dict(tau_neg=1.05))):
        vals = [sapo_loss(LossInputs(*_one_token(0.4, a_val)), **same, **other)[0].item()
                for other in ([dict(tau_neg=0.7), dict(tau_neg=4.0)] if a_val > 0 else
                              [dict(tau_pos=0.7), dict(tau_pos=4.0)])]
        assert vals[0] == vals[1]


def test_the_advantage_multiplies_the_gate():
    """Per token the loss is −Â·f(r): linear in Â (scale Â, scale loss and gradient), zero gradient at Â = 0."""
    def loss_grad(adv, log_r=0.3):
        logp, old, a, mask = _one_token(log_r, adv)
        loss, _ = sapo_loss(LossInputs(logp, old, a, mask), tau_pos=1.0, tau_neg=1.0)
        return loss.item(), torch.autograd.grad(loss, logp)[0].item()

    l1, g1 = loss_grad(1.0)
    for c in (0.5, 2.0, 7.0):
        lc, gc = loss_grad(c)
        assert lc == pytest.approx(c * l1, rel=1e-12) and gc == pytest.approx(c * g1, rel=1e-12)
    # τ_pos = τ_neg: the gate is the same for both signs, so −Â gives exactly the negated loss and gradient
    lm, gm = loss_grad(-1.0)
    assert lm == pytest.approx(-l1, rel=1e-12) and gm == pytest.approx(-g1, rel=1e-12)
    assert loss_grad(0.0) == (0.0, 0.0)
    # f(e^0.3) = 4σ(e^0.3 − 1) with Â = 1: the loss is −f, not −f·r or −r
    assert l1 == pytest.approx(-4 / (1 + math.exp(-(math.exp(0.3) - 1))), rel=1e-12)


SWITCHES = [
    [],
    ["algorithm.shared_prefix=false"],
    ["algorithm.rollout_correction.mode=tis", "algorithm.updates_per_rollout=1", "algorithm.num_minibatches=1"],
    ["algorithm.dynamic_sampling=true", "algorithm.kl_beta=0.1", "algorithm.loss_agg=token-mean"],
]


@pytest.mark.parametrize("switches", SWITCHES, ids=["packed", "rows", "tis-on-policy", "dapo-kl"])
def test_no_configuration_replaces_the_sapo_loss(tmp_path, tiny_dense, monkeypatch, switches):
    """A real training step with algorithm.name=sapo under each switch: every micro-batch loss is SAPO's, with the
    configured temperatures; the other registered losses are never called."""
    from sapo_vl import losses
    from sapo_vl.config import load_config
    from sapo_vl.train import train
    from train_helpers import small_overrides

    calls = []

    def spy(*args, **kwargs):
        calls.append((kwargs["tau_pos"], kwargs["tau_neg"]))
        return sapo_loss(*args, **kwargs)

    def forbidden(*args, **kwargs):
        raise AssertionError("a loss other than SAPO ran")

    for name, entry in LOSSES.items():
        monkeypatch.setitem(losses.LOSSES, name, dataclasses.replace(entry, fn=spy if name == "sapo" else forbidden))
    ov = small_overrides(tmp_path, "guard", **{"model.name_or_path": str(tiny_dense), "train.steps": 1,
                                               "logging.plots": "false", "logging.sample_every": 0})
    cfg = load_config("configs/demo.yaml", [*ov, "algorithm.name=sapo", "algorithm.sapo.tau_pos=0.7",
                                            "algorithm.sapo.tau_neg=1.3", "train.format_warmup_steps=0", *switches])
    train(cfg)
    assert calls and set(calls) == {(0.7, 1.3)}
    micro_per_step = cfg.algorithm.updates_per_rollout * cfg.algorithm.num_minibatches
    assert len(calls) >= micro_per_step

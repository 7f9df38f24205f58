"""The algorithm core: SAPO, GSPO and GRPO policy losses, loss aggregation, group advantages, KL.

Pure tensor functions: they take tensors and scalars, never a config object; a policy loss takes one batch's
tensors as a `LossInputs` and its hyperparameters as keywords. Shapes are
B = sequences in the (micro-)batch, T = response tokens (right-padded; `mask` is 1 on real response tokens).
`docs/algorithm.md` (the project's spec, in this repository) is followed to the letter; where this module
chooses something the spec leaves open, the docstring says so. The name → loss registry is `sapo_vl.losses`.

- The token log-ratio is clamped to ±20 before `exp` everywhere, so a saturated gate never meets inf·0.
- `group_advantages` uses the unbiased (Bessel-corrected) standard deviation, as torch.std does by default and
  as the GRPO implementations in common use do. `scale="batch"` normalises over the whole batch instead of the
  group (mean and std of the batch, REINFORCE++-style whitening): a group that fails entirely then gets a
  negative advantage when others succeed, instead of none.
- "seq-mean-token-sum-norm" divides each sequence's token sum by a fixed `max_len`, then averages over
  sequences (Dr.GRPO's constant normaliser).
- A sequence whose mask is all zeros contributes nothing and is not counted among the sequences.
- Every loss is returned as a scalar to *minimise* (the negated surrogate) together with a dict of floats.

Micro-batching and data parallelism: pass the global normalisers (`LossInputs.global_tokens` for "token-mean",
`global_seqs` for the sequence modes) taken over the whole optimizer batch on every rank; then summing the
micro-batch losses (and DeepSpeed's gradient all-reduce, which averages over `world_size`: multiply by it)
gives exactly the full-batch gradient. See `aggregate`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

Tensor = torch.Tensor

LOG_RATIO_CLAMP = 20.0
AGG_MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm")
ADVANTAGE_SCALES = ("group", "batch", "none")
KL_ESTIMATORS = ("k1", "k3")


# ----------------------------------------------------------------------------------------------------------------
# Input checks


@dataclass
class LossInputs:
    """One (micro-)batch's inputs to a policy loss: what varies from batch to batch, beside the loss's own
    hyperparameters (its config section, the aggregation, KL's β and estimator)."""

    logprobs: Tensor
    """(B, T) log π_θ of the response tokens, with gradient."""
    old_logprobs: Tensor
    """(B, T) log π_old (the importance ratios' denominator; detached)."""
    advantages: Tensor
    """(B,) per sequence, or (B, T) per token (importance-weighted, `corrected_advantages`)."""
    mask: Tensor
    """(B, T) 1 on the response tokens the loss counts."""
    ref_logprobs: Tensor | None = None
    """(B, T) log π_ref, for the KL term (with `kl_beta` > 0)."""
    global_tokens: float | None = None
    """Loss tokens of the whole minibatch over all ranks (the aggregation's normaliser; None = this batch's)."""
    global_seqs: float | None = None
    """Sequences with a loss token in the whole minibatch over all ranks (likewise)."""


def _check_inputs(logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, mask: Tensor) -> None:
    if logprobs.dim() != 2:
        raise ValueError(f"logprobs must be (B, T), got shape {tuple(logprobs.shape)}")
    for name, t in (("old_logprobs", old_logprobs), ("mask", mask)):
        if t.shape != logprobs.shape:
            raise ValueError(
                f"{name} has shape {tuple(t.shape)} but logprobs has {tuple(logprobs.shape)}; both must be (B, T)"
            )
    if advantages.shape not in (logprobs.shape[:1], logprobs.shape):
        raise ValueError(
            f"advantages has shape {tuple(advantages.shape)}; expected (B,) = {tuple(logprobs.shape[:1])} "
            f"or (B, T) = {tuple(logprobs.shape)}"
        )


def _token_advantages(advantages: Tensor, like: Tensor) -> Tensor:
    """(B,) or (B, T) advantages → (B, T), detached (advantages are constants of the surrogate)."""
    adv = advantages.detach().to(like.dtype)
    return adv.unsqueeze(-1).expand_as(like) if adv.dim() == 1 else adv  # (B, T)


def _clamped_log_ratio(logprobs: Tensor, old_logprobs: Tensor) -> Tensor:
    return (logprobs - old_logprobs.detach()).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)  # (B, T)


# ----------------------------------------------------------------------------------------------------------------
# Aggregation


def aggregate(
    loss_mat: Tensor,
    mask: Tensor,
    mode: str,
    *,
    global_tokens: float | None = None,
    global_seqs: float | None = None,
    max_len: int | None = None,
) -> Tensor:
    """Reduce a (B, T) per-token loss to a scalar.

    - "token-mean": Σ_{i,t} loss·mask / N_tokens                       (DAPO)
    - "seq-mean-token-mean": Σ_i (Σ_t loss·mask / |y_i|) / N_seqs       (GRPO, GSPO, SAPO: the paper's formula)
    - "seq-mean-token-sum-norm": Σ_i (Σ_t loss·mask / max_len) / N_seqs (Dr.GRPO)

    N_tokens and N_seqs default to this batch's counts. For micro-batches pass the counts of the whole optimizer
    batch (over all ranks): the micro-batch results then *sum* to the full-batch value, and so do their gradients.
    """
    if mode not in AGG_MODES:
        raise ValueError(f"unknown loss aggregation {mode!r}; choose one of {AGG_MODES}")
    mask = mask.to(loss_mat.dtype)  # (B, T)
    masked = loss_mat * mask  # (B, T)
    if mode == "token-mean":
        if global_tokens is None:
            return masked.sum() / mask.sum().clamp(min=1.0)
        return masked.sum() / max(float(global_tokens), 1.0)
    seq_len = mask.sum(-1)  # (B,)
    if mode == "seq-mean-token-mean":
        seq_loss = masked.sum(-1) / seq_len.clamp(min=1.0)  # (B,)
    else:
        if not max_len or max_len <= 0:
            raise ValueError("loss aggregation 'seq-mean-token-sum-norm' needs max_len > 0 (the fixed normaliser)")
        seq_loss = masked.sum(-1) / float(max_len)  # (B,)
    if global_seqs is None:
        n_seqs = (seq_len > 0).sum().clamp(min=1).to(loss_mat.dtype)  # ()
        return seq_loss.sum() / n_seqs
    return seq_loss.sum() / max(float(global_seqs), 1.0)


# ----------------------------------------------------------------------------------------------------------------
# KL to a reference policy


def kl_penalty(logprobs: Tensor, ref_logprobs: Tensor, estimator: str = "k3") -> Tensor:
    """Per-token KL(π_θ ‖ π_ref) estimate, (B, T).

    k1 = log π − log π_ref (unbiased, high variance); k3 = exp(−d) + d − 1 with d = log π − log π_ref
    (unbiased, non-negative, low variance; Schulman's estimator). The log difference is clamped to ±20.
    """
    if estimator not in KL_ESTIMATORS:
        raise ValueError(f"unknown KL estimator {estimator!r}; choose one of {KL_ESTIMATORS}")
    d = (logprobs - ref_logprobs.detach()).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)  # (B, T)
    if estimator == "k1":
        return d
    return torch.exp(-d) + d - 1.0  # (B, T)


def _finish(
    pg_mat: Tensor, x: LossInputs, stats: dict[str, float], *, agg: str, kl_beta: float, kl_estimator: str,
    max_len: int | None,
) -> tuple[Tensor, dict[str, float]]:
    """Add β·KL (when asked), aggregate, and record the loss values."""
    loss_mat, mask = pg_mat, x.mask  # (B, T)
    if kl_beta and x.ref_logprobs is not None:
        kl = kl_penalty(x.logprobs, x.ref_logprobs, kl_estimator)  # (B, T)
        loss_mat = pg_mat + kl_beta * kl
        stats["kl"] = _masked_mean_float(kl, mask)
    kw = dict(global_tokens=x.global_tokens, global_seqs=x.global_seqs, max_len=max_len)
    loss = aggregate(loss_mat, mask, agg, **kw)  # ()
    stats["pg_loss"] = float(aggregate(pg_mat.detach(), mask, agg, **kw))
    stats["loss"] = float(loss.detach())
    return loss, stats


# ----------------------------------------------------------------------------------------------------------------
# Diagnostics


def _masked_mean_float(x: Tensor, mask: Tensor) -> float:
    m = mask.to(x.dtype)
    return float((x.detach() * m).sum() / m.sum().clamp(min=1.0))


def ratio_stats(log_ratio: Tensor, mask: Tensor) -> dict[str, float]:
    """Token-ratio diagnostics over response tokens: mean, std, max, min, and the mean per-sequence variance."""
    with torch.no_grad():
        m = mask.bool()  # (B, T)
        if not m.any():
            return {"ratio_mean": 1.0, "ratio_std": 0.0, "ratio_max": 1.0, "ratio_min": 1.0, "ratio_seq_var": 0.0}
        r = torch.exp(log_ratio.detach().float())  # (B, T)
        vals = r[m]  # (N,)
        mf = m.float()
        n = mf.sum(-1)  # (B,)
        seq_mean = (r * mf).sum(-1) / n.clamp(min=1.0)  # (B,)
        seq_var = (((r - seq_mean[:, None]) ** 2) * mf).sum(-1) / n.clamp(min=1.0)  # (B,)
        return {
            "ratio_mean": float(vals.mean()),
            "ratio_std": float(vals.std(correction=0)),
            "ratio_max": float(vals.max()),
            "ratio_min": float(vals.min()),
            "ratio_seq_var": float(seq_var[n > 0].mean()),
        }


RATIO_DEVIATIONS = {"ratio_dev_gt02_frac": 0.2, "ratio_dev_gt05_frac": 0.5}
"""Stat name → d: the fraction of response tokens with |r − 1| > d (the paper's regime: small, not zero)."""
GATE_WEIGHT_LEVELS = {"gate_weight_lt099_frac": 0.99, "gate_weight_lt09_frac": 0.9, "soft_suppressed_frac": 0.5}
"""Stat name → w: the fraction of response tokens whose SAPO gate weight sech²(τ(r−1)/2) is below w (the gate
weight's quantiles read as a CDF at fixed levels, so that they aggregate exactly over micro-batches)."""
SIGN_CASES = {"frac_pos_r_gt1": (1, 1), "frac_pos_r_lt1": (1, -1), "frac_neg_r_gt1": (-1, 1),
              "frac_neg_r_lt1": (-1, -1)}
"""Stat name → (sign of Â, sign of log r): the token mass in each of the paper's four cases."""
ON_POLICY_TOL = 1e-6
"""|log r| at or below this counts as r = 1 (in none of the four cases): two forwards of the same weights."""


def logratio_seq_var(log_ratio: Tensor, mask: Tensor) -> Tensor:
    """(B,) within-sequence (population) variance of log r over each sequence's response tokens; 0 for an empty
    or one-token sequence. Its mean over sequences is the paper's token-vs-sequence diagnostic: at 0 every token
    of a sequence has the sequence's ratio and SAPO's token gate acts like a sequence gate."""
    m = mask.to(torch.float64)  # (B, T)
    x = log_ratio.detach().to(torch.float64)  # (B, T)
    n = m.sum(-1).clamp(min=1.0)  # (B,)
    mean = (x * m).sum(-1) / n  # (B,)
    return (((x - mean[:, None]) ** 2) * m).sum(-1) / n  # (B,)


def sign_case_fractions(log_ratio: Tensor, advantages: Tensor, mask: Tensor,
                        tol: float = ON_POLICY_TOL) -> dict[str, float]:
    """Fraction of response tokens in each case of `SIGN_CASES` (Â > 0 / < 0 × r > 1 / < 1).

    advantages: (B,) or (B, T). Tokens with Â = 0 or |log r| <= `tol` are in no case, so the four fractions sum
    to at most 1."""
    with torch.no_grad():
        adv = _token_advantages(advantages, log_ratio)  # (B, T)
        lr = log_ratio.detach()  # (B, T)
        r_sign = torch.where(lr > tol, 1, torch.where(lr < -tol, -1, 0))  # (B, T)
        return {name: _masked_mean_float(((torch.sign(adv) == a) & (r_sign == r)).float(), mask)
                for name, (a, r) in SIGN_CASES.items()}


def ratio_deviation_fractions(log_ratio: Tensor, mask: Tensor) -> dict[str, float]:
    """Fraction of response tokens with |r − 1| > d for each d of `RATIO_DEVIATIONS`."""
    with torch.no_grad():
        dev = (torch.exp(log_ratio.detach().float()) - 1.0).abs()  # (B, T)
        return {name: _masked_mean_float((dev > d).float(), mask) for name, d in RATIO_DEVIATIONS.items()}


def gate_weight_stats(weight: Tensor, mask: Tensor) -> dict[str, float]:
    """SAPO gate weights (B, T) → their token mean, the fraction below each level of `GATE_WEIGHT_LEVELS`, and the
    lowest weight of a response token (`gate_weight_token_min`; 1.0 without tokens)."""
    with torch.no_grad():
        w = weight.detach()  # (B, T)
        m = mask.bool()  # (B, T)
        out = {"gate_weight_mean": _masked_mean_float(w, mask)}
        out.update({name: _masked_mean_float((w < lvl).float(), mask) for name, lvl in GATE_WEIGHT_LEVELS.items()})
        out["gate_weight_token_min"] = float(w[m].min()) if m.any() else 1.0
        return out


def regime_stats(log_ratio: Tensor, advantages: Tensor, mask: Tensor) -> dict[str, float]:
    """The paper's diagnostics every loss logs (token ratios): `ratio_stats`, `logratio_seq_var` (mean over
    sequences with tokens), the four sign cases and the ratio-deviation fractions."""
    stats = ratio_stats(log_ratio, mask)
    has = mask.sum(-1) > 0  # (B,)
    stats["logratio_seq_var"] = float(logratio_seq_var(log_ratio, mask)[has].mean()) if has.any() else 0.0
    stats.update(sign_case_fractions(log_ratio, advantages, mask))
    stats.update(ratio_deviation_fractions(log_ratio, mask))
    return stats


def _clip_fractions(ratio: Tensor, adv: Tensor, mask: Tensor, low: float, high: float) -> dict[str, float]:
    """Fraction of response tokens whose clipped branch binds: below 1−ε_l with Â<0, above 1+ε_h with Â>0."""
    with torch.no_grad():
        low_hit = (ratio < low) & (adv < 0)  # (B, T)
        high_hit = (ratio > high) & (adv > 0)  # (B, T)
        return {
            "clip_frac_low": _masked_mean_float(low_hit.float(), mask),
            "clip_frac_high": _masked_mean_float(high_hit.float(), mask),
        }


# ----------------------------------------------------------------------------------------------------------------
# Policy losses


def sapo_gate(ratio: Tensor, tau: Tensor | float) -> Tensor:
    """SAPO's soft gate f(r) = (4/τ)·σ(τ(r − 1)); its derivative is sech²(τ(r − 1)/2), equal to 1 at r = 1."""
    return torch.sigmoid(tau * (ratio - 1.0)) * (4.0 / tau)


def sapo_weight(ratio: Tensor, tau: Tensor | float) -> Tensor:
    """The gate's gradient weight d f / d r = 4σ(1−σ) = sech²(τ(r−1)/2), in (0, 1]."""
    s = torch.sigmoid(tau * (ratio - 1.0))
    return 4.0 * s * (1.0 - s)


def sapo_loss(
    x: LossInputs,
    *,
    tau_pos: float = 1.0,
    tau_neg: float = 1.05,
    agg: str = "seq-mean-token-mean",
    kl_beta: float = 0.0,
    kl_estimator: str = "k3",
    max_len: int | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """SAPO: maximise mean f(r_{i,t})·Â_i with f(r) = (4/τ)σ(τ(r−1)), τ = τ_pos if Â > 0 else τ_neg.

    Token-level ratios only (no sequence ratio). At r = 1 the gradient is exactly the policy-gradient one; off
    policy it is scaled smoothly by sech²(τ(r−1)/2) instead of being cut at 1 ± ε.
    Stats: `regime_stats` and `gate_weight_stats` (mean sech² weight, fractions of tokens below 0.99 / 0.9 / 0.5:
    `soft_suppressed_frac` is the last, and the lowest token weight).
    """
    logprobs, old_logprobs, advantages, mask = x.logprobs, x.old_logprobs, x.advantages, x.mask
    _check_inputs(logprobs, old_logprobs, advantages, mask)
    if tau_pos <= 0 or tau_neg <= 0:
        raise ValueError(f"SAPO temperatures must be > 0, got tau_pos={tau_pos}, tau_neg={tau_neg}")
    log_ratio = _clamped_log_ratio(logprobs, old_logprobs)  # (B, T)
    ratio = torch.exp(log_ratio)  # (B, T)
    adv = _token_advantages(advantages, logprobs)  # (B, T)
    tau = torch.full_like(adv, tau_neg).masked_fill(adv > 0, tau_pos)  # (B, T), in the inputs' dtype
    pg_mat = -sapo_gate(ratio, tau) * adv  # (B, T)
    stats = regime_stats(log_ratio, adv, mask)
    stats.update(gate_weight_stats(sapo_weight(ratio.detach(), tau), mask))
    return _finish(pg_mat, x, stats, agg=agg, kl_beta=kl_beta, kl_estimator=kl_estimator, max_len=max_len)


def gspo_loss(
    x: LossInputs,
    *,
    eps_low: float = 3e-4,
    eps_high: float = 4e-4,
    agg: str = "seq-mean-token-mean",
    kl_beta: float = 0.0,
    kl_estimator: str = "k3",
    max_len: int | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """GSPO (token form): s_i = exp(mean_t log r_{i,t}) per sequence, applied per token with gradient s_i·∇log π.

    Built as exp(logp − sg(logp) + sg(clamp(mean_t(logp − logp_old), ±20))); clipped surrogate
    min(s·Â, clip(s, 1−ε_l, 1+ε_h)·Â). Stats: `regime_stats` of the token ratios, `seq_ratio_mean`,
    clip fractions of the sequence ratio.
    """
    logprobs, old_logprobs, advantages, mask = x.logprobs, x.old_logprobs, x.advantages, x.mask
    _check_inputs(logprobs, old_logprobs, advantages, mask)
    m = mask.to(logprobs.dtype)  # (B, T)
    tok_log_ratio = _clamped_log_ratio(logprobs, old_logprobs)  # (B, T)
    seq_log_ratio = (tok_log_ratio * m).sum(-1) / m.sum(-1).clamp(min=1.0)  # (B,)
    seq_log_ratio = seq_log_ratio.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP).detach()  # (B,)
    log_s = logprobs - logprobs.detach() + seq_log_ratio[:, None]  # (B, T): value log s_i, gradient ∇logp
    s = torch.exp(log_s)  # (B, T)
    adv = _token_advantages(advantages, logprobs)  # (B, T)
    pg1 = -adv * s  # (B, T)
    pg2 = -adv * s.clamp(1.0 - eps_low, 1.0 + eps_high)  # (B, T)
    pg_mat = torch.maximum(pg1, pg2)  # (B, T)
    stats = regime_stats(tok_log_ratio, adv, mask)
    seq_has = m.sum(-1) > 0
    stats["seq_ratio_mean"] = float(torch.exp(seq_log_ratio)[seq_has].mean()) if seq_has.any() else 1.0
    stats.update(_clip_fractions(s.detach(), adv, mask, 1.0 - eps_low, 1.0 + eps_high))
    return _finish(pg_mat, x, stats, agg=agg, kl_beta=kl_beta, kl_estimator=kl_estimator, max_len=max_len)


def grpo_loss(
    x: LossInputs,
    *,
    eps_low: float = 0.2,
    eps_high: float = 0.28,
    dual_clip: float | None = None,
    agg: str = "token-mean",
    kl_beta: float = 0.0,
    kl_estimator: str = "k3",
    max_len: int | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """GRPO with DAPO's clip-higher: min(r·Â, clip(r, 1−ε_l, 1+ε_h)·Â) per token.

    `dual_clip` = c > 1 additionally bounds the loss of Â < 0 tokens by c·|Â| (dual-clip PPO).
    Stats: `regime_stats`, clip fractions (low, high) and `dual_clip_frac`.
    """
    logprobs, old_logprobs, advantages, mask = x.logprobs, x.old_logprobs, x.advantages, x.mask
    _check_inputs(logprobs, old_logprobs, advantages, mask)
    if dual_clip is not None and dual_clip <= 1.0:
        raise ValueError(f"dual_clip must be > 1 (e.g. 3.0), got {dual_clip}")
    log_ratio = _clamped_log_ratio(logprobs, old_logprobs)  # (B, T)
    ratio = torch.exp(log_ratio)  # (B, T)
    adv = _token_advantages(advantages, logprobs)  # (B, T)
    pg1 = -adv * ratio  # (B, T)
    pg2 = -adv * ratio.clamp(1.0 - eps_low, 1.0 + eps_high)  # (B, T)
    pg_mat = torch.maximum(pg1, pg2)  # (B, T)
    stats = regime_stats(log_ratio, adv, mask)
    stats.update(_clip_fractions(ratio.detach(), adv, mask, 1.0 - eps_low, 1.0 + eps_high))
    if dual_clip is not None:
        pg3 = -adv * dual_clip  # (B, T): = c·|Â| where Â < 0
        dual = torch.minimum(pg_mat, pg3)  # (B, T)
        stats["dual_clip_frac"] = _masked_mean_float(((pg_mat > pg3) & (adv < 0)).float(), mask)
        pg_mat = torch.where(adv < 0, dual, pg_mat)  # (B, T)
    return _finish(pg_mat, x, stats, agg=agg, kl_beta=kl_beta, kl_estimator=kl_estimator, max_len=max_len)


# ----------------------------------------------------------------------------------------------------------------
# Advantages


def zero_std_groups(rewards: Tensor, group_size: int) -> Tensor:
    """(n_groups,) bool: groups of `group_size` contiguous rewards that are all equal (their advantage is 0)."""
    r = rewards.detach().reshape(-1, group_size)  # (n_groups, G)
    return r.max(-1).values == r.min(-1).values


def group_advantages(
    rewards: Tensor, group_size: int, *, scale: str = "group", eps: float = 1e-6
) -> tuple[Tensor, float]:
    """Outcome advantages for contiguous groups of `group_size` responses.

    rewards: (B,) with B = n_groups · group_size, group g = rows [g·G, (g+1)·G).
    scale: "group": (R − mean_g) / (std_g + ε) (GRPO); "none": R − mean_g (Dr.GRPO); "batch": normalised over
    the whole batch instead of the group, (R − mean_B) / (std_B + ε). std is unbiased (Bessel). Returns the (B,)
    advantages and the fraction of groups whose rewards are all equal (under "group" and "none" their
    advantages are exactly 0).
    """
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be (B,), got shape {tuple(rewards.shape)}")
    if group_size < 1 or rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of group_size={group_size}")
    if scale not in ADVANTAGE_SCALES:
        raise ValueError(f"unknown advantage scale {scale!r}; choose one of {ADVANTAGE_SCALES}")
    r = rewards.detach().to(torch.float32).view(-1, group_size)  # (n_groups, G)
    mean = r.mean(-1, keepdim=True)  # (n_groups, 1)
    centred = r - mean  # (n_groups, G)
    zero_std = zero_std_groups(rewards, group_size)  # (n_groups,)
    centred = torch.where(zero_std[:, None], torch.zeros_like(centred), centred)  # exact zeros for flat groups
    if scale == "group":
        std = r.std(-1, keepdim=True) if group_size > 1 else torch.zeros_like(mean)  # (n_groups, 1)
        adv = centred / (std + eps)
    elif scale == "batch":
        flat = r.reshape(-1)  # (B,)
        std = flat.std() if flat.numel() > 1 else torch.tensor(0.0)  # ()
        adv = ((flat - flat.mean()) / (std + eps)).view_as(r)
    else:
        adv = centred
    return adv.reshape(-1), float(zero_std.float().mean())


def overlong_penalty(lengths: Tensor, max_len: int, buffer: int, penalty: float = 1.0) -> Tensor:
    """DAPO's soft overlong punishment, (B,): 0 up to max_len − buffer, then falls linearly to −penalty at max_len."""
    if buffer <= 0:
        return torch.zeros_like(lengths, dtype=torch.float32)
    over = (lengths.float() - (max_len - buffer)).clamp(min=0.0)  # (B,)
    return -(over / buffer).clamp(max=1.0) * penalty


# ----------------------------------------------------------------------------------------------------------------
# Rollout correction: the sampler is not the trainer
#
# With a separate sampler (vLLM), the rollout is drawn from π_sample, not from π_old (the trainer's recomputation of
# the same weights): kernels, batch shapes and bf16 rounding differ, more so for MoE routing. The policy losses
# above see only r = π_θ / π_old, and SAPO's gate has weight exactly 1 at r = 1, so none of them sees that gap.
# These functions measure it and correct for it with a per-token weight w ≈ π_old / π_sample:
#
# - "tis" (truncated importance sampling): keep every token, weight min(π_old/π_sample, C).
# - "mis" (masked importance sampling): weight π_old/π_sample where it lies in [1/C, C]; tokens (or whole
#   sequences) outside the band are dropped from the loss mask.
# - level "token" uses each token's ratio; "sequence" uses each completion's ratio, exp(Σ_t log-ratio) (the true
#   sequence importance ratio), for all its tokens.
#
# Weights are constants (detached). All three policy losses are positively homogeneous in Â token by token (SAPO:
# −f(r)·Â; GSPO/GRPO: max(−Â·s, −Â·clip(s)); dual clip: min(·, −c·Â)), so weighting the per-token policy loss by
# w > 0 is the same as passing the (B, T) advantages w·Â (`corrected_advantages`); the KL penalty is not
# weighted.

CORRECTION_MODES = ("none", "tis", "mis")
CORRECTION_LEVELS = ("token", "sequence")


def rollout_correction(
    old_logprobs: Tensor,
    sample_logprobs: Tensor,
    mask: Tensor,
    *,
    mode: str = "none",
    level: str = "token",
    threshold: float = 2.0,
) -> tuple[Tensor, Tensor, dict[str, float]]:
    """Importance weights (B, T), the loss mask (B, T) and mismatch diagnostics for π_sample ≠ π_old.

    old_logprobs: (B, T) log π_old of the sampled tokens (the trainer's recomputation); sample_logprobs: (B, T)
    log π_sample (what the sampler reported); mask: (B, T) 1 on response tokens. threshold: C > 1.
    Returns weights (0 where the returned mask is 0; 1 elsewhere under "none"), the mask with MIS drops applied,
    and `mismatch_stats` plus `is_weight_mean` / `is_weight_max` (over kept tokens), `is_masked_frac` (response
    tokens dropped) and `is_truncated_frac` (tokens whose TIS weight was capped at C).
    """
    if mode not in CORRECTION_MODES:
        raise ValueError(f"unknown rollout correction mode {mode!r}; choose one of {CORRECTION_MODES}")
    if level not in CORRECTION_LEVELS:
        raise ValueError(f"unknown rollout correction level {level!r}; choose one of {CORRECTION_LEVELS}")
    if not threshold > 1.0:
        raise ValueError(f"rollout correction threshold must be > 1 (the TIS cap C, the MIS band [1/C, C]), "
                         f"got {threshold}")
    if old_logprobs.shape != sample_logprobs.shape or mask.shape != old_logprobs.shape or old_logprobs.dim() != 2:
        raise ValueError(f"old_logprobs {tuple(old_logprobs.shape)}, sample_logprobs {tuple(sample_logprobs.shape)} "
                         f"and mask {tuple(mask.shape)} must all be the same (B, T)")
    with torch.no_grad():
        m = mask.to(torch.float32)  # (B, T)
        d = (old_logprobs.float() - sample_logprobs.float()) * m  # (B, T): log π_old − log π_sample; 0 off mask
        if level == "sequence":
            d = d.sum(-1, keepdim=True) * m  # (B, T): each token carries its sequence's summed log-ratio
        d = d.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)  # (B, T)
        ratio = torch.exp(d)  # (B, T): π_old / π_sample (per token or per sequence)
        log_c = float(torch.tensor(threshold, dtype=torch.float64).log())
        keep = m  # (B, T)
        if mode == "none":
            weights = torch.ones_like(ratio)  # (B, T)
        elif mode == "tis":
            weights = ratio.clamp(max=threshold)  # (B, T)
        else:
            inside = (d >= -log_c) & (d <= log_c)  # (B, T): a dropped sequence drops all its tokens
            keep = m * inside.float()  # (B, T)
            weights = ratio  # (B, T)
        weights = weights * keep  # (B, T)
        stats = mismatch_stats(old_logprobs, sample_logprobs, mask)
        kept = keep.bool()  # (B, T)
        n = m.sum().clamp(min=1.0)
        stats.update({
            "is_weight_mean": float(weights[kept].mean()) if kept.any() else 1.0,
            "is_weight_max": float(weights[kept].max()) if kept.any() else 1.0,
            "is_masked_frac": float((m - keep).sum() / n),
            "is_truncated_frac": float(((ratio > threshold).float() * m).sum() / n) if mode == "tis" else 0.0,
        })
    return weights.to(old_logprobs.dtype), keep.to(mask.dtype), stats


def mismatch_stats(old_logprobs: Tensor, sample_logprobs: Tensor, mask: Tensor) -> dict[str, float]:
    """How far the sampler is from the trainer, over response tokens (samples drawn from π_sample).

    d = log π_old − log π_sample per token. `mismatch_kl` = mean(exp(d) − 1 − d), the k3 estimate of
    KL(π_sample ‖ π_old) (non-negative); `mismatch_k1` = mean(−d), the plain estimate; `mismatch_abs_max` =
    max |d|.
    """
    with torch.no_grad():
        m = mask.bool()  # (B, T)
        if not m.any():
            return {"mismatch_kl": 0.0, "mismatch_k1": 0.0, "mismatch_abs_max": 0.0}
        d = (old_logprobs.float() - sample_logprobs.float())[m]  # (N,) response tokens
        d = d.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)  # (N,)
        return {
            "mismatch_kl": float((torch.exp(d) - 1.0 - d).mean()),
            "mismatch_k1": float((-d).mean()),
            "mismatch_abs_max": float(d.abs().max()),
        }


def corrected_advantages(advantages: Tensor, weights: Tensor) -> Tensor:
    """(B,) or (B, T) advantages × (B, T) importance weights → (B, T) advantages for any of the policy losses."""
    return _token_advantages(advantages, weights) * weights.detach()  # (B, T)


__all__ = [
    "AGG_MODES", "ADVANTAGE_SCALES", "KL_ESTIMATORS", "LossInputs", "aggregate", "kl_penalty",
    "sapo_gate", "sapo_weight", "sapo_loss", "gspo_loss", "grpo_loss", "zero_std_groups", "group_advantages", "ratio_stats",
    "overlong_penalty", "CORRECTION_MODES", "logratio_seq_var", "sign_case_fractions",
    "ratio_deviation_fractions", "gate_weight_stats", "regime_stats", "RATIO_DEVIATIONS", "GATE_WEIGHT_LEVELS",
    "SIGN_CASES", "CORRECTION_LEVELS",
    "rollout_correction", "mismatch_stats", "corrected_advantages",
]

"""Per-token log-probabilities of completions under the policy, without a (N, T, vocab) float32 tensor.

`PolicyLogprobs` wraps a Qwen3-VL model as the module DeepSpeed trains: its forward takes prompt+completion
sequences and returns the (N, Lc) log-probabilities of the completion tokens (and, optionally, the entropy of
each next-token distribution). The trunk runs once; the vocabulary projection and log-softmax run over chunks of
`chunk_size` token positions, each under activation checkpointing, so at most one chunk's logits exist at a time
in the forward and in the backward. At Qwen's 151,936-token vocabulary this is what keeps the update's memory
flat; `bench/bench_logprobs.py` measures it against the naive full log-softmax.

Log-probabilities are of the distribution the rollout sampled from: logits / T with the never-sampled tokens
(`sapo_vl.sampling.NEVER_SAMPLE`: `<|image_pad|>`, `<|vision_start|>`, ...) removed from the softmax, exactly as
the sampler removes them (`banned_ids`). Top-k / top-p sampling is refused for training (config validation), so
no other truncation exists to mirror.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from . import routing
from .models.loading import hf_model
from .sampling import rope_positions

Tensor = torch.Tensor


def _logits(h: Tensor, lm_head: nn.Module, temperature: float, banned: Tensor | None) -> Tensor:
    """(n, H) → (n, V) float32 logits / T, with the banned vocabulary entries at −inf."""
    logits = lm_head(h).float() / temperature  # (n, V)
    if banned is not None and banned.numel():
        logits = logits.index_fill(-1, banned, float("-inf"))
    return logits


def _entropy(logits: Tensor, lse: Tensor) -> Tensor:
    """(n, V) logits (−inf allowed), (n,) logsumexp → (n,) entropy H = lse − Σ p·logit (0·(−inf) taken as 0)."""
    p = torch.exp(logits - lse[:, None])  # (n, V)
    return lse - (p * logits.masked_fill(torch.isinf(logits), 0.0)).sum(-1)


def _chunk_logprobs(h: Tensor, targets: Tensor, lm_head: nn.Module, temperature: float, with_entropy: bool,
                    banned: Tensor | None = None):
    """(n, H) hidden, (n,) targets → (n,) log-probs and (n,) entropies (no gradient; zeros unless asked).

    `lm_head` is called as a module (not through its weight) so that ZeRO-3's hooks gather it, also when
    activation checkpointing recomputes the chunk in the backward pass.
    """
    logits = _logits(h, lm_head, temperature, banned)  # (n, V)
    lse = torch.logsumexp(logits, dim=-1)  # (n,)
    logp = logits.gather(-1, targets[:, None])[:, 0] - lse  # (n,)
    if not with_entropy:
        return logp, torch.zeros_like(lse)
    with torch.no_grad():
        entropy = _entropy(logits, lse)  # (n,)
    return logp, entropy


def chunked_logprobs(
    hidden: Tensor, lm_head: nn.Module, targets: Tensor, *, temperature: float = 1.0, chunk_size: int = 256,
    with_entropy: bool = True, banned: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """hidden (N, T, H), targets (N, T) → log π(target) (N, T) and entropy (N, T), chunk by chunk.

    banned: (k,) vocabulary ids left out of the softmax (the sampler's never-sampled tokens).
    Entropies are computed only when asked and never when the chunk is recomputed for the backward pass.
    """
    N, T, H = hidden.shape
    flat_h = hidden.reshape(N * T, H)  # (N·T, H)
    flat_t = targets.reshape(N * T)  # (N·T,)
    logps, ents = [], []
    for s in range(0, N * T, chunk_size):
        h, t = flat_h[s : s + chunk_size], flat_t[s : s + chunk_size]
        if torch.is_grad_enabled() and h.requires_grad:  # the entropy from the forward's logits, not the recompute's
            lp, ent = checkpoint(_OnceEntropy(lm_head, temperature, with_entropy, banned), h, t, use_reentrant=False)
        else:
            lp, ent = _chunk_logprobs(h, t, lm_head, temperature, with_entropy, banned)
        logps.append(lp)
        ents.append(ent)
    return torch.cat(logps).view(N, T), torch.cat(ents).view(N, T)


class _OnceEntropy:
    """`_chunk_logprobs` for `checkpoint`: the entropy on the first call only, so the backward's recompute of the
    chunk runs the log-probs alone (one vocabulary projection per chunk in the forward, not two)."""

    def __init__(self, lm_head: nn.Module, temperature: float, with_entropy: bool, banned: Tensor | None):
        self.args, self.with_entropy = (lm_head, temperature), with_entropy
        self.banned = banned

    def __call__(self, h: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        first, self.with_entropy = self.with_entropy, False
        return _chunk_logprobs(h, t, *self.args, first, self.banned)


def naive_logprobs(logits: Tensor, targets: Tensor, temperature: float = 1.0) -> Tensor:
    """The reference: full (N, T, V) float32 log-softmax, then gather. For tests and the memory benchmark."""
    return torch.log_softmax(logits.float() / temperature, dim=-1).gather(-1, targets[..., None])[..., 0]


class PolicyLogprobs(nn.Module):
    """The trained module: Qwen3-VL trunk + chunked vocabulary projection → completion log-probs.

    `self.policy` is the `transformers` model (possibly PEFT-wrapped); save it with `save_pretrained`.
    banned_ids: vocabulary ids the sampler never samples (`sapo_vl.sampling.never_sample_ids(tokenizer)`); they are
    left out of the softmax here too, so that π_old equals the sampling distribution.
    """

    def __init__(self, policy: nn.Module, chunk_size: int = 256, banned_ids: list[int] | None = None):
        super().__init__()
        self.policy = policy
        self.chunk_size = chunk_size
        self.register_buffer("banned", torch.tensor(banned_ids or [], dtype=torch.long), persistent=False)

    def forward(self, rows, *, temperature: float = 1.0, touch_vision: bool = False,
                with_entropy: bool = True) -> tuple[Tensor, Tensor]:
        """A `rollout.RowBatch` of N sequences (N, Lp + Lc) → (logp (N, Lc), entropy (N, Lc)) of their last
        `rows.n_completion` tokens.

        touch_vision: run the vision tower on a 32×32 dummy image and add 0× its output when this batch has no
        image, so that every rank uses (ZeRO-3: gathers; ZeRO-2: reduces) the same parameters in the same order.
        """
        input_ids, attention_mask, mm_token_type_ids = rows.input_ids, rows.attention_mask, rows.mm_token_type_ids
        pixel_values, image_grid_thw, n_completion = rows.pixel_values, rows.image_grid_thw, rows.n_completion
        model = hf_model(self.policy)
        # The vision tower runs before the trunk on every rank, on the real images or (touch_vision) on a dummy,
        # so that ZeRO-3 gathers the same parameters in the same order everywhere.
        encoded, dummy = None, None
        if pixel_values is not None:
            encoded = {"image": model.model.get_image_features(pixel_values, image_grid_thw, return_dict=True)}
        elif touch_vision:
            dummy = _dummy_vision(model, input_ids.device)
        # positions as the sampler numbered them (a row's first real token at 0, whatever its left padding)
        positions = rope_positions(model, input_ids, mm_token_type_ids, attention_mask, image_grid_thw)[0]
        routing.begin_forward(model, getattr(rows, "routing", None))  # R3: the sampler's experts (or own top-k)
        out = model.model(
            input_ids=input_ids, attention_mask=attention_mask, mm_token_type_ids=mm_token_type_ids,
            image_grid_thw=image_grid_thw, mm_encoder_outputs=encoded, use_cache=False, position_ids=positions,
        )
        hidden = out.last_hidden_state[:, -n_completion - 1 : -1]  # (N, Lc, H): position t predicts token t+1
        targets = input_ids[:, -n_completion:]  # (N, Lc)
        logp, entropy = chunked_logprobs(
            hidden, model.get_output_embeddings(), targets, temperature=temperature, chunk_size=self.chunk_size,
            with_entropy=with_entropy, banned=self.banned.to(input_ids.device),
        )
        if dummy is not None:
            logp = logp + 0.0 * dummy
        return logp, entropy


def _dummy_vision(model: nn.Module, device: torch.device) -> Tensor:
    """The sum of the vision tower's outputs on one blank 2×2-patch image (32×32 pixels at patch 16)."""
    cfg = model.config.vision_config
    m = cfg.spatial_merge_size
    dim = cfg.in_channels * cfg.temporal_patch_size * cfg.patch_size**2
    # (no parameter is touched here: under ZeRO-3 that would gather it on this rank alone)
    grid = torch.tensor([[1, m, m]], device=device)
    pixels = torch.zeros(m * m, dim, device=device)  # get_image_features casts to the tower's dtype
    out = model.model.get_image_features(pixels, grid, return_dict=True)
    total = sum(t.sum() for t in out.pooler_output)
    for feats in getattr(out, "deepstack_features", None) or []:
        total = total + sum(t.sum() for t in feats)
    return total

"""Sampling G completions per image-text prompt with a KV cache, sharing each prompt's prefill across its group.

`sample_completions` encodes the B prompts once (each image through the vision tower once), runs one prefill
forward, repeats the KV cache G times along the batch (`DynamicCache.batch_repeat_interleave`) and then decodes
B·G rows token by token. With `shared_prefill=False` it instead repeats every prompt G times before the prefill
(what `generate(num_return_sequences=G)` does); `bench/bench_rollout.py` measures the difference.

Decoding is a plain loop over `model(...)` calls, so the same code runs a `transformers` model, a PEFT-wrapped one,
or a DeepSpeed engine's module with gathered ZeRO-3 parameters. Qwen3-VL's multimodal rotary positions are
computed by the model in the prefill; each decoded token then sits at position (last prompt position + 1 + k) on
all three M-RoPE axes, as in `transformers`' own generation.

Tokens that must never be sampled (`<|image_pad|>`, `<|video_pad|>`, `<|vision_start|>`, ...) are masked out.
A row stops at its first stop token (`<|im_end|>` or `<|endoftext|>`); the stop token is part of the completion
and of its mask. A row that reaches `max_new_tokens` without one is marked truncated.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from .models.loading import encode_prompts, hf_model

Tensor = torch.Tensor

NEVER_SAMPLE = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|im_start|>")
STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")


@dataclass
class Samples:
    """G sampled completions for each of B prompts. Row r of the completions belongs to prompt r // G."""

    inputs: Any
    """The processor's BatchFeature for the B prompts (input_ids (B, Lp) left-padded, attention_mask,
    mm_token_type_ids, pixel_values, image_grid_thw)."""
    completion_ids: Tensor
    """(B·G, Lc) sampled token ids, right-padded with the pad id after the stop token."""
    completion_mask: Tensor
    """(B·G, Lc) 1 on sampled tokens up to and including the stop token."""
    truncated: Tensor
    """(B·G,) bool: no stop token within max_new_tokens."""
    sample_logprobs: Tensor
    """(B·G, Lc) log-probability of each sampled token under the distribution it was drawn from (after
    temperature, top-k/top-p and the banned tokens); 0 where the mask is 0. A diagnostic of rollout/update drift."""
    texts: list[str]
    """B·G decoded completions, special tokens removed."""
    group_size: int
    prefill_tokens: int
    """Tokens that went through the prefill forward (B·Lp shared, B·G·Lp expanded)."""

    @property
    def lengths(self) -> Tensor:
        return self.completion_mask.sum(-1)  # (B·G,)


def token_ids(tokenizer, tokens: Sequence[str]) -> list[int]:
    """Ids of the tokens that exist in this tokenizer's vocabulary."""
    vocab = tokenizer.get_vocab()
    return [vocab[t] for t in tokens if t in vocab]


def process_logits(logits: Tensor, *, temperature: float, top_k: int, top_p: float, banned: Tensor | None) -> Tensor:
    """(N, V) logits → (N, V) log-probabilities to sample from: ban, temperature, top-k, then top-p (nucleus)."""
    logits = logits.float()
    if banned is not None and banned.numel():
        logits = logits.index_fill(-1, banned, float("-inf"))  # out of place: the caller's logits stay as they were
    logits = logits / max(temperature, 1e-6)  # (N, V)
    if top_k and 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (N, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if 0.0 < top_p < 1.0:
        sorted_logits, idx = torch.sort(logits, descending=True, dim=-1)  # (N, V)
        probs = torch.softmax(sorted_logits, dim=-1)
        drop = probs.cumsum(-1) - probs > top_p  # keep the smallest prefix whose mass reaches top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, idx, sorted_logits)
    return torch.log_softmax(logits, dim=-1)


def _prefill(model, inputs) -> tuple[Tensor, Any, Tensor]:
    """One forward over the prompts; returns the last-position logits (N, V), the KV cache, next positions (N,)."""
    core = hf_model(model).model  # Qwen3VLModel: owns get_rope_index
    kwargs = {k: v for k, v in inputs.items()}
    out = model(**kwargs, use_cache=True, logits_to_keep=1)
    if "image_grid_thw" in inputs or "video_grid_thw" in inputs:
        _, deltas = core.get_rope_index(
            inputs["input_ids"], inputs["mm_token_type_ids"], image_grid_thw=inputs.get("image_grid_thw"),
            video_grid_thw=inputs.get("video_grid_thw"), attention_mask=inputs["attention_mask"],
        )  # deltas (N, 1): max position + 1 − real length
        next_pos = inputs["attention_mask"].sum(-1) + deltas[:, 0].to(inputs["attention_mask"].device)  # (N,)
    else:
        next_pos = inputs["attention_mask"].sum(-1)  # text only: positions 0..n−1
    return out.logits[:, -1], out.cache if hasattr(out, "cache") else out.past_key_values, next_pos


@torch.no_grad()
def sample_completions(
    model,
    processor,
    prompts: Sequence[list[dict]],
    images: Sequence[Sequence[Any]],
    *,
    group_size: int,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    shared_prefill: bool = True,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
) -> Samples:
    """Sample `group_size` completions for each prompt (with its PIL images); see the module docstring.

    generator: one generator for all rows (training), or one per row (B·G of them, row r = prompt r // G), so
    that a row's tokens do not depend on the other rows of its batch (resumable, sharded eval).
    temperature <= 0 decodes greedily (argmax, no random draws).
    """
    tok = processor.tokenizer
    device = next(model.parameters()).device
    if group_size < 1 or max_new_tokens < 1:
        raise ValueError(f"group_size and max_new_tokens must be >= 1, got {group_size}, {max_new_tokens}")
    G = group_size
    inputs = encode_prompts(processor, prompts, images)
    if shared_prefill:
        feed = inputs
    else:  # every prompt G times, images included: G prefills per prompt
        feed = encode_prompts(processor, [p for p in prompts for _ in range(G)], [i for i in images for _ in range(G)])
    feed = feed.to(device)
    logits, cache, next_pos = _prefill(model, feed)  # (N, V), cache, (N,)
    attn = feed["attention_mask"]  # (N, Lp)
    if shared_prefill and G > 1:
        cache.batch_repeat_interleave(G)
        logits = logits.repeat_interleave(G, 0)  # (B·G, V)
        next_pos = next_pos.repeat_interleave(G, 0)  # (B·G,)
        attn = attn.repeat_interleave(G, 0)  # (B·G, Lp)
    prefill_tokens = int(feed["input_ids"].numel())

    if isinstance(generator, (list, tuple)) and len(generator) != logits.shape[0]:
        raise ValueError(f"{len(generator)} generators for {logits.shape[0]} rows: give one per row or a single one")
    banned = torch.tensor(token_ids(tok, NEVER_SAMPLE), dtype=torch.long, device=device)
    stop = torch.tensor(token_ids(tok, STOP_TOKENS), dtype=torch.long, device=device)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else int(stop[0])
    n = logits.shape[0]
    done = torch.zeros(n, dtype=torch.bool, device=device)  # (N,)
    out_ids, out_mask, out_logp = [], [], []
    for step in range(max_new_tokens):
        logp = process_logits(logits, temperature=temperature, top_k=top_k, top_p=top_p, banned=banned)  # (N, V)
        if temperature <= 0:
            nxt = logp.argmax(-1)  # (N,)
        elif isinstance(generator, (list, tuple)):
            probs = logp.exp()
            nxt = torch.cat([torch.multinomial(probs[i], 1, generator=g) for i, g in enumerate(generator)])  # (N,)
        else:
            nxt = torch.multinomial(logp.exp(), 1, generator=generator)[:, 0]  # (N,)
        out_logp.append(logp.gather(-1, nxt[:, None])[:, 0].masked_fill(done, 0.0))
        nxt = torch.where(done, torch.full_like(nxt, pad_id), nxt)
        out_ids.append(nxt)
        out_mask.append(~done)
        done = done | torch.isin(nxt, stop)
        if bool(done.all()) or step == max_new_tokens - 1:
            break
        attn = torch.cat([attn, torch.ones_like(attn[:, :1])], dim=1)  # (N, Lp + step + 1)
        pos = (next_pos + step).view(1, n, 1).expand(3, n, 1)  # (3, N, 1): text tokens share all M-RoPE axes
        out = model(input_ids=nxt[:, None], attention_mask=attn, position_ids=pos, cache=cache, use_cache=True)
        logits = out.logits[:, -1]  # (N, V)
    completion_ids = torch.stack(out_ids, dim=1)  # (N, Lc)
    completion_mask = torch.stack(out_mask, dim=1).long()  # (N, Lc)
    truncated = ~done
    texts = tok.batch_decode(completion_ids.masked_fill(completion_mask == 0, pad_id), skip_special_tokens=True)
    return Samples(
        inputs=inputs, completion_ids=completion_ids.cpu(), completion_mask=completion_mask.cpu(),
        truncated=truncated.cpu(), sample_logprobs=torch.stack(out_logp, dim=1).cpu(), texts=texts, group_size=G, prefill_tokens=prefill_tokens,
    )

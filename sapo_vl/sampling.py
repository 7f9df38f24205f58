"""Sampling G completions per image-text prompt with a KV cache, sharing each prompt's prefill across its group.

`sample_completions` encodes the B prompts once (each image through the vision tower once) and decodes the B·G
rows in generation chunks of at most `generation_batch_size` rows (0 = all rows in one chunk). For each chunk it
runs one prefill forward over the chunk's prompts, copies each prompt's KV G times into the chunk's decode cache
(so the expanded prompt KV exists for one chunk at a time, never for the whole batch) and decodes token by token.
With `shared_prefill=False` it instead repeats every prompt G times before the prefill (what
`generate(num_return_sequences=G)` does); `bench/bench_rollout.py` measures both.

Decoding is a plain loop over `model(...)` calls, so the same code runs a `transformers` model, a PEFT-wrapped one,
or a DeepSpeed engine's module with gathered ZeRO-3 parameters. Decode cost:
- the KV cache (`RowCache`) is allocated once per chunk for prompt + `max_new_tokens` positions and written in
  place; attention reads a view of the filled part (the default `DynamicCache` concatenates, copying the whole
  cache at every token);
- the host looks at the stop flags every `CHECK_EVERY` tokens, not every token; rows that have finished by then
  are dropped from the batch and the cache, so they stop costing compute (a finished row runs at most
  `CHECK_EVERY - 1` extra, masked, tokens).

Positions. Qwen3-VL's multimodal rotary positions are computed by `get_rope_index` for every batch, with or
without images: each prompt's first real token is at position 0 whatever its left padding, and decoded token k
sits at (last prompt position + 1 + k) on all three M-RoPE axes. Positions therefore never depend on which other
prompts share the batch (`rope_positions` gives them for any left-padded batch; a teacher-forced forward that
passes them scores exactly what was sampled).

Tokens that must never be sampled (`<|image_pad|>`, `<|video_pad|>`, `<|vision_start|>`, ...) are masked out.
A row stops at its first stop token (`<|im_end|>` or `<|endoftext|>`); the stop token is part of the completion
and of its mask. A row that reaches `max_new_tokens` without one is marked truncated.

Randomness: with one generator and one chunk, the draws are those of one `torch.multinomial` over all rows per
token (finished rows included), so dropping rows does not change the tokens; with several chunks the stream is
consumed chunk by chunk (same distribution, other draws). With one generator per row, a row's tokens depend only
on its prompt and its generator, whatever the chunking and the batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from transformers.cache_utils import Cache, DynamicLayer

from . import routing
from .engines.base import Samples, SamplingSettings
from .models.loading import encode_prompts, hf_model

Tensor = torch.Tensor

NEVER_SAMPLE = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|im_start|>")
STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")
CHECK_EVERY = 16
"""Default number of decoded tokens between two looks at the stop flags (one host sync each)."""


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


def rope_positions(model, input_ids: Tensor, mm_token_type_ids: Tensor, attention_mask: Tensor,
                   image_grid_thw: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Left-padded (N, L) batch → M-RoPE positions (3, N, L) and each row's next position (N,).

    Qwen3-VL's own rule (`get_rope_index`) for every batch, text-only included: a row's first real token is at 0,
    text tokens advance all three axes by one, an image spans its grid. Pads get position 0 (they are masked).
    The model's forward, given no positions, numbers a text-only batch across the padded width instead; pass these
    to it to score a sampled batch at the positions it was sampled at.
    """
    core = hf_model(model).model  # Qwen3VLModel: owns get_rope_index
    pos, deltas = core.get_rope_index(input_ids, mm_token_type_ids, image_grid_thw=image_grid_thw,
                                      attention_mask=attention_mask)  # (3, N, L), (N, 1): max position + 1 − length
    next_pos = attention_mask.sum(-1) + deltas[:, 0].to(attention_mask.device)  # (N,)
    return pos, next_pos


# ---------------------------------------------------------------------------------------------------- KV cache
class RowLayer(DynamicLayer):
    """One attention layer's K/V in buffers of `capacity` positions, written in place (no copy per token).

    `update` writes the new positions into the buffers and returns views of the filled part, so attention costs
    what it costs with `DynamicLayer` while the cache is never re-allocated. Rows can be selected (dropping
    finished rows, or repeating a prompt's row G times) into new buffers of another capacity.
    """

    def __init__(self, capacity: int = 0):
        super().__init__()
        self.capacity = capacity
        self.length = 0

    def lazy_initialization(self, key_states: Tensor, value_states: Tensor) -> None:
        self.device = key_states.device
        b, h, n, dk = key_states.shape
        cap = max(self.capacity, n)
        self.keys = key_states.new_empty(b, h, cap, dk)  # (B, H, cap, D)
        self.values = value_states.new_empty(b, h, cap, value_states.shape[-1])
        self.is_initialized = True

    def update(self, key_states: Tensor, value_states: Tensor, *args, **kwargs) -> tuple[Tensor, Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if end > self.keys.shape[-2]:
            raise RuntimeError(f"RowLayer: {end} positions do not fit a cache of capacity {self.keys.shape[-2]}")
        self.keys[:, :, self.length : end].copy_(key_states)
        self.values[:, :, self.length : end].copy_(value_states)
        self.length = end
        return self.keys[:, :, :end], self.values[:, :, :end]  # (B, H, end, D) views

    def get_seq_length(self) -> int:
        return self.length if self.is_initialized else 0

    def select_rows(self, index: Tensor, capacity: int | None = None) -> None:
        """Keep rows `index` (repeats allowed) in new buffers of `capacity` positions (default: the same)."""
        if not self.is_initialized:
            return
        cap = capacity or self.keys.shape[-2]
        for name in ("keys", "values"):
            old = getattr(self, name)
            if cap == old.shape[-2]:
                new = old.index_select(0, index)  # (k, H, cap, D)
            else:
                new = old.new_empty(len(index), old.shape[1], cap, old.shape[-1])
                new[:, :, : self.length] = old[:, :, : self.length].index_select(0, index)
            setattr(self, name, new)  # the old buffer is freed here, one layer at a time


class RowCache(Cache):
    """A `transformers` cache of `RowLayer`s: pre-allocated, written in place, rows selectable."""

    def __init__(self, num_layers: int, capacity: int = 0):
        super().__init__(layers=[RowLayer(capacity) for _ in range(num_layers)])

    def select_rows(self, index: Tensor, capacity: int | None = None) -> None:
        for layer in self.layers:
            layer.select_rows(index, capacity)

    def batch_select_indices(self, indices: Tensor) -> None:
        self.select_rows(indices)

    def batch_repeat_interleave(self, repeats: int) -> None:
        n = self.layers[0].keys.shape[0] if self.layers and self.layers[0].is_initialized else 0
        self.select_rows(torch.arange(n, device=self.layers[0].device).repeat_interleave(repeats))


# ---------------------------------------------------------------------------------------------------- batches
def _select_prompts(inputs, n_images: Sequence[int], idx: Sequence[int]) -> dict[str, Tensor]:
    """The model inputs of prompts `idx` (repeats allowed) out of an encoded batch, common left padding trimmed."""
    rows = torch.tensor(list(idx), dtype=torch.long)
    mask = inputs["attention_mask"][rows]  # (n, Lp)
    first = int((mask.cumsum(-1) == 0).sum(-1).min())  # pad columns shared by all selected rows
    out = {k: inputs[k][rows][:, first:] for k in ("input_ids", "attention_mask", "mm_token_type_ids")}
    if "image_grid_thw" in inputs:
        grid = inputs["image_grid_thw"]  # (n_images, 3)
        start = [0]
        for k in n_images:
            start.append(start[-1] + k)  # first image of each prompt
        patch_start = torch.cat([torch.zeros(1, dtype=torch.long), grid.prod(-1).cumsum(0)])  # (n_images + 1,)
        images = [i for p in idx for i in range(start[p], start[p + 1])]
        if images:
            out["image_grid_thw"] = grid[images]
            out["pixel_values"] = torch.cat(
                [inputs["pixel_values"][patch_start[i] : patch_start[i + 1]] for i in images])
    return out


def _prefill(model, feed: dict[str, Tensor], capacity: int) -> tuple[Tensor, RowCache, Tensor]:
    """One forward over left-padded prompts → last-position logits (n, V), their cache, next positions (n,)."""
    pos, next_pos = rope_positions(model, feed["input_ids"], feed["mm_token_type_ids"], feed["attention_mask"],
                                   feed.get("image_grid_thw"))
    cache = RowCache(hf_model(model).config.get_text_config().num_hidden_layers, capacity)
    out = model(**feed, position_ids=pos, cache=cache, use_cache=True, logits_to_keep=1)
    return out.logits[:, -1], cache, next_pos


def _draw(logp: Tensor, rows: Tensor, n_rows: int, temperature: float, generator) -> Tensor:
    """Next tokens (a,) of the live rows `rows` (a,) of a chunk of `n_rows`, from log-probs `logp` (a, V).

    generator: one for the chunk, or a list with one per live row (in the order of `rows`).
    """
    if temperature <= 0:
        return logp.argmax(-1)
    probs = logp.exp()
    if isinstance(generator, list):
        return torch.cat([torch.multinomial(probs[i], 1, generator=g) for i, g in enumerate(generator)])
    if probs.shape[0] < n_rows:  # rows were dropped: draw over every row, as when none was, and keep the live ones
        full = probs.new_zeros(n_rows, probs.shape[1])
        full[:, 0] = 1.0
        full[rows] = probs
        return torch.multinomial(full, 1, generator=generator)[rows, 0]
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


@dataclass
class _Decoded:
    ids: Tensor  # (n, max_new) token ids, pad after the stop token
    mask: Tensor  # (n, max_new) bool
    logp: Tensor  # (n, max_new)


@dataclass
class _Rules:
    """What every chunk of one `sample_completions` call is decoded under."""

    settings: SamplingSettings
    banned: Tensor  # (k,) token ids never sampled
    stop: Tensor  # (s,) stop token ids
    pad_id: int
    check_every: int  # decoded tokens between two looks at the stop flags


@dataclass
class _Chunk:
    """One chunk's n rows after their prefill, ready to decode."""

    logits: Tensor  # (n, V) last-position logits
    cache: RowCache  # the rows' prompt KV, with room for max_new_tokens more positions
    attn: Tensor  # (n, Lp) prompt attention mask
    next_pos: Tensor  # (n,) M-RoPE position of the first decoded token
    generator: Any  # one generator for the chunk, a list with one per row, or None


def _prefill_chunk(model, inputs, n_images: Sequence[int], prompt_of_row: list[int], shared_prefill: bool,
                   max_new_tokens: int) -> tuple[_Chunk, int]:
    """Prefill the prompts of one chunk's rows (row i belongs to prompt `prompt_of_row[i]`) → the chunk (its
    generator unset) and the tokens that went through the prefill forward."""
    device = next(model.parameters()).device
    if shared_prefill:
        uniq = sorted(set(prompt_of_row))
        feed = {k: v.to(device) for k, v in _select_prompts(inputs, n_images, uniq).items()}
        logits, cache, next_pos = _prefill(model, feed, capacity=0)  # (p, V), KV of the p prompts, (p,)
        routing.note_prefill(model, uniq)
        expand = torch.tensor([uniq.index(p) for p in prompt_of_row], device=device)  # (n,) row → prompt
        cache.select_rows(expand, capacity=feed["input_ids"].shape[1] + max_new_tokens)
        chunk = _Chunk(logits[expand], cache, feed["attention_mask"][expand], next_pos[expand], None)
    else:  # every row prefilled on its own copy of its prompt (images included)
        feed = {k: v.to(device) for k, v in _select_prompts(inputs, n_images, prompt_of_row).items()}
        logits, cache, next_pos = _prefill(model, feed, capacity=feed["input_ids"].shape[1] + max_new_tokens)
        routing.note_prefill(model, prompt_of_row)
        chunk = _Chunk(logits, cache, feed["attention_mask"], next_pos, None)
    return chunk, int(feed["input_ids"].numel())


def _decode(model, chunk: _Chunk, rules: _Rules) -> _Decoded:
    """Decode the n rows of one chunk from their prefill (logits, cache, prompt mask, positions)."""
    st, stop, pad_id = rules.settings, rules.stop, rules.pad_id
    max_new_tokens, cache, next_pos = st.max_new_tokens, chunk.cache, chunk.next_pos
    n, dev = chunk.logits.shape[0], chunk.logits.device
    out = _Decoded(torch.full((n, max_new_tokens), pad_id, dtype=torch.long, device=dev),
                   torch.zeros(n, max_new_tokens, dtype=torch.bool, device=dev),
                   torch.zeros(n, max_new_tokens, device=dev))
    lp = chunk.attn.shape[1]
    mask = torch.zeros(n, lp + max_new_tokens, dtype=chunk.attn.dtype, device=dev)  # (n, Lp + max_new): grows in place
    mask[:, :lp] = chunk.attn
    rows = torch.arange(n, device=dev)  # (a,) chunk rows still in the batch
    gens = list(chunk.generator) if isinstance(chunk.generator, (list, tuple)) else chunk.generator  # per row, or one
    done = torch.zeros(n, dtype=torch.bool, device=dev)  # (a,)
    logits = chunk.logits
    for step in range(max_new_tokens):
        logp = process_logits(logits, temperature=st.temperature, top_k=st.top_k, top_p=st.top_p,
                              banned=rules.banned)  # (a, V)
        nxt = _draw(logp, rows, n, st.temperature, gens)  # (a,)
        out.logp[rows, step] = logp.gather(-1, nxt[:, None])[:, 0].masked_fill(done, 0.0)
        nxt = torch.where(done, torch.full_like(nxt, pad_id), nxt)
        out.ids[rows, step] = nxt
        out.mask[rows, step] = ~done
        done = done | torch.isin(nxt, stop)
        if step == max_new_tokens - 1:
            break
        if (step + 1) % rules.check_every == 0:  # the only host syncs of the loop
            n_done = int(done.sum())
            if n_done == len(rows):
                break
            if n_done:  # drop the finished rows from the batch and the cache
                keep = (~done).nonzero()[:, 0]  # (a',)
                cache.select_rows(keep)
                if isinstance(gens, list):
                    gens = [gens[i] for i in keep.tolist()]
                rows, done, nxt, next_pos, mask = rows[keep], done[keep], nxt[keep], next_pos[keep], mask[keep]
        mask[:, lp + step] = 1
        a = len(rows)
        pos = (next_pos + step).view(1, a, 1).expand(3, a, 1)  # (3, a, 1): text tokens share all M-RoPE axes
        logits = model(input_ids=nxt[:, None], attention_mask=mask[:, : lp + step + 1], position_ids=pos,
                       cache=cache, use_cache=True).logits[:, -1]  # (a, V)
        routing.note_decode(model, rows, step)  # R3 capture: the experts token `step` of `rows` went to
    return out


@torch.no_grad()
def sample_completions(
    model,
    processor,
    prompts: Sequence[list[dict]],
    images: Sequence[Sequence[Any]],
    settings: SamplingSettings,
    *,
    shared_prefill: bool = True,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
    generation_batch_size: int = 0,
) -> Samples:
    """Sample `settings.group_size` completions for each prompt (with its PIL images); see the module docstring.

    settings: G, max_new_tokens, temperature, top_p, top_k (the rollout engines' `SamplingSettings`).
    generator: one generator for all rows (training), or one per row (B·G of them, row r = prompt r // G), so
    that a row's tokens do not depend on the other rows of its batch (resumable, sharded eval).
    temperature <= 0 decodes greedily (argmax, no random draws).
    generation_batch_size: most rows (completions, not prompts) decoded at once; 0 = all B·G rows. A multiple of
    G keeps each prompt in one chunk (otherwise a prompt split between two chunks is prefilled in both).
    The stop flags are looked at every `CHECK_EVERY` decoded tokens (read at call time; host syncs, and finished
    rows dropped).
    """
    tok = processor.tokenizer
    device = next(model.parameters()).device
    G, B, max_new_tokens, check_every = settings.group_size, len(prompts), settings.max_new_tokens, CHECK_EVERY
    if G < 1 or max_new_tokens < 1:
        raise ValueError(f"group_size and max_new_tokens must be >= 1, got {G}, {max_new_tokens}")
    if generation_batch_size < 0 or check_every < 1:
        raise ValueError(f"generation_batch_size must be >= 0 and CHECK_EVERY >= 1, got {generation_batch_size}, "
                         f"{check_every}")
    N = B * G
    if isinstance(generator, (list, tuple)) and len(generator) != N:
        raise ValueError(f"{len(generator)} generators for {N} rows: give one per row or a single one")
    routing.begin_forward(model, None)  # the sampler routes by its own top-k (recorded, under R3)
    inputs = encode_prompts(processor, prompts, images)
    n_images = [len(ims) for ims in images]
    stop = torch.tensor(token_ids(tok, STOP_TOKENS), dtype=torch.long, device=device)
    rules = _Rules(settings, torch.tensor(token_ids(tok, NEVER_SAMPLE), dtype=torch.long, device=device), stop,
                   tok.pad_token_id if tok.pad_token_id is not None else int(stop[0]), check_every)
    step_rows = generation_batch_size or N
    parts, prefill_tokens = [], 0
    for r0 in range(0, N, step_rows):
        r1 = min(N, r0 + step_rows)
        chunk, n_prefill = _prefill_chunk(model, inputs, n_images, [r // G for r in range(r0, r1)], shared_prefill,
                                          max_new_tokens)
        prefill_tokens += n_prefill
        chunk.generator = generator[r0:r1] if isinstance(generator, (list, tuple)) else generator
        routing.note_chunk(model, r0)
        parts.append(_decode(model, chunk, rules))
        del chunk
    completion_mask = torch.cat([p.mask for p in parts]).cpu()  # (N, max_new)
    lc = int(completion_mask.sum(-1).max())  # the longest completion: the steps the batch needed
    completion_ids = torch.cat([p.ids for p in parts]).cpu()[:, :lc]
    sample_logprobs = torch.cat([p.logp for p in parts]).cpu()[:, :lc]
    completion_mask = completion_mask[:, :lc].long()
    finished = (torch.isin(completion_ids, stop.cpu()) & completion_mask.bool()).any(-1)  # (N,)
    texts = tok.batch_decode(completion_ids, skip_special_tokens=True)
    return Samples(
        inputs=inputs, completion_ids=completion_ids, completion_mask=completion_mask, truncated=~finished,
        sample_logprobs=sample_logprobs, texts=texts, group_size=G, prefill_tokens=prefill_tokens,
    )

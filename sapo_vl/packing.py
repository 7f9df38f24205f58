"""The update phase on packed micro-batches: whole groups, each image encoded once, each prompt computed once.

The pieces, used by the π_old / reference passes and the optimizer steps alike:

- `group_minibatches`: a rollout's rows shuffled *by group* and cut into minibatches, so a group's G rows meet in
  the same minibatch (whole groups whenever the groups per rank divide by the number of minibatches).
- `plan_micro_batches`: micro-batches bounded by *tokens* (the padded R × L of the batch) instead of rows. The
  unit is a packed row: one prompt followed by some of its completions (all G when they fit the budget; a group
  that does not fit is cut into several rows, each carrying the prompt). Rows of similar length share a batch.
- `PackedBatch` + `packed_logprobs`: the forward. A packed row is
  `[prompt (image tokens included), completion 1, ..., completion k]` in which the prompt is causal and each
  completion sees the prompt and itself (causally), nothing else: `sapo_vl.shared_prefix` computes exactly that
  attention with the standard fused kernels (no L × L mask; the prompt's keys and values shared by every
  completion), inside the model's own attention layers. Qwen3-VL's M-RoPE
  positions: the prompt's from the model's own `get_rope_index`, completion j's text positions
  `next_pos + 0 .. len_j − 1` on all three axes, where `next_pos` is the prompt's largest position + 1 — exactly
  where the completion sits when it is the only one after its prompt. The images of the distinct prompts of a
  micro-batch go through the vision tower once; their pooled and deepstack features are indexed for every packed
  row of their prompt (gradients flow back to the tower through every use). `PackedPolicyLogprobs` is the
  trained module that takes either a row micro-batch or `packed=PackedBatch`.
- `PackedSource`: these micro-batches as the update loop takes them (`update.MicroBatchSource`); the loop
  (`update.py`) runs the π_old / reference passes and the optimizer steps on it when `algorithm.shared_prefix`
  is on.

Log-probabilities and gradients equal those of the one-row-per-completion path (`Rollout.micro_batch` +
`PolicyLogprobs`) to float32 rounding: `tests/test_packing.py` measures the gap for one image, several images,
text-only prompts, dense and MoE, and on 2 ranks under ZeRO-3. `bench/bench_update.py` measures the speed-up.

Departures from the row path, all deliberate:
- text-only prompts get positions counted from their first real token; the row path counts left padding too
  when a micro-batch has no image (M-RoPE on text is relative, so the two agree to rounding);
- the number of micro-batches of a minibatch varies with the lengths, so the gradient-accumulation boundary is
  set explicitly (`engine.set_gradient_accumulation_boundary`), and every rank runs as many micro-batches as
  the rank that needs most (ZeRO's collectives stay in step).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.distributed as tdist

from . import routing
from .dist import all_reduce
from .logprobs import PolicyLogprobs, _dummy_vision, chunked_logprobs
from .models.loading import hf_model
from .models.archs import arch_from_config
from .shared_prefix import SharedPrefixLayout, UnitCosts, layout_of, prefer_packed, route

Tensor = torch.Tensor
PackedRow = tuple[int, tuple[int, ...]]
"""(prompt index, completion rows) of one packed row: the prompt followed by these completions, in order."""


# ---------------------------------------------------------------------------------------------------- minibatches
def group_minibatches(n_rows: int, group_size: int, num_minibatches: int, generator: torch.Generator) -> list[list[int]]:
    """Rows 0..n_rows−1 (group g = rows g·G … g·G+G−1) in a group-shuffled order, cut into equal minibatches.

    Every minibatch is a set of whole groups when the number of groups divides by `num_minibatches`; otherwise
    (fewer groups than minibatches per rank, say) a group may straddle two consecutive minibatches.
    """
    if n_rows % group_size or n_rows % num_minibatches:
        raise ValueError(f"{n_rows} rows do not split into groups of {group_size} and {num_minibatches} minibatches")
    groups = torch.randperm(n_rows // group_size, generator=generator).tolist()
    order = [g * group_size + j for g in groups for j in range(group_size)]
    size = n_rows // num_minibatches
    return [order[m * size : (m + 1) * size] for m in range(num_minibatches)]


# ---------------------------------------------------------------------------------------------------- planning
def _row_len(prompt_len: Sequence[int], completion_len: Sequence[int], row: PackedRow) -> int:
    return prompt_len[row[0]] + sum(completion_len[r] for r in row[1])


def plan_micro_batches(
    rows: Sequence[int], group_size: int, prompt_len: Sequence[int], completion_len: Sequence[int], *,
    token_budget: int = 0, max_completions: int = 0, completions_per_row: int = 0, min_micro_batches: int = 1,
) -> list[list[PackedRow]]:
    """Cut completion rows `rows` into micro-batches of packed rows; pure arithmetic on lengths.

    prompt_len[g]: real tokens of prompt g; completion_len[r]: real tokens of completion row r (≥ 1).
    token_budget: most padded tokens (packed rows × longest row) per micro-batch, 0 = unbounded;
    max_completions: most completions per micro-batch, 0 = unbounded; completions_per_row: most completions
    per packed row (1 = no prompt sharing), 0 = a whole group; min_micro_batches: split further until there are
    at least this many (to match other ranks). A packed row longer than the budget is a micro-batch of its own.
    """
    by_group: dict[int, list[int]] = defaultdict(list)
    for r in rows:
        by_group[r // group_size].append(r)
    per_row = completions_per_row or group_size
    segments: list[PackedRow] = []
    for g, members in by_group.items():  # cut a group into rows that fit the budget
        cur: list[int] = []
        for r in members:
            longer = prompt_len[g] + sum(completion_len[c] for c in cur) + completion_len[r]
            if cur and (len(cur) >= per_row or (token_budget and longer > token_budget)):
                segments.append((g, tuple(cur)))
                cur = []
            cur.append(r)
        segments.append((g, tuple(cur)))
    length = {s: _row_len(prompt_len, completion_len, s) for s in segments}
    segments.sort(key=lambda s: -length[s])  # first-fit decreasing: a batch's first row is its longest
    batches: list[list[PackedRow]] = []
    for s in segments:
        n_comp = len(s[1])
        for b in batches:
            fits_tokens = not token_budget or (len(b) + 1) * length[b[0]] <= token_budget
            fits_rows = not max_completions or sum(len(x[1]) for x in b) + n_comp <= max_completions
            if fits_tokens and fits_rows:
                b.append(s)
                break
        else:
            batches.append([s])
    while len(batches) < min_micro_batches:
        batches = _split_largest(batches, prompt_len, completion_len)
    return batches


def _split_largest(batches: list[list[PackedRow]], prompt_len, completion_len) -> list[list[PackedRow]]:
    """One more micro-batch: halve the batch with the most padded tokens (by rows, else its row's completions)."""
    cost = lambda b: len(b) * max(_row_len(prompt_len, completion_len, s) for s in b)  # noqa: E731
    splittable = [i for i, b in enumerate(batches) if len(b) > 1 or len(b[0][1]) > 1]
    if not splittable:
        raise ValueError(f"cannot cut {len(batches)} micro-batches of single completions any further")
    i = max(splittable, key=lambda j: cost(batches[j]))
    b = batches[i]
    if len(b) > 1:
        parts = [b[: len(b) // 2], b[len(b) // 2 :]]
    else:
        g, comp = b[0]
        parts = [[(g, comp[: len(comp) // 2])], [(g, comp[len(comp) // 2 :])]]
    return batches[:i] + parts + batches[i + 1 :]


def padding_counts(batches: list[list[PackedRow]], prompt_len, completion_len) -> tuple[int, int]:
    """(real tokens, padded tokens R × L) over micro-batches; padding fraction = 1 − real / padded."""
    real = padded = 0
    for b in batches:
        lens = [_row_len(prompt_len, completion_len, s) for s in b]
        real += sum(lens)
        padded += len(b) * max(lens)
    return real, padded


def update_limits(table: "PromptTable", micro: int, micro_tokens: int) -> dict:
    """`plan_micro_batches` limits from the config: `micro_tokens` padded tokens per micro-batch, or (0) what a
    row-path micro-batch of `micro` rows may hold, `micro` × (longest prompt + longest completion)."""
    budget = micro_tokens or micro * (max(table.prompt_len) + max(table.completion_len))
    return {"token_budget": budget}


def micro_batches_in_step(rows: Sequence[int], table: "PromptTable", **limits) -> list[list[PackedRow]]:
    """`plan_micro_batches` on this rank, re-planned so that every rank runs the same number of micro-batches."""
    local = plan_micro_batches(rows, table.group_size, table.prompt_len, table.completion_len, **limits)
    need = int(all_reduce([float(len(local))], tdist.ReduceOp.MAX)[0])
    if need == len(local):
        return local
    return plan_micro_batches(rows, table.group_size, table.prompt_len, table.completion_len,
                              **{**limits, "min_micro_batches": need})


# ---------------------------------------------------------------------------------------------------- tensors
@dataclass
class PromptTable:
    """What packing needs of a rollout, prepared once per rollout: unpadded prompts with their M-RoPE positions."""

    ids: list[Tensor]
    """Per prompt: (p_b,) token ids, padding removed."""
    positions: list[Tensor]
    """Per prompt: (3, p_b) M-RoPE positions (temporal, height, width) from the model's `get_rope_index`."""
    next_pos: list[int]
    """Per prompt: the position of a completion's first token (largest prompt position + 1)."""
    pixel_values: list[Tensor | None]
    """Per prompt: its images' patches (P_b, D), or None."""
    image_grid_thw: list[Tensor | None]
    """Per prompt: (n_images_b, 3) patch grids, or None."""
    completion_ids: Tensor
    """(N, Lc) right-padded completions; row r belongs to prompt r // group_size."""
    completion_len: list[int]
    """(N) real tokens of each completion (at least 1, so an empty row still has a slot)."""
    group_size: int

    @property
    def prompt_len(self) -> list[int]:
        return [int(x.numel()) for x in self.ids]


@torch.no_grad()
def prompt_table(rollout, policy) -> PromptTable:
    """The rollout's prompts unpadded, with positions from the policy's own `get_rope_index` (no weight is read)."""
    model = hf_model(policy)
    if model.config.model_type not in ("qwen3_vl", "qwen3_vl_moe"):
        raise ValueError(f"shared-prefix packing supports Qwen3-VL (qwen3_vl, qwen3_vl_moe), not "
                         f"{model.config.model_type!r}; set algorithm.shared_prefix=false")
    ids, positions, nxt = [], [], []
    for b in range(rollout.prompt_ids.shape[0]):
        keep = rollout.prompt_mask[b].bool()
        x, mm = rollout.prompt_ids[b, keep], rollout.prompt_mm_types[b, keep]  # (p,), (p,)
        grid = rollout.image_grid_thw[b]
        pos, _ = model.model.get_rope_index(x[None], mm_token_type_ids=mm[None],
                                            image_grid_thw=None if grid is None else grid.clone())  # (3, 1, p)
        ids.append(x)
        positions.append(pos[:, 0])
        nxt.append(int(pos.max()) + 1)
    clen = rollout.completion_mask.sum(-1).clamp(min=1).tolist()
    return PromptTable(ids=ids, positions=positions, next_pos=nxt, pixel_values=list(rollout.pixel_values),
                       image_grid_thw=list(rollout.image_grid_thw), completion_ids=rollout.completion_ids,
                       completion_len=[int(c) for c in clen], group_size=rollout.group_size)


@dataclass
class PackedBatch:
    """One micro-batch of R packed rows of length L holding n completions (of at most Lc tokens)."""

    input_ids: Tensor
    """(R, L) [prompt, completion 1, ..., completion k, padding] per row."""
    position_ids: Tensor
    """(3, R, L) M-RoPE positions; 0 on padding."""
    segment_ids: Tensor
    """(R, L) 0 on the prompt, k on completion k, −1 on padding (`shared_prefix_mask` makes the dense mask of it)."""
    layout: SharedPrefixLayout
    """The same layout as the attention kernel takes it."""
    pred_index: Tensor
    """(n, Lc) flat index into the (R·L) hidden states of the position that predicts each completion token."""
    targets: Tensor
    """(n, Lc) completion tokens (0 past each completion's end)."""
    rows: list[int]
    """(n) the rollout rows of the completions, in output order."""
    pixel_values: Tensor | None
    """(P, D) patches of the distinct prompts' images, each image once."""
    image_grid_thw: Tensor | None
    """(n_distinct_images, 3)."""
    image_order: list[int]
    """Distinct-image index of each image occurrence, in the order the image tokens appear row by row."""
    real_tokens: int
    """Tokens that are not padding (the batch holds R × L)."""
    routing: Tensor | None = None
    """(R, L, moe_layers, k) recorded expert indices to replay (`sapo_vl.routing.packed_routes`), or None."""

    @property
    def n_completion(self) -> int:
        return int(self.targets.shape[1])

    def to(self, device) -> "PackedBatch":
        mv = lambda t: t.to(device) if isinstance(t, (Tensor, SharedPrefixLayout)) else t  # noqa: E731
        return PackedBatch(**{k: mv(v) for k, v in self.__dict__.items()})

    def logprobs(self, module, **kw) -> tuple[Tensor, Tensor]:
        """(n, Lc) log-probs and entropies of `rows` through `module` (a DeepSpeed engine around a
        `PackedPolicyLogprobs`, or one itself: its hooks gather ZeRO-3 parameters)."""
        return module(packed=self, **kw)

    def counts(self) -> dict[str, float]:
        return {"real_tokens": float(self.real_tokens), "padded_tokens": float(self.input_ids.numel()),
                "vision_patches": float(vision_patches(self)), "packed": 1.0}


def packed_batch(table: PromptTable, batch: list[PackedRow], device: torch.device | str = "cpu") -> PackedBatch:
    """The tensors of one planned micro-batch (see `PackedBatch`)."""
    plen, clen = table.prompt_len, table.completion_len
    R, L = len(batch), max(_row_len(plen, clen, s) for s in batch)
    comp_rows = [r for _, rs in batch for r in rs]
    lc = max(clen[r] for r in comp_rows)
    input_ids = torch.zeros(R, L, dtype=torch.long)
    position_ids = torch.zeros(3, R, L, dtype=torch.long)
    segment_ids = torch.full((R, L), -1, dtype=torch.long)
    pred_index = torch.zeros(len(comp_rows), lc, dtype=torch.long)
    targets = torch.zeros(len(comp_rows), lc, dtype=torch.long)
    first_image: dict[int, int] = {}  # prompt → index of its first image among the distinct ones
    pixels, grids, order = [], [], []
    n_images = 0
    i = 0
    for r, (g, rs) in enumerate(batch):
        p = plen[g]
        input_ids[r, :p] = table.ids[g]
        position_ids[:, r, :p] = table.positions[g]
        segment_ids[r, :p] = 0
        s = p
        for k, row in enumerate(rs, start=1):
            c = clen[row]
            input_ids[r, s : s + c] = table.completion_ids[row, :c]
            position_ids[:, r, s : s + c] = table.next_pos[g] + torch.arange(c)
            segment_ids[r, s : s + c] = k
            pred_index[i, 0] = r * L + p - 1  # the prompt's last token predicts every completion's first
            pred_index[i, 1:c] = r * L + s + torch.arange(c - 1)
            targets[i, :c] = table.completion_ids[row, :c]
            i, s = i + 1, s + c
        if table.image_grid_thw[g] is not None:
            if g not in first_image:
                first_image[g] = n_images
                n_images += int(table.image_grid_thw[g].shape[0])
                pixels.append(table.pixel_values[g])
                grids.append(table.image_grid_thw[g])
            order.extend(range(first_image[g], first_image[g] + table.image_grid_thw[g].shape[0]))
    real = sum(_row_len(plen, clen, s) for s in batch)
    layout = layout_of([plen[g] for g, _ in batch], [[clen[r] for r in rs] for _, rs in batch], L)
    return PackedBatch(
        input_ids=input_ids, position_ids=position_ids, segment_ids=segment_ids, layout=layout, pred_index=pred_index,
        targets=targets, rows=comp_rows, pixel_values=torch.cat(pixels) if pixels else None,
        image_grid_thw=torch.cat(grids) if grids else None, image_order=order, real_tokens=real,
    ).to(device)


def shared_prefix_mask(segment_ids: Tensor) -> Tensor:
    """(R, L) segment ids → (R, 1, L, L) bool, True where query i may attend to key j: the dense form of what
    `sapo_vl.shared_prefix` computes (the forward never builds it; tests compare against it).

    Causal, and a key is visible if it is on the prompt (segment 0) or in the query's own segment; a padding
    query sees earlier padding only (never an empty row, so no NaN in the softmax).
    """
    L = segment_ids.shape[1]
    causal = torch.ones(L, L, dtype=torch.bool, device=segment_ids.device).tril()  # (L, L)
    q, k = segment_ids[:, :, None], segment_ids[:, None, :]  # (R, L, 1), (R, 1, L)
    visible = ((k == 0) & (q >= 0)) | (k == q)  # (R, L, L)
    return (causal & visible)[:, None]  # (R, 1, L, L)


def packed_logprobs(
    module, batch: PackedBatch, *, temperature: float = 1.0, touch_vision: bool = False, with_entropy: bool = True,
) -> tuple[Tensor, Tensor]:
    """`PolicyLogprobs`' computation on a packed batch → (logp (n, Lc), entropy (n, Lc)) of `batch.rows`, 0 past
    each completion's end (the vocabulary projection runs on the real tokens only).

    module: the `PolicyLogprobs` (its `.policy` and `.chunk_size` are used). touch_vision: as in
    `PolicyLogprobs.forward`, run the tower on a dummy image when the batch has none (ZeRO-3 in step).
    """
    model = hf_model(module.policy)
    encoded, dummy = None, None
    if batch.pixel_values is not None:  # each distinct image once; its features indexed for every use
        out = model.model.get_image_features(batch.pixel_values, batch.image_grid_thw, return_dict=True)
        out.pooler_output = tuple(out.pooler_output[i] for i in batch.image_order)
        out.deepstack_features = [tuple(f[i] for i in batch.image_order) for f in out.deepstack_features]
        encoded = {"image": out}
    elif touch_vision:
        dummy = _dummy_vision(model, batch.input_ids.device)
    route(model)
    # a 4D mask passes transformers' mask builder untouched (no L × L mask is built); the routed attention ignores it
    placeholder = torch.ones(batch.input_ids.shape[0], 1, 1, 1, dtype=torch.bool, device=batch.input_ids.device)
    layout = batch.layout
    calls = layout.calls
    routing.begin_forward(model, batch.routing)
    out = model.model(input_ids=batch.input_ids, attention_mask=placeholder, position_ids=batch.position_ids,
                      mm_encoder_outputs=encoded, use_cache=False, shared_prefix=layout)
    if layout.calls == calls:
        raise RuntimeError("the packed forward's attention layers did not run the shared-prefix kernel "
                           f"(attn_implementation {model.config.get_text_config()._attn_implementation!r})")
    h = out.last_hidden_state  # (R, L, H)
    # the vocabulary projection on the T real completion tokens only (the (n, Lc) grid's padding stays 0)
    real = layout.comp_valid  # (n, Lc)
    hidden = h.reshape(-1, h.shape[-1])[batch.pred_index[real]]  # (T, H)
    lp, ent = chunked_logprobs(hidden[None], model.get_output_embeddings(), batch.targets[real][None],
                               temperature=temperature, chunk_size=module.chunk_size, with_entropy=with_entropy,
                               banned=module.banned.to(hidden.device))  # (1, T) each
    logp = lp.new_zeros(real.shape).masked_scatter(real, lp[0])  # (n, Lc)
    entropy = ent.new_zeros(real.shape).masked_scatter(real, ent[0])  # (n, Lc)
    if dummy is not None:
        logp = logp + 0.0 * dummy
    return logp, entropy


class PackedPolicyLogprobs(PolicyLogprobs):
    """`PolicyLogprobs` that also takes a `PackedBatch` (`packed=`), so the DeepSpeed engine can run both paths."""

    def forward(self, rows=None, *, packed: PackedBatch | None = None, **kwargs) -> tuple[Tensor, Tensor]:
        if packed is None:
            return super().forward(rows, **kwargs)
        return packed_logprobs(self, packed, **kwargs)


def vision_patches(batch: PackedBatch) -> int:
    """Patches this micro-batch sends through the vision tower."""
    return 0 if batch.image_grid_thw is None else int(batch.image_grid_thw.prod(-1).sum())


# ---------------------------------------------------------------------------------------------------- the source
class PackedSource:
    """`update.MicroBatchSource` of packed micro-batches: minibatches of whole groups (`group_minibatches`), cut into
    token-budget micro-batches (`micro_batches_in_step`), each a `PackedBatch`. The prompt table is built once.

    auto (`algorithm.shared_prefix: auto`): each planned micro-batch runs packed, or as one row micro-batch of
    its completions (`Rollout.row_batch`) where `shared_prefix.prefer_packed` finds that cheaper and within the
    token budget; the choice depends on lengths only, so every rank makes its own without a collective.
    """

    def __init__(self, rollout, policy, *, micro_rows: int, micro_tokens: int, device: torch.device,
                 auto: bool = False):
        self.rollout = rollout
        self.table = prompt_table(rollout, policy)
        self.limits = update_limits(self.table, micro_rows, micro_tokens)
        self.device = device
        self.unit = UnitCosts.of(arch_from_config(hf_model(policy).config.to_dict(), "policy")) if auto else None
        self.patches = [[] if g is None else [int(x) for x in g.prod(-1)] for g in self.table.image_grid_thw]

    def minibatches(self, n_minibatches: int, generator: torch.Generator) -> list[list[int]]:
        return group_minibatches(self.table.completion_ids.shape[0], self.table.group_size, n_minibatches, generator)

    def plan(self, rows: Sequence[int]) -> list[list[PackedRow]]:
        return micro_batches_in_step(rows, self.table, **self.limits)

    def batch(self, plan: list[PackedRow]):
        """A `PackedBatch`, or under auto a `RowBatch` of the same completions where the estimate prefers rows
        (with the rows' recorded experts when routing replay is on)."""
        if self.unit is not None and not prefer_packed(plan, self.table.prompt_len, self.table.completion_len,
                                                       self.patches, self.unit, self.limits["token_budget"]):
            return self.rollout.row_batch([r for _, rs in plan for r in rs], self.device)
        out = packed_batch(self.table, plan, self.device)
        routes = routing.packed_routes(self.rollout, plan, out.segment_ids)
        out.routing = None if routes is None else routes.to(self.device)
        return out

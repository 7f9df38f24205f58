"""Attention over packed rows [prompt, completion 1, ..., completion k] that computes only what the row path does.

A packed row (`sapo_vl.packing`) holds one prompt followed by some of its completions; completion j attends to the
prompt and (causally) to itself, never to another completion. A dense 4D mask over the row costs (P + ΣC)² score
pairs and O(L²) memory, and rules out FlashAttention. `shared_prefix_attention` instead makes three calls of the
standard fused kernels (FlashAttention-style, with their log-sum-exp), none with a mask:

- the prompts: causal attention over each row's first P tokens (P²/2 pairs);
- completions → prompt: all completion tokens of a row, as one long query sequence, over that row's prompt keys and
  values, shared by every completion (G·C·P pairs);
- completions → themselves: one causal call per completion (G·C²/2 pairs).

Every call reads views of q, k, v (no gather of the completions, no index tensors); only key/value heads are
repeated for grouped-query attention, and the outputs are written (and merged) in place in the (R, L, H, D) result.

The two completion parts are softmax-merged through their log-sum-exps: out = Σ exp(lse_part − lse) · out_part,
lse = logaddexp(lse_cross, lse_own), which is the attention over [prompt, own completion] exactly. The backward
calls each kernel's own backward with the *merged* output and log-sum-exp (dS = P · (dP − rowsum(dO ∘ O)) with P
from the merged lse), which is the gradient of the merged attention exactly; gradients reach the prompt's keys and
values (hence the prompt tokens and the vision tower) from every completion.

Kernels: `_scaled_dot_product_flash_attention_for_cpu` on CPU, FlashAttention (fp16 / bf16) or memory-efficient
attention (fp32) on CUDA, and an explicit-softmax fallback elsewhere. The kernel runs inside the text model's own
attention modules: `route(model)` registers a wrapper around the model's attention implementation (sdpa, eager,
flash_attention_2) in `transformers`' attention registry that runs this kernel when the layer is called with a
`shared_prefix=SharedPrefixLayout` keyword argument (and the original function otherwise), so activation
checkpointing recomputes the same thing.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field

import torch

Tensor = torch.Tensor


# ---------------------------------------------------------------------------------------------------- the layout
@dataclass
class SharedPrefixLayout:
    """Where prompts and completions sit in a (R, L) packed micro-batch; built once per batch, shared by layers."""

    prompt_len: list[int]
    """(R) prompt tokens at the start of each row."""
    row_end: list[int]
    """(R) end of each row's last completion (positions past it are padding)."""
    completion_len: list[list[int]]
    """(R, k_r) the lengths of each row's completions, in order."""
    length: int
    """L, the padded row length."""
    comp_index: Tensor
    """(n, Cmax) flat index into the R·L positions of each completion's tokens (clamped past its end)."""
    comp_valid: Tensor
    """(n, Cmax) bool, True on a completion's real tokens."""
    prompt_valid: Tensor
    """(R, Pmax) bool, True on a row's prompt tokens."""
    calls: int = field(default=0, compare=False)
    """Attention layers that ran the kernel on this layout (a forward that ran none was not routed)."""

    @property
    def prompt_index(self) -> Tensor:
        """(Σ P,) flat positions of the prompt tokens, row by row."""
        r, t = self.prompt_valid.nonzero(as_tuple=True)
        return r * self.length + t

    @property
    def token_index(self) -> Tensor:
        """(T,) flat positions of all completion tokens, row by row (= completion by completion)."""
        return self.comp_index[self.comp_valid]

    def to(self, device) -> "SharedPrefixLayout":
        return SharedPrefixLayout(self.prompt_len, self.row_end, self.completion_len, self.length,
                                  self.comp_index.to(device), self.comp_valid.to(device), self.prompt_valid.to(device))

    def spans(self):
        """(row, start, length) of every completion, row by row."""
        for r, (p, cs) in enumerate(zip(self.prompt_len, self.completion_len)):
            for c in cs:
                yield r, p, c
                p += c


def layout_of(prompt_len: list[int], completion_lens: list[list[int]], length: int) -> SharedPrefixLayout:
    """The layout of rows [prompt_len[r], completion_lens[r]..., padding to `length`]."""
    spans = []  # (flat start, length) per completion
    for r, (p, cs) in enumerate(zip(prompt_len, completion_lens)):
        s = p
        for c in cs:
            spans.append((r * length + s, c))
            s += c
    cmax = max(c for _, c in spans)
    t = torch.arange(cmax)
    start = torch.tensor([s for s, _ in spans])[:, None]  # (n, 1)
    clen = torch.tensor([c for _, c in spans])[:, None]  # (n, 1)
    pmax = max(prompt_len)
    return SharedPrefixLayout(
        prompt_len=list(prompt_len), row_end=[p + sum(cs) for p, cs in zip(prompt_len, completion_lens)],
        completion_len=[list(cs) for cs in completion_lens], length=length,
        comp_index=start + torch.minimum(t, clen - 1), comp_valid=t < clen,
        prompt_valid=torch.arange(pmax)[None] < torch.tensor(prompt_len)[:, None],
    )


# ---------------------------------------------------------------------------------------------------- kernels
def _attend(q: Tensor, k: Tensor, v: Tensor, causal: bool, scale: float) -> tuple[Tensor, Tensor, tuple]:
    """q (B, H, Lq, D), k, v (B, H, Lk, D) → out (B, H, Lq, D), lse (B, H, Lq) float32, and what the backward needs
    (causal, scale, the kernel's own extras)."""
    if q.device.type == "cpu":
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, causal, scale=scale)
        return out, lse, (causal, scale, ())
    if q.device.type == "cuda" and q.dtype in (torch.float16, torch.bfloat16):
        o = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, 0.0, causal, False, scale=scale)
        return o[0], o[1], (causal, scale, (o[2], o[3], o[4], o[5], o[6], o[7]))
    if q.device.type == "cuda":
        out, lse, seed, offset = torch.ops.aten._scaled_dot_product_efficient_attention(
            q, k, v, None, True, 0.0, causal, scale=scale)
        return out, lse[..., : q.shape[2]], (causal, scale, (lse.shape[-1], seed, offset))
    return _math_attend(q, k, v, causal, scale) + ((causal, scale, ()),)


def _attend_backward(do: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor,
                     saved: tuple) -> tuple[Tensor, Tensor, Tensor]:
    """The kernel's own backward, given the (merged) output and log-sum-exp and `_attend`'s third output → dq, dk,
    dv."""
    causal, scale, extra = saved
    if q.device.type == "cpu":
        return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
            do, q, k, v, out, lse, 0.0, causal, scale=scale)
    if q.device.type == "cuda" and q.dtype in (torch.float16, torch.bfloat16):
        cq, ck, mq, mk, seed, offset = extra
        return torch.ops.aten._scaled_dot_product_flash_attention_backward(
            do, q, k, v, out, lse, cq, ck, mq, mk, 0.0, causal, seed, offset, scale=scale)
    if q.device.type == "cuda":
        width, seed, offset = extra
        lse = torch.nn.functional.pad(lse, (0, width - lse.shape[-1]))
        dq, dk, dv, _ = torch.ops.aten._scaled_dot_product_efficient_attention_backward(
            do, q, k, v, None, out, lse.contiguous(), seed, offset, 0.0, [True, True, True, False], causal, scale=scale)
        return dq, dk, dv
    return _math_attend_backward(do, q, k, v, out, lse, causal, scale)


def _wide(x: Tensor) -> Tensor:
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _math_scores(q: Tensor, k: Tensor, causal: bool, scale: float) -> Tensor:
    s = (_wide(q) @ _wide(k).transpose(-1, -2)) * scale  # (B, H, Lq, Lk)
    if causal:
        s = s.masked_fill(torch.ones(s.shape[-2:], dtype=torch.bool, device=s.device).triu(1), float("-inf"))
    return s


def _math_attend(q, k, v, causal, scale):
    """The explicit-softmax fallback (devices without a fused kernel)."""
    s = _math_scores(q, k, causal, scale)
    lse = torch.logsumexp(s, -1)  # (B, H, Lq)
    return (torch.exp(s - lse[..., None]) @ _wide(v)).to(q.dtype), lse


def _math_attend_backward(do, q, k, v, out, lse, causal, scale):
    p = torch.exp(_math_scores(q, k, causal, scale) - lse[..., None])  # (B, H, Lq, Lk)
    do, out = _wide(do), _wide(out)
    ds = p * (do @ _wide(v).transpose(-1, -2) - (do * out).sum(-1, keepdim=True)) * scale  # (B, H, Lq, Lk)
    return ((ds @ _wide(k)).to(q.dtype), (ds.transpose(-1, -2) @ _wide(q)).to(k.dtype),
            (p.transpose(-1, -2) @ do).to(v.dtype))


# ---------------------------------------------------------------------------------------------------- the attention
def _rep(x: Tensor, n_rep: int) -> Tensor:
    """(B, Hkv, L, D) → (B, Hkv·n_rep, L, D), each key head repeated for its query heads (as `repeat_kv`)."""
    return x if n_rep == 1 else x.repeat_interleave(n_rep, dim=1)


def _sum_rep(x: Tensor, n_rep: int) -> Tensor:
    """`_rep`'s adjoint: (B, Hkv·n_rep, L, D) → (B, Hkv, L, D)."""
    return x if n_rep == 1 else x.unflatten(1, (-1, n_rep)).sum(2)


def _kv(x: Tensor, r: int, a: int, b: int, n_rep: int) -> Tensor:
    """Row r's key (or value) heads at positions a..b−1, each repeated for its query heads → (1, H, b − a, D)."""
    return _rep(x[r : r + 1, :, a:b], n_rep)


def _merge(lse_x: Tensor, out_x: Tensor, lse_o: Tensor, out_o: Tensor) -> tuple[Tensor, Tensor]:
    """Softmax-merge two attentions of the same queries over disjoint keys: (1, H, c) log-sum-exps and (1, H, c, D)
    outputs → the (1, H, c, D) attention over both key sets and its (1, H, c) log-sum-exp."""
    lse = torch.logaddexp(lse_x, lse_o)  # (1, H, c)
    out = torch.exp(lse_x - lse)[..., None] * _wide(out_x) + torch.exp(lse_o - lse)[..., None] * _wide(out_o)
    return out.to(out_x.dtype), lse


class _SharedPrefixAttention(torch.autograd.Function):
    """Kernel calls on views of q, k, v: no gather of the completions, no index tensors; only the (R, Pmax)
    prompt block and the completions' key/value heads (repeated for grouped-query heads) are copied."""

    @staticmethod
    def forward(ctx, q, k, v, layout: SharedPrefixLayout, scale: float):
        R, H, L, D = q.shape
        n_rep = H // k.shape[1]
        pmax = max(layout.prompt_len)
        out = q.new_zeros(R, L, H, D)
        lse = q.new_zeros(R, H, L, dtype=torch.promote_types(q.dtype, torch.float32))  # the completions' merged lse
        # the prompts: causal over each row's first Pmax positions (a shorter prompt's extra positions are dropped)
        out_p, lse_p, ex_p = _attend(q[:, :, :pmax], _rep(k[:, :, :pmax], n_rep), _rep(v[:, :, :pmax], n_rep),
                                     True, scale)  # (R, H, Pmax, D), (R, H, Pmax)
        for r, p in enumerate(layout.prompt_len):
            out[r, :p] = out_p[r, :, :p].transpose(0, 1)
        # completions → their row's prompt, all completion tokens of a row as one query sequence
        ex_x = []
        for r, (p, e) in enumerate(zip(layout.prompt_len, layout.row_end)):
            o, lse_r, ex = _attend(q[r : r + 1, :, p:e], _kv(k, r, 0, p, n_rep), _kv(v, r, 0, p, n_rep), False, scale)
            out[r, p:e] = o[0].transpose(0, 1)  # (T_r, H, D), merged below
            lse[r, :, p:e] = lse_r[0]
            ex_x.append(ex)
        # completions → themselves, causal, one call per completion; softmax-merged with the part above
        ex_o = []
        for r, s, c in layout.spans():
            o, lse_o, ex = _attend(q[r : r + 1, :, s : s + c], _kv(k, r, s, s + c, n_rep), _kv(v, r, s, s + c, n_rep),
                                   True, scale)  # (1, H, c, D), (1, H, c)
            o, lse_m = _merge(lse[r : r + 1, :, s : s + c], out[r : r + 1, s : s + c].transpose(1, 2), lse_o, o)
            out[r, s : s + c] = o[0].transpose(0, 1)
            lse[r, :, s : s + c] = lse_m[0]
            ex_o.append(ex)
        ctx.save_for_backward(q, k, v, out_p, lse_p, out, lse)
        ctx.layout, ctx.extra = layout, (ex_p, ex_x, ex_o)
        return out

    @staticmethod
    def backward(ctx, grad):
        q, k, v, out_p, lse_p, out, lse = ctx.saved_tensors
        lay, (ex_p, ex_x, ex_o) = ctx.layout, ctx.extra
        R, H, L, D = q.shape
        n_rep = H // k.shape[1]
        pmax = max(lay.prompt_len)
        dq, dk, dv = (x.new_zeros(R, L, x.shape[1], D) for x in (q, k, v))  # (R, L, h, D)
        # the prompts: a shorter prompt's extra positions get no output gradient, hence exactly zero gradients
        do_p = grad.new_zeros(R, pmax, H, D)
        for r, p in enumerate(lay.prompt_len):
            do_p[r, :p] = grad[r, :p]
        dqp, dkp, dvp = _attend_backward(do_p.transpose(1, 2), q[:, :, :pmax], _rep(k[:, :, :pmax], n_rep),
                                         _rep(v[:, :, :pmax], n_rep), out_p, lse_p, ex_p)
        dq[:, :pmax] += dqp.transpose(1, 2)
        dk[:, :pmax] += _sum_rep(dkp, n_rep).transpose(1, 2)
        dv[:, :pmax] += _sum_rep(dvp, n_rep).transpose(1, 2)
        # each completion part's own backward, given the merged output and log-sum-exp
        parts = [(r, 0, p, p, e - p, ex) for r, (p, e, ex) in enumerate(zip(lay.prompt_len, lay.row_end, ex_x))]
        parts += [(r, s, c, s, c, ex) for (r, s, c), ex in zip(lay.spans(), ex_o)]
        for r, k0, nk, s, c, ex in parts:  # queries s..s+c−1 over keys k0..k0+nk−1
            rows = lambda x: x[r : r + 1, s : s + c].transpose(1, 2)  # noqa: E731  (1, H, c, D)
            dqx, dkx, dvx = _attend_backward(rows(grad), q[r : r + 1, :, s : s + c], _kv(k, r, k0, k0 + nk, n_rep),
                                             _kv(v, r, k0, k0 + nk, n_rep), rows(out),
                                             lse[r : r + 1, :, s : s + c].contiguous(), ex)
            dq[r, s : s + c] += dqx[0].transpose(0, 1)
            dk[r, k0 : k0 + nk] += _sum_rep(dkx, n_rep)[0].transpose(0, 1)
            dv[r, k0 : k0 + nk] += _sum_rep(dvx, n_rep)[0].transpose(0, 1)
        return dq.transpose(1, 2), dk.transpose(1, 2), dv.transpose(1, 2), None, None


def shared_prefix_attention(q: Tensor, k: Tensor, v: Tensor, layout: SharedPrefixLayout, scale: float) -> Tensor:
    """q (R, H, L, D), k, v (R, Hkv, L, D) with RoPE applied → (R, L, H, D) attention of the packed rows.

    Prompt tokens attend causally to their prompt, completion tokens to their prompt and causally to themselves;
    padding positions get zeros. Exact (to rounding) with the dense shared-prefix mask, without building it.
    """
    return _SharedPrefixAttention.apply(q, k, v, layout, scale)


# ---------------------------------------------------------------------------------------------------- routing
def _routed(impl: str, original):
    """An attention function for `transformers`' registry: the kernel when called with `shared_prefix=`, else
    `original` (None: the calling model's own `eager_attention_forward`)."""

    def attention(module, query, key, value, attention_mask, *args, **kwargs):  # transformers' signature
        shared_prefix = kwargs.pop("shared_prefix", None)
        if shared_prefix is None:
            fn = original or importlib.import_module(type(module).__module__).eager_attention_forward
            return fn(module, query, key, value, attention_mask, *args, **kwargs)
        shared_prefix.calls += 1
        scaling = kwargs.get("scaling")
        scale = scaling if scaling is not None else query.shape[-1] ** -0.5
        return shared_prefix_attention(query, key, value, shared_prefix, scale), None

    attention.shared_prefix_route = impl
    return attention


def route(model) -> None:
    """Make `model`'s text attention run `shared_prefix_attention` when its layers get `shared_prefix=layout`.

    Registers, once per implementation name, a wrapper in `transformers`' attention registry around the function
    registered there (sdpa, flash_attention_2, ...; for eager, the calling model's own). Calls without the keyword
    run the original function unchanged, for every model in the process.
    """
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    impl = model.config.get_text_config()._attn_implementation
    current = ALL_ATTENTION_FUNCTIONS.get(impl)
    if getattr(current, "shared_prefix_route", None) == impl:
        return
    ALL_ATTENTION_FUNCTIONS.register(impl, _routed(impl, current))


# ---------------------------------------------------------------------------------------------------- cost estimate
@dataclass(frozen=True)
class UnitCosts:
    """Forward FLOPs per unit of work of a model (the backward multiplies every term alike). The vocabulary
    projection is left out: both paths run it on the same completion tokens."""

    token: float
    """One token through the text layers' projections and MLP: 2 × active parameters per token."""
    pair: float
    """One attended (query, key) pair over all text layers: 4 × layers × heads × head_dim (QKᵀ and PV)."""
    patch: float
    """One image patch through the vision tower's linear layers and mergers."""
    patch_pair: float
    """One attended pair of patches of an image over all vision blocks: 4 × depth × width."""

    @classmethod
    def of(cls, arch) -> "UnitCosts":
        """From a `sapo_vl.models.archs.Arch` (published sizes, or `arch_from_config` of a model's config)."""
        h, hd = arch.hidden_size, arch.head_dim
        attn = 2 * h * (arch.num_heads + arch.num_kv_heads) * hd
        mlp = (arch.experts_per_token * 3 * h * arch.moe_intermediate_size + h * arch.num_experts if arch.moe
               else 3 * h * arch.intermediate_size)
        v = arch.vision
        m2 = v.spatial_merge_size ** 2
        embed = v.in_channels * v.temporal_patch_size * v.patch_size ** 2 * v.hidden_size
        block = 4 * v.hidden_size ** 2 + 2 * v.hidden_size * v.intermediate_size
        merger = (v.hidden_size * m2) * (v.hidden_size * m2 + v.out_hidden_size) / m2  # per patch
        return cls(token=2.0 * arch.num_layers * (attn + mlp), pair=4.0 * arch.num_layers * arch.num_heads * hd,
                   patch=2.0 * (embed + v.depth * block + (1 + len(v.deepstack_layers)) * merger),
                   patch_pair=4.0 * v.depth * v.hidden_size)


def path_costs(batch: list[tuple[int, tuple[int, ...]]], prompt_len: list[int], completion_len: list[int],
               image_patches: list[list[int]], unit: UnitCosts) -> tuple[float, float]:
    """(packed, row) forward FLOPs of one micro-batch of packed rows `batch` [(prompt g, completion rows)].

    image_patches[g]: patches of each of prompt g's images. Packed (`shared_prefix_attention`): R rows padded to
    the longest, L tokens; attention R·Pmax²/2 (prompts, causal) + Σ c·P (completions → prompt) + Σ c²/2
    (each completion, causal); each distinct prompt's images once. Row (`Rollout.micro_batch`):
    n rows of Pmax + Cmax tokens; attention n·(Pmax + Cmax)² under a padding mask (the kernels skip no block), half
    that when no row is padded; each row encodes its prompt's images.
    """
    plen = [prompt_len[g] for g, _ in batch]
    clen = [completion_len[r] for _, rs in batch for r in rs]
    n, pmax, cmax = len(clen), max(plen), max(clen)
    rows_len = [p + sum(completion_len[r] for r in rs) for p, (_, rs) in zip(plen, batch)]
    vision = lambda g: sum(unit.patch * p + unit.patch_pair * p * p for p in image_patches[g])  # noqa: E731
    packed = (unit.token * len(batch) * max(rows_len)
              + unit.pair * (len(batch) * pmax**2 / 2 + sum(prompt_len[g] * completion_len[r] for g, rs in batch
                                                            for r in rs) + sum(c * c for c in clen) / 2)
              + sum(vision(g) for g in {g for g, _ in batch}))
    length = pmax + cmax
    padded = len(set(plen)) > 1 or len(set(clen)) > 1
    row = (unit.token * n * length + unit.pair * n * length**2 / (1 if padded else 2)
           + sum(vision(g) * len(rs) for g, rs in batch))
    return packed, row


def prefer_packed(batch: list[tuple[int, tuple[int, ...]]], prompt_len: list[int], completion_len: list[int],
                  image_patches: list[list[int]], unit: UnitCosts, token_budget: int = 0) -> bool:
    """`algorithm.shared_prefix: auto`'s choice for one micro-batch: packed unless the row path costs less and its
    n × (Pmax + Cmax) padded tokens fit `token_budget` (0 = unbounded); a tie goes to the row path."""
    packed, row = path_costs(batch, prompt_len, completion_len, image_patches, unit)
    n = sum(len(rs) for _, rs in batch)
    fits = not token_budget or n * (max(prompt_len[g] for g, _ in batch)
                                    + max(completion_len[r] for _, rs in batch for r in rs)) <= token_budget
    return not (fits and row <= packed)

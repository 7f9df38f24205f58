"""The memory plan of a run: what each rank holds at the rollout peak and at the update peak, with a verdict.

    plan = plan_memory(cfg, world_size=8)            # pure arithmetic: no network, no weights
    print(plan.render())                             # a table in GiB per rank, the verdict and the knob to turn
    print(dry_run_report(cfg, 8))                    # the same from the config alone, offline (`--dry-run`)

The architecture comes from `sapo_vl.models.archs` (published sizes, a local config.json, the embedded tiny
models). Per rank, for a step of this config:

- parameters: all of them in the training dtype (bf16 under bf16/fp16 precision); ZeRO-3 keeps 1/N of them,
  parameter offload keeps them on the host;
- optimizer state: AdamW's fp32 master copy and two moments (12 bytes per trainable parameter; plain fp32 ZeRO-0
  has no master copy: 8), 1/N of them from ZeRO-1 on, on the host with optimizer offload;
- gradients: trainable parameters in the training dtype (1/N from ZeRO-2 on), plus ZeRO's fp32 gradient partition
  (ZeRO >= 1: counted through the whole update, conservative: it only exists at the optimizer step);
- activations of one update micro-batch (`update_rows`): `deepspeed.micro_batch_size` rows of the longest
  sequence the config allows (`data.max_prompt_tokens` + `rollout.max_new_tokens`), or with
  `algorithm.shared_prefix: true` packed rows of a prompt and as many of its completions as fit
  `deepspeed.micro_batch_tokens` (`auto` may take either path per micro-batch, and the row layout is the larger:
  it is planned). Per token and text layer the autograd graph keeps
  about w·(4H + 3Q + KV + 2·KV_sdpa + 4I + T) + 4·(2H + Q + KV) bytes (H hidden, Q = heads·head_dim,
  KV = kv_heads·head_dim, KV_sdpa = Q when grouped-query attention copies K/V for SDPA, I the MLP width, or
  k·(2H + 4I_expert) for a MoE layer routed to k experts, T the padded length (the padding mask; the packed
  path's attention, `sapo_vl.shared_prefix`, builds no mask and keeps K/V uncopied: KV_sdpa = KV, T = 0); the 4-byte terms are RMSNorm's
  fp32 upcasts): `layer_activation_bytes`, measured with `saved_tensors_hooks` on Qwen3-VL layers of several
  shapes. Gradient checkpointing keeps each layer's input (w·H per token) and recomputes one
  layer at a time; one more layer's worth is counted for the backward's working memory either way. A trained
  vision tower adds its blocks' activations for the micro-batch's images (each row carries its prompt's image);
- the log-prob head: the vocabulary projection runs in chunks of `PolicyLogprobs.chunk_size` positions, so at
  most chunk × vocabulary logits exist (in the training dtype and a few fp32 copies);
- ZeRO buffers: the gradient reduce bucket (DeepSpeed's default 5e8 elements) and, under ZeRO-3, the layers
  gathered for the forward/backward (two layers plus the 5e7-element prefetch bucket);
- generation, planned by the rollout engine itself (`RolloutEngine.memory_items`); the "hf" engine: the KV cache of the rows decoded at once, `rollout.generation_batch_size` rows
  (0 = all B/N·G rows of the rank) × (prompt + new tokens) × layers × 2 × kv_heads × head_dim × w, allocated
  once per chunk by the sampler; the decode working memory (sampling over the vocabulary, and the grouped-query
  expansion of one layer's K/V that SDPA gets when a padding mask is present) or the prefill's, whichever is
  larger; under ZeRO-3 the full weights gathered on every rank for the whole rollout;
- the colocated vLLM engine (`rollout.engine: vllm`): `rollout.vllm.gpu_memory_utilization` × the GPU at the
  rollout; during the update too unless sleep mode gives it back; its weight sync's peak, one gathered bucket of
  at most 1 GiB under ZeRO-3 (the sync streams whole modules, never the whole model); on the host, start-up reads
  the checkpoint's own files (or one ≤ 1 GiB shard of a copy written once per node), and sleep keeps no copy;
- the KL reference model (`algorithm.kl_beta > 0`): a frozen copy in `model.dtype`, partitioned 1/N under ZeRO-3
  (as the partitioned loader places it);
- runtime: 2 GiB on a GPU for the CUDA context, NCCL and the caching allocator's own blocks.

Split placement (`rollout.placement: split`, `sapo_vl/split.py`): a launch of W ranks has R =
`rollout.rollout_ranks` rollout ranks (`placement.rollout_rank_count`: a whole number, or a fraction of W) and
T = W − R training ranks, and `plan_memory` returns a `SplitPlan` of two plans, one per role:

- the training ranks: the plan above of a colocated run of T ranks (the batch plan of T, ZeRO partitioned by T)
  without the generation items: they never sample. Their phases are the update and the weight sync between
  updates (the parameters, optimizer state, ZeRO-3 gradient partition and reference held, the batch awaited), which
  adds the send on trainer 0 (`placement.Channel.send_weights`: the bucket's tensors cloned, then one flat
  concatenation: 2 buckets) and, under ZeRO-3, the bucket gathered on every trainer. A bucket closes once it holds
  `weights.SYNC_BUCKET_BYTES`, so it holds at most that plus one tensor (the largest: the embedding, or a MoE
  layer's fused experts). The plan is trainer 0's; the others hold less;
- each rollout rank: the whole model in the dtype the trainer computes in (`split.rollout_policy`: bf16 under
  bf16 precision; no LoRA wrapper, no ZeRO), the engine's own items (`memory_items`) for one trainer's share of
  the batch (prompts_per_step / T prompts × G rows: it samples the shares of the trainers it serves one at a
  time), and at the weight sync one received bucket plus one tensor's copy (`placement.Channel.recv_weights`). No
  gradients, optimizer state, update activations, ZeRO buffers or reference model. A vLLM engine there holds its
  `gpu_memory_utilization` share beside that plain copy (the copy stays on the GPU), sleeps after each share when
  sleep mode is on, and wakes its weights alone for the sync. Its phases are the rollout and the weight sync.

The launch fits when both roles fit; `knobs` are searched per role (the training ranks: micro-batch,
checkpointing, ZeRO stage, offload; a rollout rank: its engine's generation knobs, the rows decoded at once
`rollout.generation_batch_size` or the vLLM share `rollout.vllm.gpu_memory_utilization`). Host memory is planned per node of each role (a node that holds both holds their sum).

The per-rank peak is the larger of the two phases; it fits when it stays under 95% of the GPU (the rest is
left to allocator fragmentation). Host memory per node (`gpus_per_node` ranks) is reported beside it: offloaded
optimizer state and parameters, vLLM's sleeping weights, and the load (below ZeRO-3 each rank reads the whole
checkpoint; under ZeRO-3 `sapo_vl.models.zero3` partitions parameters as they are created and rank 0 memory-maps
the checkpoint once). When the plan does not fit, `knobs` names the
config keys to turn and values that make this plan fit (least intrusive first: rows decoded at once,
micro-batch, checkpointing, ZeRO-3, offload).

Worst cases by design: every prompt at `data.max_prompt_tokens`, every completion at `rollout.max_new_tokens`.
`tests/test_memplan.py` holds the plan to within ±30% of the peak resident memory of a real `sapo_vl.train.train`
step on the CPU (the tiny model with the update or the rollout as the peak, and a ~25M-parameter Qwen3-VL).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Callable

from .batch_plan import batch_plan
from .config import Config, ConfigError
from .models.archs import Arch, arch_for
from .placement import placement_of
from .weights import SYNC_BUCKET_BYTES

GIB = 1024 ** 3
VLLM_SYNC_BUCKET = float(SYNC_BUCKET_BYTES)
"""Bytes of one weight-sync bucket of gathered parameters (`sapo_vl.weights.SYNC_BUCKET_BYTES`)."""
RUNTIME_GIB = 2.0
"""CUDA context, NCCL communicators and the caching allocator's own blocks, per GPU rank."""
FRAGMENTATION = 0.05
"""Share of the GPU left unplanned for allocator fragmentation: a plan fits under (1 − this) × GPU memory."""
REDUCE_BUCKET = 5e8
"""DeepSpeed's default `reduce_bucket_size` (elements): the gradient bucket reduced at once."""
PREFETCH_BUCKET = 5e7
"""DeepSpeed's default `stage3_prefetch_bucket_size` (elements): ZeRO-3 parameters fetched ahead."""
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass
class Item:
    name: str
    """What the memory holds."""
    rollout: float
    """GiB per rank at the rollout peak (the training ranks of a split placement: at the weight sync)."""
    update: float
    """GiB per rank at the update peak (a rollout rank of a split placement: at the weight sync)."""
    note: str = ""
    """How it was counted."""


@dataclass
class MemoryPlan:
    model: str
    """The model the numbers are for."""
    device: str
    """"cuda" (the plan for the stated GPUs) or "cpu"."""
    world_size: int
    gpu_gib: float
    """Memory of one device."""
    params: int
    """All parameters."""
    trainable: int
    """Trainable parameters (LoRA: the adapters only)."""
    items: list[Item]
    """Device memory per rank, per phase."""
    host: list[tuple[str, float]]
    """Host memory per node, (what, GiB)."""
    gpus_per_node: int
    settings: dict[str, Any] = field(default_factory=dict)
    """The config values the plan used (rows, micro-batch, sequence length, ZeRO stage, ...)."""
    notes: list[str] = field(default_factory=list)
    """Warnings that are not memory sums (e.g. a vLLM share too small for the weights)."""
    knobs: list[tuple[str, Any]] = field(default_factory=list)
    """When it does not fit: config keys and values that make this plan fit (applied together)."""
    knobs_peak_gib: float | None = None
    """The per-rank peak with `knobs` applied."""
    role: str = "colocated"
    """Whose plan: "colocated" (every rank), or under a split placement "trainer" (trainer 0 of the training
    ranks) or "rollout" (one rollout rank); `phases` names its two columns."""

    @property
    def phases(self) -> tuple[str, str]:
        """The names of the `Item.rollout` and `Item.update` columns for this role."""
        return PHASES[self.role]

    @property
    def rollout_gib(self) -> float:
        return sum(i.rollout for i in self.items)

    @property
    def update_gib(self) -> float:
        return sum(i.update for i in self.items)

    @property
    def peak_gib(self) -> float:
        """The per-rank total: the larger of the two phases' peaks (`phases`)."""
        return max(self.rollout_gib, self.update_gib)

    @property
    def limit_gib(self) -> float:
        return self.gpu_gib * (1 - FRAGMENTATION) if self.device == "cuda" else self.gpu_gib

    @property
    def fits(self) -> bool:
        return self.peak_gib <= self.limit_gib and not self.blocking

    @property
    def blocking(self) -> list[str]:
        return [n for n in self.notes if n.startswith("does not fit:")]

    @property
    def headroom_gib(self) -> float:
        return self.limit_gib - self.peak_gib

    @property
    def host_gib(self) -> float:
        """Host memory per node at its peak (loading, or the run's steady state)."""
        load = sum(g for n, g in self.host if n.startswith("loading"))
        steady = sum(g for n, g in self.host if not n.startswith("loading"))
        return max(load, steady)

    def verdict(self) -> str:
        where = f"{self.gpu_gib:g} GiB {'GPU' if self.device == 'cuda' else 'device'}"
        who = f"{ROLE_NAMES[self.role]}: " if self.role in ROLE_NAMES else ""
        if self.fits:
            return (f"{who}FITS: peak {self.peak_gib:.1f} GiB per rank of {where} (headroom {self.headroom_gib:.1f} GiB "
                    f"under the {self.limit_gib:.1f} GiB plannable)")
        why = "; ".join(self.blocking) or f"peak {self.peak_gib:.1f} GiB per rank > {self.limit_gib:.1f} GiB plannable"
        out = f"{who}DOES NOT FIT on {where}: {why}"
        if self.knobs:
            out += f"; turn {_turn(self.knobs)} (peak {self.knobs_peak_gib:.1f} GiB)"
        elif self.role == "rollout":
            out += ("; no single config change found: a rollout rank holds the whole model: a larger GPU, more "
                    "training ranks (smaller shares), or shorter data.max_prompt_tokens / rollout.max_new_tokens")
        else:
            out += "; no single config change found: more GPUs, or shorter data.max_prompt_tokens / rollout.max_new_tokens"
        return out

    def render(self) -> str:
        head = self._header()
        w = max(len(i.name) for i in self.items)
        first, second = self.phases
        rows = [f"  {'per rank (GiB)':<{w}}  {first:>8}  {second:>8}  how"]
        for i in self.items:
            rows.append(f"  {i.name:<{w}}  {i.rollout:8.2f}  {i.update:8.2f}  {i.note}")
        rows.append(f"  {'total':<{w}}  {self.rollout_gib:8.2f}  {self.update_gib:8.2f}")
        host = [f"  host per node: {self.host_gib:.1f} GiB at peak"]
        host += [f"    {n}: {g:.1f} GiB" for n, g in self.host]
        notes = [f"  note: {n}" for n in self.notes if not n.startswith("does not fit:")]
        return "\n".join(head + rows + host + notes + [self.verdict()])

    def _header(self) -> list[str]:
        """The lines above the table: the model, the ranks, and the settings the plan used."""
        s = self.settings
        if self.role == "rollout":
            return [
                f"memory plan, rollout ranks: {self.model} on {self.world_size} rollout rank(s), each sampling for "
                f"{s['clients']} of the {s['trainers']} training ranks one share at a time, {self.device}, "
                f"{self.gpu_gib:g} GiB each",
                f"  parameters {_count(self.params)}, all whole in {s['weight_bytes']} B/param (no ZeRO, no LoRA "
                "wrapper: adapters arrive merged); no gradients, optimizer state or reference model",
                f"  rollout: {s['rows_per_rank']} rows per share, {s['rows_at_once']} decoded at once, "
                f"{s['prompt_tokens']} + {s['new_tokens']} tokens, engine {s['engine']}; sync: one received bucket",
            ]
        trainer = self.role == "trainer"
        gen = (f"no generation (the rollout ranks sample; {s['rows_per_rank']} rows/rank arrive per step)" if trainer
               else f"rollout: {s['rows_per_rank']} rows/rank, {s['rows_at_once']} decoded at once, "
               f"{s['prompt_tokens']} + {s['new_tokens']} tokens, engine {s['engine']}")
        return [
            f"memory plan{', training ranks' if trainer else ''}: {self.model} on {self.world_size} "
            f"{'training rank(s) of a split placement' if trainer else 'rank(s)'} "
            f"({min(self.world_size, self.gpus_per_node)}/node), {self.device}, {self.gpu_gib:g} GiB each",
            f"  parameters {_count(self.params)}, trainable {_count(self.trainable)}; weights "
            f"{s['weight_bytes']} B/param; ZeRO-{s['zero_stage']}"
            + (", optimizer offload" if s["offload_optimizer"] else "") + (", parameter offload" if s["offload_params"] else ""),
            f"  {gen}; update: micro-batch {s['micro']} × {s['seq_len']} tokens, "
            f"checkpointing {'on' if s['checkpointing'] else 'off'}"
            + ("; sync: trainer 0 sends the weights" if trainer else ""),
        ]


PHASES = {"colocated": ("rollout", "update"), "trainer": ("sync", "update"), "rollout": ("rollout", "sync")}
"""Each role's two phases, the columns of its table (see the module docstring)."""
ROLE_NAMES = {"trainer": "training ranks", "rollout": "rollout ranks"}


def _turn(knobs: list[tuple[str, Any]]) -> str:
    return " ".join(f"{k}={_fmt(v)}" for k, v in knobs)


@dataclass
class SplitPlan:
    """The plan of a split placement (`rollout.placement: split`): one per role, each with its own verdict and
    knobs; the launch fits when both do."""

    trainers: MemoryPlan
    """Trainer 0 of the T training ranks (role "trainer"; the others hold less: no send buffers)."""
    rollout: MemoryPlan
    """One of the R rollout ranks (role "rollout"; every one holds the same)."""

    @property
    def world_size(self) -> int:
        return self.trainers.world_size + self.rollout.world_size

    @property
    def fits(self) -> bool:
        return self.trainers.fits and self.rollout.fits

    @property
    def peak_gib(self) -> float:
        """The larger of the two roles' per-rank peaks."""
        return max(self.trainers.peak_gib, self.rollout.peak_gib)

    @property
    def knobs(self) -> list[tuple[str, Any]]:
        """The keys to turn for whichever role does not fit (both roles' together)."""
        return self.trainers.knobs + self.rollout.knobs

    def verdict(self) -> str:
        t, r = self.trainers, self.rollout
        peaks = f"peak {t.peak_gib:.1f} GiB per training rank, {r.peak_gib:.1f} GiB per rollout rank"
        if self.fits:
            return f"split placement FITS: both roles ({peaks})"
        failing = [ROLE_NAMES[p.role] for p in (t, r) if not p.fits]
        out = f"split placement DOES NOT FIT: the {' and the '.join(failing)} do not ({peaks})"
        if self.knobs:
            out += f"; turn {_turn(self.knobs)}"
        stuck = [ROLE_NAMES[p.role] for p in (t, r) if not p.fits and not p.knobs]
        return out + (f"; no config change found for the {' and the '.join(stuck)} (see above)" if stuck else "")

    def render(self) -> str:
        return "\n".join([self.trainers.render(), self.rollout.render(), self.verdict()])


def _fmt(v: Any) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def _count(n: float) -> str:
    """A parameter count as people write it: 251.7 k, 24.8 M, 8.77 B."""
    for div, unit, digits in ((1e9, "B", 2), (1e6, "M", 1), (1e3, "k", 1)):
        if n >= div:
            return f"{n / div:.{digits}f} {unit}"
    return f"{n:.0f}"


# ------------------------------------------------------------------------------------------------ arithmetic
def _bytes(dtype: str, device: str) -> int:
    if dtype == "auto":
        return 2 if device == "cuda" else 4
    return DTYPE_BYTES[dtype]


def _precision(cfg: Config, device: str) -> str:
    """DeepSpeed's precision: "auto" = bf16 on GPUs, fp32 on the CPU (as `sapo_vl.ds.precision`)."""
    p = cfg.deepspeed.precision
    return ("bf16" if device == "cuda" else "fp32") if p == "auto" else p


def _train_bytes(cfg: Config, device: str) -> int:
    """Bytes per weight in the DeepSpeed engine: bf16/fp16 precision casts the module, fp32 leaves model.dtype."""
    return 2 if _precision(cfg, device) in ("bf16", "fp16") else _bytes(cfg.model.dtype, device)


def _lora_params(arch: Arch, cfg: Config) -> int:
    r, h, hd, i = cfg.model.lora.r, arch.hidden_size, arch.head_dim, arch.intermediate_size
    q, kv = arch.num_heads * hd, arch.num_kv_heads * hd
    shapes = {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h)}
    if not arch.moe:  # a MoE layer's experts are fused tensors, not Linear modules: no adapters there
        shapes.update(gate_proj=(h, i), up_proj=(h, i), down_proj=(i, h))
    return arch.num_layers * sum(r * (a + b) for name, (a, b) in shapes.items() if name in cfg.model.lora.target_modules)


def trainable_params(arch: Arch, cfg: Config) -> int:
    if cfg.model.lora.r > 0:
        return _lora_params(arch, cfg)
    return arch.text_param_count() + (0 if cfg.model.freeze_vision else arch.vision.param_count())


def layer_activation_bytes(arch: Arch, w: int, seq_len: int, lora: bool = False, shared_prefix: bool = False) -> float:
    """Bytes the autograd graph keeps per token for one text layer (see the module docstring).

    shared_prefix: the packed path's attention (`sapo_vl.shared_prefix`): no mask, K and V kept as the layer
    made them (its grouped-query copies live only inside the kernel call).

    Measured on `transformers`' Qwen3-VL layers with a padding mask (`tests/test_memplan.py` holds it to 10%):
    in the weights' dtype, two RMSNorm outputs each (2H, twice), q and k after their norms (Q + KV), q after RoPE
    (Q), the attention output (Q), K and V as SDPA gets them (2·KV, or 2·Q when grouped-query attention repeats
    them into copies: more than one KV head and fewer than the query heads), the MLP's four intermediates (4I;
    a MoE layer: k routed copies of the token in and out, 2H, and 4·I_expert each), the padding mask (T); in fp32,
    RMSNorm's upcast inputs (2H + Q + KV) and small per-head statistics.
    """
    h, heads, kvh = arch.hidden_size, arch.num_heads, arch.num_kv_heads
    q, kv = heads * arch.head_dim, kvh * arch.head_dim
    k_and_v = 2 * q if (kvh > 1 and heads > kvh and not shared_prefix) else 2 * kv  # repeat_kv copies (SDPA)
    seq_len = 0 if shared_prefix else seq_len  # the padding mask
    if arch.moe:
        mlp = arch.experts_per_token * (2 * h + 4 * arch.moe_intermediate_size + 1)
        stats = 2 * arch.num_experts + 2 * arch.experts_per_token  # router logits, probabilities, top-k weights
    else:
        mlp, stats = 4 * arch.intermediate_size, 0
    out = w * (4 * h + 3 * q + kv + k_and_v + mlp + seq_len) + 4 * (2 * h + q + kv + 2 * heads + kvh + 2 + stats)
    if lora:  # dropout copies of each adapted module's input, and the rank-r intermediates
        out += w * (5 * h + q + (0 if arch.moe else arch.intermediate_size))
    return out


def vision_block_bytes(arch: Arch, w: int) -> float:
    """Bytes kept per image patch for one trained vision block (LayerNorms, qkv, attention, GELU MLP)."""
    v = arch.vision
    return w * (9 * v.hidden_size + 2 * v.intermediate_size) + 4 * 2 * v.hidden_size


def _visual_tokens(cfg: Config, arch: Arch) -> int:
    side = arch.vision.patch_size * arch.vision.spatial_merge_size
    return min(cfg.model.max_pixels // (side * side), cfg.data.max_prompt_tokens)


def _chunk_size() -> int:
    import inspect

    from .logprobs import PolicyLogprobs

    return int(inspect.signature(PolicyLogprobs.__init__).parameters["chunk_size"].default)


def update_rows(cfg: Config, micro: int, minibatch_rows: int) -> tuple[int, int]:
    """(rows, padded row length) of the largest update micro-batch, every prompt and completion at full length.

    Row path (`algorithm.shared_prefix` false): `micro` rows of prompt + completion. Packed path: rows of one
    prompt followed by as many of its completions as fit `deepspeed.micro_batch_tokens` (0 = micro × (prompt +
    completion), as `sapo_vl.packing.update_limits`), and as many such rows as fit the budget (first-fit on equal
    lengths). `shared_prefix: auto` plans the row layout: the larger one, which auto takes where it fits.
    """
    lp, new, G = cfg.data.max_prompt_tokens, cfg.rollout.max_new_tokens, cfg.rollout.group_size
    if cfg.algorithm.shared_prefix is not True:
        return micro, lp + new
    budget = cfg.deepspeed.micro_batch_tokens or micro * (lp + new)
    per_row = max(1, min(G, minibatch_rows, (budget - lp) // new))  # completions after the prompt in one row
    row_len = lp + per_row * new
    rows = max(1, min(budget // row_len, math.ceil(minibatch_rows / per_row)))
    return rows, row_len


@dataclass(frozen=True)
class PlanContext:
    """What every section of the plan reads: the config, the architecture and the arithmetic derived from them."""

    cfg: Config
    arch: Arch
    world_size: int
    device: str
    """"cuda" or "cpu" (see `plan_memory`)."""
    gpu_gib: float
    gpus_per_node: int
    shape: Any
    """The loop's `BatchPlan` (rows per rank, micro-batch, minibatch rows)."""
    w: int
    """Bytes per weight / activation / KV element in the DeepSpeed engine."""
    w_ref: int
    """Bytes per weight of `model.dtype` (the checkpoint as loaded, the KL reference)."""
    mixed: bool
    """bf16/fp16 precision: the optimizer keeps an fp32 master copy."""
    params: int
    trainable: int
    role: str = "colocated"
    """"colocated", or a role of a split placement: "trainer" or "rollout" (`MemoryPlan.role`). A rollout rank's
    context has `world_size` = the training ranks (the batch is shared over them) and no ZeRO (`stage` 0)."""
    rollout_ranks: int = 0
    """R, the rollout ranks of a split placement (0 when colocated)."""

    @property
    def stage(self) -> int:
        """The ZeRO stage of this role's weights (a rollout rank holds them whole: 0)."""
        return 0 if self.role == "rollout" else self.cfg.deepspeed.zero_stage

    @property
    def offload_optimizer(self) -> bool:
        return self.cfg.deepspeed.offload_optimizer and self.stage >= 1

    @property
    def offload_params(self) -> bool:
        return self.cfg.deepspeed.offload_params and self.stage == 3

    @property
    def ranks_per_node(self) -> int:
        return min(self.world_size, self.gpus_per_node)

    def per_layer_bytes(self) -> float:
        """Activation bytes per token and text layer at the update's row length (`layer_activation_bytes`)."""
        _, row_len = update_rows(self.cfg, self.shape.micro, self.shape.minibatch_rows)
        lora = self.cfg.model.lora.r > 0 and self.role != "rollout"  # a rollout rank's copy has no LoRA wrapper
        return layer_activation_bytes(self.arch, self.w, row_len, lora=lora,
                                      shared_prefix=self.cfg.algorithm.shared_prefix is True)


@dataclass
class GenerationMemory:
    """A rollout engine's part of the plan (`RolloutEngine.memory_items`)."""

    items: list[Item]
    """Device memory per rank, per phase."""
    host: list[tuple[str, float]] = field(default_factory=list)
    """Host memory per node."""
    notes: list[str] = field(default_factory=list)
    """Warnings; one starting "does not fit:" makes the plan fail."""
    rows_at_once: int = 0
    """Rows the engine decodes at once (for the plan's header and the knob search)."""


def plan_memory(cfg: Config, world_size: int, *, gpu_gib: float = 80.0, arch: Arch | None = None,
                device: str = "cuda", gpus_per_node: int = 8, search_knobs: bool = True) -> MemoryPlan | SplitPlan:
    """The per-rank memory plan of `cfg` on `world_size` ranks of `gpu_gib` GiB (see the module docstring); with
    `rollout.placement: split` a `SplitPlan`: the training ranks' plan and a rollout rank's.

    arch: the model's numbers; None = `arch_for(cfg.model.name_or_path)` (offline). device: "cuda" plans for GPUs
    ("auto" dtypes = bf16); "cpu" for a CPU run ("auto" = fp32, no CUDA runtime) as the tests measure it.
    The rollout engine plans its own items (`RolloutEngine.memory_items`, found through the engine registry).
    search_knobs: when a plan does not fit, search the config keys that make it fit (`MemoryPlan.knobs`).
    """
    arch = arch or arch_for(cfg.model.name_or_path)
    roles = [("colocated", world_size, 0)]
    if cfg.rollout.placement == "split":
        trainers = split_trainers(cfg, world_size)
        roles = [("trainer", trainers, world_size - trainers), ("rollout", trainers, world_size - trainers)]
    plans = []
    for role, trainers, rollout_ranks in roles:
        def replan(c: Config, role=role, trainers=trainers, rollout_ranks=rollout_ranks) -> MemoryPlan:
            return plan_role(plan_context(c, arch, trainers, device=device, gpu_gib=gpu_gib,
                                          gpus_per_node=gpus_per_node, role=role, rollout_ranks=rollout_ranks))

        plan = replan(cfg)
        if search_knobs and not plan.fits:
            _find_knobs(plan, cfg, replan)
        plans.append(plan)
    return plans[0] if len(plans) == 1 else SplitPlan(trainers=plans[0], rollout=plans[1])


def split_trainers(cfg: Config, world_size: int) -> int:
    """T, the training ranks of a split launch of `world_size` ranks (`placement.placement_of`); a ConfigError
    naming the key when none is left, or when the batch does not divide over them."""
    try:
        trainers = placement_of(cfg.rollout.placement, cfg.rollout.rollout_ranks, world_size, 0).trainers
    except ValueError as err:
        raise ConfigError(str(err)) from err
    try:
        batch_plan(cfg, trainers)
    except ConfigError as err:
        raise ConfigError(f"{err} (rollout.placement=split with rollout.rollout_ranks="
                          f"{cfg.rollout.rollout_ranks:g}: {trainers} of the {world_size} ranks train)") from err
    return trainers


def plan_context(cfg: Config, arch: Arch, world_size: int, *, device: str, gpu_gib: float, gpus_per_node: int,
                 role: str = "colocated", rollout_ranks: int = 0) -> PlanContext:
    """The arithmetic every section reads; `world_size` is the ranks that share the batch (a split placement's
    training ranks, for both roles)."""
    return PlanContext(cfg=cfg, arch=arch, world_size=world_size, device=device, gpu_gib=gpu_gib,
                       gpus_per_node=gpus_per_node, shape=batch_plan(cfg, world_size), w=_train_bytes(cfg, device),
                       w_ref=_bytes(cfg.model.dtype, device), mixed=_precision(cfg, device) != "fp32",
                       params=arch.param_count(), trainable=trainable_params(arch, cfg), role=role,
                       rollout_ranks=rollout_ranks)


def plan_role(c: PlanContext) -> MemoryPlan:
    """One role's plan, without the knob search: a colocated rank, a split placement's trainer 0 (no generation;
    the weight send) or one of its rollout ranks (whole weights, generation, the weight receive)."""
    from .engines import engine_class

    cfg, ro, rollout = c.cfg, c.cfg.rollout, c.role == "rollout"
    gen = GenerationMemory(items=[]) if c.role == "trainer" else engine_class(ro.engine).memory_items(c)
    if rollout:
        items, host = whole_weight_items(c) + gen.items + weight_receive_items(c), rollout_host_items(c)
    else:
        items = (persistent_items(c) + gradient_items(c) + activation_items(c) + zero_buffer_items(c) + gen.items +
                 reference_items(c) + (weight_send_items(c) if c.role == "trainer" else []))
        host = host_items(c)
    if c.device == "cuda":
        items.append(Item("runtime (CUDA, NCCL, allocator)", RUNTIME_GIB, RUNTIME_GIB, "fixed estimate"))
    settings = dict(weight_bytes=c.w, zero_stage=c.stage, offload_optimizer=c.offload_optimizer,
                    offload_params=c.offload_params, rows_per_rank=c.shape.rows_per_rank,
                    rows_at_once=gen.rows_at_once, prompt_tokens=cfg.data.max_prompt_tokens,
                    new_tokens=ro.max_new_tokens, engine=ro.engine, micro=c.shape.micro,
                    seq_len=cfg.data.max_prompt_tokens + ro.max_new_tokens,
                    checkpointing=cfg.model.gradient_checkpointing, trainers=c.world_size,
                    clients=math.ceil(c.world_size / c.rollout_ranks) if rollout else 0)
    return MemoryPlan(model=c.arch.name, device=c.device, world_size=c.rollout_ranks if rollout else c.world_size,
                      gpu_gib=c.gpu_gib, params=c.params, trainable=0 if rollout else c.trainable, items=items,
                      host=host + gen.host, gpus_per_node=c.gpus_per_node, settings=settings, notes=gen.notes,
                      role=c.role)


def _gib(n: float) -> float:
    return n / GIB


def persistent_items(c: PlanContext) -> list[Item]:
    """Parameters and optimizer state: held through both phases."""
    N, P, T, w = c.world_size, c.params, c.trainable, c.w
    par = 0.0 if c.offload_params else P * w / (N if c.stage == 3 else 1)
    opt_per = 12 if (c.mixed or c.stage >= 1) else 8  # fp32 master + m + v; plain fp32 ZeRO-0: m + v only
    opt = 0.0 if c.offload_optimizer else T * opt_per / (N if c.stage >= 1 else 1)
    return [
        Item("parameters", _gib(par), _gib(par), "host (offload)" if c.offload_params else
             f"{_count(P)} × {w} B" + (f" / {N} (ZeRO-3)" if c.stage == 3 else "")),
        Item("optimizer state", _gib(opt), _gib(opt), "host (offload)" if c.offload_optimizer else
             f"{_count(T)} trainable × {opt_per} B" + (f" / {N} (ZeRO-{c.stage})" if c.stage >= 1 else "")),
    ]


def gradient_items(c: PlanContext) -> list[Item]:
    """Gradients in the update; ZeRO-3's persistent gradient partition in both phases."""
    N, T, w, stage = c.world_size, c.trainable, c.w, c.stage
    g_lp = T * w / (N if stage >= 2 else 1)
    if c.offload_optimizer and stage >= 2:  # each reduced bucket is copied into the host's fp32 gradient partition
        g_lp = 0.0
    g_fp32 = 0.0 if (c.offload_optimizer or stage == 0) else T * 4 / N
    if c.mixed and stage == 0:
        g_fp32 = T * 4  # the bf16 optimizer's fp32 gradient accumulators
    g_roll = g_lp if (stage == 3 and not c.offload_optimizer) else 0.0
    note = ("host (offload): each reduced bucket goes to the fp32 partition" if c.offload_optimizer and stage >= 2
            else f"{w} B/param" + (f" / {N}" if stage >= 2 else "") + (" + fp32 partition" if g_fp32 else ""))
    return [Item("gradients", _gib(g_roll), _gib(g_lp + g_fp32), note)]


def activation_items(c: PlanContext) -> list[Item]:
    """The update micro-batch's activations (text layers, a trained vision tower) and the chunked log-prob head."""
    cfg, arch, w, m = c.cfg, c.arch, c.w, c.cfg.model
    rows, row_len = update_rows(cfg, c.shape.micro, c.shape.minibatch_rows)
    tokens = rows * row_len  # padded tokens of one update micro-batch
    per_layer = c.per_layer_bytes()
    if m.gradient_checkpointing:
        act = tokens * (arch.num_layers * w * arch.hidden_size + 2 * per_layer)
    else:
        act = tokens * (arch.num_layers + 1) * per_layer
    act += tokens * (3 * w + 4) * arch.hidden_size  # final norm, the completion slice, embeddings
    vis_note = ""
    if not m.freeze_vision and m.lora.r == 0:  # one image per row (the packed path encodes each prompt's once)
        patches = rows * _visual_tokens(cfg, arch) * arch.vision.spatial_merge_size ** 2
        blk = vision_block_bytes(arch, w)
        depth = arch.vision.depth
        act += patches * (depth * w * arch.vision.hidden_size + 2 * blk if m.gradient_checkpointing else (depth + 1) * blk)
        vis_note = f" + vision tower on {patches} patches"
    layout = (f"{rows} packed row(s) × {row_len} tokens" if cfg.algorithm.shared_prefix is True
              else f"{rows} rows × {row_len} tokens")
    chunk = min(_chunk_size(), c.shape.micro * cfg.rollout.max_new_tokens)
    head = chunk * arch.vocab_size * (w + 16)
    return [
        Item("activations (update micro-batch)", 0.0, _gib(act),
             f"{layout}, {arch.num_layers} layers, checkpointing {'on' if m.gradient_checkpointing else 'off'}{vis_note}"),
        Item("log-prob head (chunked logits)", 0.0, _gib(head), f"{chunk} positions × {arch.vocab_size} vocab"),
    ]


def zero_buffer_items(c: PlanContext) -> list[Item]:
    """DeepSpeed's gradient reduce bucket and, under ZeRO-3, the layers gathered for the forward/backward."""
    P, T, w = c.params, c.trainable, c.w
    if c.stage == 3:
        live = min(P, 2 * c.arch.layer_param_count() + PREFETCH_BUCKET) * w
        buf, note = min(T, REDUCE_BUCKET) * w + live, "reduce bucket + gathered layers"
    elif c.stage >= 1 or c.world_size > 1:
        buf, note = min(T, REDUCE_BUCKET) * w, "reduce bucket"
    else:
        buf, note = 0.0, "none (one rank)"
    return [Item("ZeRO buffers", 0.0, _gib(buf), note)]


def reference_items(c: PlanContext) -> list[Item]:
    """The frozen KL reference (`algorithm.kl_beta` > 0), partitioned under ZeRO-3."""
    if c.cfg.algorithm.kl_beta <= 0:
        return []
    N = c.world_size
    ref = c.params * c.w_ref / (N if c.stage == 3 else 1)
    return [Item("KL reference model", _gib(ref), _gib(ref), f"{c.w_ref} B/param" + (f" / {N}" if c.stage == 3 else ""))]


def largest_tensor(arch: Arch) -> int:
    """Elements of the model's largest weight tensor: the embedding or output head, an attention or MLP matrix (a
    MoE layer's fused experts, `experts.gate_up_proj`), or one of the vision tower's."""
    a, v = arch, arch.vision
    merged = v.hidden_size * v.spatial_merge_size ** 2
    mlp = a.num_experts * a.hidden_size * 2 * a.moe_intermediate_size if a.moe else a.hidden_size * a.intermediate_size
    return max(a.vocab_size * a.hidden_size, a.hidden_size * a.num_heads * a.head_dim, mlp,
               v.in_channels * v.temporal_patch_size * v.patch_size ** 2 * v.hidden_size,
               v.num_position_embeddings * v.hidden_size, 3 * v.hidden_size ** 2, v.hidden_size * v.intermediate_size,
               merged * merged, merged * v.out_hidden_size)


def sync_bucket_bytes(c: PlanContext) -> float:
    """Bytes of one weight-sync bucket of a split placement: it closes once it holds `SYNC_BUCKET_BYTES`, so at
    most that plus one tensor (the largest), and never more than the whole model."""
    return min(c.params * c.w, SYNC_BUCKET_BYTES + largest_tensor(c.arch) * c.w)


def weight_send_items(c: PlanContext) -> list[Item]:
    """A split placement's trainer 0 between updates: one bucket's tensors cloned and their flat concatenation
    (`placement.Channel.send_weights`); under ZeRO-3 the bucket gathered on every trainer
    (`weights.streamed_weights`)."""
    bucket = sync_bucket_bytes(c)
    out = [Item("weight send (trainer 0)", _gib(2 * bucket), 0.0,
                f"a bucket's clones + its flat copy, ≤ {bucket / GIB:.2f} GiB each")]
    if c.stage == 3:
        out.append(Item("gathered bucket (ZeRO-3 sync)", _gib(bucket), 0.0, "gathered on every trainer"))
    return out


def whole_weight_items(c: PlanContext) -> list[Item]:
    """A rollout rank's copy of the model (`split.rollout_policy`): every parameter, whole, in the dtype the
    trainer computes in; no LoRA wrapper (adapters arrive merged), no gradients or optimizer state."""
    note = f"{_count(c.params)} × {c.w} B, whole (no ZeRO)"
    if c.cfg.rollout.engine == "vllm":  # vLLM holds the device copy; its `transformers` twin stays on the host
        return []
    return [Item("parameters (whole copy)", _gib(c.params * c.w), _gib(c.params * c.w), note)]


def weight_receive_items(c: PlanContext) -> list[Item]:
    """A rollout rank's weight sync: one flat bucket received, and one tensor's copy out of it at a time
    (`placement.Channel.recv_weights`)."""
    bucket = sync_bucket_bytes(c)
    one = min(bucket, largest_tensor(c.arch) * c.w)
    return [Item("weight receive (one bucket)", 0.0, _gib(bucket + one),
                 f"flat bucket ≤ {bucket / GIB:.2f} GiB + one tensor's copy ≤ {one / GIB:.2f} GiB")]


def rollout_host_items(c: PlanContext) -> list[tuple[str, float]]:
    """Host memory per node of rollout ranks: each reads the whole checkpoint in the training dtype (with vLLM, that
    `transformers` copy stays in host memory for the whole run: names, config, start-up checkpoint)."""
    per_node = min(c.rollout_ranks, c.gpus_per_node)
    what = "vLLM's transformers twin on the host" if c.cfg.rollout.engine == "vllm" else "loading"
    return [(f"{what} (each rollout rank reads the whole checkpoint; {per_node} per node)",
             _gib(c.params * c.w * per_node))]


def host_items(c: PlanContext) -> list[tuple[str, float]]:
    """Host memory per node: offloaded state and the load (the engine adds its own)."""
    N, P, T, rpn = c.world_size, c.params, c.trainable, c.ranks_per_node
    host: list[tuple[str, float]] = []
    if c.offload_optimizer:
        host.append(("offloaded optimizer state + fp32 gradients", _gib(T * 16 / N * rpn)))
    if c.offload_params:
        host.append(("offloaded parameters", _gib(P * c.w / N * rpn)))
    if c.stage == 3:
        host.append(("loading (ZeRO-3 partitioned: rank 0 memory-maps the checkpoint)", _gib(P * c.w_ref)))
    else:
        host.append(("loading (every rank reads the whole checkpoint)", _gib(P * c.w_ref * rpn)))
    host.extend(routing_replay_items(c))
    return host


def routing_replay_items(c: PlanContext) -> list[tuple[str, float]]:
    """`algorithm.routing_replay` on a MoE model: the rollout's recorded expert indices, kept on the host,
    tokens × MoE layers × k × 2 B (int16, `sapo_vl.routing`) per rank; a micro-batch's share goes to the device."""
    a = c.arch
    if c.cfg.algorithm.routing_replay == "off" or not a.moe:
        return []
    tokens = c.shape.rows_per_rank * (c.cfg.data.max_prompt_tokens + c.cfg.rollout.max_new_tokens)
    per_rank = tokens * a.num_layers * a.experts_per_token * 2
    return [(f"routing replay indices ({tokens} tokens × {a.num_layers} layers × {a.experts_per_token} × 2 B "
             f"per rank)", _gib(per_rank * c.ranks_per_node))]


def hf_generation_memory(c: PlanContext) -> GenerationMemory:
    """The "hf" engine: the KV cache of the rows decoded at once, the decode or prefill working memory, and under
    ZeRO-3 the whole model gathered on every rank for the rollout."""
    arch, w, ro = c.arch, c.w, c.cfg.rollout
    lp = c.cfg.data.max_prompt_tokens
    rows_rank, gbs = c.shape.rows_per_rank, ro.generation_batch_size
    rows_at_once = min(gbs, rows_rank) if gbs > 0 else rows_rank
    kv_tok = arch.num_layers * 2 * arch.num_kv_heads * arch.head_dim * w  # bytes per cached position
    kv = rows_at_once * (lp + ro.max_new_tokens) * kv_tok
    prompts_at_once = math.ceil(rows_at_once / ro.group_size) if ro.shared_prefill else rows_at_once
    expand = (arch.num_heads / arch.num_kv_heads - 1) if arch.num_heads > arch.num_kv_heads else 0
    one_layer = rows_at_once * (lp + ro.max_new_tokens) * kv_tok / arch.num_layers
    decode = rows_at_once * arch.vocab_size * (w + 20) + one_layer * (1 + expand)  # sampling + GQA + row drop
    prefill = prompts_at_once * lp * (kv_tok + c.per_layer_bytes())  # the prompts' cache + one layer's working set
    work = max(decode, prefill - kv + one_layer)
    gathered = c.params * w if c.stage == 3 else 0.0
    out = GenerationMemory(rows_at_once=rows_at_once, items=[
        Item("generation KV cache", _gib(kv), 0.0,
             f"{rows_at_once} rows × ({lp} + {ro.max_new_tokens}) × {arch.num_layers} layers × 2 × "
             f"{arch.num_kv_heads} × {arch.head_dim} × {w} B"),
        Item("generation working memory", _gib(work), 0.0, "sampling logits, one layer's K/V expansion; or the prefill"),
    ])
    if c.role != "rollout":  # a split placement's rollout rank holds its weights whole
        out.items.append(Item("gathered full weights (ZeRO-3)", _gib(gathered), 0.0,
                              "whole model on every rank for the rollout" if gathered else "not ZeRO-3"))
    return out


def vllm_generation_memory(c: PlanContext) -> GenerationMemory:
    """The colocated vLLM engine: its share of the GPU at the rollout, and in the update unless it sleeps."""
    v = c.cfg.rollout.vllm
    share = v.gpu_memory_utilization * c.gpu_gib if c.device == "cuda" else 0.0
    sleeps = v.enable_sleep_mode and c.device == "cuda"
    if c.role == "rollout":  # a split placement's rollout rank never sleeps: no update phase shares its GPU
        second, how = share, ", awake throughout (no update phase on a rollout rank)"
    else:
        second, how = (0.0 if sleeps else share), (", asleep in the update" if sleeps else "")
    out = GenerationMemory(rows_at_once=c.shape.rows_per_rank, items=[
        Item("vLLM engine (weights + KV cache)", share, second, f"{v.gpu_memory_utilization} × GPU{how}")])
    if c.role != "rollout":  # the weight sync streams buckets of whole modules (`weights.SYNC_BUCKET_BYTES`)
        bucket = min(VLLM_SYNC_BUCKET, c.params * c.w) if c.stage == 3 else 0.0  # gathered under ZeRO-3
        out.items.append(Item("vLLM weight sync (one gathered bucket)", _gib(bucket), 0.0,
                              f"≤ {VLLM_SYNC_BUCKET / GIB:.0f} GiB of gathered parameters at a time" if bucket else
                              "not ZeRO-3: the weights are whole"))
    need = c.params * c.w / max(1, v.tensor_parallel_size)
    if c.device == "cuda" and need / GIB > share:
        out.notes.append(f"does not fit: vLLM's share ({share:.1f} GiB) is smaller than its weights "
                         f"({need / GIB:.1f} GiB): raise rollout.vllm.gpu_memory_utilization or tensor_parallel_size")
    # start-up reads the checkpoint's files (or a copy written once per node, shard by shard)
    out.host.append(("vLLM start-up (one written shard at most; sleep keeps no host copy)",
                     _gib(min(VLLM_SYNC_BUCKET, c.params * c.w))))
    return out


# ------------------------------------------------------------------------------------------------ knobs
def _with(cfg: Config, changes: list[tuple[str, Any]]) -> Config:
    out = copy.deepcopy(cfg)
    for key, value in changes:
        *path, last = key.split(".")
        obj = out
        for part in path:
            obj = getattr(obj, part)
        setattr(obj, last, value)
    return out


def _candidates(cfg: Config, plan: MemoryPlan, every: bool = False) -> list[tuple[str, list[Any]]]:
    """(key, values to try, least intrusive first) for the knobs that lower the phase that overflows (`every`: all).

    A split placement's rollout rank gets its engine's generation knobs alone; its training ranks never the
    rows decoded at once (they do not sample)."""
    if plan.role == "rollout":
        return _generation_candidates(cfg, plan)
    s, ds = plan.settings, cfg.deepspeed
    out: list[tuple[str, list[Any]]] = []
    rollout_heavy = plan.rollout_gib >= plan.update_gib
    if plan.role == "colocated" and (rollout_heavy or every):
        out += [c for c in _generation_candidates(cfg, plan) if c[0] == "rollout.generation_batch_size"]
    if not rollout_heavy or every:
        if s["micro"] > 1:
            out.append(("deepspeed.micro_batch_size", list(range(s["micro"] - 1, 0, -1))))
        if not cfg.model.gradient_checkpointing:
            out.append(("model.gradient_checkpointing", [True]))
    if ds.zero_stage < 3:
        out.append(("deepspeed.zero_stage", [z for z in (2, 3) if z > ds.zero_stage]))
    if not ds.offload_optimizer:
        out.append(("deepspeed.offload_optimizer", [True]))
    if not ds.offload_params:
        out.append(("deepspeed.offload_params", [True]))
    return out


def _generation_candidates(cfg: Config, plan: MemoryPlan) -> list[tuple[str, list[Any]]]:
    """The engine's own knobs (`memory_knobs`): fewer rows decoded at once (whole groups first: a prompt in one
    chunk), or a smaller vLLM share (in steps of 0.05)."""
    from .engines import engine_class

    knobs, n, G = engine_class(cfg.rollout.engine).memory_knobs, plan.settings["rows_at_once"], cfg.rollout.group_size
    out: list[tuple[str, list[Any]]] = []
    if "rollout.generation_batch_size" in knobs and n > 1:
        groups = [k * G for k in range(n // G, 0, -1) if k * G < n]
        out.append(("rollout.generation_batch_size", groups + list(range(min(G, n) - 1, 0, -1))))
    if "rollout.vllm.gpu_memory_utilization" in knobs:
        u = cfg.rollout.vllm.gpu_memory_utilization
        out.append(("rollout.vllm.gpu_memory_utilization", [round(u - 0.05 * k, 2) for k in range(1, round(u / 0.05))]))
    return [c for c in out if c[1]]


def _implied(cfg: Config, changes: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """`changes` plus the ZeRO stage an offload needs (optimizer offload: >= 1, parameter offload: 3)."""
    keys = dict(changes)
    stage = keys.get("deepspeed.zero_stage", cfg.deepspeed.zero_stage)
    need = 3 if keys.get("deepspeed.offload_params") else 2 if keys.get("deepspeed.offload_optimizer") else 0
    if stage < need:
        changes = [(k, v) for k, v in changes if k != "deepspeed.zero_stage"] + [("deepspeed.zero_stage", need)]
    return changes


def _find_knobs(plan: MemoryPlan, cfg: Config, replan: Callable[[Config], MemoryPlan]) -> None:
    """Fill `plan.knobs`: the first single change that fits; else knobs turned together, each as little as fits.
    replan: the plan of a changed config (the same role, ranks and hardware)."""
    def fits(changes: list[tuple[str, Any]]) -> MemoryPlan | None:
        changes = [c for c in changes if c[1] is not None]  # (key, None): the knob given back entirely
        p = replan(_with(cfg, _implied(cfg, changes)))
        return p if p.fits else None

    def done(changes: list[tuple[str, Any]]) -> None:
        changes = [c for c in changes if c[1] is not None]
        plan.knobs = _implied(cfg, changes)
        plan.knobs_peak_gib = fits(changes).peak_gib

    for key, values in _candidates(cfg, plan):  # one knob alone, its least intrusive value that fits
        for v in values:
            if fits([(key, v)]):
                return done([(key, v)])
    order = _candidates(cfg, plan, every=True)
    changes: list[tuple[str, Any]] = []
    for key, values in order:  # turn them one after another, each all the way, until the plan fits
        changes.append((key, values[-1]))
        if fits(changes):
            break
    else:
        return
    for i, (key, values) in enumerate(order[: len(changes)]):  # then give each back as much as still fits
        if fits(changes[:i] + changes[i + 1 :]):
            changes = changes[:i] + [(key, None)] + changes[i + 1 :]
            continue
        for v in values:
            trial = changes[:i] + [(key, v)] + changes[i + 1 :]
            if fits(trial):
                changes = trial
                break
    done(changes)


# ------------------------------------------------------------------------------------------------ dry run
def dry_run_report(cfg: Config, world_size: int, *, gpu_gib: float = 80.0, gpus_per_node: int = 8,
                   device: str = "cuda") -> str:
    """The plan of `cfg` on `world_size` GPUs of `gpu_gib` GiB as text, offline: no processor, data or weights.

    The architecture comes from the table of published sizes, a local checkpoint's config.json, or the embedded
    tiny model's settings (`sapo_vl.models.archs.arch_for`); the batch arithmetic is the loop's (`batch_plan`).
    A split placement prints the training ranks' table and a rollout rank's, each with its verdict, and last the
    launch's verdict (it fits when both roles do).
    """
    plan = plan_memory(cfg, world_size, gpu_gib=gpu_gib, gpus_per_node=gpus_per_node, device=device)
    trainers = plan.trainers.world_size if isinstance(plan, SplitPlan) else world_size
    b = batch_plan(cfg, trainers)
    B, G = cfg.rollout.prompts_per_step, cfg.rollout.group_size
    where = f"{world_size} rank(s)"
    if isinstance(plan, SplitPlan):
        where += (f" split: {trainers} train, {plan.rollout.world_size} roll out (rollout.rollout_ranks="
                  f"{cfg.rollout.rollout_ranks:g}, max_staleness {cfg.rollout.max_staleness})")
    lines = [
        f"dry run: {cfg.algorithm.name} on {cfg.model.name_or_path}, {where}; per step {B} prompts × "
        f"G={G} = {B * G} completions ({b.rows_per_rank}/{'training rank' if trainers < world_size else 'rank'}), "
        f"{cfg.algorithm.updates_per_rollout} × {cfg.algorithm.num_minibatches} optimizer steps of "
        f"{b.minibatch_rows} rows/rank in micro-batches of {b.micro}",
        plan.render(),
    ]
    return "\n".join(lines)

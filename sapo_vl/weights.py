"""The trained policy's weights as a Hugging Face checkpoint holds them, streamed a bucket at a time.

What every weight sync sends (into a colocated vLLM engine, `engines/vllm_engine.py`, or to the rollout ranks of a
split placement, `sapo_vl/split.py`): checkpoint names, LoRA adapters merged into their base weights (W + B·A·scale
per active adapter, computed on the fly: the policy is not touched), MoE expert tensors in the hub layout
(`experts.gate_up_proj` (E, H, 2I), `experts.down_proj` (E, I, H)), tied weights once. Under ZeRO-3 each bucket of
whole modules (at most `SYNC_BUCKET_BYTES`) is gathered on every rank, yielded and partitioned again, so a sync's
peak is one bucket, not the whole model. `load_into` is the way back: checkpoint tensors into a `transformers`
model of the same architecture.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterable, Iterator

import torch

from .models.loading import hf_model

Tensor = torch.Tensor


class WeightSyncError(RuntimeError):
    """The weights could not be streamed or loaded; the message names the tensor or the setting."""


MOE_EXPERT_TENSORS = ("experts.gate_up_proj", "experts.down_proj")
"""Fused expert tensors that `transformers` holds as (E, 2I, H) / (E, H, I) and vLLM loads as (E, H, 2I) / (E, I, H)."""

SYNC_BUCKET_BYTES = 1 << 30
"""Most bytes of parameters gathered (ZeRO-3) and sent at once in a weight sync or a vLLM start-up write."""


def _lora_delta(module, weight: Tensor) -> Tensor:
    """A PEFT LoRA layer's merged weight: base + Σ_active scale·B·A (PEFT's `get_delta_weight`), not in place."""
    if getattr(module, "merged", False) or getattr(module, "disable_adapters", False):
        return weight  # already merged into the base weight, or switched off
    for name in module.active_adapters:
        if name not in module.lora_A:
            continue
        if getattr(module, "use_dora", {}).get(name, False):
            raise WeightSyncError(f"LoRA adapter {name!r} uses DoRA, which the weight sync does not merge; "
                                  "set model.lora.use_dora off")
        weight = weight + module.get_delta_weight(name).to(weight.dtype)  # (out, in)
    return weight


def _checkpoint_tensor(model, name: str, param) -> tuple[str, Tensor] | None:
    """One parameter as vLLM loads it: LoRA merged into its base weight, MoE experts transposed; None for a LoRA
    factor (merged into its base layer's weight instead)."""
    if ".lora_" in name or ".lora_magnitude_vector" in name:
        return None
    tensor = param.detach()
    if ".base_layer." in name:
        owner, leaf = name.split(".base_layer.")
        name = f"{owner}.{leaf}"
        if leaf == "weight":
            tensor = _lora_delta(model.get_submodule(owner), tensor)
    if name.endswith(MOE_EXPERT_TENSORS):
        tensor = tensor.transpose(-1, -2).contiguous()  # (E, 2I, H) → (E, H, 2I); (E, H, I) → (E, I, H)
    return name, tensor


def policy_weights(policy) -> Iterator[tuple[str, Tensor]]:
    """(checkpoint name, tensor) for every weight of the `transformers` policy, as vLLM loads a checkpoint.

    LoRA adapters (PEFT) are merged into their base weights on the fly; MoE expert tensors are transposed to the
    hub layout. Tied weights appear once (under the embedding's name). Call under `ds.gathered` for ZeRO-3, or
    use `streamed_weights`.
    """
    model = hf_model(policy)
    for name, param in model.named_parameters():
        out = _checkpoint_tensor(model, name, param)
        if out is not None:
            yield out


def _owner(name: str) -> str:
    """The module whose parameters must be whole together: a LoRA layer's base weight with its adapter factors."""
    if ".base_layer." in name:
        return name.split(".base_layer.")[0]
    if ".lora_" in name:
        return name.split(".lora_")[0]
    return name.rsplit(".", 1)[0]


def weight_buckets(model, bucket_bytes: int = SYNC_BUCKET_BYTES) -> list[list[tuple[str, Any]]]:
    """The model's (name, parameter) pairs in buckets of whole modules of at most `bucket_bytes` (a larger module
    is a bucket of its own). Sizes are the full tensors' (`ds_numel` under ZeRO-3)."""
    groups: dict[str, list[tuple[str, Any]]] = {}
    for name, param in model.named_parameters():
        groups.setdefault(_owner(name), []).append((name, param))
    buckets, current, size = [], [], 0
    for members in groups.values():
        nbytes = sum(getattr(p, "ds_numel", p.numel()) * p.element_size() for _, p in members)
        if current and size + nbytes > bucket_bytes:
            buckets.append(current)
            current, size = [], 0
        current += members
        size += nbytes
    return buckets + ([current] if current else [])


def streamed_weights(policy, ds_engine, bucket_bytes: int = SYNC_BUCKET_BYTES) -> Iterator[tuple[str, Tensor]]:
    """`policy_weights`, one bucket at a time: under ZeRO-3 each bucket is gathered on every rank (a collective:
    every rank must consume the whole iterator), yielded and partitioned again before the next."""
    model = hf_model(policy)
    zero3 = ds_engine is not None and ds_engine.zero_optimization_stage() == 3
    for bucket in weight_buckets(model, bucket_bytes):
        if zero3:
            import deepspeed

            gather = deepspeed.zero.GatheredParameters([p for _, p in bucket], modifier_rank=None)
        else:
            gather = contextlib.nullcontext()
        with gather, torch.no_grad():
            for name, param in bucket:
                out = _checkpoint_tensor(model, name, param)
                if out is not None:
                    yield out


def load_into(model, named: Iterable[tuple[str, Tensor]]) -> int:
    """Copy checkpoint tensors (as `policy_weights` yields them) into the `transformers` `model` (no LoRA wrapper:
    adapters arrive merged); MoE expert tensors go back to the `transformers` layout. Returns the tensors copied.

    A name the model lacks, or a shape it does not hold, is a `WeightSyncError` naming it; the tied `lm_head`
    (sent once, under the embedding's name) follows its embedding."""
    params = dict(model.named_parameters())
    copied = 0
    with torch.no_grad():
        for name, tensor in named:
            if name not in params:
                raise WeightSyncError(f"weight sync: the rollout model has no parameter {name!r} (sent by the "
                                      "trainer); both sides must load the same model.name_or_path")
            if name.endswith(MOE_EXPERT_TENSORS):
                tensor = tensor.transpose(-1, -2)  # hub layout → (E, 2I, H) / (E, H, I)
            if tuple(tensor.shape) != tuple(params[name].shape):
                raise WeightSyncError(f"weight sync: {name!r} arrived with shape {tuple(tensor.shape)}, the rollout "
                                      f"model holds {tuple(params[name].shape)}")
            params[name].copy_(tensor)
            copied += 1
    return copied

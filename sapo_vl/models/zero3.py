"""Loading a policy (and the KL reference) partitioned under ZeRO-3, never whole on any rank.

The way `transformers` and DeepSpeed intend it: a `transformers.integrations.HfDeepSpeedConfig` holding the ZeRO-3
DeepSpeed config is alive while `from_pretrained` runs, so the model is built inside `deepspeed.zero.Init` (each
parameter partitioned over the ranks as it is created) and the checkpoint is copied in by rank 0 alone, one module
at a time: the module's parameters are gathered, filled from the checkpoint and partitioned again
(`transformers.integrations.deepspeed._load_state_dict_into_zero3_model`).

One departure: left to itself, `from_pretrained` has rank 0 read every checkpoint shard into its own memory first
(`safe_open(...).get_tensor` copies), a whole model of host memory on rank 0 (64 GB at 32B). We hand it the
state dict instead: on rank 0, tensors that are zero-copy views of the memory-mapped safetensors files (pages are
read as each module is filled; they are shared, reclaimable page cache, not private memory), on the other ranks
meta tensors of the right shapes. Private memory per rank while loading is then about 1/world of the model plus
the largest module.

- `load_policy_zero3(name_or_path, ds_config, dtype=...)`: the `transformers` model, parameters partitioned.
  `deepspeed.initialize` (`sapo_vl.ds.create_engine`) takes it as is (parameters already partitioned stay so).
- `reference_engine(module, ds_config)`: a frozen partitioned module (the KL reference, wrapped by the caller as
  the policy is) inside a DeepSpeed engine without an optimizer: its ZeRO-3 hooks gather each module's parameters
  for the module's forward, as in training. Every rank must call its forward together (as for the policy).

`HfDeepSpeedConfig` is kept in a module global for the rest of the process: `transformers` keeps only a weak
reference to it, and asks it whether ZeRO-3 is on whenever it touches the model's parameters later (resizing,
saving, generation). A process that loads under ZeRO-3 should not load a plain model afterwards.
"""
from __future__ import annotations

import json
import mmap
import struct
import warnings
from pathlib import Path
from typing import Any

import torch

from .loading import _wrap_hub_error, check_qwen_vl, resolve_dtype

_HF_DS_CONFIG: Any = None
"""The live `HfDeepSpeedConfig` (see the module docstring)."""


def zero3_enabled(ds_config: dict) -> bool:
    return int(ds_config.get("zero_optimization", {}).get("stage", 0)) == 3


SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64,
    "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool,
}


EXPERT_TENSORS = ("mlp.experts.gate_up_proj", "mlp.experts.down_proj")


def _as_model_layout(state: dict[str, torch.Tensor], hidden_size: int) -> dict[str, torch.Tensor]:
    """`state` in the layout transformers' loader expects of a state dict handed to it.

    For MoE experts that is the hub layout (gate_up_proj [E, H, 2I], down_proj [E, I, H]): the loader transposes
    them into the model's [E, 2I, H] / [E, H, I]. A checkpoint written by transformers' own `save_pretrained`
    already holds the model's layout (loading such a folder skips the conversion; a state dict does not), so its
    expert tensors are handed over transposed. Which layout a checkpoint holds is read off `gate_up_proj`, whose
    two layouts differ in shape (down_proj can be square), and applied to both: in the model's layout its last
    dimension is the hidden size.
    """
    gate_up = [k for k in state if k.endswith(EXPERT_TENSORS[0])]
    in_model_layout = any(state[k].shape[-1] == hidden_size != state[k].shape[-2] for k in gate_up)
    if not in_model_layout:
        return state
    return {k: (t.transpose(-1, -2) if k.endswith(EXPERT_TENSORS) else t) for k, t in state.items()}


def mapped_state_dict(folder: str | Path, *, meta: bool = False) -> dict[str, torch.Tensor]:
    """The checkpoint in `folder` (model.safetensors, or shards named by model.safetensors.index.json) as tensors
    viewing the memory-mapped files (no copy), or as meta tensors (shapes and dtypes only) with `meta`."""
    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file() \
        else ["model.safetensors"]
    out: dict[str, torch.Tensor] = {}
    for name in files:
        path = folder / name
        with open(path, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(n))
            buf = None if meta else mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        for key, info in header.items():
            if key == "__metadata__":
                continue
            if info["dtype"] not in SAFETENSORS_DTYPES:
                raise ValueError(f"{path}: tensor {key!r} has dtype {info['dtype']}, which sapo_vl cannot map")
            dtype, shape = SAFETENSORS_DTYPES[info["dtype"]], info["shape"]
            if meta:
                out[key] = torch.empty(shape, dtype=dtype, device="meta")
                continue
            begin, end = info["data_offsets"]
            count = (end - begin) // dtype.itemsize
            with warnings.catch_warnings():  # the mapping is read-only and nothing writes to these tensors
                warnings.simplefilter("ignore", UserWarning)
                flat = torch.frombuffer(buf, dtype=dtype, count=count, offset=8 + n + begin) if count else \
                    torch.empty(0, dtype=dtype)
            out[key] = flat.view(shape)
    return out


def _keep_hf_ds_config(ds_config: dict) -> None:
    global _HF_DS_CONFIG
    from transformers.integrations import HfDeepSpeedConfig

    if not zero3_enabled(ds_config):
        raise ValueError(f"partitioned loading needs zero_optimization.stage 3, got {ds_config.get('zero_optimization')}")
    _HF_DS_CONFIG = HfDeepSpeedConfig(ds_config)


def load_policy_zero3(
    name_or_path: str,
    ds_config: dict,
    *,
    dtype: str = "auto",
    attn_implementation: str | None = "sdpa",
    trust_remote_code: bool = False,
):
    """`AutoModelForImageTextToText.from_pretrained` with every parameter partitioned as it is created.

    ds_config: the DeepSpeed config the engine will use (ZeRO stage 3, no "auto" values; `sapo_vl.ds.ds_config`).
    The torch process group must exist (`sapo_vl.ds.init_distributed`). Parameters live on the current
    accelerator (DeepSpeed's choice), in `dtype` (under bf16/fp16 in `ds_config`, DeepSpeed's dtype wins).
    """
    import torch.distributed as tdist
    from huggingface_hub import snapshot_download
    from transformers import AutoConfig, AutoModelForImageTextToText

    if not tdist.is_initialized():
        raise RuntimeError("load_policy_zero3: the process group is not initialised (call ds.init_distributed first)")
    path = check_qwen_vl(name_or_path, trust_remote_code)
    try:
        folder = path if Path(path).is_dir() else snapshot_download(path, allow_patterns=["*.json", "*.safetensors"])
        config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise _wrap_hub_error(name_or_path, err) from err
    cls = AutoModelForImageTextToText._model_mapping[type(config)]  # the Auto class wants a name with a state dict
    _keep_hf_ds_config(ds_config)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    kwargs: dict[str, Any] = dict(dtype=resolve_dtype(dtype, device), trust_remote_code=trust_remote_code)
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    state = mapped_state_dict(folder, meta=tdist.get_rank() != 0)
    state = _as_model_layout(state, getattr(config, "text_config", config).hidden_size)
    model = cls.from_pretrained(None, config=config, state_dict=state, **kwargs)
    del state  # rank 0 unmaps the checkpoint
    return model


def reference_engine(module: torch.nn.Module, ds_config: dict):
    """A partitioned frozen module (the KL reference, wrapped as the policy is) in an optimizer-less DeepSpeed
    engine: its ZeRO-3 hooks gather each submodule's parameters for its forward. Every rank must call it together."""
    import deepspeed

    module = module.eval()
    module.requires_grad_(False)
    conf = {k: v for k, v in ds_config.items() if k not in ("optimizer", "scheduler")}
    engine, *_ = deepspeed.initialize(model=module, config=conf, dist_init_required=False)
    engine.eval()
    return engine


def partitioned_numel(model: torch.nn.Module) -> tuple[int, int]:
    """(elements this rank holds, elements of the whole model) over the model's parameters."""
    local = full = 0
    for p in model.parameters():
        if hasattr(p, "ds_numel"):
            local += p.ds_tensor.numel() if p.ds_tensor is not None else 0
            full += p.ds_numel
        else:
            local += p.numel()
            full += p.numel()
    return local, full

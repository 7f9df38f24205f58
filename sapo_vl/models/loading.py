"""Loading policies and processors by name, and encoding image-text prompts for them.

One code path for every model: a hub id (`Qwen/Qwen3-VL-2B-Instruct`), a local checkpoint folder, or an embedded
name (`sapo-vl/tiny-qwen3-vl`, `sapo-vl/tiny-qwen3-vl-moe`) that resolves to a locally built folder the way a hub
id resolves to a downloaded snapshot. Weights are read from safetensors only; remote code runs only when the
config sets `trust_remote_code`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from ..suggest import did_you_mean

EMBEDDED_MODELS = {
    "sapo-vl/tiny-qwen3-vl": {"moe": False},
    "sapo-vl/tiny-qwen3-vl-moe": {"moe": True},
}
"""Names that resolve to a tiny Qwen3-VL checkpoint built on this machine (see `sapo_vl.models.tiny`)."""

QWEN_VL_MODEL_TYPES = ("qwen3_vl", "qwen3_vl_moe", "qwen2_5_vl", "qwen2_vl")
"""Model types whose processor and chat format sapo_vl knows (Qwen3-VL first; Qwen2/2.5-VL share the format)."""

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ModelLoadError(ValueError):
    """A model or processor could not be found, reached or used; the message names it and says why."""


def resolve_model_path(name_or_path: str) -> str:
    """Embedded name → built local folder; existing folder → itself; anything else is passed on as a hub id."""
    if name_or_path in EMBEDDED_MODELS:
        from .tiny import cached_tiny_checkpoint

        return str(cached_tiny_checkpoint(**EMBEDDED_MODELS[name_or_path]))
    p = Path(name_or_path).expanduser()
    if p.exists():
        if not (p / "config.json").is_file() and adapter_base(p) is None:
            raise ModelLoadError(f"model folder {name_or_path!r} has no config.json (nor adapter_config.json): "
                                 "not a Hugging Face checkpoint")
        return str(p)
    looks_local = name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") != 1
    if looks_local:
        raise ModelLoadError(f"model path {name_or_path!r} does not exist{did_you_mean(name_or_path, EMBEDDED_MODELS)}")
    return name_or_path  # a hub id such as "Qwen/Qwen3-VL-2B-Instruct"


def _hub_offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub read it at import, or as the environment says now."""
    import os

    try:
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:
            return True
    except ImportError:  # pragma: no cover
        pass
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def _wrap_hub_error(name: str, err: Exception) -> ModelLoadError:
    """One line naming the model, why it could not be had, and what to do."""
    text = " ".join(str(err).split())
    local = "set model.name_or_path to a local checkpoint folder"
    if _hub_offline():
        why = "HF_HUB_OFFLINE is set and it is not in the local Hugging Face cache"
        todo = f"{local}, download it once where there is network (`hf download {name}`), or unset HF_HUB_OFFLINE"
    elif "couldn't connect" in text or "connection" in text.lower() or isinstance(err, ConnectionError):
        why = "the Hugging Face hub cannot be reached and it is not in the local cache"
        todo = f"{local} or download it where there is network; HF_HUB_OFFLINE=1 fails at once instead of retrying"
    elif "not a valid model identifier" in text or "404" in text or "401" in text or "gated" in text.lower():
        why = "the hub has no such model, or it is private or gated"
        todo = f"check the id, log in (`hf auth login`) for a gated model, or {local}"
    else:
        why = f"{type(err).__name__}: {text[:200]}"
        todo = f"{local}; the embedded default is 'sapo-vl/tiny-qwen3-vl'"
    return ModelLoadError(f"could not load {name!r}: {why} -- {todo}")


def adapter_base(folder: str | Path) -> str | None:
    """The base model a PEFT adapter folder (a LoRA run's `checkpoints/step_N/hf`) was trained on, or None when
    `folder` is not an adapter folder (it has a config.json, or no adapter_config.json)."""
    import json

    folder = Path(folder)
    if (folder / "config.json").is_file() or not (folder / "adapter_config.json").is_file():
        return None
    base = json.loads((folder / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if not base:
        raise ModelLoadError(f"adapter folder {str(folder)!r}: adapter_config.json names no base_model_name_or_path")
    return base


def check_qwen_vl(name_or_path: str, trust_remote_code: bool = False) -> str:
    """Resolve the name and make sure its config is a Qwen-VL model; returns the resolved path or hub id.
    An adapter folder is checked through the base model it names."""
    from transformers import AutoConfig

    path = resolve_model_path(name_or_path)
    base = adapter_base(path) if Path(path).is_dir() else None
    if base is not None:
        check_qwen_vl(base, trust_remote_code)
        return path
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise _wrap_hub_error(name_or_path, err) from err
    if config.model_type not in QWEN_VL_MODEL_TYPES:
        raise ModelLoadError(
            f"model {name_or_path!r} is a {config.model_type!r} model, not Qwen-VL "
            f"(sapo_vl supports {', '.join(QWEN_VL_MODEL_TYPES)})"
        )
    return path


def resolve_dtype(dtype: str, device: torch.device | str | None = None) -> torch.dtype:
    """"auto" → bfloat16 on CUDA, float32 elsewhere; otherwise the named dtype."""
    if dtype == "auto":
        dev = torch.device(device) if device is not None else None
        return torch.bfloat16 if dev is not None and dev.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise ModelLoadError(f"unknown dtype {dtype!r}; choose auto, {', '.join(DTYPES)}")
    return DTYPES[dtype]


def load_processor(
    name_or_path: str,
    *,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    trust_remote_code: bool = False,
):
    """`AutoProcessor` for a Qwen-VL model, left-padding, with optional image pixel bounds."""
    from transformers import AutoProcessor

    path = check_qwen_vl(name_or_path, trust_remote_code)
    base = adapter_base(path) if Path(path).is_dir() else None
    if base is not None and not (Path(path) / "preprocessor_config.json").is_file():
        path = check_qwen_vl(base, trust_remote_code)  # an adapter saved without its processor: the base's
    try:
        proc = AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise _wrap_hub_error(name_or_path, err) from err
    image_proc = getattr(proc, "image_processor", None)
    tok = getattr(proc, "tokenizer", None)
    if image_proc is None or tok is None or "<|image_pad|>" not in tok.get_vocab() or not hasattr(image_proc, "merge_size"):
        raise ModelLoadError(
            f"model {name_or_path!r} has processor {type(proc).__name__}, not a Qwen-VL processor "
            "(sapo_vl needs Qwen's <|image_pad|> tokens and merge_size image patches)"
        )
    size = dict(image_proc.size)
    if min_pixels:
        size["shortest_edge"] = int(min_pixels)
    if max_pixels:
        size["longest_edge"] = int(max_pixels)
    image_proc.size = size
    tok.padding_side = "left"
    return proc


def load_policy(
    name_or_path: str,
    *,
    dtype: str = "auto",
    device: torch.device | str | None = None,
    attn_implementation: str | None = "sdpa",
    trust_remote_code: bool = False,
):
    """`AutoModelForImageTextToText.from_pretrained` from safetensors only, in the resolved dtype.

    A LoRA adapter folder (what a LoRA run saves as `checkpoints/step_N/hf`) loads its base model, named in its
    adapter_config.json, with the adapter merged into the weights: a plain `transformers` model.
    """
    from transformers import AutoModelForImageTextToText

    path = check_qwen_vl(name_or_path, trust_remote_code)
    base = adapter_base(path) if Path(path).is_dir() else None
    if base is not None:
        from peft import PeftModel

        model = load_policy(base, dtype=dtype, device=device, attn_implementation=attn_implementation,
                            trust_remote_code=trust_remote_code)
        return PeftModel.from_pretrained(model, path).merge_and_unload()
    kwargs: dict[str, Any] = dict(
        dtype=resolve_dtype(dtype, device), use_safetensors=True, trust_remote_code=trust_remote_code
    )
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    try:
        model = AutoModelForImageTextToText.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as err:
        raise _wrap_hub_error(name_or_path, err) from err
    if device is not None:
        model.to(device)
    return model


def hf_model(model):
    """The `transformers` model under a PEFT wrapper (LoRA layers are injected in place, so they still run)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def encode_prompts(processor, prompts: Sequence[list[dict]], images: Sequence[Sequence[Any]]):
    """Chat-template and tokenize a batch of prompts with their PIL images (left-padded), as model inputs.

    Returns the processor's BatchFeature: input_ids, attention_mask, mm_token_type_ids (needed by Qwen3-VL's
    multimodal rotary positions), and pixel_values / image_grid_thw when any prompt has images.
    """
    if len(prompts) != len(images):
        raise ValueError(f"{len(prompts)} prompts but {len(images)} image lists")
    texts = [processor.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts]
    flat = [im for ims in images for im in ims]
    kwargs: dict[str, Any] = dict(text=texts, return_tensors="pt", padding=True)
    if flat:
        kwargs["images"] = flat
    return processor(**kwargs)

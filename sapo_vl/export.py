"""`sapo-vl export`: turn a checkpoint's `hf/` folder into a standalone `transformers` checkpoint.

    sapo-vl export runs/RUN/checkpoints/step_N/hf OUT_DIR --merge

A LoRA run saves its adapter only (a few MB, not the base model); `--merge` loads the base model named in the
adapter's config, merges the adapter into its weights and writes a full checkpoint (safetensors + processor) that
`AutoModelForImageTextToText.from_pretrained(OUT_DIR)` loads with no PEFT installed. A full-weight checkpoint is
written again as it is. `sapo-vl eval --model .../hf` also takes an adapter folder directly.
"""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="a checkpoint folder: checkpoints/step_N/hf (adapter or full weights), or a model")
    p.add_argument("out_dir", help="folder to write the standalone checkpoint to")
    p.add_argument("--merge", action="store_true", help="merge a LoRA adapter into its base model (needed for "
                   "adapter folders)")
    p.add_argument("--dtype", default="auto", help="weight dtype to write: auto (as loaded), float32, bfloat16")


def export(source: str, out_dir: str | Path, *, merge: bool, dtype: str = "auto") -> Path:
    """Write `source` as a standalone checkpoint into `out_dir`; returns it."""
    from .models.loading import ModelLoadError, adapter_base, load_policy, load_processor

    src = Path(source)
    if src.is_dir() and adapter_base(src) is not None and not merge:
        raise ModelLoadError(f"{source} is a LoRA adapter (base {adapter_base(src)!r}): add --merge to write the "
                             "base model with the adapter merged in")
    model = load_policy(source, dtype="float32" if dtype == "auto" else dtype, device="cpu")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    load_processor(source).save_pretrained(out)
    return out


def main(args: argparse.Namespace) -> int:
    from .models.loading import ModelLoadError

    try:
        out = export(args.source, args.out_dir, merge=args.merge, dtype=args.dtype)
    except ModelLoadError as err:
        print(f"error: {err}")
        return 2
    print(f"wrote {out} (loads with AutoModelForImageTextToText.from_pretrained)")
    return 0

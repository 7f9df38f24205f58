"""The embedded default job: build the tiny Qwen3-VL checkpoint and run one batched image-text generation.

Everything is offline: the checkpoint is built on this machine and the images are drawn here.
"""
from __future__ import annotations

import argparse
import time


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="sapo-vl/tiny-qwen3-vl", help="model name or path (default: the tiny one)")
    p.add_argument("--max-new-tokens", type=int, default=16, help="tokens to sample per prompt (default 16)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")


def main(args: argparse.Namespace) -> int:
    import torch
    from PIL import Image, ImageDraw

    from .data.record import user_prompt
    from .models.loading import encode_prompts, load_policy, load_processor, resolve_model_path

    t0 = time.time()
    path = resolve_model_path(args.model)
    processor = load_processor(args.model)
    model = load_policy(args.model).eval()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model  {args.model} -> {path} ({type(model).__name__}, {n_params:,} parameters) in {time.time() - t0:.1f}s")

    red = Image.new("RGB", (96, 64), (220, 30, 30))
    shapes = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(shapes).ellipse((8, 8, 40, 40), fill=(30, 60, 220))
    prompts = [user_prompt("What is the dominant color of this image?"), user_prompt("How many circles are there?")]
    inputs = encode_prompts(processor, prompts, [[red], [shapes]])
    torch.manual_seed(args.seed)
    t1 = time.time()
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=args.max_new_tokens, do_sample=True)
    new = out[:, inputs["input_ids"].shape[1]:]
    texts = processor.batch_decode(new, skip_special_tokens=True)
    dt = time.time() - t1
    print(f"batch  2 prompts, images {[tuple(g.tolist()) for g in inputs['image_grid_thw']]} (t, h, w patches), "
          f"prompt length {inputs['input_ids'].shape[1]} tokens")
    for p, t in zip(prompts, texts):
        print(f"  Q: {p[-1]['content'][-1]['text']}\n  A: {t!r}")
    print(f"sampled {new.numel()} tokens in {dt:.2f}s ({new.numel() / dt:.0f} tokens/s); "
          "weights are random, so the answers are noise until trained")
    return 0

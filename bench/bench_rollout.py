"""Rollout throughput: shared prefill (each prompt and image encoded once, KV cache repeated G times) vs expanding
every prompt G times before the prefill (what `generate(num_return_sequences=G)` does).

    .venv/bin/python bench/bench_rollout.py [--model sapo-vl/tiny-qwen3-vl] [--group-size 8] [--image 896]

Prints completion tokens/s of each and their ratio, measured in this run on the same model, prompts and seed.
Target (issue 4): shared prefill at least 2x faster at G = 8 with a large image.
"""
import argparse
import time

import torch
from PIL import Image, ImageDraw

from sapo_vl.data.record import user_prompt
from sapo_vl.models.loading import load_policy, load_processor
from sapo_vl.sampling import sample_completions


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="sapo-vl/tiny-qwen3-vl")
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--prompts", type=int, default=2)
    ap.add_argument("--image", type=int, default=896, help="image side in pixels (896 → 784 image tokens)")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    side = args.image
    proc = load_processor(args.model, min_pixels=32 * 32, max_pixels=side * side)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_policy(args.model, device=device).eval()
    imgs = []
    for i in range(args.prompts):
        im = Image.new("RGB", (side, side), (30 + 60 * i, 120, 200))
        ImageDraw.Draw(im).ellipse((side // 4, side // 4, side // 2, side // 2), fill=(250, 250, 0))
        imgs.append([im])
    prompts = [user_prompt("Describe the picture in detail.") for _ in imgs]
    results = {}
    for shared in (True, False):
        times, tokens = [], 0
        for r in range(args.repeats + 1):
            t = time.perf_counter()
            s = sample_completions(model, proc, prompts, imgs, group_size=args.group_size,
                                   max_new_tokens=args.max_new_tokens, shared_prefill=shared,
                                   generator=torch.Generator(device=device).manual_seed(r))
            if device == "cuda":
                torch.cuda.synchronize()
            if r:  # the first call warms up
                times.append(time.perf_counter() - t)
                tokens += int(s.completion_mask.sum())
        results[shared] = (tokens / sum(times), sum(times) / len(times), s.prefill_tokens)
    n_img = (side // 32) ** 2
    print(f"model {args.model} on {device}; {args.prompts} prompts × G={args.group_size}, image {side}x{side} "
          f"({n_img} image tokens), {args.max_new_tokens} new tokens")
    for shared, (tps, sec, pre) in results.items():
        print(f"  {'shared prefill ' if shared else 'expanded (G×)  '}: {tps:8.0f} tokens/s  {sec:6.3f} s/rollout  "
              f"prefill {pre} tokens")
    print(f"speed-up of shared prefill: {results[True][0] / results[False][0]:.2f}x (target >= 2x at G = 8)")


if __name__ == "__main__":
    main()

"""Rollout benchmarks, each measured in one run on the same model, prompts and seeds.

    .venv/bin/python bench/bench_rollout.py decode  [--max-new-tokens 512] [--generation-batch-size 8] ...
    .venv/bin/python bench/bench_rollout.py prefill [--model sapo-vl/tiny-qwen3-vl] [--group-size 8] [--image 896]

`decode`: today's decode path (preallocated KV cache, finished rows dropped) against the one before it, at long completions. The old loop is
vendored below (`legacy_sample_completions`: `DynamicCache`, which concatenates at every token, a host sync per
token, every row decoded to the end, all rows at once). The model is a random Qwen3-VL built in a temporary folder
with more layers and heads than the tiny one, so that the KV cache dominates. Both paths sample with one generator
per row, so they produce the same tokens and do the same useful work. Each path runs in its own process; the
script prints peak memory added by the rollout (CUDA: `max_memory_allocated`; CPU: the peak resident set, VmHWM,
reset before the rollout) and completion tokens/s, and their ratios. Targets: memory <= 0.5x, tokens/s >= 1.5x.
The memory ratio comes from the generation chunks (half the rows by default); with `--generation-batch-size 0`
the cache holds every row, as before, and only the speed differs. On a CPU, pages of the pre-allocated cache
count once written; on a GPU the whole chunk's cache counts from the start.

`prefill`: shared prefill (each prompt and image encoded once, KV cache repeated G times) against
expanding every prompt G times before the prefill (what `generate(num_return_sequences=G)` does). Target: shared
prefill at least 2x faster at G = 8 with a large image.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from sapo_vl.data.record import user_prompt
from sapo_vl.models.loading import encode_prompts, hf_model, load_policy, load_processor
from sapo_vl.engines.base import Samples, SamplingSettings
from sapo_vl.sampling import NEVER_SAMPLE, STOP_TOKENS, process_logits, sample_completions, token_ids


# ---------------------------------------------------------------------------------------------- the old decode loop
def _legacy_prefill(model, inputs):
    core = hf_model(model).model
    out = model(**dict(inputs.items()), use_cache=True, logits_to_keep=1)
    if "image_grid_thw" in inputs:
        _, deltas = core.get_rope_index(inputs["input_ids"], inputs["mm_token_type_ids"],
                                        image_grid_thw=inputs.get("image_grid_thw"),
                                        attention_mask=inputs["attention_mask"])
        next_pos = inputs["attention_mask"].sum(-1) + deltas[:, 0].to(inputs["attention_mask"].device)
    else:
        next_pos = inputs["attention_mask"].sum(-1)  # (the old text-only position numbering that counted left padding, kept as it was)
    return out.logits[:, -1], out.cache, next_pos


@torch.no_grad()
def legacy_sample_completions(model, processor, prompts, images, *, group_size, max_new_tokens, temperature=1.0,
                              top_p=1.0, top_k=0, generator=None) -> Samples:
    """The sampler as it was before the preallocated KV cache and row dropping (shared prefill only), for comparison."""
    tok = processor.tokenizer
    device = next(model.parameters()).device
    G = group_size
    inputs = encode_prompts(processor, prompts, images)
    feed = inputs.to(device)
    logits, cache, next_pos = _legacy_prefill(model, feed)
    attn = feed["attention_mask"]
    if G > 1:
        cache.batch_repeat_interleave(G)
        logits, next_pos, attn = logits.repeat_interleave(G, 0), next_pos.repeat_interleave(G, 0), \
            attn.repeat_interleave(G, 0)
    banned = torch.tensor(token_ids(tok, NEVER_SAMPLE), dtype=torch.long, device=device)
    stop = torch.tensor(token_ids(tok, STOP_TOKENS), dtype=torch.long, device=device)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else int(stop[0])
    n = logits.shape[0]
    done = torch.zeros(n, dtype=torch.bool, device=device)
    out_ids, out_mask, out_logp = [], [], []
    for step in range(max_new_tokens):
        logp = process_logits(logits, temperature=temperature, top_k=top_k, top_p=top_p, banned=banned)
        if temperature <= 0:
            nxt = logp.argmax(-1)
        elif isinstance(generator, (list, tuple)):
            probs = logp.exp()
            nxt = torch.cat([torch.multinomial(probs[i], 1, generator=g) for i, g in enumerate(generator)])
        else:
            nxt = torch.multinomial(logp.exp(), 1, generator=generator)[:, 0]
        out_logp.append(logp.gather(-1, nxt[:, None])[:, 0].masked_fill(done, 0.0))
        nxt = torch.where(done, torch.full_like(nxt, pad_id), nxt)
        out_ids.append(nxt)
        out_mask.append(~done)
        done = done | torch.isin(nxt, stop)
        if bool(done.all()) or step == max_new_tokens - 1:
            break
        attn = torch.cat([attn, torch.ones_like(attn[:, :1])], dim=1)
        pos = (next_pos + step).view(1, n, 1).expand(3, n, 1)
        out = model(input_ids=nxt[:, None], attention_mask=attn, position_ids=pos, cache=cache, use_cache=True)
        logits = out.logits[:, -1]
    completion_ids = torch.stack(out_ids, dim=1)
    completion_mask = torch.stack(out_mask, dim=1).long()
    texts = tok.batch_decode(completion_ids.masked_fill(completion_mask == 0, pad_id), skip_special_tokens=True)
    return Samples(inputs=inputs, completion_ids=completion_ids.cpu(), completion_mask=completion_mask.cpu(),
                   truncated=(~done).cpu(), sample_logprobs=torch.stack(out_logp, dim=1).cpu(), texts=texts,
                   group_size=G, prefill_tokens=int(feed["input_ids"].numel()))


# ---------------------------------------------------------------------------------------------- the bench model
def build_bench_model(out_dir: Path, *, layers: int, hidden: int, heads: int, kv_heads: int, head_dim: int) -> Path:
    """A random Qwen3-VL (tiny tokenizer and vision tower, a bigger text tower) saved as a checkpoint folder."""
    from transformers import AutoModelForImageTextToText

    from sapo_vl.models.tiny import tiny_config, tiny_processor, train_tokenizer

    tok = train_tokenizer()
    q = head_dim // 8
    config = tiny_config(tok, head_dim=head_dim, mrope_section=(head_dim // 2 - 2 * q, q, q))
    t = config.text_config
    t.num_hidden_layers, t.hidden_size, t.intermediate_size = layers, hidden, 3 * hidden
    t.num_attention_heads, t.num_key_value_heads = heads, kv_heads
    config.vision_config.out_hidden_size = hidden
    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32)
    model.save_pretrained(out_dir, safe_serialization=True)
    tiny_processor(tok).save_pretrained(out_dir)
    return out_dir


def _prompts(n: int, side: int):
    imgs, prompts = [], []
    for i in range(n):
        im = Image.new("RGB", (side, side), (30 + 50 * i % 200, 120, 200))
        ImageDraw.Draw(im).ellipse((side // 4, side // 4, side // 2, side // 2), fill=(250, 250, 0))
        imgs.append([im])
        prompts.append(user_prompt("Describe the picture in detail." + " Be precise." * i))
    return prompts, imgs


def _rss_now() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _rss_peak() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _run_path(path: str, model_dir: str, args: dict, queue) -> None:
    """One decode path in this process: warm up, then one measured rollout; puts (peak bytes, tokens, seconds)."""
    torch.set_num_threads(args["threads"])
    device = "cuda" if torch.cuda.is_available() else "cpu"
    proc = load_processor(model_dir, max_pixels=args["image"] ** 2)
    model = load_policy(model_dir, device=device).eval()
    prompts, imgs = _prompts(args["prompts"], args["image"])
    G = args["group_size"]

    def run(max_new: int):
        gens = [torch.Generator(device=device).manual_seed(1000 + r) for r in range(len(prompts) * G)]
        if path == "legacy":
            return legacy_sample_completions(model, proc, prompts, imgs, group_size=G, max_new_tokens=max_new,
                                             generator=gens)
        return sample_completions(model, proc, prompts, imgs, SamplingSettings(group_size=G, max_new_tokens=max_new),
                                  generator=gens, generation_batch_size=args["gbs"])

    run(4)  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        base = _rss_now()
    t = time.perf_counter()
    s = run(args["max_new_tokens"])
    if device == "cuda":
        torch.cuda.synchronize()
    sec = time.perf_counter() - t
    peak = (torch.cuda.max_memory_allocated() if device == "cuda" else _rss_peak()) - base
    queue.put((peak, int(s.completion_mask.sum()), sec, s.completion_ids.tolist()))


def bench_decode(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_bench_model(Path(tmp) / "model", layers=args.layers, hidden=args.hidden, heads=args.heads,
                                      kv_heads=args.kv_heads, head_dim=args.head_dim)
        n_params = sum(t.numel() for t in load_policy(str(model_dir)).parameters())
        opts = dict(prompts=args.prompts, image=args.image, group_size=args.group_size, gbs=args.generation_batch_size,
                    max_new_tokens=args.max_new_tokens, threads=args.threads)
        ctx = mp.get_context("spawn")
        res = {}
        for path in ("legacy", "new"):
            q = ctx.Queue()
            p = ctx.Process(target=_run_path, args=(path, str(model_dir), opts, q))
            p.start()
            res[path] = q.get()
            p.join()
    rows = args.prompts * args.group_size
    print(f"decode bench: random Qwen3-VL, {n_params / 1e6:.1f}M parameters ({args.layers} layers, hidden "
          f"{args.hidden}, {args.heads} heads / {args.kv_heads} KV heads × {args.head_dim}), "
          f"{'cuda' if torch.cuda.is_available() else f'cpu, {args.threads} threads'}; {args.prompts} prompts × "
          f"G={args.group_size} = {rows} rows, max_new_tokens {args.max_new_tokens}")
    for path, (peak, tokens, sec, _) in res.items():
        label = "old (DynamicCache, sync/token, all rows)" if path == "legacy" else \
            f"new (RowCache, check every 16, generation_batch_size {args.generation_batch_size or rows})"
        print(f"  {label:<60}: peak +{peak / 2**20:8.1f} MiB  {tokens / sec:8.1f} tokens/s  ({tokens} tokens, {sec:.1f} s)")
    same = res["legacy"][3] == [r[: len(res["legacy"][3][0])] for r in res["new"][3]]
    (pl, tl, sl, _), (pn, tn, sn, _) = res["legacy"], res["new"]
    print(f"same tokens: {same}")
    print(f"peak memory new/old: {pn / pl:.2f}x (target <= 0.5x); tokens/s new/old: {(tn / sn) / (tl / sl):.2f}x "
          f"(target >= 1.5x)")


def bench_prefill(args) -> None:
    side = args.image
    proc = load_processor(args.model, min_pixels=32 * 32, max_pixels=side * side)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_policy(args.model, device=device).eval()
    prompts, imgs = _prompts(args.prompts, side)
    results = {}
    for shared in (True, False):
        times, tokens = [], 0
        for r in range(args.repeats + 1):
            t = time.perf_counter()
            s = sample_completions(model, proc, prompts, imgs,
                                   SamplingSettings(group_size=args.group_size, max_new_tokens=args.max_new_tokens),
                                   shared_prefill=shared,
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    d = sub.add_parser("decode", help="new decode path vs the old loop at long completions")
    d.add_argument("--prompts", type=int, default=2)
    d.add_argument("--group-size", type=int, default=8)
    d.add_argument("--image", type=int, default=128, help="image side in pixels")
    d.add_argument("--max-new-tokens", type=int, default=512)
    d.add_argument("--generation-batch-size", type=int, default=8, help="rows per chunk of the new path; 0 = all")
    d.add_argument("--layers", type=int, default=8)
    d.add_argument("--hidden", type=int, default=128)
    d.add_argument("--heads", type=int, default=4)
    d.add_argument("--kv-heads", type=int, default=4)
    d.add_argument("--head-dim", type=int, default=64)
    d.add_argument("--threads", type=int, default=1, help="CPU threads per process (more oversubscribe a shared CPU)")
    p = sub.add_parser("prefill", help="shared vs expanded prefill")
    p.add_argument("--model", default="sapo-vl/tiny-qwen3-vl")
    p.add_argument("--group-size", type=int, default=8)
    p.add_argument("--prompts", type=int, default=2)
    p.add_argument("--image", type=int, default=896, help="image side in pixels (896 → 784 image tokens)")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    bench_decode(args) if args.what == "decode" else bench_prefill(args)


if __name__ == "__main__":
    sys.exit(main())

"""Eval throughput: samples/s of the harness vs. a plain loop of single-sample `generate` calls.

    .venv/bin/python bench/bench_eval.py [--task synthetic_count] [--records 64] [--n-samples 4]
                                         [--max-new-tokens 16] [--batch-size 8] [--threads 1]

Both sides evaluate the same model (the embedded tiny Qwen3-VL unless --model says otherwise) on the same
records at temperature 1 and score every sample with the task's verifier:

- harness: `run_task` (batches of `batch_size` records, K samples sharing one prefill and KV cache, per-row
  seeded sampling, verifier scoring, samples.jsonl and summary.json written);
- plain loop: for every record and sample, `processor(...)` then `model.generate(..., do_sample=True)` on that
  one prompt, then the verifier, the way a hand-written eval script does it.

Model loading and the first call are outside the clock. Prints samples/s of each, mean generated tokens per
sample (both sides run to about the same length) and the ratio. About a minute on the tiny model.
"""
from __future__ import annotations

import argparse
import tempfile
import time

import torch


def plain_loop(model, processor, task, records, images, *, n_samples: int, max_new_tokens: int) -> tuple[int, int]:
    """(samples, generated tokens): one `generate` call per sample."""
    from sapo_vl.models.loading import encode_prompts
    from sapo_vl.verifiers import score

    n = tokens = 0
    for r, ims in zip(records, images):
        for _ in range(n_samples):
            inputs = encode_prompts(processor, [r.prompt], [ims]).to(model.device)
            out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=True, temperature=1.0, top_k=0,
                                 top_p=1.0, pad_token_id=processor.tokenizer.pad_token_id)
            new = out[0, inputs["input_ids"].shape[1]:]
            text = processor.tokenizer.decode(new, skip_special_tokens=True)
            name, params = task.score_spec(r)
            score(name, text, r.answer, **params)
            n, tokens = n + 1, tokens + int(new.numel())
    return n, tokens


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="sapo-vl/tiny-qwen3-vl")
    p.add_argument("--task", default="synthetic_count")
    p.add_argument("--records", type=int, default=64)
    p.add_argument("--n-samples", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads (1: on a shared small CPU more threads only add sync overhead)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from sapo_vl.data.images import ImageConfig, load_image
    from sapo_vl.evaluation.registry import get_task
    from sapo_vl.evaluation.runner import Settings, run_task
    from sapo_vl.models.loading import load_policy, load_processor

    pixels = {"min_pixels": 1024, "max_pixels": 4096} if "tiny" in args.model else {}
    model = load_policy(args.model).eval()
    processor = load_processor(args.model, **pixels)
    task = get_task(args.task)
    records, _ = task.load(limit=args.records)
    cfg = ImageConfig(**pixels)
    images = [[load_image(src, None, cfg) for src in r.images] for r in records]
    settings = Settings(n_samples=args.n_samples, temperature=1.0, max_new_tokens=args.max_new_tokens,
                        batch_size=args.batch_size, progress=False, **pixels)

    plain_loop(model, processor, task, records[:1], images[:1], n_samples=1, max_new_tokens=2)  # warm-up
    with tempfile.TemporaryDirectory() as tmp:
        run_task(model, processor, task, f"{tmp}/warm", Settings(**{**settings.__dict__, "limit": 1}))
        start = time.perf_counter()
        summary = run_task(model, processor, task, f"{tmp}/run", settings)
        harness_s = time.perf_counter() - start
    n_h = summary["metrics"]["n_samples"]
    tok_h = summary["metrics"]["mean_response_tokens"]

    start = time.perf_counter()
    n_p, tokens_p = plain_loop(model, processor, task, records, images, n_samples=args.n_samples,
                               max_new_tokens=args.max_new_tokens)
    plain_s = time.perf_counter() - start

    print(f"{args.task}: {len(records)} records x {args.n_samples} samples, <= {args.max_new_tokens} new tokens, "
          f"T=1, model {args.model}, {torch.get_num_threads()} thread(s)")
    print(f"  harness (batch {args.batch_size}, shared prefill): {n_h / harness_s:8.1f} samples/s  "
          f"({harness_s:.2f} s, {tok_h:.1f} tokens/sample)")
    print(f"  plain generate loop (1 sample/call):      {n_p / plain_s:8.1f} samples/s  "
          f"({plain_s:.2f} s, {tokens_p / n_p:.1f} tokens/sample)")
    print(f"  ratio harness / plain: {(n_h / harness_s) / (n_p / plain_s):.1f}x")


if __name__ == "__main__":
    main()

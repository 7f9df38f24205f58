"""Rollout throughput of the two engines on the same model: the `transformers` sampler ("hf") and vLLM ("vllm").

    # CPU, in .venv-vllm (toy size; vLLM's engine overhead dominates, no speed target here):
    .venv-vllm/bin/python bench/bench_engines.py
    # GPU with `pip install 'sapo_vl[vllm]'`: random weights with Qwen3-VL-2B's architecture, 64 rows x 1,024 tokens
    python bench/bench_engines.py --arch qwen3-vl-2b --prompts 8 --group-size 8 --max-new-tokens 1024

Both engines sample the same prompts (half with an image) at temperature 1 from the same weights; the model is
built here from a config (no hub): the tiny checkpoint with vLLM-compatible heads, or `--arch qwen3-vl-2b`,
random weights in Qwen3-VL-2B's shapes (28 layers, hidden 2048, 16 heads of 128, vocabulary 151,936, 24-block
vision tower). A random model rarely stops early, so rows run to `--max-new-tokens`. Prints completion
tokens/s of each engine (after one warm-up call) and their ratio, measured in this run. Target on a GPU:
vLLM >= 5x the `transformers` engine at 64 rows x 1,024 tokens.
"""
import argparse
import os
import tempfile
import time

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")

import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

QWEN3_VL_2B = dict(
    text=dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16,
              num_key_value_heads=8, head_dim=128, vocab_size=151_936, max_position_embeddings=32_768,
              rope_parameters={"rope_type": "default", "rope_theta": 5_000_000.0, "mrope_section": [24, 20, 20],
                               "mrope_interleaved": True}, tie_word_embeddings=True),
    vision=dict(depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16, out_hidden_size=2048,
                num_position_embeddings=2304, deepstack_visual_indexes=[5, 11, 17]),
)
"""Qwen3-VL-2B-Instruct's shapes (its published config.json), for a random-weight stand-in."""


def build_model(arch: str, out_dir: str) -> str:
    """A checkpoint folder: the tiny model with vLLM-compatible heads, or random weights in Qwen3-VL-2B's shapes."""
    from sapo_vl.models import tiny

    if arch == "tiny":
        return str(tiny.build_tiny_checkpoint(out_dir, **tiny.VLLM_TEXT_HEADS))
    from transformers import AutoModelForImageTextToText

    tok = tiny.train_tokenizer()
    config = tiny.tiny_config(tok, **tiny.VLLM_TEXT_HEADS)
    for key, value in QWEN3_VL_2B["text"].items():
        setattr(config.text_config, key, value)
    for key, value in QWEN3_VL_2B["vision"].items():
        setattr(config.vision_config, key, value)
    config.vision_config.out_hidden_size = config.text_config.hidden_size
    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(out_dir, safe_serialization=True)
    tiny.tiny_processor(tok).save_pretrained(out_dir)
    return out_dir


class _WholeParameters:
    """Stands in for the DeepSpeed engine: parameters already whole (no ZeRO-3 gather), nothing to toggle."""

    def zero_optimization_stage(self) -> int:
        return 0

    def eval(self) -> None: ...

    def train(self) -> None: ...


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", choices=["tiny", "qwen3-vl-2b"], default="tiny")
    ap.add_argument("--prompts", type=int, default=2)
    ap.add_argument("--group-size", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--image", type=int, default=256, help="image side in pixels")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    from sapo_vl.config import load_config
    from sapo_vl.data.record import user_prompt
    from sapo_vl.engines.base import SamplingSettings
    from sapo_vl.engines.hf_engine import HFEngine
    from sapo_vl.engines.vllm_engine import VLLMEngine
    from sapo_vl.models.loading import load_policy, load_processor

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    side = args.image
    workdir = tempfile.mkdtemp(prefix="bench_engines_")
    path = build_model(args.arch, workdir)
    rows = args.prompts * args.group_size
    cfg = load_config(None, [f"rollout.max_new_tokens={args.max_new_tokens}", "data.max_prompt_tokens=1024",
                             f"model.max_pixels={side * side}", f"rollout.vllm.max_num_seqs={max(64, rows)}"])
    proc = load_processor(path, min_pixels=cfg.model.min_pixels, max_pixels=cfg.model.max_pixels)
    policy = load_policy(path, dtype="auto", device=device).eval()
    prompts, images = [], []
    for i in range(args.prompts):
        if i % 2 == 0:
            im = Image.new("RGB", (side, side), (30 + 40 * i, 120, 200))
            ImageDraw.Draw(im).ellipse((side // 4, side // 4, side // 2, side // 2), fill=(250, 250, 0))
            prompts.append(user_prompt("Describe the picture in detail.", n_images=1))
            images.append([im])
        else:
            prompts.append(user_prompt("Write a long story about a red cube.", n_images=0))
            images.append([])
    settings = SamplingSettings(group_size=args.group_size, max_new_tokens=args.max_new_tokens)
    engines = {"hf": HFEngine(_WholeParameters(), policy, proc, cfg, device=device),
               "vllm": VLLMEngine(None, policy, proc, cfg, device=device)}
    results = {}
    for name, engine in engines.items():
        times, tokens = [], 0
        for r in range(args.repeats + 1):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            s = engine.generate(prompts, images, settings, seed=r)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if r:  # the first call warms up
                times.append(time.perf_counter() - t)
                tokens += int(s.completion_mask.sum())
        results[name] = (tokens / sum(times), sum(times) / len(times), tokens / len(times))
    engines["vllm"].close()
    print(f"model {args.arch} ({sum(p.numel() for p in policy.parameters()) / 1e6:.1f}M parameters, "
          f"{str(next(policy.parameters()).dtype).removeprefix('torch.')}) on {device}; {args.prompts} prompts x "
          f"G={args.group_size} = {rows} rows, up to {args.max_new_tokens} new tokens, image {side}x{side}")
    for name, (tps, sec, tok) in results.items():
        print(f"  {name:5s}: {tps:9.0f} tokens/s  {sec:7.2f} s/rollout  {tok:8.0f} tokens/rollout")
    print(f"vllm / hf: {results['vllm'][0] / results['hf'][0]:.2f}x"
          f"{'' if device.type == 'cuda' else ' (CPU: no speed target)'}")


if __name__ == "__main__":
    main()

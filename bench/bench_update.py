"""One update phase at three vision-language rollout shapes: the row path vs packed micro-batches vs `auto`.

    .venv/bin/python bench/bench_update.py [--shape vlm|reasoning|text|all] [--prompts B] [--group G]
                                           [--image-tokens N] [--text-tokens N] [--min-len N] [--max-len N]
                                           [--micro 4] [--budget 0] [--threads 1] [--repeats 1]
                                           [--arch small|qwen3-vl-2b]

`--arch qwen3-vl-2b` runs random weights in Qwen3-VL-2B's shapes (`bench_engines.QWEN3_VL_2B`) instead, in bf16 on
a GPU (fp32 on CPU), and adds the update's model FLOPs utilisation on a GPU whose peak it knows (`gpu_check`).

The shapes (`--shape all` runs the three; a flag overrides the shape's value):

| shape       | B × G | image tokens | completions | target (packed and auto vs row) |
|-------------|-------|--------------|-------------|---------------------------------|
| `vlm`       | 4 × 8 | 1,024        | 64-256      | ≥ 3×                            |
| `reasoning` | 2 × 8 | 1,024        | 512-1,024   | ≥ 1.8×                          |
| `text`      | 2 × 8 | 256          | 768-1,024   | ≥ 1.1× (and auto never below 1×)|

The update phase = the π_old pass + μ × `num_minibatches` optimizer steps (μ = 1, 2 minibatches, as the demo),
through `sapo_vl.update` on the DeepSpeed engine (ZeRO-0, fp32, CPU or one GPU), of a random-weight Qwen3-VL
built here (~18M parameters: text 6 layers × 384, vocabulary 16,384, vision tower 2 blocks × 128 with
deepstack). Its vocabulary projection costs 0.6× its trunk per token; in a real Qwen3-VL-8B it is ~0.1× (a tiny
model's huge relative vocabulary would make the projection, identical in all paths, most of the work). The
rollout is B prompts of one image (`--image-tokens` merged tokens = 4× as many vision patches) plus text, G
completions each of uniformly random length in [min-len, max-len].

- row (`algorithm.shared_prefix=false`): one prompt+completion row per completion, `--micro` rows per
  micro-batch, the image re-encoded in every row;
- packed (`true`): group-aware minibatches, one row per group [prompt, completion 1 … G] with the shared-prefix
  attention (`sapo_vl.shared_prefix`), each image encoded once per micro-batch, micro-batches bounded by
  `--budget` padded tokens (0 = the row path's padded micro-batch size: micro × (prompt + longest completion));
- auto (`auto`, the default): per micro-batch, whichever the cost estimate finds cheaper (`packed_frac` = the
  share of micro-batches run packed).

Each path runs in its own process from the same weights and rollout; the figures are its process CPU time (the
headline: on a shared machine it does not count other people's load; `--threads 1` by default) and wall time,
the growth of peak resident memory over the process's baseline once model and rollout exist (CPU) or
max_memory_allocated (GPU), and the vision-tower patches encoded. Each shape ends with the line
`update speedup: packed X.XX×, auto Y.YY× vs row` (CPU time), measured in that one run.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

VOCAB = 16_384
IMAGE, VSTART, VEND = VOCAB - 3, VOCAB - 2, VOCAB - 1
SHAPES = {  # name: (prompts, group, image tokens, min len, max len, target)
    "vlm": (4, 8, 1024, 64, 256, 3.0),
    "reasoning": (2, 8, 1024, 512, 1024, 1.8),
    "text": (2, 8, 256, 768, 1024, 1.1),
}
PATHS = {"row": "false", "packed": "true", "auto": "auto"}


def set_arch(arch: str) -> None:
    """Token ids for `arch`: the small model's 16,384-token vocabulary or Qwen3-VL-2B's 151,936."""
    global VOCAB, IMAGE, VSTART, VEND
    VOCAB = 151_936 if arch == "qwen3-vl-2b" else 16_384
    IMAGE, VSTART, VEND = VOCAB - 3, VOCAB - 2, VOCAB - 1


def build_model(seed: int = 0, arch: str = "small"):
    import torch
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    if arch == "qwen3-vl-2b":
        return _build_2b(seed)
    text = dict(vocab_size=VOCAB, hidden_size=384, intermediate_size=1152, num_hidden_layers=6,
                num_attention_heads=6, num_key_value_heads=2, head_dim=64, max_position_embeddings=8192,
                rope_parameters={"rope_type": "default", "rope_theta": 5_000_000.0, "mrope_section": [12, 10, 10],
                                 "mrope_interleaved": True}, tie_word_embeddings=True, pad_token_id=0)
    vision = dict(depth=2, hidden_size=128, intermediate_size=512, num_heads=2, in_channels=3, patch_size=16,
                  spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=384, num_position_embeddings=2304,
                  deepstack_visual_indexes=[1])
    cfg = Qwen3VLConfig(text_config=text, vision_config=vision, image_token_id=IMAGE, video_token_id=VOCAB - 4,
                        vision_start_token_id=VSTART, vision_end_token_id=VEND, tie_word_embeddings=True)
    cfg._attn_implementation = "sdpa"
    cfg.get_text_config()._attn_implementation = "sdpa"
    cfg.vision_config._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    return Qwen3VLForConditionalGeneration(cfg).float()


def _build_2b(seed: int):
    import torch
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_engines import QWEN3_VL_2B

    text = dict(QWEN3_VL_2B["text"], pad_token_id=0)
    vision = dict(QWEN3_VL_2B["vision"], in_channels=3, patch_size=16, spatial_merge_size=2, temporal_patch_size=2)
    cfg = Qwen3VLConfig(text_config=text, vision_config=vision, image_token_id=IMAGE, video_token_id=VOCAB - 4,
                        vision_start_token_id=VSTART, vision_end_token_id=VEND, tie_word_embeddings=True)
    for c in (cfg, cfg.get_text_config(), cfg.vision_config):
        c._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    return Qwen3VLForConditionalGeneration(cfg).to(dtype)


def peak_tflops() -> float | None:
    """Dense bf16 peak of this GPU in TFLOP/s, for the ones this project ran on; None otherwise."""
    import torch

    name = torch.cuda.get_device_name() if torch.cuda.is_available() else ""
    return next((v for k, v in {"H100": 989.0, "H200": 989.0, "A100": 312.0}.items() if k in name), None)


def build_rollout(args):
    """B prompts [text, <vision_start>, image tokens, <vision_end>, text] × G random completions, with advantages."""
    import torch

    from sapo_vl.rollout import Rollout

    gen = torch.Generator().manual_seed(1)
    side = int(round(args.image_tokens**0.5))  # merged tokens per side; patches per side = 2 × side
    grid = torch.tensor([[1, 2 * side, 2 * side]])
    patch_dim = 3 * 2 * 16 * 16
    ids, mm, pixels, grids = [], [], [], []
    for b in range(args.prompts):
        before = args.text_tokens // 2 + b  # prompts differ a little in length
        after = args.text_tokens - args.text_tokens // 2
        t1 = torch.randint(1, VOCAB - 8, (before,), generator=gen)
        t2 = torch.randint(1, VOCAB - 8, (after,), generator=gen)
        x = torch.cat([t1, torch.tensor([VSTART]), torch.full((side * side,), IMAGE), torch.tensor([VEND]), t2])
        ids.append(x)
        mm.append((x == IMAGE).long())
        pixels.append(torch.randn(int(grid.prod()), patch_dim, generator=gen))
        grids.append(grid.clone())
    lp = max(len(x) for x in ids)
    left = lambda t: torch.nn.functional.pad(t, (lp - len(t), 0))  # noqa: E731
    n = args.prompts * args.group
    lengths = torch.randint(args.min_len, args.max_len + 1, (n,), generator=gen)
    lc = int(lengths.max())
    cmask = (torch.arange(lc)[None] < lengths[:, None]).long()
    ro = Rollout(
        records=[None] * args.prompts, prompt_ids=torch.stack([left(x) for x in ids]),
        prompt_mask=torch.stack([left(torch.ones_like(x)) for x in ids]), prompt_mm_types=torch.stack([left(x) for x in mm]),
        pixel_values=pixels, image_grid_thw=grids,
        completion_ids=torch.randint(1, VOCAB - 8, (n, lc), generator=gen) * cmask, completion_mask=cmask,
        truncated=torch.zeros(n, dtype=torch.bool), texts=[""] * n, group_size=args.group,
    )
    ro.advantages = torch.randn(n, generator=gen)
    return ro


def _peak() -> float:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child(path: str, args) -> dict:
    import torch

    from sapo_vl import ds, packing
    from sapo_vl.algorithms import sapo_loss
    from sapo_vl.batch_plan import batch_plan
    from sapo_vl.config import load_config
    from sapo_vl.update import UpdateSettings, micro_batch_source, rollout_logprobs, update_policy

    set_arch(args.arch)
    torch.set_num_threads(args.threads)
    dist = ds.init_distributed()
    precision = "bf16" if args.arch == "qwen3-vl-2b" and torch.cuda.is_available() else "fp32"
    cfg = load_config(None, ["deepspeed.zero_stage=0", f"deepspeed.precision={precision}", "optimizer.lr=1e-5",
                             "algorithm.updates_per_rollout=1", "algorithm.num_minibatches=2",
                             f"rollout.prompts_per_step={args.prompts}", f"rollout.group_size={args.group}",
                             f"deepspeed.micro_batch_size={args.micro}"])
    plan = batch_plan(cfg, 1)
    ro = build_rollout(args)
    model = build_model(arch=args.arch).to(dist.device)
    engine = ds.create_engine(packing.PackedPolicyLogprobs(model), cfg, micro_batch=plan.micro,
                              grad_accum=plan.grad_accum, dist=dist, total_optimizer_steps=10)
    patches = [0]
    model.model.visual.register_forward_pre_hook(lambda m, a: patches.__setitem__(0, patches[0] + int(a[0].shape[0])))
    lp_max = int(ro.prompt_mask.sum(-1).max())
    budget = args.budget or plan.micro * (lp_max + int(ro.completion_mask.sum(-1).max()))
    u = UpdateSettings(loss_fn=sapo_loss, loss_kwargs={"agg": "seq-mean-token-mean"}, mu=1, num_minibatches=2,
                       temperature=1.0, shared_prefix={"row": False, "packed": True, "auto": "auto"}[path],
                       micro_rows=plan.micro, micro_tokens=budget, touch_vision=False)
    ro.loss_mask = ro.completion_mask
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    base = _peak()
    t0, c0 = time.perf_counter(), time.process_time()
    source = micro_batch_source(ro, model, u, dist.device)
    ro.old_logprobs, _ = rollout_logprobs(engine, ro, source, u)
    stats, _ = update_policy(engine, ro, source, u, seed=0)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    tokens = int(ro.prompt_mask.sum()) + int(ro.completion_mask.sum())  # each prompt once + every completion token
    flops = 8 * sum(p.numel() for p in model.parameters()) * tokens  # π_old forward (2PT) + update fwd/bwd (6PT)
    peak = peak_tflops()
    return {"path": path, "seconds": seconds, "cpu_s": cpu, "peak_mb": _peak() - base, "patches": patches[0],
            "mfu": flops / seconds / (peak * 1e12) if peak else None,
            "params": sum(p.numel() for p in model.parameters()), "padding_frac": stats.get("padding_frac"),
            "micro_batches": stats.get("micro_batches"), "packed_frac": stats.get("packed_frac"),
            "device": str(dist.device)}


def run_shape(name: str, args, flags: list[str]) -> dict:
    """The three paths at one shape, each in its own process; prints the shape's lines, returns the ratios."""
    out = {}
    for path in ("row", "packed", "auto"):
        runs = []
        for _ in range(args.repeats):  # each in a fresh process; the run of median CPU time stands for the path
            res = subprocess.run([sys.executable, __file__, *flags, "--child", path], capture_output=True, text=True)
            if res.returncode:
                sys.exit(f"{name}: {path} path failed:\n{res.stderr[-4000:]}")
            runs.append(json.loads(res.stdout.strip().splitlines()[-1]))
        out[path] = sorted(runs, key=lambda x: x["cpu_s"])[len(runs) // 2]
    r = out["row"]
    print(f"{name}: {args.prompts} prompts × G={args.group}, ~{args.image_tokens + args.text_tokens} prompt tokens "
          f"({args.image_tokens} image), completions {args.min_len}-{args.max_len}; {r['params'] / 1e6:.1f}M "
          f"parameters on {r['device']}; π_old pass + 2 minibatch steps")
    for path, x in out.items():
        how = (f"{args.micro} rows per micro-batch" if path == "row" else
               f"{x['micro_batches']:.0f} micro-batches, padding {x['padding_frac']:.1%}, packed {x['packed_frac']:.0%}")
        print(f"  {path:<7}: {x['cpu_s']:7.1f} s CPU ({x['seconds']:6.1f} s wall)  peak +{x['peak_mb']:7.0f} MiB  "
              f"vision patches {x['patches']:>8,}  ({how})")
    ratio = {p: r["cpu_s"] / out[p]["cpu_s"] for p in ("packed", "auto")}
    print(f"update speedup: packed {ratio['packed']:.2f}×, auto {ratio['auto']:.2f}× vs row (CPU time; wall "
          f"{r['seconds'] / out['packed']['seconds']:.2f}×, {r['seconds'] / out['auto']['seconds']:.2f}×; "
          f"vision-tower patches {r['patches']:,} → {out['packed']['patches']:,})", flush=True)
    if out["packed"].get("mfu") is not None:
        print(f"update MFU (packed path, model FLOPs 8·P·tokens / bf16 peak): {out['packed']['mfu']:.1%}")
    print("json: " + json.dumps(out), flush=True)  # (what `gpu_check` reads)
    return ratio


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", default="vlm", choices=[*SHAPES, "all"], help="preset shape(s), see the docstring")
    ap.add_argument("--prompts", type=int, default=None, help="B (default: the shape's)")
    ap.add_argument("--group", type=int, default=None, help="G (default: the shape's)")
    ap.add_argument("--image-tokens", type=int, default=None, help="merged image tokens per prompt, a square "
                    "(default: the shape's)")
    ap.add_argument("--text-tokens", type=int, default=80, help="text tokens per prompt around the image")
    ap.add_argument("--min-len", type=int, default=None, help="shortest completion (default: the shape's)")
    ap.add_argument("--max-len", type=int, default=None, help="longest completion (default: the shape's)")
    ap.add_argument("--micro", type=int, default=4, help="row path: completion rows per micro-batch")
    ap.add_argument("--budget", type=int, default=0, help="packed path: padded tokens per micro-batch (0: see doc)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads per path (process time is the figure)")
    ap.add_argument("--repeats", type=int, default=1, help="runs per path; the median CPU time is reported (the "
                    "ratio moves by about ±15%% from run to run even on an idle machine)")
    ap.add_argument("--arch", default="small", choices=["small", "qwen3-vl-2b"], help="the model: the ~18M-parameter "
                    "one built here, or random weights in Qwen3-VL-2B's shapes")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args)))
        return
    ratios = {}
    for name in SHAPES if args.shape == "all" else [args.shape]:
        b, g, img, lo, hi, _ = SHAPES[name]
        shaped = argparse.Namespace(**{**vars(args), "prompts": args.prompts or b, "group": args.group or g,
                                       "image_tokens": args.image_tokens or img, "min_len": args.min_len or lo,
                                       "max_len": args.max_len or hi})
        flags = [f"--prompts={shaped.prompts}", f"--group={shaped.group}", f"--image-tokens={shaped.image_tokens}",
                 f"--text-tokens={args.text_tokens}", f"--min-len={shaped.min_len}", f"--max-len={shaped.max_len}",
                 f"--micro={args.micro}", f"--budget={args.budget}", f"--threads={args.threads}",
                 f"--arch={args.arch}"]
        ratios[name] = run_shape(name, shaped, flags)
    if len(ratios) > 1:
        print("summary: " + "; ".join(f"{n} packed {r['packed']:.2f}× auto {r['auto']:.2f}× (target ≥ {SHAPES[n][5]}×)"
                                      for n, r in ratios.items()))


if __name__ == "__main__":
    main()

"""Settings and helpers for the tests marked `vllm` (run in `.venv-vllm` by `make test-vllm`); importing this
module sets the vLLM environment, so it comes before anything imports vLLM.

vLLM runs in the test process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`: 3-4 s to start instead of 20-40 s), with a
1 GiB CPU KV cache and no thread pinning, on tiny checkpoints whose text heads vLLM's CPU attention accepts
(`VLLM_TEXT_HEADS`: head_dim 32, M-RoPE sections [6, 5, 5]). DeepSpeed builds its CPU ops into this venv's own
folder.
"""
import os
import sys

os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
# DeepSpeed's JIT-built CPU ops for this venv's torch, apart from the main venv's (same cache name, other torch)
os.environ.setdefault("TORCH_EXTENSIONS_DIR", os.path.join(sys.prefix, "torch_extensions"))
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")

import numpy as np  # noqa: E402
import torch  # noqa: E402

PROMPTS = [
    [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What color is the square?"}]}],
    [{"role": "user", "content": "How many circles are there? Answer with a number."}],
    [{"role": "user", "content": [{"type": "text", "text": "Which is larger?"}, {"type": "image"}]}],
]


def prompt_images():
    """Real PIL images of different sizes (so the processor resizes them differently), one per image prompt."""
    from PIL import Image

    rng = np.random.default_rng(0)
    a = Image.fromarray(rng.integers(0, 255, (96, 64, 3), dtype=np.uint8))
    b = Image.fromarray(rng.integers(0, 255, (50, 170, 3), dtype=np.uint8))
    return [[a], [], [b]]


def vllm_config(*overrides: str):
    from sapo_vl.config import load_config

    return load_config(None, ["rollout.max_new_tokens=12", "rollout.vllm.max_num_seqs=16",
                              "data.max_prompt_tokens=256", *overrides])


def load(path, cfg):
    """(policy in float32, the trainer's processor) for a checkpoint, as the training loop loads them."""
    from sapo_vl.models.loading import load_policy, load_processor

    proc = load_processor(str(path), min_pixels=cfg.model.min_pixels, max_pixels=cfg.model.max_pixels)
    return load_policy(str(path), dtype="float32"), proc


@torch.no_grad()
def trainer_logprobs(policy, processor, prompts, images, samples) -> torch.Tensor:
    """(B·G, Lc) the trainer's teacher-forced log-probs of the sampled tokens: `PolicyLogprobs` as the training
    run builds it (the never-sampled tokens out of its softmax, as out of the sampler's), one prompt's G rows at a
    time."""
    from sapo_vl.logprobs import PolicyLogprobs
    from sapo_vl.models.loading import encode_prompts
    from sapo_vl.rollout import RowBatch
    from sapo_vl.sampling import NEVER_SAMPLE, token_ids

    G = samples.group_size
    module = PolicyLogprobs(policy, banned_ids=token_ids(processor.tokenizer, NEVER_SAMPLE)).eval()
    lc = samples.completion_ids.shape[1]
    out = torch.zeros(len(prompts) * G, lc)
    for b, (p, ims) in enumerate(zip(prompts, images)):
        enc = encode_prompts(processor, [p] * G, [ims] * G)  # (G, Lp): G copies, no padding
        rows = slice(b * G, (b + 1) * G)
        comp, cmask = samples.completion_ids[rows], samples.completion_mask[rows]  # (G, Lc)
        ids = torch.cat([enc["input_ids"], comp], 1)  # (G, Lp + Lc)
        attn = torch.cat([enc["attention_mask"], cmask], 1)
        mm = torch.cat([enc["mm_token_type_ids"], torch.zeros_like(comp)], 1)
        batch = RowBatch(rows=list(range(rows.start, rows.stop)), input_ids=ids, attention_mask=attn,
                         mm_token_type_ids=mm, n_completion=lc, pixel_values=enc.get("pixel_values"),
                         image_grid_thw=enc.get("image_grid_thw"), mask=cmask)
        logp, _ = module(batch, with_entropy=False)  # (G, Lc)
        out[rows] = logp * cmask
    return out


def max_gap(samples, reference) -> float:
    m = samples.completion_mask.bool()
    return float((samples.sample_logprobs - reference).abs()[m].max())

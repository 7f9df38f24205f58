"""One rank of the 2-rank ZeRO-3 test (launched by tests/vllm/test_vllm_ranks.py with torchrun, gloo on CPU).

Each rank trains the tiny policy under ZeRO-3 and owns its own vLLM engine. It samples its own prompt, checks
vLLM's log-probs against the trainer's (parameters gathered), takes one optimizer step on its samples, syncs the
new weights into its engine and checks again; it writes what it measured to OUT/rank{r}.json.

    torchrun --nproc_per_node 2 tests/vllm/zero3_ranks.py CHECKPOINT OUT
"""
import json
import os
import sys
from pathlib import Path

os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
sys.path.insert(0, str(Path(__file__).parent))

import torch  # noqa: E402

from vllm_helpers import PROMPTS, load, max_gap, prompt_images, trainer_logprobs, vllm_config  # noqa: E402
from sapo_vl import ds  # noqa: E402
from sapo_vl.engines.base import SamplingSettings  # noqa: E402
from sapo_vl.engines.vllm_engine import VLLMEngine  # noqa: E402
from sapo_vl.logprobs import PolicyLogprobs  # noqa: E402
from sapo_vl.models.loading import encode_prompts  # noqa: E402
from sapo_vl.rollout import RowBatch  # noqa: E402


def main(checkpoint: str, out: str) -> None:
    dist = ds.init_distributed()
    cfg = vllm_config("deepspeed.zero_stage=3", "optimizer.lr=3e-2", "optimizer.warmup_steps=0")
    policy, proc = load(checkpoint, cfg)
    engine = ds.create_engine(PolicyLogprobs(policy), cfg, micro_batch=3, grad_accum=1, dist=dist,
                              total_optimizer_steps=1)
    vllm = VLLMEngine(engine, policy, proc, cfg)
    # rank 0 samples an image prompt, rank 1 a text-only one
    prompt, images = [PROMPTS[2 * dist.rank]], [prompt_images()[2 * dist.rank]]
    settings = SamplingSettings(group_size=3, max_new_tokens=10)
    report = {"rank": dist.rank, "world": dist.world_size, "zero_stage": engine.zero_optimization_stage()}

    def parity(samples) -> float:
        engine.eval()
        with ds.gathered(engine):
            gap = max_gap(samples, trainer_logprobs(policy, proc, prompt, images, samples))
        engine.train()
        return gap

    s0 = vllm.generate(prompt, images, settings, seed=dist.rank)
    report["gap_before"] = parity(s0)

    # one optimizer step: raise the log-likelihood of this rank's own samples
    enc = encode_prompts(proc, prompt * 3, images * 3)
    ids = torch.cat([enc["input_ids"], s0.completion_ids], 1)
    attn = torch.cat([enc["attention_mask"], s0.completion_mask], 1)
    mm = torch.cat([enc["mm_token_type_ids"], torch.zeros_like(s0.completion_ids)], 1)
    batch = RowBatch(rows=[0, 1, 2], input_ids=ids, attention_mask=attn, mm_token_type_ids=mm,
                     n_completion=s0.completion_ids.shape[1], pixel_values=enc.get("pixel_values"),
                     image_grid_thw=enc.get("image_grid_thw"), mask=s0.completion_mask)
    logp, _ = engine(batch, touch_vision=True, with_entropy=False)
    loss = -(logp * s0.completion_mask).sum() / s0.completion_mask.sum()
    ds.backward(engine, loss, dist.world_size)
    engine.step()

    vllm.update_weights()
    s1 = vllm.generate(prompt, images, settings, seed=dist.rank)
    report["gap_after"] = parity(s1)
    report["changed"] = not torch.equal(s0.sample_logprobs, s1.sample_logprobs)
    report["rows"] = int(s1.completion_ids.shape[0])
    Path(out, f"rank{dist.rank}.json").write_text(json.dumps(report))
    vllm.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

"""Run by `tests/test_packing.py` under `torchrun --nproc_per_node 2`: ZeRO-3 on CPU ranks, packed vs row path.

    torchrun --nproc_per_node 2 tests/packing_ranks.py MODEL_DIR OUT_JSON

Rank 0 holds image prompts, rank 1 text-only ones (the vision tower runs on a dummy there). Both paths run through
the engine from the same weights: the row path (`Rollout.micro_batch`, one micro-batch), then the packed path
(token-budget micro-batches, as many on every rank). For each, the full gradients are gathered from the ZeRO-3
partitions, then cleared without an optimizer step. Rank 0 writes the largest relative gaps.
"""
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_packing import make_rollout  # noqa: E402

from sapo_vl import ds, packing  # noqa: E402
from sapo_vl.dist import all_reduce  # noqa: E402
from sapo_vl.config import load_config  # noqa: E402
from sapo_vl.models.loading import load_policy, load_processor  # noqa: E402


def full_grads(engine) -> dict[str, torch.Tensor]:
    from deepspeed.utils import safe_get_full_grad

    out = {}
    for name, p in engine.module.policy.named_parameters():
        g = safe_get_full_grad(p)  # a collective under ZeRO-3: every rank, same order
        if g is not None:
            out[name] = g.detach().float().cpu().clone()
    return out


def main(model_dir: str, out_path: str) -> None:
    dist = ds.init_distributed()
    cfg = load_config(None, ["deepspeed.zero_stage=3", "model.name_or_path=" + model_dir, "rollout.group_size=3",
                             "rollout.prompts_per_step=4", "deepspeed.micro_batch_size=6",
                             "algorithm.num_minibatches=1"])
    torch.manual_seed(0)
    engine = ds.create_engine(packing.PackedPolicyLogprobs(load_policy(model_dir)), cfg, micro_batch=6, grad_accum=1,
                              dist=dist, total_optimizer_steps=10)
    ro = make_rollout(load_processor(model_dir), "several_images" if dist.rank == 0 else "text_only", seed=dist.rank)
    weights = torch.randn(ro.completion_ids.shape, generator=torch.Generator().manual_seed(7 + dist.rank))
    mask = ro.completion_mask.float()
    rows = list(range(ro.n))

    # the row path: one micro-batch of prompt+completion rows
    engine.set_gradient_accumulation_boundary(True)
    mb = ro.row_batch(rows)
    lp, _ = mb.logprobs(engine, touch_vision=True)
    want = torch.zeros(ro.completion_ids.shape)
    want[:, : lp.shape[1]] = lp.detach()
    ds.backward(engine, (lp * mask[:, : lp.shape[1]] * weights[:, : lp.shape[1]]).sum(), dist.world_size)
    g_want = full_grads(engine)
    engine.optimizer.zero_grad()  # no step: a learning-rate-0 step moves ZeRO-3 MoE weights (measured)

    # the packed path: small token budget, so groups are cut and ranks need different counts before equalising
    table = packing.prompt_table(ro, engine.module.policy)
    plan = packing.micro_batches_in_step(rows, table, token_budget=max(table.prompt_len) + 10)
    got = torch.zeros(ro.completion_ids.shape)
    for i, b in enumerate(plan):
        batch = packing.packed_batch(table, b)
        engine.set_gradient_accumulation_boundary(i == len(plan) - 1)
        lp, _ = batch.logprobs(engine, touch_vision=True)
        r, lc = batch.rows, batch.n_completion
        got[r, :lc] = lp.detach()
        ds.backward(engine, (lp * mask[r, :lc] * weights[r, :lc]).sum(), dist.world_size)
    g_got = full_grads(engine)
    engine.optimizer.zero_grad()

    m = ro.completion_mask.bool()
    logp_gap = float((got[m] - want[m]).norm() / want[m].norm())
    nonzero = [k for k in g_want if g_want[k].norm() > 0]
    grad_gap = max(float((g_got[k] - g_want[k]).norm() / g_want[k].norm()) for k in nonzero)
    gaps = all_reduce([logp_gap, grad_gap, float(len(plan))], torch.distributed.ReduceOp.MAX)
    if dist.is_main:
        Path(out_path).write_text(json.dumps({
            "logp": gaps[0], "grad": gaps[1], "micro_batches": gaps[2], "grad_tensors": len(nonzero),
            "vision_grad_tensors": sum("visual" in k for k in nonzero),
        }))
        print("gaps", gaps)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

"""Data parallelism for eval with `torch.distributed` only: join the group a launcher describes, share and
collect Python objects. No DeepSpeed engine: inference needs none.

`torchrun --nproc_per_node N -m sapo_vl.evaluation ...` and `deepspeed --num_gpus N --module sapo_vl.evaluation ...`
both set RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT; `join()` then opens an NCCL group on
GPUs or a gloo group on CPUs. A plain run, or a trainer that already opened a group, needs nothing here.
"""
from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as tdist

from ..dist import Dist, current


def join() -> Dist:
    """Join the launcher's process group when WORLD_SIZE > 1 (idempotent); otherwise rank 0 of 1."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not tdist.is_initialized():
        tdist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return current()


def broadcast(obj: Any, ranks: Dist) -> Any:
    """Rank 0's `obj` on every rank."""
    if ranks.world_size == 1:
        return obj
    box = [obj]
    tdist.broadcast_object_list(box, src=0)
    return box[0]


def gather(obj: Any, ranks: Dist) -> list[Any] | None:
    """Every rank's `obj`, in rank order, on rank 0; None elsewhere."""
    if ranks.world_size == 1:
        return [obj]
    out = [None] * ranks.world_size if ranks.is_main else None
    tdist.gather_object(obj, out, dst=0)
    return out


def leave() -> None:
    """Wait until every rank is done (end of `python -m sapo_vl.evaluation`). The group is not destroyed: with
    gloo, `destroy_process_group()` at the very end of a run aborted a rank at exit about once in 15 runs
    ("terminate called without an active exception"), after all results were written; process exit frees it."""
    if tdist.is_available() and tdist.is_initialized():
        tdist.barrier()

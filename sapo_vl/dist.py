"""Where this process stands in the process group, and the loop's small collectives.

`Dist` is the one rank container used by training and eval alike. The collectives (`all_reduce`,
`all_gather_cat`, `all_gather_objects`) are no-ops in a group of one, and put their tensors where the backend
wants them (the current GPU under NCCL, the CPU under gloo).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as tdist


@dataclass(frozen=True)
class Dist:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    """This rank's device: cuda:LOCAL_RANK when CUDA is available, else cpu."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def local_device() -> torch.device:
    """cuda:LOCAL_RANK (made current) when CUDA is available, else the CPU."""
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def current() -> Dist:
    """The ranks of an already open group (a trainer's, a launcher's), or rank 0 of 1."""
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if tdist.is_available() and tdist.is_initialized():
        return Dist(tdist.get_rank(), tdist.get_world_size(), local, local_device())
    return Dist(0, 1, 0, local_device())


# ---------------------------------------------------------------------------------------------------- collectives
def comm_device() -> torch.device:
    """Where collective tensors must live: the current GPU under NCCL, the CPU under gloo."""
    if tdist.is_initialized() and tdist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_gather_cat(x: torch.Tensor, world: int) -> torch.Tensor:
    """(n,) on every rank → (world·n,) in rank order, on the CPU."""
    if world == 1:
        return x
    x = x.to(comm_device())
    parts = [torch.zeros_like(x) for _ in range(world)]
    tdist.all_gather(parts, x)
    return torch.cat(parts).cpu()


def world_size() -> int:
    """Ranks in the open process group (1 without one)."""
    return tdist.get_world_size() if tdist.is_initialized() else 1


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's picklable `obj`, in rank order, on every rank."""
    if not (tdist.is_initialized() and tdist.get_world_size() > 1):
        return [obj]
    out: list[Any] = [None] * tdist.get_world_size()
    tdist.all_gather_object(out, obj)
    return out


def all_reduce(values: list[float], op=tdist.ReduceOp.SUM) -> list[float]:
    if not (tdist.is_initialized() and tdist.get_world_size() > 1):
        return [float(v) for v in values]
    t = torch.tensor(values, dtype=torch.float64, device=comm_device())
    tdist.all_reduce(t, op=op)
    return t.tolist()

"""Where this process stands in the process group: the one rank container used by training and eval alike."""
from __future__ import annotations

import os
from dataclasses import dataclass

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

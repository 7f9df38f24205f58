"""The command line that starts `sapo_vl.train` under a launcher, for `sapo-vl compare --launcher` / `--jobs`.

The launchers name "run this module" differently: `deepspeed --module sapo_vl.train` (the DeepSpeed launcher has
no `-m`: it answers "unrecognized arguments: -m"), `torchrun -m sapo_vl.train`, `python -m sapo_vl.train`.

Several jobs at once (`--jobs N`) under a multi-process launcher each get their own master port, and on a machine
with GPUs each job slot its own GPUs: slot k of jobs that take G GPUs each runs on GPUs kG .. kG+G-1
(`deepspeed --include localhost:...` in place of `--num_gpus G`; `CUDA_VISIBLE_DEVICES` under torchrun). A
launcher whose jobs cannot all have their own GPUs is an error that names the numbers.
"""
from __future__ import annotations

import os
import shlex
import socket
import sys
from pathlib import Path

MODULE = "sapo_vl.train"


class LaunchError(ValueError):
    """A launcher that cannot run the requested jobs side by side; the message names the flag to change."""


def launcher_kind(words: list[str]) -> str:
    """"deepspeed", "torchrun" or "python" for a launcher's argument list."""
    prog = Path(words[0]).name if words else "python"
    if prog == "deepspeed" or words[1:3] == ["-m", "deepspeed.launcher.runner"]:
        return "deepspeed"
    if prog == "torchrun" or words[1:3] == ["-m", "torch.distributed.run"]:
        return "torchrun"
    return "python"


def _flag_value(words: list[str], flag: str) -> str | None:
    for i, w in enumerate(words):
        if w == flag and i + 1 < len(words):
            return words[i + 1]
        if w.startswith(flag + "="):
            return w.split("=", 1)[1]
    return None


def _without_flag(words: list[str], flag: str) -> list[str]:
    out, skip = [], False
    for w in words:
        if skip:
            skip = False
        elif w == flag:
            skip = True
        elif not w.startswith(flag + "="):
            out.append(w)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_command(launcher: str, *, slot: int = 0, jobs: int = 1, gpus: int | None = None
                  ) -> tuple[list[str], dict[str, str]]:
    """(argv prefix up to and including the module name, extra environment) for job slot `slot` of `jobs`.

    launcher: e.g. "deepspeed --num_gpus 8", "torchrun --nproc_per_node 4", "" for one plain process.
    gpus: GPUs on this machine (default: torch's count); with 0 no GPUs are assigned (CPU ranks).
    """
    words = shlex.split(launcher) if launcher else [sys.executable]
    kind = launcher_kind(words)
    if kind == "python":
        return [*words, "-m", MODULE], {}
    port_flag = "--master_port"
    if jobs > 1 and _flag_value(words, port_flag) is None:
        words = [*words, port_flag, str(free_port())]  # one rendezvous per job
    env: dict[str, str] = {}
    if jobs > 1:
        words, env = _assign_gpus(words, kind, slot, jobs, _gpu_count() if gpus is None else gpus)
    return [*words, "--module" if kind == "deepspeed" else "-m", MODULE], env


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _assign_gpus(words: list[str], kind: str, slot: int, jobs: int, gpus: int) -> tuple[list[str], dict[str, str]]:
    """Give job slot `slot` its own GPUs (nothing to do on a machine without GPUs)."""
    if gpus == 0:
        return words, {}
    count_flag = "--num_gpus" if kind == "deepspeed" else "--nproc_per_node"
    per_job = _flag_value(words, count_flag)
    if kind == "deepspeed" and (_flag_value(words, "--include") or _flag_value(words, "--hostfile")):
        raise LaunchError("--jobs > 1 with a launcher that names its hosts or GPUs (--include / --hostfile): "
                          "run the jobs one at a time (--jobs 1)")
    if per_job is None or not per_job.isdigit():
        raise LaunchError(f"--jobs {jobs} needs the launcher to say how many GPUs each job takes ({count_flag} G)")
    g = int(per_job)
    if g * jobs > gpus:
        raise LaunchError(f"--jobs {jobs} × {count_flag} {g} = {g * jobs} GPUs, but this machine has {gpus}: "
                          f"lower --jobs or {count_flag}")
    ids = ",".join(str(i) for i in range(slot * g, slot * g + g))
    if kind == "deepspeed":
        return [*_without_flag(words, count_flag), "--include", f"localhost:{ids}"], {}
    return words, {"CUDA_VISIBLE_DEVICES": ids}


def env_with(extra: dict[str, str]) -> dict[str, str] | None:
    """os.environ plus `extra` (None, i.e. inherit, when there is nothing to add)."""
    return dict(os.environ, **extra) if extra else None

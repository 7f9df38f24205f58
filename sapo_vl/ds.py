"""DeepSpeed behind one small module: process group, engine config, engine, ZeRO-3 generation, checkpoints.

- `init_distributed()` joins the process group that the `deepspeed` / `torchrun` launcher describes (NCCL on
  GPUs, gloo on CPUs), or makes a one-process group when run plainly.
- `ds_config(...)` turns our config into DeepSpeed's JSON; a user's own JSON (`deepspeed.config_file`) wins, with
  its "auto" values filled from ours.
- `create_engine(...)` builds the engine around `PolicyLogprobs` with AdamW and our LR schedule.
- `gathered(engine)` gathers ZeRO-3 parameters once for a whole rollout (not once per layer per token).
- `save_checkpoint` / `load_checkpoint` write resumable DeepSpeed checkpoints atomically (a crash mid-save leaves
  the last good one in place) plus a `transformers` folder loadable by `AutoModelForImageTextToText`.

Gradient scaling: losses from `sapo_vl.algorithms` are normalised by global token/sequence counts, so the
micro-batch losses of one optimizer step already sum to the step's loss. `backward` therefore passes
`scale_wrt_gas=False` and multiplies by the world size, undoing DeepSpeed's averaging over ranks.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import socket
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as tdist

from .config import Config
from .dist import Dist


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_distributed() -> Dist:
    """Join (or create) the process group; one process needs no launcher."""
    import deepspeed
    import torch.distributed as dist

    if "RANK" not in os.environ:  # plain `sapo-vl train`: a group of one
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_SIZE="1")
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
    cuda = torch.cuda.is_available()
    if not dist.is_initialized():
        deepspeed.init_distributed(dist_backend="nccl" if cuda else "gloo", verbose=False)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local)
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    return Dist(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local, device=device)


def precision(cfg: Config, device: torch.device) -> str:
    p = cfg.deepspeed.precision
    if p == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return p


def ds_config(cfg: Config, *, micro_batch: int, grad_accum: int, world_size: int, device: torch.device) -> dict:
    """DeepSpeed's config for one optimizer step of `micro_batch × grad_accum × world_size` sequences."""
    d = cfg.deepspeed
    zero: dict[str, Any] = {"stage": d.zero_stage}
    if d.zero_stage >= 1 and d.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": device.type == "cuda"}
    if d.zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
        if d.offload_params:
            zero["offload_param"] = {"device": "cpu", "pin_memory": device.type == "cuda"}
    ours: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": micro_batch,
        "gradient_accumulation_steps": grad_accum,
        "train_batch_size": micro_batch * grad_accum * world_size,
        "gradient_clipping": cfg.optimizer.max_grad_norm,
        "zero_optimization": zero,
        "bf16": {"enabled": precision(cfg, device) == "bf16"},
        "fp16": {"enabled": precision(cfg, device) == "fp16", "initial_scale_power": 16},
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,
        "steps_per_print": 1 << 30,
        "wall_clock_breakdown": False,
    }
    if not d.config_file:
        return ours
    path = Path(d.config_file)
    if not path.is_file():
        raise FileNotFoundError(f"deepspeed.config_file: {path} does not exist")
    try:
        user = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"deepspeed.config_file: {path} is not valid JSON: {err}") from err
    return _fill_auto(user, ours)


def _fill_auto(user: Any, ours: Any) -> Any:
    """The user's DeepSpeed JSON with each "auto" (or missing top-level batch key) taken from ours."""
    if isinstance(user, dict):
        out = {k: _fill_auto(v, ours.get(k) if isinstance(ours, dict) else None) for k, v in user.items()}
        for k in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "train_batch_size"):
            if isinstance(ours, dict) and k in ours and k not in out:
                out[k] = ours[k]
        return out
    return ours if user == "auto" else user


def lr_lambda(step: int, *, warmup: int, total: int, schedule: str) -> float:
    """Multiplier of the peak learning rate at optimizer step `step` (0-based)."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant" or total <= warmup:
        return 1.0
    frac = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1 + math.cos(math.pi * frac)) if schedule == "cosine" else 1.0 - frac


def create_engine(module: torch.nn.Module, cfg: Config, *, micro_batch: int, grad_accum: int, dist: Dist,
                  total_optimizer_steps: int):
    """The DeepSpeed engine around `module`, with AdamW on its trainable parameters and our LR schedule."""
    import deepspeed

    conf = ds_config(cfg, micro_batch=micro_batch, grad_accum=grad_accum, world_size=dist.world_size,
                     device=dist.device)
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise ValueError("no trainable parameters: check model.freeze_vision / model.lora")
    o = cfg.optimizer
    optimizer = torch.optim.AdamW(params, lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_lambda(s, warmup=o.warmup_steps, total=total_optimizer_steps, schedule=o.schedule)
    )
    engine, ds_opt, _, ds_sched = deepspeed.initialize(
        model=module, optimizer=optimizer, lr_scheduler=sched, config=conf, dist_init_required=False
    )
    return engine


@contextlib.contextmanager
def gathered(engine) -> Iterator[None]:
    """Full parameters on every rank for the duration (ZeRO-3: one all-gather for the whole rollout).

    Under ZeRO-3 the engine's per-module fetch/prefetch hooks are taken off for the duration and put back after:
    with the parameters already whole they have nothing to do, and a prefetch they start from the trace of the
    training forward would still be in flight when the parameters are partitioned again. This is the one place
    that uses DeepSpeed internals (`parameter_offload`); the 2-rank ZeRO-3 tests guard it.
    """
    if engine.zero_optimization_stage() != 3:
        yield
        return
    import deepspeed
    from deepspeed.runtime.zero import parameter_offload as po

    offload = engine.optimizer.parameter_offload
    offload.partition_all_parameters()  # nothing fetched or in flight from the last forward
    offload._remove_module_hooks()
    offload.forward_hooks, offload.backward_hooks = [], []
    try:
        with deepspeed.zero.GatheredParameters(list(engine.module.parameters()), modifier_rank=None):
            yield
    finally:
        depth = len(po.FWD_MODULE_STACK)
        offload.setup_zero_stage3_hooks()
        del po.FWD_MODULE_STACK[depth:]  # setup pushes the top module again; it is already there
        offload.get_param_coordinator().reset_step()


def backward(engine, loss: torch.Tensor, world_size: int) -> None:
    """Backward of a globally normalised micro-batch loss (see the module docstring)."""
    engine.backward(loss * world_size, scale_wrt_gas=False)


def optimizer_step(engine, skip: bool) -> None:
    """`engine.step()`, which at a gradient-accumulation boundary is the optimizer step.

    A step that must not happen (`skip`: a non-finite loss on some rank) reaches the boundary with non-finite
    gradients (see `poisoned`); under ZeRO 1-3 DeepSpeed then drops the whole step (no weight, no optimizer
    state changes). Under ZeRO-0 nothing checks, so here the gradients are zeroed and the step taken at learning
    rate 0, also when they are non-finite without a non-finite loss; the pre-clip gradient norm is recorded (see
    `grad_norm`).
    """
    if engine.zero_optimization_stage() == 0 and engine.is_gradient_accumulation_boundary():
        grads = [p.grad for p in engine.module.parameters() if p.grad is not None]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads])) \
            if grads else torch.zeros(())
        engine.sapo_grad_norm = float(norm)
        if skip or not math.isfinite(engine.sapo_grad_norm):
            for g in grads:
                g.zero_()
            _step_at_lr_zero(engine)  # zero gradients at learning rate 0: every weight stays bit-identical
            return
    engine.step()


def _step_at_lr_zero(engine) -> None:
    """The boundary step with every learning rate at 0 (AdamW's moments still decay by β; weights do not move)."""
    groups = engine.optimizer.param_groups
    saved = [g["lr"] for g in groups]
    for g in groups:
        g["lr"] = 0.0
    engine.step()
    for g, lr in zip(groups, saved):
        g["lr"] = lr


def poisoned(loss: torch.Tensor, logp: torch.Tensor) -> torch.Tensor:
    """A loss whose gradient is NaN everywhere `logp` reaches: a bad micro-batch still runs its backward (every
    rank's collectives stay in step) and makes the optimizer step it belongs to skip (see `optimizer_step`)."""
    return logp.sum() * float("nan") + 0.0 * loss.detach().nan_to_num()


def grad_norm(engine) -> float:
    """The last optimizer step's global gradient norm before clipping (ZeRO 1-3: DeepSpeed's; ZeRO-0: ours)."""
    norm = engine.get_global_grad_norm()
    if norm is None:
        norm = getattr(engine, "sapo_grad_norm", 0.0)
    return float(norm)


# ---------------------------------------------------------------------------------------------------- checkpoints

LATEST = "latest"


def save_checkpoint(engine, run_dir: Path, step: int, client_state: dict, *, policy, processor, dist: Dist,
                    keep: int = 0) -> Path:
    """Write `checkpoints/step_{step}` (DeepSpeed state + `hf/` transformers folder), then point `latest` at it.

    Everything is written under a temporary name and renamed when complete, so a crash mid-save leaves the
    previous checkpoint and the `latest` pointer untouched.
    """
    ckpt_root = run_dir / "checkpoints"
    name = f"step_{step}"
    final, tmp = ckpt_root / name, ckpt_root / f".{name}.tmp"
    if dist.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    tdist.barrier()
    # frozen parameters (a LoRA run's base model, a frozen vision tower) are not saved: a resume reloads them from
    # the base checkpoint, as the run started
    with _trainable_state_only(engine.module):
        engine.save_checkpoint(str(tmp), tag="ds", client_state=client_state, exclude_frozen_parameters=True)
    with gathered(engine):  # ZeRO-3: full weights for the transformers folder (LoRA: PEFT writes the adapter)
        if dist.is_main:
            policy.save_pretrained(tmp / "hf", safe_serialization=True)
    if dist.is_main:
        processor.save_pretrained(tmp / "hf")
        (tmp / "COMPLETE").write_text(str(step))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        pointer = ckpt_root / f".{LATEST}.tmp"
        pointer.write_text(name)
        os.replace(pointer, ckpt_root / LATEST)
        if keep > 0:
            done = sorted((p for p in ckpt_root.glob("step_*") if (p / "COMPLETE").exists()),
                          key=lambda p: int(p.name.split("_")[1]))
            for old in done[:-keep]:
                shutil.rmtree(old, ignore_errors=True)
    tdist.barrier()
    return final


@contextlib.contextmanager
def _trainable_state_only(module: torch.nn.Module) -> Iterator[None]:
    """`module.state_dict()` without frozen tensors for the duration: DeepSpeed's `exclude_frozen_parameters`
    misses a frozen tensor saved under a second name (a tied `lm_head.weight`), this hook does not."""
    trainable = {p.data_ptr() for p in module.parameters() if p.requires_grad}

    def drop_frozen(_module, state, prefix, _meta):
        for key in [k for k, v in state.items() if isinstance(v, torch.Tensor) and v.data_ptr() not in trainable]:
            del state[key]

    handle = module._register_state_dict_hook(drop_frozen)
    try:
        yield
    finally:
        handle.remove()


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint `latest` points at if it is complete, else the newest complete one, else None."""
    root = run_dir / "checkpoints"
    pointer = root / LATEST
    if pointer.is_file():
        path = root / pointer.read_text().strip()
        if (path / "COMPLETE").is_file():
            return path
    done = [p for p in root.glob("step_*") if (p / "COMPLETE").is_file() and p.name.split("_")[1].isdigit()]
    return max(done, key=lambda p: int(p.name.split("_")[1])) if done else None


def load_checkpoint(engine, path: Path) -> dict:
    """Restore engine, optimizer and scheduler state; returns the client state saved with it."""
    _, client = engine.load_checkpoint(str(path), tag="ds", load_optimizer_states=True, load_lr_scheduler_states=True,
                                       load_module_strict=False)  # frozen parameters were not saved
    if client is None:
        raise RuntimeError(f"could not load the DeepSpeed checkpoint in {path}")
    return client

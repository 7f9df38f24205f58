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
    """Join (or create) the process group; one process needs no launcher.

    DeepSpeed builds its CPU communication op (and its other JIT ops) on first use into `TORCH_EXTENSIONS_DIR`;
    unless the user set one, each environment gets its own (`extensions_dir`), and a wait on another process's
    build lock is reported after `LOCK_REPORT_S` seconds, naming the lock file (`build_lock_watch`).
    """
    import deepspeed
    import torch.distributed as dist

    if "RANK" not in os.environ:  # plain `sapo-vl train`: a group of one
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_SIZE="1")
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(extensions_dir()))
    cuda = torch.cuda.is_available()
    if not (dist.is_initialized() and deepspeed.comm.is_initialized()):  # (a split placement's trainers joined
        with build_lock_watch(Path(os.environ["TORCH_EXTENSIONS_DIR"])):  # their group: DeepSpeed wraps it)
            deepspeed.init_distributed(dist_backend="nccl" if cuda else "gloo", verbose=False)
            if not cuda:
                unlink_shm_buffer(dist.get_rank())
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local)
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    return Dist(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local, device=device)


def shm_buffer(rank: int) -> Path:
    """The shared-memory file DeepSpeed's CPU all-reduce creates for `rank` (when every rank is on one node)."""
    return Path("/dev/shm") / (f"deepspeed_allreduce_buffer_{os.getuid()}_{os.environ.get('MASTER_ADDR', '')}_"
                               f"{os.environ.get('MASTER_PORT', '')}_{rank}")


def unlink_shm_buffer(rank: int) -> None:
    """Remove this rank's DeepSpeed shared-memory file (~66 MiB of RAM), which DeepSpeed never removes: each run
    left one per rank in /dev/shm. Once init has returned on every rank (a barrier), every rank has mapped every
    other's buffer, so the name can go; the memory is freed when the last process unmaps it."""
    import torch.distributed as dist

    if dist.get_world_size() > 1:
        dist.barrier()
    shm_buffer(rank).unlink(missing_ok=True)


LOCK_REPORT_S = 30.0
"""Seconds a run waits on an op build lock before it says so (naming the file)."""


def extensions_dir() -> Path:
    """This environment's own folder for DeepSpeed's JIT-built ops: `~/.cache/torch_extensions/sapo_vl-<env>`,
    <env> a hash of the interpreter's prefix, the torch version and whether a GPU is visible. Two venvs (`.venv`, `.venv-vllm`) or two
    checkouts then never rebuild each other's op, nor wait on each other's build lock."""
    import hashlib
    import sys

    # (with and without a visible GPU the op is built with other flags: two folders, or each rebuilds the other)
    key = hashlib.sha1(f"{sys.prefix}|{torch.__version__}|{torch.cuda.is_available()}".encode()).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "torch_extensions" / f"sapo_vl-{key}"


def held_locks(root: Path) -> list[Path]:
    """Build lock files under `root` that another process holds: an OS lock (torch >= 2.14's `FileLock`) that we
    cannot take, or, for torch's older `FileBaton` whose lock is the file itself, any lock file."""
    import fcntl

    baton = "FileBaton" in vars(__import__("torch.utils.cpp_extension", fromlist=["x"]))
    held = []
    for lock in root.glob("*/lock") if root.is_dir() else []:
        if baton:
            held.append(lock)
            continue
        try:
            with open(lock, "a") as f:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(f, fcntl.LOCK_UN)
        except BlockingIOError:
            held.append(lock)
        except OSError:
            continue
    return held


@contextlib.contextmanager
def build_lock_watch(root: Path, after: float = LOCK_REPORT_S, poll: float = 1.0) -> Iterator[None]:
    """While the body runs, say on stderr (once per file) when a build lock under `root` has been held by someone
    else for `after` seconds: the body is then most likely waiting on it, with no word from torch or DeepSpeed."""
    import sys
    import threading
    import time

    done, seen, told = threading.Event(), {}, set()

    def watch():
        while not done.wait(poll):
            now = time.monotonic()
            held = held_locks(root)
            for lock in held:
                seen.setdefault(lock, now)
                if now - seen[lock] >= after and lock not in told:
                    told.add(lock)
                    print(f"sapo_vl: waiting {now - seen[lock]:.0f}s on the op build lock {lock}: another process "
                          "is building this op, or one was killed mid-build and left the lock; if no build is "
                          "running, delete that file", file=sys.stderr, flush=True)
            for lock in set(seen) - set(held):
                del seen[lock]

    thread = threading.Thread(target=watch, name="sapo_vl-build-lock-watch", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


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
        # The NaN guard relies on ZeRO 1-2 dropping a step whose gradients are not finite; under bf16 that check
        # is this flag, whose default differs between DeepSpeed versions: set it, whatever the default.
        "bf16": {"enabled": precision(cfg, device) == "bf16", "check_grad_overflow": True},
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
    return _bf16_overflow_check(_fill_auto(user, ours), path)


def _bf16_overflow_check(conf: dict, path: Path) -> dict:
    """A user's config with bf16 on keeps DeepSpeed's gradient overflow check on (set when missing; refused off):
    without it a step with NaN gradients (a poisoned micro-batch, `poisoned`) writes NaN into every weight."""
    key = "bf16" if "bf16" in conf else "bfloat16"
    section = conf.get(key)
    if not isinstance(section, dict) or not section.get("enabled", False):
        return conf
    if section.get("check_grad_overflow", True) is not True:
        raise ValueError(f"deepspeed.config_file: {path} sets {key}.check_grad_overflow to "
                         f"{section['check_grad_overflow']!r}; the NaN guard needs it true (a step with non-finite "
                         "gradients would otherwise write NaN into every weight): remove the key or set it true")
    conf[key] = {**section, "check_grad_overflow": True}
    return conf


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


class SkippedStepError(RuntimeError):
    """An optimizer step with non-finite gradients was applied: the weights may now hold NaN."""


def optimizer_step(engine, skip: bool) -> None:
    """`engine.step()`, which at a gradient-accumulation boundary is the optimizer step.

    A step that must not happen (`skip`: a non-finite loss on some rank) reaches the boundary with non-finite
    gradients (see `poisoned`); under ZeRO 1-3 DeepSpeed then drops the whole step (no weight, no optimizer
    state changes, the learning-rate schedule does not advance, `engine.skipped_steps` + 1). That it did is
    checked after the step: a poisoned step that DeepSpeed applied (its overflow check off) stops the run with
    `SkippedStepError`. Under ZeRO-0 nothing checks, so here the gradients are zeroed and the step taken at
    learning rate 0, also when they are non-finite without a non-finite loss, and the schedule is put back, as
    ZeRO 1-3 leave it; the pre-clip gradient norm is recorded (see `grad_norm`).
    """
    boundary = engine.is_gradient_accumulation_boundary()
    if engine.zero_optimization_stage() == 0 and boundary:
        grads = [p.grad for p in engine.module.parameters() if p.grad is not None]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads])) \
            if grads else torch.zeros(())
        engine.sapo_grad_norm = float(norm)
        if skip or not math.isfinite(engine.sapo_grad_norm):
            for g in grads:
                g.zero_()
            _step_at_lr_zero(engine)  # zero gradients at learning rate 0: every weight stays bit-identical
            return
    skipped_before = engine.skipped_steps
    engine.step()
    if skip and boundary and engine.skipped_steps == skipped_before:
        raise SkippedStepError(
            f"ZeRO-{engine.zero_optimization_stage()}: DeepSpeed applied an optimizer step with non-finite gradients "
            "(its overflow check is off: a deepspeed.config_file with bf16.check_grad_overflow false, or a DeepSpeed "
            "older than this project's floor); the weights may now hold NaN. Stopping before they are saved.")


def _step_at_lr_zero(engine) -> None:
    """The boundary step with every learning rate at 0 (AdamW's moments still decay by β; weights do not move).

    The learning-rate schedule is left where it was and the step counted in `engine.skipped_steps`, as DeepSpeed
    does for a step it drops under ZeRO 1-3.
    """
    groups = engine.optimizer.param_groups
    saved = [g["lr"] for g in groups]
    sched = engine.lr_scheduler
    sched_state = sched.state_dict() if sched is not None else None
    for g in groups:
        g["lr"] = 0.0
    engine.step()
    for g, lr in zip(groups, saved):
        g["lr"] = lr
    if sched is not None:
        sched.load_state_dict(sched_state)
    engine.skipped_steps += 1


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

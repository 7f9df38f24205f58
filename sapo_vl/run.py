"""Setting up a training run: everything the loop needs, built once and held in one typed `Run`.

`setup_run(cfg)` joins the process group, checks the batch plan, loads the processor, the prompt stream, the
policy (LoRA, freezing and checkpointing applied; its MoE routers hooked for `algorithm.routing_replay`), the
DeepSpeed engine, the rollout engine, the reference model (when KL is on) and the run log, and restores a
checkpoint when resuming. `sapo_vl.train` then only loops.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from . import ds, routing
from .batch_plan import BatchPlan, batch_plan
from .config import Config, config_to_dict, dump_yaml
from .data.stream import PromptStream
from .dist import Dist
from .engines import RolloutEngine, engine_class
from .models.loading import load_policy, load_processor
from .models.zero3 import load_policy_zero3, reference_engine, zero3_enabled
from .packing import PackedPolicyLogprobs
from .runlog import RunLog
from .sampling import NEVER_SAMPLE, token_ids
from .update import UpdateSettings


@dataclass
class Run:
    cfg: Config
    dist: Dist
    plan: BatchPlan
    run_dir: Path
    processor: Any
    """The Qwen-VL processor (tokenizer + image processor), left-padding."""
    stream: PromptStream
    """The training prompts, sharded by rank; its state is checkpointed."""
    policy: torch.nn.Module
    """The `transformers` model (PEFT-wrapped with LoRA); saved as the `hf/` folder of each checkpoint."""
    ds_engine: Any
    """The DeepSpeed engine training `PackedPolicyLogprobs(policy)` (row or packed micro-batches); not to be
    confused with `rollout_engine`, which samples."""
    rollout_engine: RolloutEngine | None
    """What samples the completions (`rollout.engine`); None under a split placement, whose rollout ranks sample
    (`feed`)."""
    ref: Any
    """The frozen reference policy when `algorithm.kl_beta` > 0: a `PackedPolicyLogprobs` like the trained one
    (under ZeRO-3 partitioned, in an optimizer-less DeepSpeed engine, so every rank must run its forwards
    together); None otherwise."""
    log: RunLog
    update: UpdateSettings
    """The update phase's settings (loss and its kwargs, μ, minibatches, micro-batch layout and budgets)."""
    start_step: int = 0
    """The first step to run (> 0 after a resume)."""
    skipped_steps: int = 0
    """Optimizer steps skipped for a non-finite loss so far."""
    feed: Any = None
    """Under `rollout.placement: split`, the `split.RolloutFeed` that brings the batches and sends the weights."""

    def say(self, *args: Any) -> None:
        """print on the main rank only."""
        if self.dist.is_main:
            print(*args, flush=True)


def build_policy(cfg: Config, device: torch.device, ds_conf: dict | None = None):
    """The `transformers` policy with the config's freezing, LoRA and gradient checkpointing applied.

    Under ZeRO-3 (`ds_conf` of stage 3) its parameters are partitioned as they are created (`models.zero3`).
    """
    if ds_conf is not None and zero3_enabled(ds_conf):
        policy = load_policy_zero3(cfg.model.name_or_path, ds_conf, dtype=cfg.model.dtype,
                                   attn_implementation=cfg.model.attn_implementation,
                                   trust_remote_code=cfg.model.trust_remote_code)
    else:
        policy = load_policy(cfg.model.name_or_path, dtype=cfg.model.dtype, device=device,
                             attn_implementation=cfg.model.attn_implementation,
                             trust_remote_code=cfg.model.trust_remote_code)
    if cfg.model.freeze_vision:
        policy.model.visual.requires_grad_(False)
    if cfg.model.gradient_checkpointing:
        policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if cfg.model.lora.r > 0:
        from peft import LoraConfig, get_peft_model

        lc = cfg.model.lora
        policy = get_peft_model(policy, LoraConfig(
            r=lc.r, lora_alpha=lc.alpha, lora_dropout=0.0,
            target_modules=rf"^model\.language_model\..*\.({'|'.join(lc.target_modules)})$",
        ))
        policy.peft_config["default"].base_model_name_or_path = cfg.model.name_or_path  # the name, not a cache path
    return without_dropout(policy)


def build_reference(cfg: Config, ds_conf: dict, device: torch.device, banned: list[int]):
    """The frozen KL reference: the base checkpoint loaded as the policy is (dtype, attention kernels), wrapped as
    the trained module is (`PackedPolicyLogprobs`, never-sampled tokens out of its softmax), so both forwards (row
    and packed) take one route; under ZeRO-3 partitioned, in an optimizer-less DeepSpeed engine."""
    kw = dict(dtype=cfg.model.dtype, attn_implementation=cfg.model.attn_implementation,
              trust_remote_code=cfg.model.trust_remote_code)
    if zero3_enabled(ds_conf):
        return reference_engine(PackedPolicyLogprobs(load_policy_zero3(cfg.model.name_or_path, ds_conf, **kw),
                                                     banned_ids=banned), ds_conf)
    ref = PackedPolicyLogprobs(load_policy(cfg.model.name_or_path, device=device, **kw), banned_ids=banned).eval()
    ref.requires_grad_(False)
    return ref


def install_routing_replay(cfg: Config, policy, ref) -> None:
    """`algorithm.routing_replay`: hook the policy's routers (record, measure, replay under r3) and, under r3,
    the reference's (its forwards replay the same experts). A dense model is refused (`routing.RoutingError`)."""
    mode = cfg.algorithm.routing_replay
    if mode == "off":
        return
    routing.install(policy, replay=mode == "r3")
    if ref is not None and mode == "r3":
        routing.install(getattr(ref, "module", ref).policy, replay=True)


def without_dropout(model: torch.nn.Module) -> torch.nn.Module:
    """Every dropout of `model` set to 0, so that each forward of the policy is deterministic: π_old passes,
    the loss and the sampler then see the same function (the first minibatch's ratio is exactly 1)."""
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    for conf in (getattr(model.config, "text_config", None), getattr(model.config, "vision_config", None), model.config):
        if conf is not None and getattr(conf, "attention_dropout", 0.0):
            conf.attention_dropout = 0.0
    return model


def run_dir_of(cfg: Config) -> Path:
    return Path(cfg.logging.out_dir) / (cfg.logging.run_name or datetime.now().strftime("%Y%m%d-%H%M%S"))


def setup_run(cfg: Config) -> Run:
    """Build everything a training run needs; resume from a checkpoint when `train.resume` says so."""
    dist = ds.init_distributed()
    plan = batch_plan(cfg, dist.world_size)
    run_dir = run_dir_of(cfg)
    torch.manual_seed(cfg.train.seed)
    processor = load_processor(cfg.model.name_or_path, min_pixels=cfg.model.min_pixels,
                               max_pixels=cfg.model.max_pixels, trust_remote_code=cfg.model.trust_remote_code)
    stream = PromptStream(cfg.data, cfg.model, processor, seed=cfg.train.seed, rank=dist.rank, world=dist.world_size)
    ds_conf = ds.ds_config(cfg, micro_batch=plan.micro, grad_accum=plan.grad_accum, world_size=dist.world_size,
                           device=dist.device)
    policy = build_policy(cfg, dist.device, ds_conf)
    banned = token_ids(processor.tokenizer, NEVER_SAMPLE)  # out of the trainer's softmax too, as in the sampler
    ref = build_reference(cfg, ds_conf, dist.device, banned) if cfg.algorithm.kl_beta > 0 else None
    install_routing_replay(cfg, policy, ref)
    ds_engine = ds.create_engine(PackedPolicyLogprobs(policy, banned_ids=banned), cfg, micro_batch=plan.micro,
                                 grad_accum=plan.grad_accum, dist=dist, total_optimizer_steps=plan.total_optimizer_steps)
    colocated = cfg.rollout.placement == "colocated"
    rollout_engine = engine_class(cfg.rollout.engine)(ds_engine, policy, processor, cfg) if colocated else None
    log = RunLog(run_dir, is_main=dist.is_main, tensorboard=cfg.logging.tensorboard, wandb=cfg.logging.wandb,
                 wandb_project=cfg.logging.wandb_project, config=config_to_dict(cfg))
    if dist.is_main:
        (run_dir / "config.yaml").write_text(dump_yaml(cfg))
    run = Run(cfg=cfg, dist=dist, plan=plan, run_dir=run_dir, processor=processor, stream=stream, policy=policy,
              ds_engine=ds_engine, rollout_engine=rollout_engine, ref=ref, log=log,
              update=UpdateSettings.from_config(cfg, plan))
    if cfg.train.resume:
        ckpt = ds.latest_checkpoint(run_dir) if cfg.train.resume == "auto" else Path(cfg.train.resume)
        if ckpt is not None:
            client = ds.load_checkpoint(ds_engine, ckpt)
            stream.load_state_dict(client["stream"])
            run.start_step = int(client["step"])
            log.truncate_after(run.start_step)
            if rollout_engine is not None:
                rollout_engine.update_weights()
            run.say(f"resumed from {ckpt} at step {run.start_step}")
    return run

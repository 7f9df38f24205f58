"""Typed configuration: nested dataclasses, loaded as defaults <- YAML file <- dotted `key=value` overrides.

Every field carries a docstring (a string literal right under it). They are read back from this file's
source with `ast` (`field_docs`, `doc_for`; the generic machinery is in `sapo_vl.typed_config`), so
`sapo-vl config show --doc` prints them and a test enforces that none is missing. The defaults describe a small single-process CPU run of the embedded
tiny checkpoint; `configs/*.yaml` hold the real runs.

    cfg = load_config("configs/demo.yaml", ["algorithm.sapo.tau_neg=1.2", "rollout.group_size=4"])

Override values are parsed as YAML (`data.recipes=[{name: synthetic_count}]`, `logging.run_name=null`).
Sections (nested dataclasses) merge key by key; lists and mappings are replaced whole. Every problem is
a `ConfigError` naming the source (file or "command line"), the dotted key, what was expected and, for
an unknown key, the closest valid one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

from . import typed_config as tc
from .engines import ROLLOUT_ENGINES
from .losses import LOSSES, GrpoConfig, GspoConfig, SapoConfig
from .typed_config import ConfigError, config_to_dict, dump_yaml, field_docs, parse_override  # noqa: F401 (the API)

Dtype = Literal["auto", "float32", "bfloat16", "float16"]
LossAgg = Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"]
AdvantageScale = Literal["group", "batch", "none"]
KLEstimator = Literal["k1", "k3"]
Schedule = Literal["constant", "cosine", "linear"]
ZeroStage = Literal[0, 1, 2, 3]
Precision = Literal["auto", "bf16", "fp16", "fp32"]
LossName = Literal[tuple(LOSSES)]  # type: ignore[valid-type]  # the registered losses, `sapo_vl.losses`
Placement = Literal["colocated", "split"]
EngineName = Literal[tuple(ROLLOUT_ENGINES)]  # type: ignore[valid-type]  # the registered engines, `sapo_vl.engines`
CorrectionMode = Literal["auto", "none", "tis", "mis"]
CorrectionLevel = Literal["token", "sequence"]
RoutingReplay = Literal["off", "measure", "r3"]



# ----------------------------------------------------------------------------------------- the schema


@dataclass
class LoraConfig:
    r: int = 0
    """LoRA rank on the language model (needs `peft`); 0 = off, train the full weights."""
    alpha: int = 16
    """LoRA scaling numerator: the update is scaled by alpha / r."""
    dropout: float = 0.0
    """Dropout on the LoRA input: must stay 0. RL needs every forward of the policy to be deterministic (π_old,
    the loss and the sampler must compute the same function; with dropout the on-policy ratio is not 1)."""
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    """Names of the language-model linear layers that get adapters (the vision tower never does)."""


@dataclass
class ModelConfig:
    name_or_path: str = "sapo-vl/tiny-qwen3-vl"
    """Hugging Face id or local directory of a Qwen3-VL checkpoint; the default names the embedded tiny one."""
    dtype: Dtype = "auto"
    """Weight dtype: "auto" = bfloat16 on GPU, float32 on CPU; or "float32", "bfloat16", "float16"."""
    trust_remote_code: bool = False
    """Allow the checkpoint's own Python code to run when loading. Off unless you trust the source."""
    attn_implementation: str = "sdpa"
    """Attention kernel passed to `from_pretrained`: "sdpa", "eager" or "flash_attention_2"."""
    freeze_vision: bool = True
    """Keep the vision tower (and its merger) frozen; only the language model is trained."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, about a third more compute."""
    min_pixels: int = 32 * 32
    """Images smaller than this many pixels are upscaled (Qwen3-VL: one visual token per 32x32 pixels)."""
    max_pixels: int = 64 * 32 * 32
    """Images larger than this many pixels are downscaled; caps visual tokens per image (here 64)."""
    lora: LoraConfig = field(default_factory=LoraConfig)
    """Optional LoRA adapters on the language model."""


@dataclass
class RecipeSpec:
    name: str
    """Recipe name in the recipe registry (e.g. "synthetic_color", "geometry3k")."""
    weight: float = 1.0
    """Relative sampling weight of this recipe in the mix (> 0)."""
    split: str = "train"
    """Split to read: "train", "validation", "test", ..."""
    limit: int | None = None
    """Use at most this many records of the recipe; null = all."""
    options: dict[str, Any] = field(default_factory=dict)
    """Keyword options passed to the recipe (e.g. {"size": 64} for a synthetic generator)."""


@dataclass
class DataConfig:
    recipes: list[RecipeSpec] = field(default_factory=lambda: [RecipeSpec("synthetic_color")])
    """The training mix: a list of {name, weight, split, limit, options}, sampled in proportion to weight."""
    root: str | None = None
    """Dataset root that relative image paths in records are resolved against; null = each recipe's own."""
    built: str | None = None
    """A directory written by `sapo-vl recipe build` to train from instead of `recipes`; null = build on the fly."""
    max_prompt_tokens: int = 512
    """Prompts longer than this (image tokens included) are dropped and counted, never truncated."""
    allow_urls: bool = False
    """Allow records whose images are http(s) URLs to be fetched; off keeps runs offline and reproducible."""
    shuffle: bool = True
    """Shuffle prompts each epoch (seeded by `train.seed`)."""


@dataclass
class VllmConfig:
    gpu_memory_utilization: float = 0.35
    """Share of the device's memory the colocated vLLM engine may take for weights and KV cache, in (0, 1) (on
    CPU, vLLM reads it as a share of host memory; its KV cache size there is VLLM_CPU_KVCACHE_SPACE, in GiB)."""
    tensor_parallel_size: int = 1
    """GPUs one vLLM engine spans; only 1 (one engine per training rank) is supported for now."""
    max_model_len: int | None = None
    """Longest prompt + completion the engine accepts; null = data.max_prompt_tokens + rollout.max_new_tokens."""
    max_num_seqs: int = 256
    """Most sequences vLLM decodes at once (its scheduler batch)."""
    enforce_eager: bool = False
    """Run without CUDA graphs (slower, less memory, faster start); always on for the CPU build."""
    enable_sleep_mode: bool = True
    """On GPU: put the engine to sleep during the update phase so training gets its memory back."""
    seed_stride: int = 1_000_003
    """Distance between per-request seeds (>= group_size): vLLM seeds sample j of a request with seed + j, so
    requests with adjacent seeds repeat each other's samples."""


@dataclass
class RolloutConfig:
    engine: EngineName = "hf"
    """Rollout engine: "hf" (the `transformers` sampler on the trained model; any machine) or "vllm" (a colocated
    vLLM engine per rank, fed the new weights after each update; `pip install 'sapo_vl[vllm]'`)."""
    group_size: int = 8
    """G: completions sampled per prompt; advantages are computed within each group (>= 2)."""
    prompts_per_step: int = 8
    """B: prompts per rollout step, so each step generates B x G completions (summed over all ranks)."""
    temperature: float = 1.0
    """Sampling temperature (> 0); 1.0 samples from the policy itself, as the importance ratios assume."""
    top_p: float = 1.0
    """Nucleus sampling mass; must stay 1.0 (off) for training: the trainer's ratios assume the full distribution."""
    top_k: int = 0
    """Top-k sampling; must stay 0 (off) for training, for the same reason as `top_p`."""
    max_new_tokens: int = 32
    """Longest completion; longer ones are cut and counted as truncated."""
    shared_prefill: bool = True
    """Encode each prompt and its image once and sample its G continuations from the shared KV cache."""
    generation_batch_size: int = 0
    """Most rows (completions, not prompts) the hf engine decodes at once; 0 = all of a rank's B x G rows. The KV
    cache (prompt + max_new_tokens positions per row) exists for one such chunk at a time. A multiple of G keeps
    each prompt in one chunk (a prompt split between two chunks is prefilled twice)."""
    score_workers: int = 2
    """Processes that run the verifiers in parallel; 0 = score in the training process."""
    score_timeout_s: float = 10.0
    """Seconds a verifier may take on one completion before it scores 0 and is counted as timed out."""
    vllm: VllmConfig = field(default_factory=VllmConfig)
    """Settings of the vLLM engine (used when `engine` is "vllm")."""
    placement: Placement = "colocated"
    """"colocated": every rank samples its share of the batch, then trains on it (rollout and update alternate).
    "split": in the same launch, the last `rollout_ranks` ranks only sample (each with its own `engine`) and the
    others only train under ZeRO, overlapping the two when `max_staleness` >= 1 (`sapo_vl/split.py`)."""
    rollout_ranks: float = 1
    """With placement "split": how many ranks roll out: a whole number >= 1, or a fraction in (0, 1) of the
    launch's ranks (rounded, at least 1); the rest train. Ignored when colocated."""
    max_staleness: int = 0
    """With placement "split": how many policy versions (optimizer-step rounds) older than the trainer's weights a
    trained batch may be sampled with. 0 = synchronous (the same batches and updates as the colocated run);
    1 = one step off (batch t+1 is sampled while the trainer updates on batch t). A batch older than this is
    dropped and counted, never trained on."""
    sync_timeout_s: float = 1800.0
    """With placement "split": seconds a trainer waits for a rollout rank's batch, or a rollout rank for the
    trainer's weights, before the run ends with an error naming that rank (a dead peer ends it at once)."""


@dataclass
class OverlongPenaltyConfig:
    enabled: bool = False
    """DAPO's soft overlong penalty on completions that approach `rollout.max_new_tokens`."""
    buffer: int = 8
    """Length of the penalty ramp: it starts `buffer` tokens before `rollout.max_new_tokens`."""
    penalty: float = 1.0
    """Penalty (subtracted from the reward) reached at `rollout.max_new_tokens`, growing linearly over the buffer."""


@dataclass
class RolloutCorrectionConfig:
    mode: CorrectionMode = "auto"
    """Correction for the sampler/trainer mismatch (π_sample ≠ π_old): "none"; "tis" = truncated importance
    sampling, weight min(π_old/π_sample, threshold); "mis" = masked importance sampling, weight π_old/π_sample
    inside [1/threshold, threshold], drop what leaves it. The weights scale each token's advantage. "auto" (the
    default) is "tis" when the sampler may be stale (rollout.placement=split with rollout.max_staleness >= 1: the
    demo at staleness 1 reached 0.48 mean reward uncorrected, 0.96 with token TIS) and "none" otherwise; with
    rollout.engine=vllm in bf16 (and for MoE) set "tis" (see README, "vLLM rollouts")."""
    level: CorrectionLevel = "token"
    """"token": a weight (or mask) per token; "sequence": one per completion, from its summed log-ratio."""
    threshold: float = 2.0
    """C (> 1): the TIS cap, and the MIS band [1/C, C]."""


@dataclass
class AlgorithmConfig:
    name: LossName = "sapo"
    """Policy loss: "sapo" (soft adaptive gate), "gspo" (clipped sequence ratio) or "grpo" (clipped token ratio)."""
    updates_per_rollout: int = 2
    """mu: passes over each rollout (>= 1). The first is on-policy; with mu >= 2 later ones are off-policy,
    which is where SAPO's gate differs from plain policy gradient."""
    num_minibatches: int = 1
    """Optimizer steps per pass over the rollout: the B x G completions are split into this many minibatches."""
    shared_prefix: bool | Literal["auto"] = "auto"
    """Packed update micro-batches (`sapo_vl.packing`) for the π_old, reference and update passes: minibatches of
    whole groups, each image through the vision tower once per micro-batch, one row per group [prompt, completion
    1, ..., completion G] in which each completion attends to the prompt, computed once, and to itself
    (`sapo_vl.shared_prefix`: fused attention kernels, no dense mask); micro-batches bounded by
    `deepspeed.micro_batch_tokens`. Log-probs and gradients equal the row path's (tested). "auto" = per
    micro-batch, whichever of packed or row (its completions as one prompt+completion row each) the cost estimate
    `shared_prefix.path_costs` finds cheaper, row only where it fits the same token budget (logged as
    `packed_frac`); true = always packed; false = the row path everywhere (rows shuffled one by one,
    `deepspeed.micro_batch_size` rows per micro-batch). Packing needs a Qwen3-VL model."""
    loss_agg: LossAgg | None = None
    """Loss aggregation: "token-mean", "seq-mean-token-mean" or "seq-mean-token-sum-norm";
    null = the algorithm's default (SAPO and GSPO: seq-mean-token-mean, GRPO: token-mean)."""
    max_len_norm: int | None = None
    """Fixed length dividing each sequence's token sum under "seq-mean-token-sum-norm";
    null = `rollout.max_new_tokens`."""
    advantage_scale: AdvantageScale = "group"
    """"group": (R − group mean) / group std (GRPO); "none": R − group mean (Dr.GRPO); "batch": (R − batch
    mean) / batch std, normalised over the whole batch instead of the group."""
    adv_eps: float = 1e-6
    """epsilon added to the std when scaling advantages (>= 0)."""
    kl_beta: float = 0.0
    """Weight of the KL penalty to the reference (initial) policy; 0 = off and no reference model is kept."""
    kl_estimator: KLEstimator = "k3"
    """KL estimator: "k1" (log-ratio) or "k3" (ratio - 1 - log-ratio, unbiased and always >= 0)."""
    dynamic_sampling: bool = False
    """DAPO dynamic sampling: groups whose G rewards are all equal (zero advantage) are replaced by groups of
    fresh prompts, up to `dynamic_sampling_rounds` extra rollouts per step; any left are masked out of the loss."""
    dynamic_sampling_rounds: int = 3
    """Most extra rollouts per step that dynamic sampling may draw to replace zero-std groups (>= 1)."""
    overlong_penalty: OverlongPenaltyConfig = field(default_factory=OverlongPenaltyConfig)
    """DAPO's soft penalty for completions near the length limit."""
    mask_truncated: bool = False
    """Leave completions cut at `rollout.max_new_tokens` out of the loss (DAPO's overlong filtering)."""
    sapo: SapoConfig = field(default_factory=SapoConfig)
    """SAPO gate temperatures (used when name is "sapo")."""
    gspo: GspoConfig = field(default_factory=GspoConfig)
    """GSPO clip ranges (used when name is "gspo")."""
    grpo: GrpoConfig = field(default_factory=GrpoConfig)
    """GRPO clip ranges and dual clip (used when name is "grpo")."""
    rollout_correction: RolloutCorrectionConfig = field(default_factory=RolloutCorrectionConfig)
    """Importance correction between the sampler's and the trainer's log-probs (matters with `rollout.engine` vllm)."""
    routing_replay: RoutingReplay = "off"
    """MoE routing replay (`sapo_vl.routing`): "r3" records the experts every token (prompt, image tokens and
    completion) was routed to when it was sampled and forces them in every trainer forward (π_old, reference,
    update passes), routing weights recomputed from the trainer's router scores (so the router keeps its
    gradient); "measure" records and logs `moe_route_mismatch_frac` without forcing; "off" records nothing. MoE
    models only; costs tokens × MoE layers × k × 2 bytes of host memory per rollout (see README, "Routing replay")."""

    def resolved_loss_agg(self) -> str:
        """`loss_agg`, or the algorithm's default (its `LOSSES` entry) when it is null."""
        return self.loss_agg or LOSSES[self.name].default_agg

    def loss_kwargs(self, max_new_tokens: int) -> dict[str, Any]:
        """Keyword arguments of the chosen loss: its own section plus aggregation and KL, with no branch per loss."""
        return dict(LOSSES[self.name].kwargs(getattr(self, self.name)), agg=self.resolved_loss_agg(),
                    kl_beta=self.kl_beta, kl_estimator=self.kl_estimator, max_len=self.max_len_norm or max_new_tokens)


@dataclass
class OptimizerConfig:
    lr: float = 1e-6
    """AdamW peak learning rate (> 0)."""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay (>= 0)."""
    betas: tuple[float, float] = (0.9, 0.999)
    """AdamW (beta1, beta2), each in [0, 1)."""
    eps: float = 1e-8
    """AdamW epsilon (> 0)."""
    warmup_steps: int = 0
    """Linear warm-up from 0 to `lr`, in optimizer steps (one rollout step makes mu x num_minibatches of them)."""
    schedule: Schedule = "constant"
    """Learning rate after warm-up: "constant", or "cosine" / "linear" decay to 0 at the last optimizer step."""
    max_grad_norm: float = 1.0
    """Clip the global gradient norm to this value; 0 = no clipping."""


@dataclass
class DeepSpeedConfig:
    zero_stage: ZeroStage = 0
    """ZeRO stage: 0 (plain data parallel), 1 (shard optimizer state), 2 (+ gradients), 3 (+ parameters)."""
    offload_optimizer: bool = False
    """Keep optimizer state in CPU memory (ZeRO stage >= 1)."""
    offload_params: bool = False
    """Keep parameters in CPU memory (ZeRO stage 3 only)."""
    config_file: str | None = None
    """A DeepSpeed JSON of your own; it takes precedence over the config built from these settings."""
    micro_batch_size: int = 8
    """Sequences per forward/backward on each rank; minibatches are reached by gradient accumulation."""
    micro_batch_tokens: int = 0
    """With `algorithm.shared_prefix`: most padded tokens (packed rows × longest row) per update micro-batch;
    0 = `micro_batch_size` × (longest prompt + longest completion) of the step's rollout, i.e. what a row-path
    micro-batch may hold. A row that alone exceeds it is a micro-batch of its own."""
    precision: Precision = "auto"
    """Training precision: "auto" = bf16 on GPU and fp32 on CPU; or "bf16", "fp16", "fp32"."""


@dataclass
class LoggingConfig:
    out_dir: str = "runs"
    """Folder under which each run gets its own directory."""
    run_name: str | None = None
    """Name of the run directory under `out_dir`; null = a timestamp."""
    log_every: int = 1
    """Write a metrics.jsonl line (and TensorBoard scalars) every this many rollout steps (>= 1)."""
    sample_every: int = 10
    """Save sampled completions with their rewards every this many rollout steps; 0 = never."""
    save_every: int = 0
    """Save a checkpoint every this many rollout steps; 0 = only at the end of training."""
    keep_checkpoints: int = 2
    """How many of the newest checkpoints to keep; 0 = keep all."""
    tensorboard: bool = True
    """Write TensorBoard event files into the run directory."""
    wandb: bool = False
    """Also log to Weights & Biases (needs `wandb` installed and logged in)."""
    wandb_project: str = "sapo-vl"
    """W&B project name, used when `wandb` is true."""
    plots: bool = True
    """Write PNG plots of reward, length, entropy and SAPO gate statistics into the run directory."""
    progress: bool = True
    """Show a progress bar with ETA, reward and throughput."""


@dataclass
class EvalConfig:
    tasks: list[str] = field(default_factory=list)
    """Eval tasks by registry name, run every `every` steps and at the end; empty = none."""
    every: int = 0
    """Evaluate every this many rollout steps; 0 = off."""
    limit: int | None = 64
    """At most this many examples per task; null = all."""
    n_samples: int = 1
    """Completions sampled per example (1 = greedy; more gives pass@k and mean accuracy)."""
    max_new_tokens: int | None = None
    """Longest eval completion; null = `rollout.max_new_tokens`."""


@dataclass
class TrainConfig:
    steps: int = 20
    """Rollout steps to train (each: one rollout, then mu x num_minibatches optimizer steps)."""
    seed: int = 0
    """Seed for data order, sampling and initialisation; the same seed and config repeat a run."""
    resume: str | None = None
    """Resume from a checkpoint: "auto" = the newest one in the run directory, or a checkpoint path; null = fresh."""
    dry_run: bool = False
    """Print the per-rank memory plan offline (`sapo-vl train CONFIG --dry-run`), without loading or training."""
    format_warmup_steps: int = 0
    """Supervised steps before RL on *shuffled* answers (each prompt paired with another prompt's answer): a
    random-weight policy learns the answer format and the answer marginal, i.e. chance-level answers, but
    nothing about the images. 0 = off; leave it off for a real (instruct) checkpoint."""


@dataclass
class CompareConfig:
    variants: dict[str, list[str]] = field(default_factory=dict)
    """Read by `sapo-vl compare` only (which checks it): name → dotted overrides, e.g. {mb2:
    [algorithm.num_minibatches=2]}; each variant is compared separately (its own runs, table and paired
    statistics). Empty = the config as it is."""


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    """The policy checkpoint and what of it is trained."""
    data: DataConfig = field(default_factory=DataConfig)
    """Which recipes feed the prompts and how."""
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    """Sampling of G completions per prompt and their scoring."""
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    """The policy loss (SAPO / GSPO / GRPO), advantages and update schedule."""
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    """AdamW and its learning rate schedule."""
    deepspeed: DeepSpeedConfig = field(default_factory=DeepSpeedConfig)
    """ZeRO stage, offload, micro-batches and precision."""
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    """Run directory, metrics, samples, plots and checkpoints."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Periodic evaluation during training."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Length of the run, seed and resumption."""
    compare: CompareConfig = field(default_factory=CompareConfig)
    """Settings of `sapo-vl compare` (ignored by training)."""


def config_classes(root: type | None = None) -> list[type]:
    """Every config dataclass reachable from `root` (default `Config`), root first."""
    return tc.config_classes(root or Config)


def all_keys(cls: type | None = None, prefix: str = "") -> list[str]:
    """Every dotted key of `cls` (default `Config`), sections included, through nested sections (not lists)."""
    return tc.all_keys(cls or Config, prefix)


def doc_for(key: str) -> str:
    """The docstring of a dotted key such as "algorithm.sapo.tau_neg" (also "data.recipes.weight")."""
    return tc.doc_for(Config, key)


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Defaults <- the YAML file at `path` (None = defaults only) <- `overrides` ("key=value"), then `validate`."""
    cfg = Config()
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {path}")
        data = tc.load_yaml(p.read_text(encoding="utf-8"), str(path))
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of sections at the top level, got {type(data).__name__}")
        tc.apply(cfg, data, "", str(path))
    for text in overrides:
        tc.apply(cfg, parse_override(text), "", "command line")
    sources = [str(path)] if path is not None else []
    validate(cfg, source=" + ".join(sources + ["command line"] * bool(overrides)) or "defaults")
    return cfg


# ----------------------------------------------------------------------------------------- validation


class _Problems:
    """Collects 'key: rule (got value)' lines for `problems`."""

    def __init__(self, cfg: Config):
        self.cfg, self.out = cfg, []

    def need(self, ok: bool, key: str, rule: str) -> None:
        if not ok:
            value = self.cfg
            for part in key.split("."):
                value = getattr(value, part)
            self.out.append(f"{key}: {rule} (got {value!r})")


def problems(cfg: Config) -> list[str]:
    """Cross-field checks that types cannot express, as 'key: what is wrong' lines (empty = valid)."""
    p = _Problems(cfg)
    for check in (_model_and_data, _rollout, _algorithm, _optimizer_and_deepspeed, _logging_eval_train):
        check(cfg, p.need, p.out)
    return p.out


def _model_and_data(cfg: Config, need, out: list[str]) -> None:
    m, d = cfg.model, cfg.data
    need(m.min_pixels > 0, "model.min_pixels", "must be > 0")
    need(m.max_pixels >= m.min_pixels, "model.max_pixels", "must be >= model.min_pixels")
    need(m.lora.r >= 0, "model.lora.r", "must be >= 0 (0 = off)")
    need(m.lora.alpha > 0, "model.lora.alpha", "must be > 0")
    need(m.lora.dropout == 0, "model.lora.dropout", "must be 0: with dropout two forwards of the same weights differ, so "
         "the on-policy importance ratio is not 1 (every dropout of the policy is off in sapo_vl)")
    need(m.lora.r == 0 or bool(m.lora.target_modules), "model.lora.target_modules", "must not be empty when LoRA is on")

    need(bool(d.recipes) or d.built is not None, "data.recipes", "must list at least one recipe (or set data.built)")
    for i, spec in enumerate(d.recipes):
        if not spec.weight > 0:
            out.append(f"data.recipes[{i}].weight: must be > 0 (got {spec.weight!r})")
        if spec.limit is not None and spec.limit < 1:
            out.append(f"data.recipes[{i}].limit: must be >= 1 or null (got {spec.limit!r})")
    need(d.max_prompt_tokens >= 1, "data.max_prompt_tokens", "must be >= 1")



def _rollout(cfg: Config, need, out: list[str]) -> None:
    r = cfg.rollout
    need(r.group_size >= 2, "rollout.group_size", "must be >= 2: advantages compare completions within a group")
    need(r.prompts_per_step >= 1, "rollout.prompts_per_step", "must be >= 1")
    need(r.temperature > 0, "rollout.temperature", "must be > 0")
    need(r.top_p == 1.0, "rollout.top_p", "must be 1.0 for training: the importance ratios and π_old are of the "
         "full (temperature-scaled) distribution, which a nucleus-truncated sampler does not draw from (eval keeps "
         "its own --top-p)")
    need(r.top_k == 0, "rollout.top_k", "must be 0 for training: a top-k-truncated sampler does not draw from the "
         "distribution the trainer's log-probs and ratios are computed under (eval keeps its own settings)")
    need(r.max_new_tokens >= 1, "rollout.max_new_tokens", "must be >= 1")
    need(r.generation_batch_size >= 0, "rollout.generation_batch_size", "must be >= 0 rows (0 = all rows at once)")
    need(r.score_workers >= 0, "rollout.score_workers", "must be >= 0")
    need(r.score_timeout_s > 0, "rollout.score_timeout_s", "must be > 0")
    need(r.rollout_ranks > 0 and (r.rollout_ranks < 1 or float(r.rollout_ranks).is_integer()),
         "rollout.rollout_ranks", "must be a whole number >= 1 or a fraction in (0, 1)")
    need(r.max_staleness >= 0, "rollout.max_staleness", "must be >= 0 (0 = synchronous)")
    need(r.max_staleness == 0 or r.placement == "split", "rollout.max_staleness",
         "needs rollout.placement=split (colocated ranks sample with the weights they train, so staleness is 0)")
    need(r.sync_timeout_s > 0, "rollout.sync_timeout_s", "must be > 0")



def _algorithm(cfg: Config, need, out: list[str]) -> None:
    a, r = cfg.algorithm, cfg.rollout
    need(a.updates_per_rollout >= 1, "algorithm.updates_per_rollout", "must be >= 1")
    need(a.num_minibatches >= 1, "algorithm.num_minibatches", "must be >= 1")
    need(a.num_minibatches <= r.prompts_per_step * r.group_size, "algorithm.num_minibatches",
         "must be <= rollout.prompts_per_step x rollout.group_size")
    need(a.max_len_norm is None or a.max_len_norm >= 1, "algorithm.max_len_norm", "must be >= 1 or null")
    need(a.adv_eps >= 0, "algorithm.adv_eps", "must be >= 0")
    need(a.kl_beta >= 0, "algorithm.kl_beta", "must be >= 0")
    need(a.overlong_penalty.buffer >= 1, "algorithm.overlong_penalty.buffer", "must be >= 1")
    need(not a.overlong_penalty.enabled or a.overlong_penalty.buffer < r.max_new_tokens,
         "algorithm.overlong_penalty.buffer", "must be < rollout.max_new_tokens")
    need(a.overlong_penalty.penalty >= 0, "algorithm.overlong_penalty.penalty", "must be >= 0 (it is subtracted)")
    need(a.sapo.tau_pos > 0, "algorithm.sapo.tau_pos", "must be > 0")
    need(a.sapo.tau_neg > 0, "algorithm.sapo.tau_neg", "must be > 0")
    for name in ("gspo", "grpo"):
        for eps in ("eps_low", "eps_high"):
            need(getattr(getattr(a, name), eps) >= 0, f"algorithm.{name}.{eps}", "must be >= 0")
    need(a.grpo.eps_low < 1, "algorithm.grpo.eps_low", "must be < 1")
    need(a.gspo.eps_low < 1, "algorithm.gspo.eps_low", "must be < 1")
    need(a.grpo.dual_clip is None or a.grpo.dual_clip > 1, "algorithm.grpo.dual_clip", "must be > 1 or null")
    if a.routing_replay != "off":
        dense = _dense_model(cfg.model.name_or_path)
        need(not dense, "algorithm.routing_replay", f"needs a mixture-of-experts model; {cfg.model.name_or_path!r} is "
             "dense (no router to replay): set algorithm.routing_replay=off")


def _dense_model(name_or_path: str) -> bool:
    """True when the model's architecture is known offline and has no MoE layer (unknown: False; the run's setup
    refuses a dense model it loads, `sapo_vl.routing.RoutingError`)."""
    from .models.archs import ArchError, arch_for

    try:
        return not arch_for(name_or_path).moe
    except (ArchError, OSError, ValueError):
        return False



def _optimizer_and_deepspeed(cfg: Config, need, out: list[str]) -> None:
    o, ds, a, m = cfg.optimizer, cfg.deepspeed, cfg.algorithm, cfg.model
    need(o.lr > 0 and math.isfinite(o.lr), "optimizer.lr", "must be > 0")
    need(o.weight_decay >= 0, "optimizer.weight_decay", "must be >= 0")
    need(all(0 <= b < 1 for b in o.betas), "optimizer.betas", "must both be in [0, 1)")
    need(o.eps > 0, "optimizer.eps", "must be > 0")
    need(o.warmup_steps >= 0, "optimizer.warmup_steps", "must be >= 0")
    need(o.max_grad_norm >= 0, "optimizer.max_grad_norm", "must be >= 0 (0 = no clipping)")

    need(not ds.offload_params or ds.zero_stage == 3, "deepspeed.offload_params", "needs deepspeed.zero_stage=3")
    need(not ds.offload_optimizer or ds.zero_stage >= 1, "deepspeed.offload_optimizer", "needs deepspeed.zero_stage >= 1")
    need(ds.micro_batch_size >= 1, "deepspeed.micro_batch_size", "must be >= 1")
    need(ds.micro_batch_tokens >= 0, "deepspeed.micro_batch_tokens", "must be >= 0 (0 = from micro_batch_size)")



def _logging_eval_train(cfg: Config, need, out: list[str]) -> None:
    lg, ev, t = cfg.logging, cfg.eval, cfg.train
    need(lg.log_every >= 1, "logging.log_every", "must be >= 1")
    for key in ("sample_every", "save_every", "keep_checkpoints"):
        need(getattr(lg, key) >= 0, f"logging.{key}", "must be >= 0")

    need(ev.every >= 0, "eval.every", "must be >= 0 (0 = off)")
    need(ev.every == 0 or bool(ev.tasks), "eval.tasks", "must not be empty when eval.every > 0")
    need(ev.limit is None or ev.limit >= 1, "eval.limit", "must be >= 1 or null")
    need(ev.n_samples >= 1, "eval.n_samples", "must be >= 1")
    need(ev.max_new_tokens is None or ev.max_new_tokens >= 1, "eval.max_new_tokens", "must be >= 1 or null")

    need(t.steps >= 1, "train.steps", "must be >= 1")
    need(t.seed >= 0, "train.seed", "must be >= 0")


def correction_mode(cfg: Config) -> str:
    """`algorithm.rollout_correction.mode` with "auto" resolved: "tis" when a split placement may train on batches
    sampled by an older policy (`rollout.max_staleness` >= 1), "none" otherwise."""
    mode = cfg.algorithm.rollout_correction.mode
    if mode != "auto":
        return mode
    return "tis" if cfg.rollout.placement == "split" and cfg.rollout.max_staleness >= 1 else "none"


def validate(cfg: Config, source: str = "config") -> None:
    """Raise one ConfigError listing every cross-field problem of `cfg`."""
    found = problems(cfg)
    if found:
        raise ConfigError(f"{source}: invalid config:\n  " + "\n  ".join(found))

"""Split placement, bounded staleness: rollout ranks sample batch t+k while the trainers update on batch t.

With `rollout.placement: split` the last `rollout.rollout_ranks` ranks of the launch only roll out and the others
only train (`sapo_vl/placement.py` gives each role its own process group). Steps s = start … N−1, k =
`rollout.max_staleness`, "version v" = the trainer's weights after v steps:

    trainer r (all of them)                         rollout rank j (serving trainers r with j = T + r mod R)
    hello → j: start step, prompt-stream state      hellos ← its trainers
    (trainer 0) weights, version = start  ───────→  load them
    step s:                                         batch t = start, start+1, …:
      batch s ← j                                     while holding version < t − k: load the next version
      staleness = s − version of batch s              per trainer r it serves: sample and score r's share of
      (> k: dropped, counted, no update)                batch t (the prompts, seed and stream rank r would use
      π_old recomputed, μ × minibatches updates         colocated) → r, tagged (t, version, stream state)
      (trainer 0) weights, version s+1 ──────────→  (sent only if a later batch needs it: s+1+k ≤ N−1)

So batch t is sampled with version max(start, t − k): with k = 0 the run is the colocated run of T ranks (same
prompts, completions and updates); with k = 1 generation of batch s+1 overlaps the update on batch s. A rollout
rank cannot run further ahead than k, so the drop check is a guard: a batch that fails it is never trained on.

The three policies stay apart: π_sample is the rollout rank's (its log-probs travel with the batch), π_old the
trainer's recomputation at the start of the step before any update (always run here: the sampler is a separate
copy, possibly k versions old), π_θ the one being updated. The configured loss (SAPO's gate, GSPO's or GRPO's
clip) acts on π_θ / π_old; the mismatch corrections (`algorithm.rollout_correction`, TIS / MIS) act on
π_old / π_sample; staleness moves π_sample away from π_old, so it shows in `mismatch_kl` and the `is_*` metrics.
Nothing here replaces the loss.

Weights travel as checkpoint tensors (`sapo_vl.weights`: LoRA merged, MoE experts in the hub layout, ZeRO-3
gathered a bucket at a time on every trainer) in buckets over torch.distributed; the rollout rank's engine loads
them (`load_weights`, which drops its caches) and its version moves only once the last bucket arrived.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from . import ds, routing
from .config import Config
from .data.stream import PromptStream
from .dist import all_reduce, local_device, world_size
from .engines import engine_class
from .models.loading import load_policy, load_processor
from .placement import Channel, Placement, SplitError, join, launch_ranks, placement_of
from .rollout import Scored, sample_and_score, step_seed
from .run import without_dropout
from .weights import streamed_weights


@dataclass
class Split:
    """This rank's place in a split launch and its channel to the other role."""

    placement: Placement
    channel: Channel


def join_split(cfg: Config) -> Split | None:
    """Join the role's groups when `rollout.placement` is "split" (None when colocated)."""
    rank, world = launch_ranks()
    try:
        p = placement_of(cfg.rollout.placement, cfg.rollout.rollout_ranks, world, rank)
    except ValueError as err:
        raise SplitError(str(err)) from err
    if p is None:
        return None
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    return Split(p, join(p, backend=backend, timeout_s=cfg.rollout.sync_timeout_s))


# ---------------------------------------------------------------------------------------------------- trainers
class RolloutFeed:
    """A trainer's end: scored batches in (`receive`), weights out (`publish`)."""

    def __init__(self, cfg: Config, split: Split, *, policy, ds_engine, stream: PromptStream):
        self.cfg, self.split, self.policy, self.ds_engine, self.stream = cfg, split, policy, ds_engine, stream
        self.server = split.placement.server_of(split.placement.rank)
        self.dropped = 0
        self.stats: dict[str, float] = {}

    def start(self, step: int) -> None:
        """Hello to this trainer's rollout rank, then the weights the first batch is sampled with."""
        self.split.channel.send({"step": step, "stream": self.stream.state_dict()}, self.server)
        self.publish(step)

    def receive(self, step: int) -> Scored | None:
        """This trainer's share of batch `step`, or None when it is staler than `rollout.max_staleness` (dropped
        and counted; the step then makes no update)."""
        t = time.time()
        msg = self.split.channel.recv(self.server, f"the batch of step {step}")
        if msg["step"] != step:
            raise SplitError(f"split placement: rollout rank {self.server} sent the batch of step {msg['step']} when "
                             f"step {step} was due (the ranks are out of step)")
        self.stream.load_state_dict(msg["stream"])  # checkpoints resume the prompt order from here
        staleness = step - msg["version"]
        stale = staleness > self.cfg.rollout.max_staleness
        self.dropped += stale
        self.stats = {"staleness": float(staleness), "stale_batches_dropped": float(self.dropped),
                      "rollout_wait_s": time.time() - t, "rollout_sample_s": float(msg["sample_s"]),
                      "rollout_idle_s": float(msg["idle_s"]), "weight_sync_s": 0.0}
        if stale:
            return None
        scored = msg["scored"]  # its zero-std share was this trainer's alone; the colocated ranks average theirs
        scored.zero_std_frac_sampled = all_reduce([scored.zero_std_frac_sampled])[0] / world_size()
        return scored

    def publish(self, version: int) -> None:
        """Every trainer: send the weights as `version` (trainer 0 sends; under ZeRO-3 all gather each bucket)."""
        t = time.time()
        named = streamed_weights(self.policy, self.ds_engine)
        if self.split.placement.rank == 0:
            self.split.channel.send_weights(named, version)
            self.split.channel.flush(f"the weight sync of version {version}")
        elif self.ds_engine.zero_optimization_stage() == 3:
            for _ in named:  # the gathers are collectives of all trainers
                pass
        self.stats["weight_sync_s"] = time.time() - t

    def after_step(self, step: int) -> None:
        """Send version step+1 when a later batch will be sampled with it."""
        if step + 1 + self.cfg.rollout.max_staleness <= self.cfg.train.steps - 1:
            self.publish(step + 1)


# ---------------------------------------------------------------------------------------------------- rollout ranks
def rollout_policy(cfg: Config, device: torch.device):
    """The rollout rank's copy: the checkpoint as a plain model (no LoRA wrapper: adapters arrive merged) in the
    dtype the trainer's DeepSpeed engine computes in, without dropout, frozen."""
    dtype = {"bf16": "bfloat16", "fp16": "float16"}.get(ds.precision(cfg, local_device()), cfg.model.dtype)
    policy = load_policy(cfg.model.name_or_path, dtype=dtype, device=device,
                         attn_implementation=cfg.model.attn_implementation,
                         trust_remote_code=cfg.model.trust_remote_code)
    policy = without_dropout(policy).eval().requires_grad_(False)
    if cfg.algorithm.routing_replay != "off":
        routing.install(policy, replay=False)  # record each token's experts for the trainer to replay
    return policy


def serve_rollouts(cfg: Config, split: Split) -> None:
    """A rollout rank's whole run: sample and score its trainers' shares of every batch (see the module docstring)."""
    p, channel = split.placement, split.channel
    device = local_device()
    processor = load_processor(cfg.model.name_or_path, min_pixels=cfg.model.min_pixels,
                               max_pixels=cfg.model.max_pixels, trust_remote_code=cfg.model.trust_remote_code)
    # vLLM holds its own copy of the weights on the device: its `transformers` twin (names, config, the start-up
    # checkpoint) stays in host memory
    policy = rollout_policy(cfg, torch.device("cpu") if cfg.rollout.engine == "vllm" else device)
    engine = engine_class(cfg.rollout.engine)(None, policy, processor, cfg, device=device)
    clients = p.clients_of(p.rank)
    streams: dict[int, PromptStream] = {}
    start = 0
    for r in clients:
        hello = channel.recv(r, "its hello")
        start = hello["step"]
        streams[r] = PromptStream(cfg.data, cfg.model, processor, seed=cfg.train.seed, rank=r, world=p.trainers)
        streams[r].load_state_dict(hello["stream"])
    version = load_next_version(engine, channel, device)
    pad_id = processor.tokenizer.pad_token_id
    for t in range(start, cfg.train.steps):
        t0 = time.time()
        while version < t - cfg.rollout.max_staleness:
            version = load_next_version(engine, channel, device)
        idle = time.time() - t0  # waiting for (and loading) the weights this batch needs
        for r in clients:
            t0 = time.time()
            scored = sample_and_score(engine, streams[r], cfg, step_seed(cfg, t, r), pad_id=pad_id)
            channel.send({"step": t, "version": version, "scored": scored, "stream": streams[r].state_dict(),
                          "sample_s": time.time() - t0, "idle_s": idle}, r)
    channel.flush("the last batches")


def load_next_version(engine: Any, channel: Channel, device: torch.device) -> int:
    """Receive the next weight version from trainer 0 into `engine`; returns its number."""
    engine.load_weights(channel.recv_weights(device))
    return channel.received_version

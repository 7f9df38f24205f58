"""Routing replay (R3) for mixture-of-experts policies: train on the experts the sampler used.

A MoE layer's router picks each token's top-k experts from its scores; when two scores are close, the sampler
(other kernels, bf16, other batch shapes) and the trainer's recomputation pick different experts, and the token's
log-prob jumps. With `algorithm.routing_replay: r3`:

- **capture**: the rollout engine records, per token (prompt, image tokens included, and completion) and per MoE
  layer, the k expert indices it routed to (`RoutingTracker` in record mode, driven by `sampling.py`'s
  `note_prefill` / `note_decode` / `note_chunk`; the vLLM engine from its own routed-experts output). They are
  stored on the rollout aligned to its tensors: `Rollout.prompt_routing` (B, Lp, layers, k) beside `prompt_ids`,
  `Rollout.completion_routing` (N, Lc, layers, k) beside `completion_ids`, int16, −1 where nothing was recorded
  (padding; a completion's last token, which the sampler never fed back).
- **replay**: every trainer forward (π_old, the reference, every update pass; row and packed layouts) carries
  the recorded indices for its own token positions (`RowBatch.routing`, `PackedBatch.routing`: (rows, L,
  layers, k)); a forward hook on each router replaces the top-k indices by the recorded ones and recomputes the
  routing weights from the trainer's *current* router scores at those indices (softmax over all experts,
  renormalised over the k, as the model's own router does), so the router keeps its gradient. The indices stay
  set until the next forward, so activation checkpointing's recomputation in the backward reuses them.
- **measure**: each forward also counts the (token, layer, slot) where the trainer's own top-k misses a
  recorded expert (`take_mismatch` → `moe_route_mismatch_frac`); `routing_replay: measure` records and measures
  without replaying, so the metric is the mismatch the run trains with.

Departures from the published recipe, all deliberate: the prompt routing is kept once per prompt (its first
prefill; the trainer's rows of one prompt share it), and positions the sampler never routed (a completion's last
token, padding) keep the trainer's own top-k; none of them feeds a log-prob the loss uses.
"""
from __future__ import annotations

import contextlib
import functools
from typing import Iterator, Sequence

import torch
from torch import nn

from .dist import all_reduce
from .models.loading import hf_model
from .typed_config import ConfigError

Tensor = torch.Tensor

TRACKER_ATTR = "_sapo_routing_tracker"
"""Attribute of the `transformers` model (the unwrapped one, `hf_model`) that holds its `RoutingTracker`."""
ROUTE_DTYPE = torch.int16
"""Stored expert indices: 2 bytes each (every public MoE has far fewer than 32,767 experts), −1 = not recorded."""


class RoutingError(ConfigError):
    """Routing replay cannot run as configured (a dense model, an engine without routed experts), or what a
    rollout engine recorded is not plausible; one line names the cause and the way out."""


def moe_routers(model: nn.Module) -> list[nn.Module]:
    """The top-k routers of the text model's MoE layers, in layer order (empty for a dense model).

    A router is a module whose forward returns (router_logits, top-k weights, top-k indices) and that carries
    `top_k` and `num_experts` (transformers' `*TopKRouter`, e.g. Qwen3-VL-MoE's `mlp.gate`).
    """
    text = hf_model(model).model.language_model
    return [m for m in text.modules() if type(m).__name__.endswith("TopKRouter")
            and hasattr(m, "top_k") and hasattr(m, "num_experts")]


class RoutingTracker:
    """Forward hooks on every router of one model: record the top-k indices, or replay recorded ones.

    replay: True forces the recorded indices in the trainer's forwards (r3); False only measures the mismatch.
    """

    def __init__(self, model: nn.Module, *, replay: bool):
        self.routers = moe_routers(model)
        if not self.routers:
            name = getattr(hf_model(model).config, "model_type", type(model).__name__)
            raise RoutingError(f"algorithm.routing_replay needs a mixture-of-experts model; {name!r} has no MoE "
                               "router: set algorithm.routing_replay=off")
        self.top_k = int(self.routers[0].top_k)
        self.num_experts = int(self.routers[0].num_experts)
        self.replay = replay
        self.recording = False
        self.pending: list[list[Tensor]] = [[] for _ in self.routers]  # record mode: (T, k) per layer per forward
        self.forced: Tensor | None = None  # (T, layers, k) for the current forward, −1 = the trainer's own
        self.counted: set[int] = set()  # layers whose mismatch this forward already counted (not recomputations)
        self.missed = torch.zeros(())  # recorded (token, layer, slot) the trainer's own top-k did not pick
        self.compared = torch.zeros(())
        self.handles = [r.register_forward_hook(functools.partial(self._hook, i)) for i, r in enumerate(self.routers)]

    @property
    def num_layers(self) -> int:
        return len(self.routers)

    def remove(self) -> None:
        for h in self.handles:
            h.remove()

    def begin_forward(self, forced: Tensor | None) -> None:
        """The indices the next forward replays, (T, layers, k) in the order the MoE blocks flatten their tokens
        (rows × positions), or None for the trainer's own routing. They stay set for the backward's recomputation."""
        self.forced = forced
        self.counted = set()

    def take_pending(self) -> Tensor:
        """Record mode: the top-k of the forward that just ran, (T, layers, k) int16, and the buffers cleared."""
        out = torch.stack([torch.cat(p) if len(p) > 1 else p[0] for p in self.pending], dim=1)
        self.pending = [[] for _ in self.routers]
        return out

    def take_mismatch(self) -> tuple[float, float]:
        """(missed, compared) (token, layer, slot) counts since the last call, reset."""
        out = float(self.missed), float(self.compared)
        self.missed, self.compared = torch.zeros(()), torch.zeros(())
        return out

    def _hook(self, layer: int, module: nn.Module, args, output):
        logits, _, own = output  # (T, E), (T, k), (T, k)
        if self.recording:
            self.pending[layer].append(own.detach().to(ROUTE_DTYPE))
            return None
        if self.forced is None:
            return None
        rec = self.forced[:, layer].to(own.device).long()  # (T, k)
        if rec.shape != own.shape:
            raise RoutingError(f"routing replay: layer {layer} routed {tuple(own.shape)} token slots, the recorded "
                               f"indices hold {tuple(rec.shape)}")
        known = (rec >= 0).all(-1)  # (T,) tokens with a recorded route
        if layer not in self.counted:
            self.counted.add(layer)
            hit = (own[:, :, None] == rec[:, None, :]).any(1)  # (T, k): recorded expert also in the own top-k
            self.missed = self.missed + ((~hit) & known[:, None]).sum().detach().cpu()
            self.compared = self.compared + known.sum().detach().cpu() * self.top_k
        if not self.replay:
            return None
        use = torch.where(known[:, None], rec, own)  # (T, k)
        return logits, replay_weights(logits, use), use


def replay_weights(logits: Tensor, index: Tensor) -> Tensor:
    """Routing weights at forced experts: softmax of the router logits (T, E) over all experts, taken at `index`
    (T, k) and renormalised over the k, in the logits' dtype (the router's own formula; differentiable)."""
    probs = torch.softmax(logits, dim=-1, dtype=torch.float)  # (T, E)
    w = probs.gather(-1, index)  # (T, k)
    return (w / w.sum(-1, keepdim=True)).to(logits.dtype)


def install(model: nn.Module, *, replay: bool) -> RoutingTracker:
    """Hook `model`'s routers (idempotent: a second call replaces the first tracker)."""
    core = hf_model(model)
    old = getattr(core, TRACKER_ATTR, None)
    if old is not None:
        old.remove()
    tracker = RoutingTracker(model, replay=replay)
    setattr(core, TRACKER_ATTR, tracker)
    return tracker


def tracker_of(model: nn.Module | None) -> RoutingTracker | None:
    if model is None:
        return None
    return getattr(hf_model(model), TRACKER_ATTR, None)


def begin_forward(model: nn.Module, routing: Tensor | None) -> None:
    """Before a trainer forward of `model`: replay `routing` (rows, L, layers, k) aligned to its input ids, or
    nothing (None). A no-op on a model without a tracker."""
    tracker = tracker_of(model)
    if tracker is not None:
        tracker.begin_forward(None if routing is None else routing.reshape(-1, *routing.shape[-2:]))


# ---------------------------------------------------------------------------------------------------- capture
class Recording:
    """What one `sample_completions` routed, as `sampling.py` reports it forward by forward, assembled into the
    rollout's layout by `fill`."""

    def __init__(self, tracker: RoutingTracker):
        self.tracker = tracker
        self.prefills: list[tuple[list[int], Tensor]] = []  # (prompt of each fed row, (p, W, layers, k))
        self.decodes: list[tuple[Tensor, int, Tensor]] = []  # (global rows (a,), step, (a, layers, k))
        self.offset = 0

    def fill(self, samples) -> None:
        """Set `samples.prompt_routing` (B, Lp, layers, k) and `samples.completion_routing` (N, Lc, layers, k)."""
        t = self.tracker
        ids, mask = samples.inputs["input_ids"], samples.inputs["attention_mask"]  # (B, Lp)
        B, Lp = ids.shape
        N, Lc = samples.completion_ids.shape
        prompt = torch.full((B, Lp, t.num_layers, t.top_k), -1, dtype=ROUTE_DTYPE)
        seen: set[int] = set()
        for prompts, routes in self.prefills:
            routes = routes.cpu()
            for i, b in enumerate(prompts):
                if b not in seen:
                    seen.add(b)
                    prompt[b, Lp - routes.shape[1]:] = routes[i]
        completion = torch.full((N, max(Lc, 1), t.num_layers, t.top_k), -1, dtype=ROUTE_DTYPE)
        for rows, step, routes in self.decodes:
            if step < Lc:
                completion[rows.cpu(), step] = routes.cpu()
        prompt[~mask.cpu().bool()] = -1
        completion = completion[:, :Lc]
        completion[~samples.completion_mask.bool()] = -1
        samples.prompt_routing, samples.completion_routing = prompt, completion


@contextlib.contextmanager
def recording(model: nn.Module) -> Iterator[Recording | None]:
    """Record `model`'s routing while the block samples with it (None, and nothing recorded, without a tracker)."""
    tracker = tracker_of(model)
    if tracker is None:
        yield None
        return
    rec = Recording(tracker)
    tracker.recording, tracker.forced = True, None
    tracker.pending = [[] for _ in tracker.routers]
    setattr(tracker, "recording_into", rec)
    try:
        yield rec
    finally:
        tracker.recording = False
        tracker.pending = [[] for _ in tracker.routers]
        setattr(tracker, "recording_into", None)


def _active(model) -> Recording | None:
    tracker = tracker_of(model)
    return getattr(tracker, "recording_into", None) if tracker is not None and tracker.recording else None


def note_chunk(model, first_row: int) -> None:
    """Sampler hook: the rows decoded next are rows `first_row`, `first_row + 1`, ... of the rollout."""
    rec = _active(model)
    if rec is not None:
        rec.offset = first_row


def note_prefill(model, prompts: Sequence[int]) -> None:
    """Sampler hook, after a prefill forward over one fed row per entry of `prompts` (the prompt index of each),
    left-padded to the same width: the routing of those prompt tokens (the feed's columns are the last W of the
    encoded prompts, whose common left padding it trimmed)."""
    rec = _active(model)
    if rec is not None:
        routes = rec.tracker.take_pending()  # (p·W, layers, k)
        rec.prefills.append((list(prompts), routes.view(len(prompts), -1, *routes.shape[1:])))


def note_decode(model, rows: Tensor, step: int) -> None:
    """Sampler hook, after a decode forward that fed completion token `step` of the chunk's rows `rows` (a,)."""
    rec = _active(model)
    if rec is not None:
        routes = rec.tracker.take_pending()  # (a, layers, k)
        rec.decodes.append((rows + rec.offset, step, routes))


def routes_from_sequences(seq_routes: Sequence[Tensor], prompt_len: Sequence[int], completion_len: Sequence[int],
                          group_size: int, Lp: int, Lc: int) -> tuple[Tensor, Tensor]:
    """Per completion row r, its sequence's routing (prompt_len[b] + completion_len[r] − 1, layers, k) as a
    sampler that returns whole sequences gives it (vLLM's `routed_experts`: every token that went through the
    model, the last sampled one excepted) → (B, Lp, layers, k) left-padded prompt routing (from each prompt's first
    row) and (N, Lc, layers, k) completion routing, −1 where nothing was recorded."""
    first = torch.as_tensor(seq_routes[0])
    B = len(prompt_len)
    prompt = torch.full((B, Lp, *first.shape[1:]), -1, dtype=ROUTE_DTYPE)
    completion = torch.full((len(seq_routes), Lc, *first.shape[1:]), -1, dtype=ROUTE_DTYPE)
    for r, seq in enumerate(seq_routes):
        seq = torch.as_tensor(seq).to(ROUTE_DTYPE)
        b, p, c = r // group_size, prompt_len[r // group_size], completion_len[r]
        if seq.shape[0] not in (p + c - 1, p + c):
            raise RoutingError(f"row {r} (prompt {b}): {seq.shape[0]} routed tokens for a {p}-token prompt and a "
                               f"{c}-token completion (want {p + c - 1})")
        if r % group_size == 0:
            prompt[b, Lp - p:] = seq[:p]
        completion[r, : seq.shape[0] - p] = seq[p:]
    return prompt, completion


# ---------------------------------------------------------------------------------------------------- checks
def check_routes(routes: Tensor, real: Tensor, num_experts: int, what: str) -> None:
    """Raise `RoutingError` unless `routes` (..., layers, k) is plausible on the real tokens `real` (...): every
    real token recorded, indices in [0, num_experts), distinct within a token's k, and not all zero."""
    r = routes[real.bool()]  # (t, layers, k)
    if r.numel() == 0:
        return
    if (r < 0).any():
        raise RoutingError(f"{what}: {int((r < 0).any(-1).any(-1).sum())} real tokens have no recorded experts")
    if (r >= num_experts).any():
        raise RoutingError(f"{what}: expert index {int(r.max())} out of range for {num_experts} experts")
    if num_experts > 1 and not r.any():
        raise RoutingError(f"{what}: every recorded expert index is 0 (a kernel that returns no routing)")
    k = r.shape[-1]
    if k > 1:
        s = r.sort(-1).values
        if (s[..., 1:] == s[..., :-1]).any():
            raise RoutingError(f"{what}: a token's top-{k} experts repeat an index (not a top-k)")


def check_sampled_routes(samples, num_experts: int, engine: str) -> None:
    """`check_routes` on `Samples`' prompt and completion routing (a completion's last token excepted: the sampler
    need not feed it back)."""
    check_routes(samples.prompt_routing, samples.inputs["attention_mask"].cpu(), num_experts,
                 f"{engine} engine, prompt routing")
    fed = samples.completion_mask.clone()
    last = fed.sum(-1) - 1  # (N,)
    fed[torch.arange(fed.shape[0]), last.clamp(min=0)] = 0
    check_routes(samples.completion_routing, fed, num_experts, f"{engine} engine, completion routing")


def mismatch_metrics(model) -> dict[str, float]:
    """`moe_route_mismatch_frac` over all ranks: the share of recorded (token, MoE layer, slot) that the trainer's
    own top-k did not pick, in the policy's forwards since the last call (empty without a tracker)."""
    tracker = tracker_of(model)
    if tracker is None:
        return {}
    missed, compared = all_reduce(list(tracker.take_mismatch()))
    return {"moe_route_mismatch_frac": missed / compared if compared else 0.0}


# ---------------------------------------------------------------------------------------------------- layouts
def row_routes(rollout, prompt: Tensor, rows: Tensor, first: int, lc: int, device) -> Tensor | None:
    """(n, Lp − first + lc, layers, k) routing of the row-layout sequences `rollout.row_batch` builds, on `device`."""
    if rollout.prompt_routing is None:
        return None
    return torch.cat([rollout.prompt_routing[prompt, first:], rollout.completion_routing[rows, :lc]], dim=1).to(device)


def packed_routes(rollout, plan: Sequence[tuple[int, Sequence[int]]], segment_ids: Tensor) -> Tensor | None:
    """(R, L, layers, k) routing of a packed micro-batch: packed row r of `plan` is [prompt g, completions ...]
    laid out as `segment_ids` (R, L) says (0 prompt, j completion j, −1 padding)."""
    if rollout.prompt_routing is None:
        return None
    R, L = segment_ids.shape
    pr = rollout.prompt_routing
    out = torch.full((R, L, *pr.shape[2:]), -1, dtype=pr.dtype)
    seg = segment_ids.cpu()
    for r, (g, comp) in enumerate(plan):
        keep = rollout.prompt_mask[g].bool()
        p = int(keep.sum())
        out[r, :p] = pr[g, keep]
        for j, row in enumerate(comp, start=1):
            pos = (seg[r] == j).nonzero()[:, 0]
            out[r, pos] = rollout.completion_routing[row, : len(pos)]
    return out


def pad_routes(t: Tensor | None, length: int, left: bool) -> Tensor | None:
    """Pad (n, L, layers, k) routing with −1 along L to `length` (on the left for prompts)."""
    if t is None:
        return None
    pad = (0, 0, 0, 0, length - t.shape[1], 0) if left else (0, 0, 0, 0, 0, length - t.shape[1])
    return torch.nn.functional.pad(t, pad, value=-1)


def route_bytes(tokens: int, layers: int, k: int) -> int:
    """Host bytes of a rollout's recorded routing: tokens × MoE layers × k × 2 (int16)."""
    return tokens * layers * k * torch.tensor([], dtype=ROUTE_DTYPE).element_size()

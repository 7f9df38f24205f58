"""The rollout: B prompts × G completions with rewards and advantages, and how it is cut into micro-batches.

`Rollout` keeps each prompt once (its token ids and its images' patches) and each completion once; a
`RowBatch` of completion rows is assembled on demand as prompt+completion sequences with the pixel patches of
the rows' prompts, ready for `PolicyLogprobs`. Rows g·G … g·G+G−1 form prompt g's group.

`collect_rollout` makes one (sample with the rollout engine, then score with the verifiers);
`sample_and_score` is a training step's, with DAPO's dynamic sampling (`refill_zero_std_groups`) on top.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
import torch.distributed as tdist

from . import routing
from .algorithms import corrected_advantages, overlong_penalty, zero_std_groups
from .config import Config
from .data.record import Record
from .dist import all_reduce, world_size
from .engines.base import RolloutEngine, Samples, SamplingSettings
from .verifiers.batch import score_batch
from .verifiers.result import VerifierResult

Tensor = torch.Tensor


@dataclass
class RowBatch:
    """Completion rows of a rollout as model inputs, one prompt+completion sequence per row (the row layout of
    `update.MicroBatch`; `packing.PackedBatch` is the packed one)."""

    rows: list[int]
    """The rollout rows in this micro-batch, in order."""
    input_ids: Tensor
    """(n, Lp' + Lc') prompt (left-padded, common padding trimmed) then completion tokens."""
    attention_mask: Tensor
    """(n, Lp' + Lc') 1 on real tokens."""
    mm_token_type_ids: Tensor
    """(n, Lp' + Lc') 0 text, 1 image, 2 video."""
    n_completion: int
    """Lc': completion positions kept (the longest completion among the rows)."""
    pixel_values: Tensor | None
    """(P, D) patches of the rows' images, in row order (a prompt's image repeated for each of its rows)."""
    image_grid_thw: Tensor | None
    """(n_images, 3) their patch grids."""
    mask: Tensor
    """(n, Lc') 1 on completion tokens."""
    routing: Tensor | None = None
    """(n, Lp' + Lc', moe_layers, k) recorded expert indices to replay (`sapo_vl.routing`), or None."""

    def logprobs(self, module, **kw) -> tuple[Tensor, Tensor]:
        """(n, Lc') log-probs and entropies through `module` (a DeepSpeed engine or a `PolicyLogprobs`)."""
        return module(self, **kw)

    def counts(self) -> dict[str, float]:
        patches = 0 if self.image_grid_thw is None else int(self.image_grid_thw.prod(-1).sum())
        return {"real_tokens": float(self.attention_mask.sum()), "padded_tokens": float(self.input_ids.numel()),
                "vision_patches": float(patches)}


@dataclass
class Rollout:
    records: list[Record]
    """The B prompts' records."""
    prompt_ids: Tensor
    """(B, Lp) prompt token ids, left-padded."""
    prompt_mask: Tensor
    """(B, Lp) 1 on real prompt tokens."""
    prompt_mm_types: Tensor
    """(B, Lp) 0 text, 1 image, 2 video (the processor's mm_token_type_ids)."""
    pixel_values: list[Tensor | None]
    """Per prompt: its images' patches (P_b, D), or None for a text-only prompt."""
    image_grid_thw: list[Tensor | None]
    """Per prompt: (n_images_b, 3) patch grids, or None."""
    completion_ids: Tensor
    """(N, Lc) with N = B·G, right-padded."""
    completion_mask: Tensor
    """(N, Lc) 1 on completion tokens (stop token included)."""
    truncated: Tensor
    """(N,) bool: hit max_new_tokens without a stop token."""
    texts: list[str]
    """(N) decoded completions."""
    group_size: int
    sample_logprobs: Tensor = field(default_factory=lambda: torch.zeros(0))
    """(N, Lc) log-probs of the sampled tokens under the sampling distribution (a drift diagnostic)."""
    rewards: Tensor = field(default_factory=lambda: torch.zeros(0))
    """(N,) verifier rewards (after any overlong penalty)."""
    advantages: Tensor = field(default_factory=lambda: torch.zeros(0))
    """(N,) group advantages."""
    old_logprobs: Tensor | None = None
    """(N, Lc) log-probs under the policy that generated (π_old)."""
    ref_logprobs: Tensor | None = None
    """(N, Lc) log-probs under the reference policy, when KL is on."""
    loss_mask: Tensor | None = None
    """(N, Lc) 1 on the tokens the loss counts: completion tokens, less truncated rows (`algorithm.mask_truncated`),
    the zero-std groups dynamic sampling could not replace, and what the mismatch correction masks (MIS). Set
    with the advantages (`train.assign_advantages`)."""
    is_weights: Tensor | None = None
    """(N, Lc) importance weights π_old/π_sample of `algorithm.rollout_correction` (tis, mis), or None; they
    multiply each token's advantage (`algorithms.corrected_advantages`)."""
    scores: list[VerifierResult] = field(default_factory=list)
    """(N) verifier results (score, reason, extracted)."""
    prompt_routing: Tensor | None = None
    """(B, Lp, moe_layers, k) int16 expert indices the sampler routed each prompt token to (−1 on padding), when
    `algorithm.routing_replay` records them (`sapo_vl.routing`)."""
    completion_routing: Tensor | None = None
    """(N, Lc, moe_layers, k) int16 expert indices of each completion token (−1 where none was recorded)."""

    @property
    def n(self) -> int:
        return int(self.completion_ids.shape[0])

    @classmethod
    def from_samples(cls, records: Sequence[Record], samples: Samples) -> "Rollout":
        inputs = samples.inputs
        pixels: list[Tensor | None] = []
        grids: list[Tensor | None] = []
        if "image_grid_thw" in inputs:
            grid = inputs["image_grid_thw"]  # (n_images, 3)
            patches = grid.prod(-1).tolist()  # patches per image
            offsets = [0]
            for p in patches:
                offsets.append(offsets[-1] + p)
            img = 0
            for rec in records:
                k = len(rec.images)
                if k == 0:
                    pixels.append(None)
                    grids.append(None)
                    continue
                pixels.append(inputs["pixel_values"][offsets[img] : offsets[img + k]])
                grids.append(grid[img : img + k])
                img += k
        else:
            pixels = [None] * len(records)
            grids = [None] * len(records)
        return cls(
            records=list(records), prompt_ids=inputs["input_ids"].cpu(), prompt_mask=inputs["attention_mask"].cpu(),
            prompt_mm_types=inputs["mm_token_type_ids"].cpu(), pixel_values=pixels, image_grid_thw=grids,
            completion_ids=samples.completion_ids, completion_mask=samples.completion_mask,
            truncated=samples.truncated, texts=samples.texts, group_size=samples.group_size,
            sample_logprobs=samples.sample_logprobs, prompt_routing=samples.prompt_routing,
            completion_routing=samples.completion_routing,
        )

    def groups(self, keep: Sequence[int]) -> "Rollout":
        """The rollout restricted to prompt groups `keep` (in that order), with their scores and rewards."""
        G = self.group_size
        rows = [g * G + j for g in keep for j in range(G)]
        r = torch.as_tensor(rows, dtype=torch.long)
        k = torch.as_tensor(list(keep), dtype=torch.long)
        pick = lambda t: t[r] if t is not None and t.numel() else t  # noqa: E731
        return Rollout(
            records=[self.records[g] for g in keep], prompt_ids=self.prompt_ids[k], prompt_mask=self.prompt_mask[k],
            prompt_mm_types=self.prompt_mm_types[k], pixel_values=[self.pixel_values[g] for g in keep],
            image_grid_thw=[self.image_grid_thw[g] for g in keep], completion_ids=self.completion_ids[r],
            completion_mask=self.completion_mask[r], truncated=self.truncated[r],
            texts=[self.texts[i] for i in rows], group_size=G, sample_logprobs=pick(self.sample_logprobs),
            rewards=pick(self.rewards), scores=[self.scores[i] for i in rows] if self.scores else [],
            prompt_routing=None if self.prompt_routing is None else self.prompt_routing[k],
            completion_routing=pick(self.completion_routing),
        )

    @staticmethod
    def concat(parts: Sequence["Rollout"], pad_id: int) -> "Rollout":
        """One rollout from several (before advantages): prompts re-padded on the left, completions on the right."""
        lp = max(p.prompt_ids.shape[1] for p in parts)
        lc = max(p.completion_ids.shape[1] for p in parts)

        def left(t: Tensor, value: int) -> Tensor:
            return torch.nn.functional.pad(t, (lp - t.shape[1], 0), value=value)

        def right(t: Tensor, value: float) -> Tensor:
            return torch.nn.functional.pad(t, (0, lc - t.shape[1]), value=value)

        return Rollout(
            records=[x for p in parts for x in p.records],
            prompt_ids=torch.cat([left(p.prompt_ids, pad_id) for p in parts]),
            prompt_mask=torch.cat([left(p.prompt_mask, 0) for p in parts]),
            prompt_mm_types=torch.cat([left(p.prompt_mm_types, 0) for p in parts]),
            pixel_values=[x for p in parts for x in p.pixel_values],
            image_grid_thw=[x for p in parts for x in p.image_grid_thw],
            completion_ids=torch.cat([right(p.completion_ids, pad_id) for p in parts]),
            completion_mask=torch.cat([right(p.completion_mask, 0) for p in parts]),
            truncated=torch.cat([p.truncated for p in parts]), texts=[x for p in parts for x in p.texts],
            group_size=parts[0].group_size,
            sample_logprobs=torch.cat([right(p.sample_logprobs, 0.0) for p in parts]),
            rewards=torch.cat([p.rewards for p in parts]), scores=[x for p in parts for x in p.scores],
            **_concat_routing(parts, lp, lc),
        )

    def token_advantages(self, rows: Tensor | Sequence[int], lc: int) -> Tensor:
        """Advantages of `rows`: (n,), or (n, lc) weighted token by token when `is_weights` is set."""
        adv = self.advantages[torch.as_tensor(rows, dtype=torch.long)]
        if self.is_weights is None:
            return adv
        return corrected_advantages(adv, self.is_weights[torch.as_tensor(rows, dtype=torch.long), :lc])  # (n, lc)

    def row_batch(self, rows: Sequence[int], device: torch.device | str = "cpu") -> RowBatch:
        """Model inputs for completion rows `rows`: prompt+completion sequences with their images' patches.

        Common left padding of the selected prompts and common right padding of the completions are trimmed.
        """
        rows_t = torch.as_tensor(list(rows), dtype=torch.long)
        prompt = rows_t // self.group_size  # (n,)
        pm = self.prompt_mask[prompt]  # (n, Lp)
        first = int((pm.cumsum(-1) == 0).sum(-1).min())  # shared left padding
        cm = self.completion_mask[rows_t]  # (n, Lc)
        lc = max(int(cm.sum(-1).max()), 1)
        input_ids = torch.cat([self.prompt_ids[prompt, first:], self.completion_ids[rows_t, :lc]], dim=1)
        attention_mask = torch.cat([pm[:, first:], cm[:, :lc]], dim=1)
        mm = torch.cat([self.prompt_mm_types[prompt, first:], torch.zeros_like(cm[:, :lc])], dim=1)
        pix = [self.pixel_values[p] for p in prompt.tolist() if self.pixel_values[p] is not None]
        grids = [self.image_grid_thw[p] for p in prompt.tolist() if self.image_grid_thw[p] is not None]
        return RowBatch(
            rows=rows_t.tolist(), input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
            mm_token_type_ids=mm.to(device), n_completion=lc,
            pixel_values=torch.cat(pix).to(device) if pix else None,
            image_grid_thw=torch.cat(grids).to(device) if grids else None,
            mask=cm[:, :lc].to(device),
            routing=routing.row_routes(self, prompt, rows_t, first, lc, device),
        )


def _concat_routing(parts: Sequence[Rollout], lp: int, lc: int) -> dict[str, Tensor | None]:
    """`Rollout.concat`'s routing fields: prompts padded on the left, completions on the right (−1)."""
    if any(p.prompt_routing is None for p in parts):
        return {"prompt_routing": None, "completion_routing": None}
    return {"prompt_routing": torch.cat([routing.pad_routes(p.prompt_routing, lp, left=True) for p in parts]),
            "completion_routing": torch.cat([routing.pad_routes(p.completion_routing, lc, left=False)
                                             for p in parts])}


def sampling_settings(cfg: Config) -> SamplingSettings:
    r = cfg.rollout
    return SamplingSettings(group_size=r.group_size, max_new_tokens=r.max_new_tokens, temperature=r.temperature,
                            top_p=r.top_p, top_k=r.top_k)


@dataclass
class Scored:
    """A scored rollout and what it cost: this rank's rows, scoring time and counters for the log."""

    rollout: Rollout
    score_s: float = 0.0
    """Seconds spent scoring (inside the rollout phase)."""
    score_timeouts: int = 0
    """Completions whose verifier ran out of time (scored 0)."""
    zero_std_frac_sampled: float = 0.0
    """Share of groups with zero reward spread as first sampled, over all ranks (before any refill)."""
    dynamic_sampling_rounds: int = 0
    """Extra rollouts drawn to refill zero-std groups (`algorithm.dynamic_sampling`)."""

    def add_cost(self, other: "Scored") -> None:
        self.score_s += other.score_s
        self.score_timeouts += other.score_timeouts


def step_seed(cfg: Config, step: int, rank: int) -> int:
    """The sampling seed of training rank `rank`'s share of step `step` (the same wherever that share is sampled:
    on the rank itself, or on a rollout rank of a split placement)."""
    return cfg.train.seed * 1_000_003 + step * 7919 + rank


def sample_and_score(engine: RolloutEngine, stream, cfg: Config, seed: int, *, pad_id: int) -> Scored:
    """This rank's scored rollout of the step: `rollout.prompts_per_step` prompts (over all ranks) from `stream`,
    G completions each; with `algorithm.dynamic_sampling`, zero-std groups refilled from fresh prompts.

    The engine's memory is reclaimed before sampling and released after (the update phase gets it back).
    """
    engine.reclaim_memory()
    got = collect_rollout(engine, stream.next_batch(cfg.rollout.prompts_per_step), cfg, seed)
    zero = zero_std_groups(got.rollout.rewards, cfg.rollout.group_size).float().mean()
    got.zero_std_frac_sampled = all_reduce([float(zero)])[0] / world_size()
    if cfg.algorithm.dynamic_sampling:
        def draw(n: int, round_: int) -> Scored:  # n prompts of this rank's share, so n · ranks from the stream
            return collect_rollout(engine, stream.next_batch(n * stream.world), cfg, seed + 104_729 * (round_ + 1))

        refill_zero_std_groups(got, draw, rounds=cfg.algorithm.dynamic_sampling_rounds, pad_id=pad_id)
    engine.release_memory()
    return got


def collect_rollout(engine: RolloutEngine, prompts: list, cfg: Config, seed: int) -> Scored:
    """Sample G completions per prompt with the rollout engine and score them with the verifiers.

    The rollout carries `scores` and `rewards` (verifier score, plus DAPO's overlong penalty when on).
    """
    G = cfg.rollout.group_size
    samples = engine.generate([q.record.prompt for q in prompts], [q.images for q in prompts],
                              sampling_settings(cfg), seed)
    rollout = Rollout.from_samples([q.record for q in prompts], samples)
    t = time.time()
    items = [(q.record.verifier, rollout.texts[i * G + g], q.record.answer, q.record.verifier_params)
             for i, q in enumerate(prompts) for g in range(G)]
    scored = score_batch(items, workers=cfg.rollout.score_workers, timeout=cfg.rollout.score_timeout_s)
    rollout.scores = scored.results
    rollout.rewards = torch.tensor([r.score for r in scored.results], dtype=torch.float32)
    if cfg.algorithm.overlong_penalty.enabled:
        op = cfg.algorithm.overlong_penalty
        rollout.rewards = rollout.rewards + overlong_penalty(rollout.completion_mask.sum(-1),
                                                             cfg.rollout.max_new_tokens, op.buffer, op.penalty)
    return Scored(rollout, score_s=time.time() - t, score_timeouts=scored.timeouts)


def refill_zero_std_groups(got: Scored, draw: Callable[[int, int], Scored], *, rounds: int, pad_id: int) -> None:
    """DAPO dynamic sampling, in place: replace `got.rollout`'s zero-std groups by groups of fresh prompts that
    carry signal, for at most `rounds` extra rollouts.

    `draw(n, round)` rolls out and scores `n` new prompts on this rank. Every rank draws the same number per round (the
    largest need over ranks), so the global prompt stream stays aligned. Group order: each round keeps the groups
    that carry signal (in order), then the zero-std groups it could not replace, and appends its refills after them.
    """
    G = got.rollout.group_size
    for round_ in range(rounds):
        zero = zero_std_groups(got.rollout.rewards, G)
        need = int(all_reduce([float(zero.sum())], tdist.ReduceOp.MAX)[0])
        if need == 0:
            break
        extra = draw(need, round_)
        got.add_cost(extra)
        got.dynamic_sampling_rounds += 1
        good = [g for g, z in enumerate(zero_std_groups(extra.rollout.rewards, G).tolist()) if not z]
        zero_idx = [g for g, z in enumerate(zero.tolist()) if z]
        fill = good[: len(zero_idx)]
        keep = [g for g, z in enumerate(zero.tolist()) if not z] + zero_idx[len(fill):]
        got.rollout = Rollout.concat([got.rollout.groups(keep), extra.rollout.groups(fill)], pad_id)

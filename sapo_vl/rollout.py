"""The rollout: B prompts × G completions with rewards and advantages, and how it is cut into micro-batches.

`Rollout` keeps each prompt once (its token ids and its images' patches) and each completion once; a
micro-batch of completion rows is assembled on demand as prompt+completion sequences with the pixel patches of
the rows' prompts, ready for `PolicyLogprobs`. Rows g·G … g·G+G−1 form prompt g's group.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from .data.record import Record
from .sampling import Samples

Tensor = torch.Tensor


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
    rewards: Tensor = field(default_factory=lambda: torch.zeros(0))
    """(N,) verifier rewards (after any overlong penalty)."""
    advantages: Tensor = field(default_factory=lambda: torch.zeros(0))
    """(N,) group advantages."""
    old_logprobs: Tensor | None = None
    """(N, Lc) log-probs under the policy that generated (π_old)."""
    ref_logprobs: Tensor | None = None
    """(N, Lc) log-probs under the reference policy, when KL is on."""
    scores: list[Any] = field(default_factory=list)
    """(N) verifier results (score, reason, extracted)."""

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
        )

    def micro_batch(self, rows: Sequence[int], device: torch.device | str = "cpu") -> dict[str, Any]:
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
        batch: dict[str, Any] = dict(
            input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
            mm_token_type_ids=mm.to(device), n_completion=lc,
            pixel_values=torch.cat(pix).to(device) if pix else None,
            image_grid_thw=torch.cat(grids).to(device) if grids else None,
        )
        extras = dict(mask=cm[:, :lc], advantages=self.advantages[rows_t] if self.advantages.numel() else None)
        if self.old_logprobs is not None:
            extras["old_logprobs"] = self.old_logprobs[rows_t, :lc]
        if self.ref_logprobs is not None:
            extras["ref_logprobs"] = self.ref_logprobs[rows_t, :lc]
        batch["extras"] = {k: (v.to(device) if isinstance(v, Tensor) else v) for k, v in extras.items()}
        return batch

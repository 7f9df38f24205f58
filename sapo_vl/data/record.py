"""The record: one image-text prompt with its ground truth, as every recipe yields it.

A record is what the rollout, the verifiers and the eval harness share. Images come first as a list;
the prompt is a list of chat messages whose content items `{"type": "image"}` are slots filled, in order,
by `images`. Images are either paths relative to the dataset root or encoded image bytes (PNG/JPEG).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

DOMAINS = ("math", "chart", "reasoning")


@dataclass
class Record:
    id: str
    """Unique within its recipe and split, stable across builds (e.g. "geometry3k/train/17")."""
    prompt: list[dict[str, Any]]
    """Chat messages, HF format: [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "..."}]}]."""
    answer: str
    """Ground truth as text, in the form the verifier expects (e.g. "3", "\\frac{1}{2}", "B")."""
    images: list[str | bytes] = field(default_factory=list)
    """One entry per image slot in `prompt`: a path relative to the dataset root, or encoded image bytes."""
    verifier: str = "exact"
    """Name in `sapo_vl.verifiers.VERIFIERS` that scores a response against `answer`."""
    verifier_params: dict[str, Any] = field(default_factory=dict)
    """Keyword parameters for the verifier (e.g. {"choices": ["A", "B", "C", "D"]})."""
    domain: str = "reasoning"
    """One of DOMAINS: "math", "chart" or "reasoning"."""
    source: str = ""
    """Where it came from: a hub dataset id, a local path, or "synthetic:<generator>"."""
    split: str = "train"
    meta: dict[str, Any] = field(default_factory=dict)
    """Free-form extras (difficulty, original question, options) kept for analysis, never used by training."""

    def __post_init__(self) -> None:
        if self.domain not in DOMAINS:
            raise ValueError(f"record {self.id!r}: domain {self.domain!r} is not one of {DOMAINS}")
        slots = sum(
            1
            for m in self.prompt
            for c in (m.get("content") if isinstance(m.get("content"), list) else [])
            if isinstance(c, dict) and c.get("type") == "image"
        )
        if slots != len(self.images):
            raise ValueError(f"record {self.id!r}: prompt has {slots} image slot(s) but {len(self.images)} image(s)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Record":
        return cls(**d)


def user_prompt(text: str, n_images: int = 1, system: str | None = None) -> list[dict[str, Any]]:
    """The usual prompt: images first, then the question, in one user turn (optionally after a system turn)."""
    content: list[dict[str, Any]] = [{"type": "image"} for _ in range(n_images)]
    content.append({"type": "text", "text": text})
    msgs: list[dict[str, Any]] = []
    if system:
        msgs.append({"role": "system", "content": [{"type": "text", "text": system}]})
    msgs.append({"role": "user", "content": content})
    return msgs

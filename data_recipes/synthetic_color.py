"""Dominant color: which color covers most of the image? One word from a small palette.

The simplest recipe, and the one the training demo learns with a tiny model: copy this file to write a
new synthetic recipe (change the metadata, the knobs in `Options`, the drawing and the question; keep the
`records` signature).

Check it:  sapo-vl recipe check synthetic_color
Build it:  sapo-vl recipe build synthetic_color --out runs/data/color --limit 500

The background is the answer color; `patches` rectangles of other palette colors cover at most
1 - `dominance` of the image between them, so the answer is always the strict pixel majority.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from PIL import Image, ImageDraw

from sapo_vl.data.record import Record, user_prompt
from sapo_vl.data.synth import COLORS, png, rng_for, split_size

NAME = "synthetic_color"
DOMAIN = "reasoning"
SOURCE = "synthetic:color"
VERIFIER = "exact"
DESCRIPTION = "Dominant color of a picture, one word from a small palette (4 by default); the demo task."
PROMPT = "What is the dominant color in this image? Answer with just the color, one of: {choices}."
SPLITS = ("train", "test")


@dataclass(frozen=True)
class Options:
    """The knobs of the generator (`-o key=value`); the defaults make the demo task."""

    size: int | None = None
    """Records in the split (default 1000 train / 200 test)."""
    n_colors: int = 4
    """Palette size, 2..8 (the first n of sapo_vl.data.synth.COLORS); more is harder."""
    image_size: int = 64
    """Side of the square image in pixels (64 = 4 image tokens for Qwen3-VL)."""
    dominance: float = 0.6
    """Least fraction of pixels the answer color keeps; lower is harder."""
    patches: int = 2
    """Rectangles of other colors drawn over the background (at most n_colors - 1); more is harder."""
    verifier: str = VERIFIER
    """"exact" (the response is the color word) or "choice" (the last palette color named wins, so a longer,
    noisier response can still be read)."""


def records(split: str = "train", *, seed: int = 0, limit: int | None = None, root: Path | None = None,
            options: Options = Options()) -> Iterator[Record]:
    """Records of `split`, drawn with `options`."""
    n_colors, image_size, dominance, verifier = (options.n_colors, options.image_size, options.dominance,
                                                 options.verifier)
    if verifier not in ("exact", "choice"):
        raise ValueError(f"verifier must be 'exact' or 'choice', got {verifier!r}")
    names = list(COLORS)[:n_colors]
    patches = min(options.patches, n_colors - 1)  # each patch has its own color, never the answer's
    if not 2 <= n_colors <= len(COLORS) or patches < 0:
        raise ValueError(f"need 2 <= n_colors <= {len(COLORS)} and patches >= 0")
    if patches and dominance <= 1 / (patches + 1):
        raise ValueError(f"dominance {dominance} must exceed 1/(patches+1) so the answer stays the majority")
    question = PROMPT.format(choices=", ".join(names))
    n = split_size(split, options.size) if limit is None else min(split_size(split, options.size), limit)
    for i in range(n):
        rng = rng_for(NAME, split, seed, i)
        answer = rng.choice(names)
        img = Image.new("RGB", (image_size, image_size), COLORS[answer])
        draw = ImageDraw.Draw(img)
        others = rng.sample([c for c in names if c != answer], patches)
        budget = (1 - dominance) / max(patches, 1) * image_size * image_size  # pixels per patch, at most
        for color in others:
            hi = max(1, min(image_size // 2, int(budget)))
            w = rng.randint(min(hi, max(1, image_size // 8)), hi)
            h = max(1, min(image_size // 2, int(budget // w), rng.randint(image_size // 8, image_size // 2)))
            x, y = rng.randint(0, image_size - w), rng.randint(0, image_size - h)
            draw.rectangle([x, y, x + w - 1, y + h - 1], fill=COLORS[color])
        yield Record(id=f"{NAME}/{split}/{i}", prompt=user_prompt(question), answer=answer, images=[png(img)],
                     verifier=verifier, verifier_params={"choices": names} if verifier == "choice" else {},
                     domain=DOMAIN, source=SOURCE, split=split,
                     meta={"palette": names, "distractors": others})

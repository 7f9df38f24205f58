"""Small helpers the synthetic recipes share: per-record random streams, colours, fonts, PNG bytes.

Each record draws from its own `random.Random` seeded by (recipe, split, seed, index), so a record does
not depend on `limit` or on the records before it, the same seed gives the same bytes, and train and
test never share a stream.
"""
from __future__ import annotations

import random
from functools import lru_cache

from PIL import ImageFont

from .images import encode_png as png  # noqa: F401  (recipes draw images and store them with the one PNG encoder)

SPLIT_SIZES = {"train": 1000, "test": 200}
"""Default number of records per split for the synthetic recipes (their `size` option overrides it)."""

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 210, 40),
    "purple": (140, 60, 180),
    "orange": (245, 140, 30),
    "gray": (128, 128, 128),
    "cyan": (40, 200, 210),
}
"""Named colours far apart in RGB, in the order recipes take them from (the first k for k colours)."""


def rng_for(recipe: str, split: str, seed: int, index: int) -> random.Random:
    """The random stream of one record (string seeds hash with SHA-512: stable across runs)."""
    return random.Random(f"{recipe}/{split}/{seed}/{index}")


def split_size(split: str, size: int | None) -> int:
    """Number of records in `split`: `size` when given, else SPLIT_SIZES (ValueError on unknown split)."""
    if split not in SPLIT_SIZES:
        raise ValueError(f"unknown split {split!r}; synthetic recipes have {', '.join(SPLIT_SIZES)}")
    return SPLIT_SIZES[split] if size is None else int(size)


@lru_cache(maxsize=16)
def font(size: int = 14) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """PIL's bundled font at `size` (same glyphs on every machine, so the same bytes)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType: fixed-size bitmap font
        return ImageFont.load_default()



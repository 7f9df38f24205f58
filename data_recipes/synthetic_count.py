"""Counting shapes: "How many circles are in this image?" on flat, non-overlapping shapes.

Shapes sit in distinct cells of a `grid` x `grid` layout with a gap of at least 2 pixels between any two,
so every shape is one connected blob of one color and the count is unambiguous.

Check it:  sapo-vl recipe check synthetic_count
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from PIL import Image, ImageDraw

from sapo_vl.data.record import Record, user_prompt
from sapo_vl.data.synth import COLORS, png, rng_for, split_size

NAME = "synthetic_count"
DOMAIN = "reasoning"
SOURCE = "synthetic:count"
VERIFIER = "count"
DESCRIPTION = "Count shapes (all, of one kind, or of one color) on a white canvas; integer answer."
PROMPT = "How many {what} are there in this image? Answer with a single number."
SPLITS = ("train", "test")
KINDS = ("circle", "square", "triangle")


def draw_shape(draw: ImageDraw.ImageDraw, kind: str, box: tuple[int, int, int, int], fill: tuple) -> None:
    """Draw a filled circle, square or upward triangle inside `box` = (x0, y0, x1, y1), inclusive."""
    x0, y0, x1, y1 = box
    if kind == "circle":
        draw.ellipse(box, fill=fill)
    elif kind == "square":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([((x0 + x1) // 2, y0), (x1, y1), (x0, y1)], fill=fill)


@dataclass(frozen=True)
class Options:
    """The knobs of the generator (`-o key=value`)."""

    size: int | None = None
    """Records in the split (default 1000 train / 200 test)."""
    min_count: int = 1
    """Fewest shapes drawn."""
    max_count: int = 8
    """Most shapes drawn (at most grid * grid)."""
    image_size: int = 256
    """Side of the square canvas in pixels."""
    grid: int = 5
    """Cells per side, one shape per cell (smaller cells, smaller shapes)."""
    kinds: int = 3
    """How many of circle/square/triangle appear."""
    colors: int = 4
    """How many palette colors are used."""
    questions: str = "all,kind,color"
    """Comma-separated question types drawn uniformly: all (every shape), kind, color."""


def records(split: str = "train", *, seed: int = 0, limit: int | None = None, root: Path | None = None,
            options: Options = Options()) -> Iterator[Record]:
    """Records of `split`, drawn with `options`."""
    min_count, max_count, image_size, grid = options.min_count, options.max_count, options.image_size, options.grid
    if not 1 <= min_count <= max_count <= grid * grid or image_size // grid < 8:
        raise ValueError(f"need 1 <= min_count <= max_count <= grid*grid and cells of 8+ pixels")
    kind_names, color_names = KINDS[:options.kinds], list(COLORS)[:options.colors]
    qtypes = [q.strip() for q in options.questions.split(",") if q.strip()]
    if not qtypes or set(qtypes) - {"all", "kind", "color"}:
        raise ValueError(f"questions must be a comma-separated subset of all,kind,color, got {options.questions!r}")
    cell = image_size // grid
    n = split_size(split, options.size) if limit is None else min(split_size(split, options.size), limit)
    for i in range(n):
        rng = rng_for(NAME, split, seed, i)
        img = Image.new("RGB", (image_size, image_size), (255, 255, 255))
        draw = ImageDraw.Draw(img)
        shapes = []
        for c in rng.sample(range(grid * grid), rng.randint(min_count, max_count)):
            s = rng.randint(int(cell * 0.45), int(cell * 0.8))
            x0 = (c % grid) * cell + rng.randint(1, cell - s - 1)
            y0 = (c // grid) * cell + rng.randint(1, cell - s - 1)
            kind, color = rng.choice(kind_names), rng.choice(color_names)
            draw_shape(draw, kind, (x0, y0, x0 + s - 1, y0 + s - 1), COLORS[color])
            shapes.append({"kind": kind, "color": color, "box": [x0, y0, x0 + s - 1, y0 + s - 1]})
        qtype = rng.choice(qtypes)
        if qtype == "kind":
            target = rng.choice(kind_names)
            what, count = f"{target}s", sum(s["kind"] == target for s in shapes)
        elif qtype == "color":
            target = rng.choice(color_names)
            what, count = f"{target} shapes", sum(s["color"] == target for s in shapes)
        else:
            what, count = "shapes", len(shapes)
        yield Record(id=f"{NAME}/{split}/{i}", prompt=user_prompt(PROMPT.format(what=what)), answer=str(count),
                     images=[png(img)], verifier=VERIFIER, domain=DOMAIN, source=SOURCE, split=split,
                     meta={"question_type": qtype, "shapes": shapes})

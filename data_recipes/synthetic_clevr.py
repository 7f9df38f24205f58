"""CLEVR-like scenes in 2D: "How many red cubes are left of the large sphere?"

Cubes, spheres and cylinders of two sizes and a few colors are drawn with simple shading on a gray
floor. Objects never overlap, and any two centres differ by at least `min_gap` pixels both across and
down, so "left of", "right of", "in front of" (lower in the image) and "behind" are never ambiguous.
The reference object in a relational question is named by the fewest attributes that single it out.

Check it:  sapo-vl recipe check synthetic_clevr
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from PIL import Image, ImageDraw

from sapo_vl.data.record import Record, user_prompt
from sapo_vl.data.synth import COLORS, png, rng_for, split_size

NAME = "synthetic_clevr"
DOMAIN = "reasoning"
SOURCE = "synthetic:clevr"
VERIFIER = "count"
DESCRIPTION = "CLEVR-like counting with attributes and spatial relations on 2D-drawn cubes, spheres, cylinders."
PROMPT = "{question} Answer with a single number."
SPLITS = ("train", "test")
SHAPES = ("cube", "sphere", "cylinder")
SIZES = {"small": 14, "large": 22}  # half-width in pixels
RELATIONS = {"left of": lambda o, r: o["x"] < r["x"], "right of": lambda o, r: o["x"] > r["x"],
             "in front of": lambda o, r: o["y"] > r["y"], "behind": lambda o, r: o["y"] < r["y"]}


def _shade(rgb: tuple, k: float) -> tuple:
    return tuple(max(0, min(255, int(c * k))) for c in rgb)


def draw_object(draw: ImageDraw.ImageDraw, o: dict) -> None:
    """A flat-shaded cube (front face + top + side), sphere (disc + highlight) or cylinder (body + top)."""
    x, y, r, rgb = o["x"], o["y"], SIZES[o["size"]], COLORS[o["color"]]
    if o["shape"] == "cube":
        d = r // 2
        draw.polygon([(x - r, y - r), (x - r + d, y - r - d), (x + r + d, y - r - d), (x + r, y - r)],
                     fill=_shade(rgb, 1.25))
        draw.polygon([(x + r, y - r), (x + r + d, y - r - d), (x + r + d, y + r - d), (x + r, y + r)],
                     fill=_shade(rgb, 0.7))
        draw.rectangle([x - r, y - r, x + r, y + r], fill=rgb)
    elif o["shape"] == "sphere":
        draw.ellipse([x - r, y - r, x + r, y + r], fill=rgb)
        h = r // 3
        draw.ellipse([x - r // 2 - h, y - r // 2 - h, x - r // 2 + h, y - r // 2 + h], fill=_shade(rgb, 1.3))
    else:
        e = r // 3
        draw.rectangle([x - r, y - r, x + r, y + r], fill=rgb)
        draw.ellipse([x - r, y + r - e, x + r, y + r + e], fill=rgb)
        draw.ellipse([x - r, y - r - e, x + r, y - r + e], fill=_shade(rgb, 1.3))


def describe(o: dict, attrs: tuple[str, ...]) -> str:
    """Noun phrase for object `o` using `attrs` among size, color, shape ("large red cube", "red object")."""
    words = [o[a] for a in ("size", "color") if a in attrs]
    return " ".join(words + [o["shape"] if "shape" in attrs else "object"])


def unique_name(o: dict, objects: list[dict]) -> str | None:
    """The shortest description that matches `o` alone in the scene, or None."""
    for attrs in (("shape",), ("color", "shape"), ("size", "shape"), ("size", "color", "shape")):
        if sum(all(p[a] == o[a] for a in attrs) for p in objects) == 1:
            return describe(o, attrs)
    return None


@dataclass(frozen=True)
class Options:
    """The knobs of the generator (`-o key=value`)."""

    size: int | None = None
    """Records in the split (default 1000 train / 200 test)."""
    min_objects: int = 3
    """Fewest objects per scene (fewer if they do not fit)."""
    max_objects: int = 6
    """Most objects per scene."""
    colors: int = 4
    """Palette size."""
    relations: float = 0.5
    """Fraction of questions with a spatial relation to a reference object (harder)."""
    width: int = 320
    """Canvas width in pixels (a multiple of 32: no resize)."""
    height: int = 256
    """Canvas height in pixels (a multiple of 32: no resize)."""
    min_gap: int = 8
    """Least x and y distance between two object centres."""


def records(split: str = "train", *, seed: int = 0, limit: int | None = None, root: Path | None = None,
            options: Options = Options()) -> Iterator[Record]:
    """Records of `split`, drawn with `options`."""
    width, height, min_gap = options.width, options.height, options.min_gap
    palette = list(COLORS)[:options.colors]
    n = split_size(split, options.size) if limit is None else min(split_size(split, options.size), limit)
    for i in range(n):
        rng = rng_for(NAME, split, seed, i)
        objects: list[dict] = []
        want = rng.randint(options.min_objects, options.max_objects)
        for _ in range(200 * want):
            if len(objects) == want:
                break
            o = {"shape": rng.choice(SHAPES), "color": rng.choice(palette), "size": rng.choice(list(SIZES))}
            r = SIZES[o["size"]] * 1.5  # room for the cube's top and side faces
            o["x"], o["y"] = rng.randint(int(r) + 2, width - int(r) - 2), rng.randint(int(r) + 2, height - int(r) - 2)
            if all(math.hypot(o["x"] - p["x"], o["y"] - p["y"]) > r + SIZES[p["size"]] * 1.5 + 4
                   and abs(o["x"] - p["x"]) >= min_gap and abs(o["y"] - p["y"]) >= min_gap for p in objects):
                objects.append(o)
        img = Image.new("RGB", (width, height), (205, 205, 200))
        draw = ImageDraw.Draw(img)
        for o in sorted(objects, key=lambda o: o["y"]):  # back to front
            draw_object(draw, o)
        # Filter: the attributes of a random object (so the answer is often > 0), a random subset of them.
        pick = rng.choice(objects)
        attrs = tuple(a for a in ("size", "color", "shape") if rng.random() < 0.5) or ("shape",)
        match = [o for o in objects if all(o[a] == pick[a] for a in attrs)]
        phrase = describe(pick, attrs) + "s"
        refs = [(o, unique_name(o, objects)) for o in objects]
        refs = [(o, name) for o, name in refs if name]
        if refs and rng.random() < options.relations:
            ref, ref_name = rng.choice(refs)
            rel = rng.choice(list(RELATIONS))
            match = [o for o in match if o is not ref and RELATIONS[rel](o, ref)]
            question = f"How many {phrase} are {rel} the {ref_name}?"
        else:
            question = f"How many {phrase} are there?"
        yield Record(id=f"{NAME}/{split}/{i}", prompt=user_prompt(PROMPT.format(question=question)),
                     answer=str(len(match)), images=[png(img)], verifier=VERIFIER, domain=DOMAIN, source=SOURCE,
                     split=split, meta={"question": question, "objects": objects})

"""Geometry figures with labelled sides and angles, Geometry3K style: the numbers are only in the figure.

Problems: hypotenuse or missing leg of a right triangle, rectangle area or diagonal, third angle of a
triangle, area or circumference of a circle (its radius or diameter given). Figures are drawn to scale,
turned and mirrored at random. Answers are numbers or exact expressions in the form the `math` verifier
parses: `13`, `5\\sqrt{2}`, `\\sqrt{34}`, `49\\pi`.

Check it:  sapo-vl recipe check synthetic_geometry
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from PIL import Image, ImageDraw

from sapo_vl.data.record import Record, user_prompt
from sapo_vl.data.synth import font, png, rng_for, split_size

NAME = "synthetic_geometry"
DOMAIN = "math"
SOURCE = "synthetic:geometry"
VERIFIER = "math"
DESCRIPTION = "Labelled triangles, rectangles and circles; find a side, angle, area or length (exact answers)."
PROMPT = "{question} Give the exact answer."
SPLITS = ("train", "test")
PROBLEMS = ("hypotenuse", "leg", "rect_area", "rect_diagonal", "angle", "circle_area", "circumference")
W, H = 320, 256
INK = (0, 0, 0)
LETTERS = ("x", "y", "z", "a", "b", "m", "n", "t")


def sqrt_form(n: int) -> str:
    """sqrt(n) in simplest radical form: 50 -> 5\\sqrt{2}, 34 -> \\sqrt{34}, 49 -> 7."""
    k = max(d for d in range(1, math.isqrt(n) + 1) if n % (d * d) == 0)
    m = n // (k * k)
    return str(k) if m == 1 else (rf"\sqrt{{{m}}}" if k == 1 else rf"{k}\sqrt{{{m}}}")


def fit(points: list[tuple[float, float]], turn: float, mirror: bool, margin: int = 40) -> list[tuple[float, float]]:
    """Rotate points (y up) by `turn` radians, mirror them if asked, then scale and centre them into the
    canvas (y down), keeping the aspect ratio."""
    c, s_ = math.cos(turn), math.sin(turn)
    pts = [((-x if mirror else x) * c - y * s_, (-x if mirror else x) * s_ + y * c) for x, y in points]
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    s = min((W - 2 * margin) / (max(xs) - min(xs) or 1), (H - 2 * margin) / (max(ys) - min(ys) or 1))
    cx, cy = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2
    return [(W / 2 + (x - cx) * s, H / 2 - (y - cy) * s) for x, y in pts]


def toward(p: tuple, q: tuple, d: float) -> tuple[float, float]:
    """The point `d` pixels from p in the direction of q."""
    n = math.hypot(q[0] - p[0], q[1] - p[1]) or 1
    return p[0] + d * (q[0] - p[0]) / n, p[1] + d * (q[1] - p[1]) / n


def label(draw: ImageDraw.ImageDraw, p: tuple, q: tuple, text: str, away: tuple) -> None:
    """Write `text` at the midpoint of segment pq, pushed 14 px away from the point `away`."""
    mid = ((p[0] + q[0]) / 2, (p[1] + q[1]) / 2)
    draw.text(toward(mid, (2 * mid[0] - away[0], 2 * mid[1] - away[1]), 14), text, fill=(200, 0, 0),
              font=font(16), anchor="mm")


def polygon(draw: ImageDraw.ImageDraw, pts: list[tuple]) -> None:
    draw.line(pts + [pts[0]], fill=INK, width=2)


def make(problem: str, rng, max_side: int, radicals: bool) -> tuple[Image.Image, str, str, dict]:
    """(image, question, answer, meta) for one problem; the figure is turned and mirrored at random and
    the unknown gets a random letter, so the same numbers rarely give the same picture and question."""
    img = Image.new("RGB", (W, H), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    turn, mirror, var = rng.uniform(0, 2 * math.pi), rng.random() < 0.5, rng.choice(LETTERS)
    if problem in ("hypotenuse", "leg"):
        while True:  # the "leg" problem labels the hypotenuse in the figure, so it needs an integer one
            a, b = rng.randint(2, max_side), rng.randint(2, max_side)
            integer = math.isqrt(a * a + b * b) ** 2 == a * a + b * b
            if integer or (radicals and problem == "hypotenuse"):
                break
        C, A, B = fit([(0, 0), (a, 0), (0, b)], turn, mirror)  # right angle at C
        polygon(draw, [C, A, B])
        u, v = toward(C, A, 12), toward(C, B, 12)
        draw.line([u, (u[0] + v[0] - C[0], u[1] + v[1] - C[1]), v], fill=INK)
        g = ((C[0] + A[0] + B[0]) / 3, (C[1] + A[1] + B[1]) / 3)
        c = sqrt_form(a * a + b * b)
        meta = {"legs": [a, b], "points": [C, A, B]}
        if problem == "hypotenuse":
            label(draw, C, A, str(a), g), label(draw, C, B, str(b), g), label(draw, A, B, var, g)
            return img, f"Find {var}, the length of the hypotenuse.", c, meta
        label(draw, C, A, str(a), g), label(draw, C, B, var, g), label(draw, A, B, c, g)
        return img, f"Find {var}.", str(b), {**meta, "hypotenuse": int(c)}
    if problem in ("rect_area", "rect_diagonal"):
        while True:
            w, h = rng.randint(2, max_side), rng.randint(2, max_side)
            integer = math.isqrt(w * w + h * h) ** 2 == w * w + h * h
            if w != h and (integer or radicals or problem == "rect_area"):
                break
        P = fit([(0, 0), (w, 0), (w, h), (0, h)], turn, mirror)
        polygon(draw, P)
        centre = ((P[0][0] + P[2][0]) / 2, (P[0][1] + P[2][1]) / 2)
        label(draw, P[0], P[1], str(w), centre), label(draw, P[1], P[2], str(h), centre)
        meta = {"sides": [w, h], "points": P}
        if problem == "rect_area":
            return img, "Find the area of the rectangle.", str(w * h), meta
        draw.line([P[0], P[2]], fill=INK, width=2)
        label(draw, P[0], P[2], var, P[1])
        return img, f"Find {var}, the length of the diagonal.", sqrt_form(w * w + h * h), meta
    if problem == "angle":
        A, B = rng.randint(25, 100), rng.randint(25, 100)
        while A + B > 150:
            B = rng.randint(25, 100)
        L = math.sin(math.radians(B)) / math.sin(math.radians(A + B))  # base 1, side from vertex A (law of sines)
        P = fit([(0, 0), (1, 0), (L * math.cos(math.radians(A)), L * math.sin(math.radians(A)))], turn, mirror)
        polygon(draw, P)
        g = (sum(p[0] for p in P) / 3, sum(p[1] for p in P) / 3)
        for p, deg, text in zip(P, (A, B, 180 - A - B), (f"{A}°", f"{B}°", f"{var}°")):
            d = min(60, max(26, 13 / math.sin(math.radians(deg / 2))))  # room between the sides for the text
            draw.text(toward(p, g, d), text, fill=(200, 0, 0), font=font(15), anchor="mm")
        return img, f"Find {var}.", str(180 - A - B), {"angles": [A, B], "points": P}
    r, R = rng.randint(2, max_side), rng.randint(60, 110)
    cx, cy = W / 2 + rng.randint(-30, 30), H / 2 + rng.randint(-5, 5)
    end = (cx + R * math.cos(turn), cy - R * math.sin(turn))
    start = (2 * cx - end[0], 2 * cy - end[1]) if mirror else (cx, cy)  # mirror: label the diameter instead
    draw.ellipse([cx - R, cy - R, cx + R, cy + R], outline=INK, width=2)
    draw.line([start, end], fill=INK, width=2)
    draw.ellipse([cx - 3, cy - 3, cx + 3, cy + 3], fill=INK)
    label(draw, start, end, str(2 * r if mirror else r), (cx + R * math.cos(turn - 1), cy - R * math.sin(turn - 1)))
    meta = {"radius": r, "given": "diameter" if mirror else "radius", "points": [start, end]}
    if problem == "circle_area":
        return img, "Find the area of the circle. Leave your answer in terms of \\pi.", rf"{r * r}\pi", meta
    return img, "Find the circumference of the circle. Leave your answer in terms of \\pi.", rf"{2 * r}\pi", meta


@dataclass(frozen=True)
class Options:
    """The knobs of the generator (`-o key=value`)."""

    size: int | None = None
    """Records in the split (default 1000 train / 200 test)."""
    problems: str = ",".join(PROBLEMS)
    """Comma-separated subset of PROBLEMS, drawn uniformly."""
    max_side: int = 12
    """Largest side length or radius (integers from 2)."""
    radicals: bool = True
    """Allow answers like 5\\sqrt{2}; False keeps every answer an integer or a multiple of pi."""


def records(split: str = "train", *, seed: int = 0, limit: int | None = None, root: Path | None = None,
            options: Options = Options()) -> Iterator[Record]:
    """Records of `split`, drawn with `options`."""
    chosen = [p.strip() for p in options.problems.split(",") if p.strip()]
    if not chosen or set(chosen) - set(PROBLEMS):
        raise ValueError(f"problems must be a comma-separated subset of {','.join(PROBLEMS)}")
    if options.max_side < 4:  # legs (3, 4) make the smallest right triangle with an integer hypotenuse
        raise ValueError("max_side must be at least 4")
    n = split_size(split, options.size) if limit is None else min(split_size(split, options.size), limit)
    for i in range(n):
        rng = rng_for(NAME, split, seed, i)
        problem = rng.choice(chosen)
        img, question, answer, meta = make(problem, rng, options.max_side, options.radicals)
        yield Record(id=f"{NAME}/{split}/{i}", prompt=user_prompt(PROMPT.format(question=question)), answer=answer,
                     images=[png(img)], verifier=VERIFIER, domain=DOMAIN, source=SOURCE, split=split,
                     meta={"problem": problem, "question": question, **meta})

"""Charts drawn with PIL: bar, line and pie; questions on a value, the largest / smallest item, a difference.

Numeric answers use the `numeric` verifier (ChartQA's relaxed accuracy: 5% relative tolerance); label
answers ("which year / fruit is highest") use `exact`, since 5% of a year would accept the wrong year.
Values are distinct, so "which is highest" has one answer. With `show_values` the numbers are printed
on the chart (reading); without, they must be estimated from the axis or the slice angle (harder, and
the 5% tolerance matters).

Check it:  sapo-vl recipe check synthetic_chart
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from PIL import Image, ImageDraw

from sapo_vl.data.record import Record, user_prompt
from sapo_vl.data.synth import COLORS, font, png, rng_for, split_size

NAME = "synthetic_chart"
DOMAIN = "chart"
SOURCE = "synthetic:chart"
VERIFIER = "numeric"
DESCRIPTION = "Bar / line / pie charts; read a value, find the largest or smallest, take a difference."
PROMPT = "{question} Answer with a single number or label."
SPLITS = ("train", "test")
LABELS = ("Apples", "Pears", "Plums", "Grapes", "Lemons", "Kiwis", "Mangos", "Figs")
W, H, LEFT, RIGHT, TOP, BOTTOM = 384, 288, 44, 16, 28, 36  # canvas and plot margins, pixels


def _fmt(v: float, decimals: int) -> str:
    return f"{v:.{decimals}f}"


def _axes(draw: ImageDraw.ImageDraw, top: float, title: str) -> None:
    """Title, y axis with 5 gridlines from 0 to `top`, and the x axis."""
    f = font(12)
    draw.text((W // 2, 4), title, fill=(0, 0, 0), font=font(14), anchor="ma")
    for k in range(6):
        v = top * k / 5
        y = H - BOTTOM - (H - BOTTOM - TOP) * k / 5
        draw.line([(LEFT, y), (W - RIGHT, y)], fill=(225, 225, 225))
        draw.text((LEFT - 4, y), f"{v:g}", fill=(60, 60, 60), font=f, anchor="rm")
    draw.line([(LEFT, TOP), (LEFT, H - BOTTOM), (W - RIGHT, H - BOTTOM)], fill=(0, 0, 0))


def _y(v: float, top: float) -> float:
    return H - BOTTOM - (H - BOTTOM - TOP) * v / top


def draw_chart(kind: str, labels: list[str], values: list[float], show_values: bool, decimals: int) -> tuple:
    """The chart image and geometry for tests: bar centres, line points or the pie box."""
    img = Image.new("RGB", (W, H), (255, 255, 255))
    draw, f = ImageDraw.Draw(img), font(12)
    colors = [COLORS[c] for c in list(COLORS)[: len(labels)]]
    geometry: dict = {}
    if kind == "pie":
        draw.text((W // 2, 4), "Share of sales (%)", fill=(0, 0, 0), font=font(14), anchor="ma")
        box = (20, 40, 240, 260)
        start = -90.0
        for v, c in zip(values, colors):
            draw.pieslice(box, start, start + 360 * v / 100, fill=c)
            start += 360 * v / 100
        for k, (lab, v, c) in enumerate(zip(labels, values, colors)):
            y = 60 + 26 * k
            draw.rectangle([256, y, 270, y + 14], fill=c)
            text = f"{lab} {_fmt(v, decimals)}%" if show_values else lab
            draw.text((276, y + 7), text, fill=(0, 0, 0), font=f, anchor="lm")
        return img, {"pie_box": box}
    top = 10 * math.ceil(max(values) * 1.15 / 10)
    _axes(draw, top, "Sales by fruit" if kind == "bar" else "Sales per year")
    step = (W - LEFT - RIGHT) / len(labels)
    xs = [LEFT + step * (k + 0.5) for k in range(len(labels))]
    for x, lab in zip(xs, labels):
        draw.text((x, H - BOTTOM + 6), lab, fill=(0, 0, 0), font=f, anchor="ma")
    if kind == "bar":
        half = step * 0.3
        for x, v, c in zip(xs, values, colors):
            draw.rectangle([round(x - half), round(_y(v, top)), round(x + half), H - BOTTOM - 1], fill=c)
        geometry = {"x": [round(x) for x in xs], "axis_top": top}
    else:
        pts = [(x, _y(v, top)) for x, v in zip(xs, values)]
        draw.line(pts, fill=COLORS["blue"], width=2)
        for x, y in pts:
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=COLORS["blue"])
        geometry = {"points": [(round(x), round(y)) for x, y in pts], "axis_top": top}
    if show_values:
        for x, v in zip(xs, values):
            draw.text((x, _y(v, top) - 6), _fmt(v, decimals), fill=(0, 0, 0), font=f, anchor="mb")
    return img, geometry


@dataclass(frozen=True)
class Options:
    """The knobs of the generator (`-o key=value`)."""

    size: int | None = None
    """Records in the split (default 1000 train / 200 test)."""
    kinds: str = "bar,line,pie"
    """Comma-separated chart kinds drawn uniformly (bar, line, pie)."""
    min_items: int = 3
    """Fewest bars / points / slices per chart."""
    max_items: int = 6
    """Most bars / points / slices per chart (at most 8)."""
    max_value: int = 90
    """Values lie in [5, max_value] (pie: percentages summing to 100)."""
    decimals: int = 0
    """Decimals in values and answers."""
    show_values: bool = True
    """Print the values on the chart."""


def records(split: str = "train", *, seed: int = 0, limit: int | None = None, root: Path | None = None,
            options: Options = Options()) -> Iterator[Record]:
    """Records of `split`, drawn with `options`."""
    min_items, max_items, decimals = options.min_items, options.max_items, options.decimals
    kind_list = [k.strip() for k in options.kinds.split(",") if k.strip()]
    if not kind_list or set(kind_list) - {"bar", "line", "pie"} or not 2 <= min_items <= max_items <= 8:
        raise ValueError("kinds must be a subset of bar,line,pie and 2 <= min_items <= max_items <= 8")
    n = split_size(split, options.size) if limit is None else min(split_size(split, options.size), limit)
    scale = 10 ** decimals
    for i in range(n):
        rng = rng_for(NAME, split, seed, i)
        kind, k = rng.choice(kind_list), rng.randint(min_items, max_items)
        if kind == "line":
            start = rng.randint(2000, 2018)
            labels = [str(start + j) for j in range(k)]
        else:
            labels = rng.sample(LABELS, k)
        if kind == "pie":  # distinct percentages summing to 100
            while True:
                cuts = sorted(rng.sample(range(1, 100 * scale), k - 1))
                values = [(b - a) / scale for a, b in zip([0] + cuts, cuts + [100 * scale])]
                if len(set(values)) == k and min(values) >= 3:
                    break
        else:
            values = [v / scale for v in rng.sample(range(5 * scale, options.max_value * scale + 1), k)]
        img, geometry = draw_chart(kind, labels, values, options.show_values, decimals)
        qtype = rng.choice(["value", "max", "min", "diff"])
        a, b = rng.sample(range(k), 2)
        la, lb = labels[a], labels[b]
        if qtype == "value":
            question = {"bar": f"What is the value of {la}?", "line": f"What is the value in {la}?",
                        "pie": f"What percentage of sales is {la}?"}[kind]
            answer = _fmt(values[a], decimals)
        elif qtype == "diff":
            question = {"bar": f"What is the difference between the values of {la} and {lb}?",
                        "line": f"What is the difference between the values in {la} and {lb}?",
                        "pie": f"By how many percentage points do {la} and {lb} differ?"}[kind]
            answer = _fmt(abs(values[a] - values[b]), decimals)
        else:
            pick, word = (max, "highest") if qtype == "max" else (min, "lowest")
            question = f"Which {'year' if kind == 'line' else 'fruit'} has the {word} value?"
            answer = labels[pick(range(k), key=values.__getitem__)]
        verifier = VERIFIER if qtype in ("value", "diff") else "exact"  # a year is a label, not a quantity
        yield Record(id=f"{NAME}/{split}/{i}", prompt=user_prompt(PROMPT.format(question=question)), answer=answer,
                     images=[png(img)], verifier=verifier, domain=DOMAIN, source=SOURCE, split=split,
                     meta={"kind": kind, "labels": labels, "values": values, "question_type": qtype, **geometry})

"""Dominant color, reasoned: a short `<think>` that names the colors seen, then `<answer>color</answer>`.

`synthetic_color`'s pictures (a background in the answer color, `patches` rectangles of other colors), with a
prompt that asks for reasoning first. Each record carries a worked response in `meta["response"]`, e.g.

    <think>the image is red with blue and green; the largest color is red</think><answer>red</answer>

(about 30 tokens with the tiny model's tokenizer), which `sapo-vl sft` trains on to make a cold-start policy
that answers in format; the verifier scores only the color inside `<answer>`. The think part names every
color in the picture, so its tokens depend on the image as the answer does, and per-token ratios can differ
within a response (SAPO's token-level gate against GSPO's sequence-level one).

Check it:  sapo-vl recipe check synthetic_color_think
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from PIL import Image, ImageDraw

from sapo_vl.data.record import Record, user_prompt
from sapo_vl.data.synth import COLORS, png, rng_for, split_size

NAME = "synthetic_color_think"
DOMAIN = "reasoning"
SOURCE = "synthetic:color_think"
VERIFIER = "exact"
DESCRIPTION = "Dominant color with a short reasoning: <think>colors seen</think><answer>color</answer>."
PROMPT = "Which color covers most of the image? Reason in <think></think>, then answer in <answer></answer>."
RESPONSE = "<think>the image is {answer} with {others}; the largest color is {answer}</think><answer>{answer}</answer>"
SPLITS = ("train", "test")


def _listing(names: list[str]) -> str:
    """"blue", "blue and green", "blue, green and cyan"."""
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


@dataclass(frozen=True)
class Options:
    """The knobs of the generator (`-o key=value`)."""

    size: int | None = None
    """Records in the split (default 1000 train / 200 test)."""
    n_colors: int = 6
    """Palette size, 2..8 (the first n of sapo_vl.data.synth.COLORS)."""
    image_size: int = 64
    """Side of the square image in pixels (64 = 4 image tokens for Qwen3-VL)."""
    dominance: float = 0.5
    """Least fraction of pixels the answer color keeps; lower is harder."""
    patches: int = 2
    """Rectangles of other colors drawn over the background, 1..n_colors - 1 (each named in the think part)."""


def records(split: str = "train", *, seed: int = 0, limit: int | None = None, root: Path | None = None,
            options: Options = Options()) -> Iterator[Record]:
    """Records of `split`, drawn with `options`."""
    n_colors, image_size, dominance, patches = options.n_colors, options.image_size, options.dominance, options.patches
    names = list(COLORS)[:n_colors]
    if not 2 <= n_colors <= len(COLORS) or not 1 <= patches <= n_colors - 1:
        raise ValueError(f"need 2 <= n_colors <= {len(COLORS)} and 1 <= patches <= n_colors - 1")
    if dominance <= 1 / (patches + 1):
        raise ValueError(f"dominance {dominance} must exceed 1/(patches+1) so the answer stays the majority")
    question = PROMPT
    n = split_size(split, options.size) if limit is None else min(split_size(split, options.size), limit)
    for i in range(n):
        rng = rng_for(NAME, split, seed, i)
        answer = rng.choice(names)
        img = Image.new("RGB", (image_size, image_size), COLORS[answer])
        draw = ImageDraw.Draw(img)
        others = rng.sample([c for c in names if c != answer], patches)
        budget = (1 - dominance) / patches * image_size * image_size  # pixels per patch, at most
        for color in others:
            w = rng.randint(image_size // 4, image_size // 2)
            h = max(1, min(image_size // 2, int(budget // w)))
            x, y = rng.randint(0, image_size - w), rng.randint(0, image_size - h)
            draw.rectangle([x, y, x + w - 1, y + h - 1], fill=COLORS[color])
        response = RESPONSE.format(answer=answer, others=_listing(others))
        yield Record(id=f"{NAME}/{split}/{i}", prompt=user_prompt(question), answer=answer, images=[png(img)],
                     verifier=VERIFIER, verifier_params={"tags_only": True}, domain=DOMAIN, source=SOURCE,
                     split=split, meta={"palette": names, "patches": others, "response": response})

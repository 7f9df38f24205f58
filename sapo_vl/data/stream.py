"""The training prompt stream: a weighted mix of recipes (or a built dataset), sharded across ranks.

Item k of the global stream comes from recipe i with probability weight_i (a seeded draw per item), and takes the
next record of that recipe's shuffled order; rank r keeps the items k ≡ r (mod world). The stream's whole state
is (k, cursors), saved in checkpoints, so a resumed run draws exactly the prompts an uninterrupted one would.

Records whose images cannot be used, or whose prompt (image tokens included) is longer than
`data.max_prompt_tokens`, are skipped and counted, never cut through their image tokens, never fatal.
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

from PIL import Image

from ..config import DataConfig, ModelConfig
from .images import BadImage, ImageConfig, load_image
from .record import Record


@dataclass
class Prompt:
    record: Record
    images: list[Image.Image]
    tokens: int
    """Prompt length in tokens, image tokens included."""


@dataclass
class StreamStats:
    skipped: Counter = field(default_factory=Counter)
    """Reason → records skipped ("bad_image", "too_long", "encode_error")."""
    examples: list[str] = field(default_factory=list)
    """The first few skipped records, named with their reason."""

    def skip(self, reason: str, record: Record, detail: str) -> None:
        self.skipped[reason] += 1
        if len(self.examples) < 20:
            self.examples.append(f"{record.id}: {reason}: {detail}")


def prompt_tokens(processor, prompt: list[dict], images: list[Image.Image]) -> int:
    """The prompt's length in tokens as the processor will encode it, without processing any pixels.

    The chat template leaves one `<|image_pad|>` per image; the processor expands each into the image's
    patches / merge² tokens (`get_number_of_image_patches` applies the same resize rules).
    """
    text = processor.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    n = len(processor.tokenizer(text, add_special_tokens=False)["input_ids"])
    ip = processor.image_processor
    for im in images:
        w, h = im.size
        n += ip.get_number_of_image_patches(h, w, {}) // ip.merge_size**2 - 1
    return n


def load_pool(data: DataConfig, seed: int) -> list[tuple[str, float, list[Record]]]:
    """(name, weight, records) per source; every record is materialised once (image bytes or paths)."""
    if data.built:
        from .build import load_built

        return [(f"built:{data.built}", 1.0, load_built(data.built))]
    from .recipe import get_recipe

    pool = []
    for spec in data.recipes:
        recipe = get_recipe(spec.name)
        recs = [r for r in recipe.records(spec.split, seed=seed, limit=spec.limit, root=data.root, **spec.options)
                if isinstance(r, Record)]  # a recipe's Skip(id, reason) rows are dropped here
        if not recs:
            raise ValueError(f"data.recipes: recipe {spec.name!r} split {spec.split!r} yielded no records")
        pool.append((spec.name, float(spec.weight), recs))
    return pool


class PromptStream:
    def __init__(self, data: DataConfig, model: ModelConfig, processor, *, seed: int, rank: int, world: int,
                 pool: list[tuple[str, float, list[Record]]] | None = None):
        self.data, self.processor = data, processor
        self.seed, self.rank, self.world = seed, rank, world
        self.pool = pool if pool is not None else load_pool(data, seed)
        self.images = ImageConfig(min_pixels=model.min_pixels, max_pixels=model.max_pixels,
                                  allow_urls=data.allow_urls)
        self.k = 0
        self.cursors = [0] * len(self.pool)
        self.orders = [self._order(i, 0) for i in range(len(self.pool))]
        self.stats = StreamStats()

    def _order(self, i: int, epoch: int) -> list[int]:
        idx = list(range(len(self.pool[i][2])))
        if self.data.shuffle:
            random.Random(f"{self.seed}/{self.pool[i][0]}/{epoch}").shuffle(idx)
        return idx

    def _draw(self) -> Record:
        """The global stream's next record (every rank advances the same way)."""
        weights = [w for _, w, _ in self.pool]
        i = random.Random(f"{self.seed}/mix/{self.k}").choices(range(len(self.pool)), weights)[0]
        self.k += 1
        recs = self.pool[i][2]
        c = self.cursors[i]
        epoch, pos = divmod(c, len(recs))
        if pos == 0 and epoch > 0:
            self.orders[i] = self._order(i, epoch)
        self.cursors[i] = c + 1
        return recs[self.orders[i][pos]]

    def _prepare(self, rec: Record) -> Prompt | None:
        try:
            images = [load_image(src, self.data.root, self.images, record=rec.id) for src in rec.images]
        except BadImage as err:
            self.stats.skip("bad_image", rec, str(err))
            return None
        try:
            n = prompt_tokens(self.processor, rec.prompt, images)
        except Exception as err:  # a record the processor cannot encode must not end the run
            self.stats.skip("encode_error", rec, f"{type(err).__name__}: {err}")
            return None
        if n > self.data.max_prompt_tokens:
            self.stats.skip("too_long", rec, f"{n} tokens > data.max_prompt_tokens={self.data.max_prompt_tokens}")
            return None
        return Prompt(rec, images, n)

    def next_batch(self, n_global: int, max_draws: int | None = None) -> list[Prompt]:
        """This rank's share of the next `n_global` usable prompts of the global stream."""
        out: list[Prompt] = []
        got = 0
        limit = max_draws or 50 * n_global + 100
        draws = 0
        while got < n_global:
            if draws >= limit:
                raise RuntimeError(
                    f"the prompt stream skipped {draws} records in a row without filling a batch of {n_global}; "
                    f"skipped so far: {dict(self.stats.skipped)}; first: {self.stats.examples[:3]}"
                )
            draws += 1
            rec = self._draw()
            mine = got % self.world == self.rank
            # every rank checks every record so that all ranks agree on which ones are usable
            prompt = self._prepare(rec)
            if prompt is None:
                continue
            if mine:
                out.append(prompt)
            got += 1
        return out

    def state_dict(self) -> dict:
        return {"k": self.k, "cursors": list(self.cursors), "skipped": dict(self.stats.skipped)}

    def load_state_dict(self, state: dict) -> None:
        self.k = int(state["k"])
        self.cursors = list(state["cursors"])
        self.orders = [self._order(i, c // max(1, len(self.pool[i][2]))) for i, c in enumerate(self.cursors)]
        self.stats.skipped = Counter(state.get("skipped", {}))

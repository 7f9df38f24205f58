"""TEMPLATE: a recipe for your own folder of images. Copy it, edit the lines marked EDIT, check it.

    cp data_recipes/_template.py my_recipe.py
    sapo-vl recipe preview ./my_recipe.py --root /data/my_images      # look at what the model will see
    sapo-vl recipe check ./my_recipe.py --root /data/my_images        # every record usable? exit 0 when yes
    sapo-vl recipe build ./my_recipe.py:1 synthetic_color:1 --root /data/my_images --out runs/data/mine

The folder this template reads (`--root`):

    /data/my_images/train.jsonl      one JSON object per line:
                                     {"image": "photos/0001.jpg", "question": "What animal is this?", "answer": "cat"}
    /data/my_images/test.jsonl       same, for the test split (optional)
    /data/my_images/photos/0001.jpg  image paths are relative to the folder and may not leave it

Rules of the game:
- Yield image *paths* (or bytes); do not open images here. Build and check open them through the image
  pipeline (confined to --root, EXIF, RGB, resize) and skip a bad one with its reason.
- Yield `Skip(id, reason)` for a row you cannot use: it is counted and named in the summaries.
- Ids must be unique and stable: "<NAME>/<split>/<row number>".
- Options are the keyword arguments after `root`, with defaults; pass them with `-o key=value`. A recipe
  with many knobs puts them in an `Options` dataclass instead (see synthetic_color.py).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from sapo_vl.data.recipe import Skip
from sapo_vl.data.record import Record, user_prompt

NAME = "my_images"  # EDIT: shipped recipes use their file name
DOMAIN = "reasoning"  # EDIT: math | chart | reasoning
SOURCE = "local:my_images"  # EDIT: where the data comes from
VERIFIER = "exact"  # EDIT: exact | choice | numeric | count | math (see sapo_vl.verifiers.VERIFIERS)
DESCRIPTION = "Questions about my own images, from <root>/<split>.jsonl."  # EDIT
PROMPT = "{question} Answer with a single word."  # EDIT: the template every prompt is made from
SPLITS = ("train", "test")


def records(split: str = "train", *, seed: int = 0, limit: int | None = None, root: Path | None = None,
            lowercase: bool = True) -> Iterator[Record | Skip]:
    """Rows of <root>/<split>.jsonl as records (`seed` unused: a folder has one order).

    lowercase: lowercase the answers (EDIT: an example option; add your own the same way).
    """
    if root is None:
        raise ValueError("this recipe reads a folder: pass --root /path/to/folder")
    with open(Path(root) / f"{split}.jsonl", "rb") as f:
        for n, line in enumerate(f):
            if limit is not None and n >= limit:
                return
            rid = f"{NAME}/{split}/{n}"
            try:
                row = json.loads(line.decode("utf-8"))  # a line that is not UTF-8 becomes a Skip, not mojibake
                image, question, answer = row["image"], row["question"], str(row["answer"])  # EDIT: your field names
            except (ValueError, KeyError, TypeError) as e:
                yield Skip(rid, f"line {n + 1}: {type(e).__name__}: {e}")
                continue
            yield Record(id=rid, prompt=user_prompt(PROMPT.format(question=question)),
                         answer=answer.lower() if lowercase else answer, images=[image], verifier=VERIFIER,
                         domain=DOMAIN, source=SOURCE, split=split, meta={"line": n + 1})

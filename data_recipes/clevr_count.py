"""CLEVR counting (BUAADreamer/clevr_count_70k): how many objects are in a rendered CLEVR scene?

Source schema, one row: `images` (a list holding the scene), `problem` ("How many items are there in the
image?"), `answer` ("3"). Splits: train 70,000, test 200. The R1-V training set
`leonardPKU/clevr_cogen_a_train` (train only) reads too: it has `image` and `solution`
("<answer> 3 </answer>"), whose tags are stripped.

Check it:  sapo-vl recipe check clevr_count -o path=/data/clevr_count_70k
Build it:  sapo-vl recipe build clevr_count --out runs/data/clevr --limit 5000
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from sapo_vl.data.recipe import Skip
from sapo_vl.data.record import Record
from sapo_vl.data.sources import (BadRow, cell_text, image_entry, interleaved_prompt, load_rows, rows_to_records,
                                  source_dir)

NAME = "clevr_count"
DOMAIN = "reasoning"
SOURCE = "BUAADreamer/clevr_count_70k"
VERIFIER = "count"
DESCRIPTION = "CLEVR scenes: count the objects; an integer answer (count verifier)."
PROMPT = "{question}\nThink step by step, then give the number inside <answer></answer>."
SPLITS = ("train", "test")


def records(split: str = "train", *, seed: int = 0, limit: int | None = None, root: Path | None = None,
            path: str | None = None) -> Iterator[Record | Skip]:
    """The rows of `split` in source order (`seed` unused).

    path: hub id or local copy (the repository folder, a parquet or jsonl file); default `root`, else SOURCE.
    """
    src = path or root or SOURCE
    base = source_dir(src)

    def to_record(row: dict, rid: str) -> Record:
        raw = row.get("answer") if "answer" in row else re.sub(r"</?answer>", "", str(row.get("solution") or ""))
        answer = cell_text({"answer": raw}, "answer")
        if not re.fullmatch(r"\d+", answer):
            raise BadRow(f"answer is not a count: {answer[:40]!r}")
        cells = row["images"] if "images" in row else [row.get("image")]
        images = {str(i + 1): image_entry(cell, base=base, root=root) for i, cell in enumerate(cells or [])}
        if not images:
            raise BadRow("missing image")
        prompt, slots = interleaved_prompt(PROMPT.format(question=cell_text(row, "problem")), images)
        return Record(id=rid, prompt=prompt, answer=answer, images=slots, verifier=VERIFIER, domain=DOMAIN,
                      source=str(src), split=split)

    return rows_to_records(load_rows(src, split, limit=limit), to_record, name=NAME, split=split)

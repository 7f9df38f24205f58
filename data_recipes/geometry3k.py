"""Geometry3K (hiyouga/geometry3k): a geometry problem on a diagram; free-form answers checked by `math`.

The real-data recipe to copy: read rows with `load_rows`, turn one row into a Record, raise `BadRow` for a
row you cannot use (it becomes a counted Skip), and let `rows_to_records` do the rest.

Source schema, one row: `images` (a list holding the diagram), `problem` (text opening with "<image>"),
`answer` ("3", "2\\sqrt{221}", "\\frac{40}{3}"); the current version also has `id`, `choices` (four option
texts) and `ground_truth` (their letter), kept in meta. Splits: train 2101, validation 300, test 601.

Check it:  sapo-vl recipe check geometry3k -o path=/data/geometry3k   (a local copy: the repo folder or a parquet)
Build it:  sapo-vl recipe build geometry3k --out runs/data/geo3k     (from the hub; needs the network)
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from sapo_vl.data.recipe import Skip
from sapo_vl.data.record import Record
from sapo_vl.data.sources import (BadRow, cell_text, image_entry, interleaved_prompt, load_rows, rows_to_records,
                                  source_dir)

NAME = "geometry3k"
DOMAIN = "math"
SOURCE = "hiyouga/geometry3k"
VERIFIER = "math"
DESCRIPTION = "Geometry3K: geometry problems on a diagram, free-form answers (math-verify equivalence)."
PROMPT = "{question}\nThink step by step, then give the final answer inside <answer></answer>."
SPLITS = ("train", "validation", "test")


def records(split: str = "train", *, seed: int = 0, limit: int | None = None, root: Path | None = None,
            path: str | None = None) -> Iterator[Record | Skip]:
    """The rows of `split` in source order (`seed` unused).

    path: hub id or local copy (the repository folder, a parquet or jsonl file); default `root`, else SOURCE.
    """
    src = path or root or SOURCE
    base = source_dir(src)

    def to_record(row: dict, rid: str) -> Record:
        answer = cell_text(row, "answer")
        images = {str(i + 1): image_entry(cell, base=base, root=root) for i, cell in enumerate(row.get("images") or [])}
        if not images:
            raise BadRow("missing image")
        prompt, slots = interleaved_prompt(PROMPT.format(question=cell_text(row, "problem")), images)
        return Record(id=rid, prompt=prompt, answer=answer, images=slots, verifier=VERIFIER, domain=DOMAIN,
                      source=str(src), split=split,
                      meta={"choices": row.get("choices"), "ground_truth": row.get("ground_truth")})

    return rows_to_records(load_rows(src, split, limit=limit), to_record, name=NAME, split=split)

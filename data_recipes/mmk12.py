"""MMK12 (FanqingM/MMK12): K-12 exam questions with a figure, from MM-Eureka.

Source schema, one row: `id`, `subject` ("math", "physics", "chemistry", "biology"), `image`, `question`,
`answer`. Splits: train 15,616 (math, open answers: numbers and expressions), test 2,000 (500 per
subject, multiple choice with the options written into the question as "A. ..." lines, the answer a
letter).

Per row: a single-letter answer -> `choice` (with the option texts read from the question when they can
be; a letter beyond them skips the row); anything else -> `math`.

Check it:  sapo-vl recipe check mmk12 -o path=/data/MMK12
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from sapo_vl.data.recipe import Skip
from sapo_vl.data.record import Record
from sapo_vl.data.sources import (BadRow, cell_text, image_entry, inline_options, interleaved_prompt, load_rows,
                                  rows_to_records, source_dir)

NAME = "mmk12"
DOMAIN = "math"
SOURCE = "FanqingM/MMK12"
VERIFIER = "math"  # multiple-choice rows (the test split) use "choice"
DESCRIPTION = "MMK12: K-12 math (train) and science multiple choice (test) on figures; math / choice per row."
PROMPT = "{question}\nThink step by step, then give the final answer inside <answer></answer>."
SPLITS = ("train", "test")


def records(split: str = "train", *, seed: int = 0, limit: int | None = None, root: Path | None = None,
            path: str | None = None) -> Iterator[Record | Skip]:
    """The rows of `split` in source order (`seed` unused).

    path: hub id or local copy (the repository folder, a parquet or jsonl file); default `root`, else SOURCE.
    """
    src = path or root or SOURCE
    base = source_dir(src)

    def to_record(row: dict, rid: str) -> Record:
        answer, question = cell_text(row, "answer"), cell_text(row, "question")
        image = image_entry(row.get("image"), base=base, root=root)
        if re.fullmatch(r"[A-J]", answer):  # without readable options the letter alone is checked
            options = inline_options(question)
            if options is not None and ord(answer) - ord("A") >= len(options):
                raise BadRow(f"answer {answer!r} is not one of the {len(options)} options")
            verifier, params = "choice", ({"choices": options} if options else {})
        else:
            verifier, params = "math", {}
        prompt, slots = interleaved_prompt(PROMPT.format(question=question), {"1": image})
        return Record(id=rid, prompt=prompt, answer=answer, images=slots, verifier=verifier, verifier_params=params,
                      domain=DOMAIN, source=str(src), split=split, meta={"subject": row.get("subject")})

    return rows_to_records(load_rows(src, split, limit=limit), to_record, name=NAME, split=split)

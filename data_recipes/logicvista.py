"""LogicVista (Yijia-Xiao/LogicVista): 448 visual logic questions (inductive, deductive, numerical, spatial,
mechanical), multiple choice with one or several letters.

Two layouts of the same rows are read:
- the release repository's `data/` folder: `dataset.json` = {"v1_0": {"imagename": "v1_0.png", "question",
  "answer": "C" | "A, C" | "3", "reasoning", "skill": [...], "broad_capability": [...],
  "specific_capability": [...], ...}, ...} with the pictures in `data/images/` (record ids follow the keys);
- a hub copy in parquet, whose `image` column holds the picture itself instead of `imagename`.
LogicVista has one set; `split` is a label ("test").

Prompt: the question, then "Think step by step, then give the letter (or letters, or number) of your choice
inside <answer></answer>.". Per row: one letter -> `choice` (letters up to the last one the question names,
e.g. "A-E"); several letters ("A, C") -> `math` on the tagged answer, which compares them as a set ("C, A"
and "A and C" match); a numbered option ("3") -> `count`. One release row (v1_382) has an empty gold and is
skipped ("empty answer"); the `logicvista` eval task lists it as a data error.

Check it:  sapo-vl recipe check logicvista --text-only -o path=/data/LogicVista/data
"""
from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Iterator

from sapo_vl.data.recipe import Skip
from sapo_vl.data.record import Record, user_prompt
from sapo_vl.data.sources import (SourceError, cell_text, gold_letters, image_entry, load_rows, rows_to_records,
                                  source_dir)

NAME = "logicvista"
DOMAIN = "reasoning"
SOURCE = "https://github.com/Yijia-Xiao/LogicVista (data/)"
VERIFIER = "choice"  # several letters use "math", a number "count"
DESCRIPTION = "LogicVista: visual logic puzzles, multiple choice (one or several letters); local copy only."
PROMPT = ("{question}\nThink step by step, then give the letter (or letters, or number) of your choice "
          "inside <answer></answer>.")
SPLITS = ("test",)
SIZES = {"test": 448}
_RANGE = re.compile(r"\b([A-Z])\s*(?:-|–|to)\s*([A-Z])\b")
_LISTED = re.compile(r"\bor\s+\(?([A-Z])\)?[\s?.)]")


def letters_named(question: str) -> int:
    """How many option letters the question names ("A-E" -> 5, "A, B, C, or D" -> 4); 0 when it names none."""
    ends = [m.group(2) for m in _RANGE.finditer(question)] + [m.group(1) for m in _LISTED.finditer(question + " ")]
    return max((string.ascii_uppercase.index(e) + 1 for e in ends), default=0)


def scoring(answer: str, question: str) -> tuple[str, str, dict]:
    """(verifier, answer as it reads it, params) for one gold."""
    if re.fullmatch(r"\d+", answer):
        return "count", answer, {}
    letters = gold_letters(answer, None)
    if len(letters) > 1:
        return "math", ", ".join(letters), {"tags_only": True}
    n = max(letters_named(question), string.ascii_uppercase.index(letters[0]) + 1, 4)
    return "choice", letters[0], {"num_options": n}


def records(split: str = "test", *, seed: int = 0, limit: int | None = None, root: Path | None = None,
            path: str | None = None) -> Iterator[Record | Skip]:
    """Every question in file order (`seed` unused).

    path: the repository's `data/` folder (or its dataset.json), or a hub copy's folder or parquet file;
        default `root`.
    """
    src = path or root
    if src is None:
        raise SourceError("LogicVista is published on GitHub: git clone https://github.com/Yijia-Xiao/LogicVista "
                          "and pass --data-path LogicVista/data (or a downloaded hub copy's folder)")
    base = source_dir(src)

    def to_record(row: dict, rid: str) -> Record:
        answer, question = cell_text(row, "answer"), cell_text(row, "question")
        cell = row.get("image") if row.get("image") is not None else f"images/{cell_text(row, 'imagename')}"
        image = image_entry(cell, base=base, root=root)
        verifier, answer, params = scoring(answer, question)
        broad = row.get("broad_capability", row.get("capability"))
        return Record(id=rid, prompt=user_prompt(PROMPT.format(question=question)), answer=answer, images=[image],
                      verifier=verifier, verifier_params=params, domain=DOMAIN, source=str(src), split=split,
                      meta={"skill": row.get("skill"), "broad_capability": broad,
                            "specific_capability": row.get("specific_capability"),
                            "imagename": row.get("imagename")})

    return rows_to_records(load_rows(src, split, limit=limit), to_record, name=NAME, split=split)

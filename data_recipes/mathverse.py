"""MathVerse (AI4Math/MathVerse): each diagram problem in up to six versions, from all-text to vision-only.

Source schema, one row: `sample_index`, `problem_index`, `problem_version` ("Text Dominant", "Text Lite",
"Vision Intensive", "Vision Dominant", "Vision Only", ...), `question` (with "Choices:\\nA:..\\nB:.." for
multiple choice; little or nothing for the vision-only version, whose question is in the image),
`image`, `answer` (a letter for multiple choice, else the value), `question_type` ("multi-choice" |
"free-form"), `metadata` (split, source, subject, subfield), `query_wo` / `query_cot` (official prompts),
`question_for_eval`. Config "testmini" (3,940 rows, split "testmini"); "testmini_text_only" has no images.

Per row: multiple choice -> `choice` (option texts when the question spells them out, else letters A-J);
free form -> `math`.

Check it:  sapo-vl recipe check mathverse -o path=/data/MathVerse
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from sapo_vl.data.recipe import Skip
from sapo_vl.data.record import Record, user_prompt
from sapo_vl.data.sources import (BadRow, cell_text, image_entry, inline_options, load_rows, rows_to_records,
                                  source_dir)

NAME = "mathverse"
DOMAIN = "math"
SOURCE = "AI4Math/MathVerse"
VERIFIER = "math"  # free form; multiple-choice rows use "choice"
DESCRIPTION = "MathVerse testmini: diagram math in text-to-vision-only versions; math / choice per row."
PROMPT = "{question}\nThink step by step, then give the final answer inside <answer></answer>."
SPLITS = ("testmini",)
IN_IMAGE = "Answer the question shown in the image."


def records(split: str = "testmini", *, seed: int = 0, limit: int | None = None, root: Path | None = None,
            path: str | None = None, config: str = "testmini") -> Iterator[Record | Skip]:
    """The rows of `split` in source order (`seed` unused).

    path: hub id or local copy (the repository folder, a parquet or jsonl file); default `root`, else SOURCE.
    config: "testmini" (with images) or "testmini_text_only" (text only, no image slot).
    """
    src = path or root or SOURCE
    base = source_dir(src)
    text_only = "text_only" in config

    def to_record(row: dict, rid: str) -> Record:
        answer = cell_text(row, "answer")
        question = str(row.get("question") or "").strip() or IN_IMAGE
        images = [] if text_only else [image_entry(row.get("image"), base=base, root=root)]
        if row.get("question_type") == "multi-choice":
            options = inline_options(question)
            if not re.fullmatch(r"[A-J]", answer) or (options and ord(answer) - ord("A") >= len(options)):
                raise BadRow(f"answer {answer[:40]!r} is not one of the {len(options or 'ABCDEFGHIJ')} options")
            verifier, params = "choice", ({"choices": options} if options else {})
            question += "\nAnswer with the option's letter."
        else:
            verifier, params = "math", {}
        return Record(id=rid, prompt=user_prompt(PROMPT.format(question=question), n_images=len(images)),
                      answer=answer, images=images, verifier=verifier, verifier_params=params, domain=DOMAIN,
                      source=str(src), split=split,
                      meta={"problem_index": row.get("problem_index"), "version": row.get("problem_version"),
                            "metadata": row.get("metadata")})

    return rows_to_records(load_rows(src, split, config=config, limit=limit), to_record, name=NAME, split=split)

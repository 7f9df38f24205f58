"""MathVerse (AI4Math/MathVerse): each diagram problem in up to six versions, from all-text to vision-only.

Source schema, one row: `sample_index`, `problem_index`, `problem_version` ("Text Dominant", "Text Lite",
"Vision Intensive", "Vision Dominant", "Vision Only", ...), `question` (with "Choices:\\nA:..\\nB:.." for
multiple choice; little or nothing for the vision-only version, whose question is in the image),
`image`, `answer` (a letter for multiple choice, else the value), `question_type` ("multi-choice" |
"free-form"), `metadata` (split, source, subject, subfield), `query_wo` / `query_cot` (official prompts),
`question_for_eval`. Config "testmini" (3,940 rows, split "testmini"); config "testmini_text_only" (788
rows, no images; on the hub its split is also named "testmini_text_only"). The release (ZrrSkywalker/MathVerse)
ships the same rows as `data/testmini.json` and `data/testmini_text_only.json`.

Per row: multiple choice -> `choice` (option texts when the question spells them out, else letters A-J);
free form -> `math`. Multiple-choice golds come as the letter ("D"), in brackets ("(C)"), as an option's
text ("False", "090^\\circ T") or as two letters ("C\\nD", for "Choose 2 answers"): the first three become
the letter (`gold_letters`), two letters become "C, D", scored by `math` on the tagged answer as a set of
letters ("D, C" and "C and D" match).

Check it:  sapo-vl recipe check mathverse --text-only -o path=/data/MathVerse/data -o config=testmini_text_only
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from sapo_vl.data.recipe import Skip
from sapo_vl.data.record import Record, user_prompt
from sapo_vl.data.sources import (cell_text, gold_letters, image_entry, inline_options, is_local, load_rows,
                                  rows_to_records, source_dir)

NAME = "mathverse"
DOMAIN = "math"
SOURCE = "AI4Math/MathVerse"
VERIFIER = "math"  # free form; multiple-choice rows use "choice"
DESCRIPTION = "MathVerse testmini: diagram math in text-to-vision-only versions; math / choice per row."
PROMPT = "{question}\nThink step by step, then give the final answer inside <answer></answer>."
SPLITS = ("testmini",)
SIZES = {"testmini": 3940, "testmini_text_only": 788}  # by config
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
            letters = gold_letters(answer, options, n_options=10)
            if len(letters) > 1:
                verifier, params, answer = "math", {"tags_only": True}, ", ".join(letters)
                question += "\nAnswer with the options' letters, separated by commas."
            else:
                verifier, params, answer = "choice", ({"choices": options} if options else {}), letters[0]
                question += "\nAnswer with the option's letter."
        else:
            verifier, params = "math", {}
        return Record(id=rid, prompt=user_prompt(PROMPT.format(question=question), n_images=len(images)),
                      answer=answer, images=images, verifier=verifier, verifier_params=params, domain=DOMAIN,
                      source=str(src), split=split,
                      meta={"problem_index": row.get("problem_index"), "version": row.get("problem_version"),
                            "metadata": row.get("metadata")})

    hub_split = config if text_only and not is_local(src) else split  # the hub's text-only split has its name
    rows = load_rows(src, hub_split, config=config, limit=limit)
    return rows_to_records(rows, to_record, name=NAME, split=split)

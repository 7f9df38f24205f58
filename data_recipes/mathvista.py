"""MathVista (AI4Math/MathVista): math in visual contexts; the verifier is chosen per row.

Source schema, one row: `pid`, `question`, `image` (its path, "images/1.jpg"), `decoded_image` (the image),
`choices` (option texts, or None), `unit`, `precision` (decimals of a float answer), `answer` (an option
*text* for multiple choice, else the value), `question_type` ("multi_choice" | "free_form"),
`answer_type` ("text" | "integer" | "float" | "list"), `metadata` (source, task, skills, ...), `query`
(the official prompt). Splits: testmini 1,000 (answers public), test 5,141 (answers withheld: skipped).

Per row: multiple choice -> `choice` with the option texts, the answer turned into its letter; integer and
float -> `math` (the prompt asks for the official precision, and a float row is compared at it:
`float_rounding=precision`, as MathVista rounds the extracted number to `precision` decimals); text and
list -> `exact`.

Check it:  sapo-vl recipe check mathvista -o path=/data/MathVista
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from sapo_vl.data.recipe import Skip
from sapo_vl.data.record import Record, user_prompt
from sapo_vl.data.sources import (LETTERS, BadRow, cell_text, format_options, image_entry, load_rows, parse_options,
                                  rows_to_records, source_dir)

NAME = "mathvista"
DOMAIN = "math"
SOURCE = "AI4Math/MathVista"
VERIFIER = "choice"  # multiple choice; free-form rows use "math" or "exact" (see above)
DESCRIPTION = "MathVista testmini: math on figures, charts and photos; choice / math / exact per row."
PROMPT = "{question}\n{hint}\nThink step by step, then give the final answer inside <answer></answer>."
SPLITS = ("testmini", "test")
SIZES = {"testmini": 1000, "test": 5141}
HINTS = {"integer": "Answer with an integer.", "list": "Answer with a Python list.",
         "text": "Answer with a word or phrase."}


def scoring(row: dict) -> tuple[str, str, dict, str]:
    """(verifier, answer as that verifier reads it, its params, the prompt's format hint) for one source row.
    Multiple choice: the answer's letter; a float answer is compared at the row's `precision` decimals."""
    answer, kind = cell_text(row, "answer"), row.get("answer_type")
    if row.get("question_type") == "multi_choice":
        choices = parse_options(row.get("choices"))
        if answer not in choices:
            raise BadRow(f"bad answer: {answer[:40]!r} is not one of the choices")
        return "choice", LETTERS[choices.index(answer)], {"choices": choices}, "Answer with the option's letter."
    if kind == "integer":
        return "math", answer, {}, HINTS["integer"]
    if kind == "float":
        decimals = int(row.get("precision") or 1)
        return "math", answer, {"float_rounding": decimals}, f"Answer with a number with {decimals} decimal place(s)."
    return "exact", answer, {}, HINTS.get(kind, HINTS["text"])


def records(split: str = "testmini", *, seed: int = 0, limit: int | None = None, root: Path | None = None,
            path: str | None = None) -> Iterator[Record | Skip]:
    """The rows of `split` in source order (`seed` unused).

    path: hub id or local copy (the repository folder, a parquet or jsonl file); default `root`, else SOURCE.
    """
    src = path or root or SOURCE
    base = source_dir(src)

    def to_record(row: dict, rid: str) -> Record:
        question = cell_text(row, "question")
        image = image_entry(row.get("decoded_image") or row.get("image"), base=base, root=root)
        if row.get("unit"):
            question += f" (Unit: {row['unit']})"
        kind = row.get("answer_type")
        verifier, answer, params, hint = scoring(row)
        if verifier == "choice":
            question += "\nChoices:\n" + format_options(params["choices"])
        return Record(id=rid, prompt=user_prompt(PROMPT.format(question=question, hint=hint)), answer=answer,
                      images=[image], verifier=verifier, verifier_params=params, domain=DOMAIN, source=str(src),
                      split=split, meta={"answer_type": kind, "precision": row.get("precision"),
                                         "metadata": row.get("metadata")})

    return rows_to_records(load_rows(src, split, limit=limit), to_record, name=NAME, split=split)

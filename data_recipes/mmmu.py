"""MMMU (MMMU/MMMU): college-level questions across 30 subjects, with up to 7 images placed in the text.

Source schema, one row: `id` ("validation_Math_1"), `question` (with "<image 1>" placeholders),
`options` (a string holding a Python list: "['12', '<image 2>', ...]"), `explanation`, `image_1` ...
`image_7` (None when unused), `img_type`, `answer` (a letter; for open questions the value), `topic_difficulty`,
`question_type` ("multiple-choice" | "open"), `subfield`. One config per subject ("Math", "Art_Theory", ...);
splits dev 150, validation 900, test 10,500 (answers withheld: skipped). A local copy keeps the hub layout,
`<Subject>/validation-00000-of-00001.parquet`.

Each image gets a slot where its placeholder first appears, in the question or in an option; a placeholder
past the seven image columns stays as text (one validation row's options name `<image 8>` ... `<image 30>`,
drawn into its images, and MMMU scores it). Per row:
multiple choice -> `choice` with the option texts; open -> `math` when every accepted answer is a number
("['24/7', '3.429']": the first), else `exact` (case-insensitive, as MMMU lowercases) with the other accepted
answers as `alternatives` ("['Tampa', 'Florida']", "Transformation", "C").

Check it:  sapo-vl recipe check mmmu -o path=/data/MMMU
Build it:  sapo-vl recipe build mmmu --out runs/data/mmmu -o subject=Math
"""
from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Iterator

from sapo_vl.data.recipe import Skip
from sapo_vl.data.record import Record
from sapo_vl.data.sources import (LETTERS, BadRow, cell_text, format_options, image_entry, interleaved_prompt, is_local,
                                  load_rows, parse_options, rows_to_records, source_dir)
from sapo_vl.verifiers.extract import parse_value

NAME = "mmmu"
DOMAIN = "reasoning"
SOURCE = "MMMU/MMMU"
VERIFIER = "choice"  # open questions use "math" or "exact"
DESCRIPTION = "MMMU validation: 30 subjects, interleaved images, multiple choice (choice) or open (math / exact)."
PROMPT = "{question}\nThink step by step, then give the final answer inside <answer></answer>."
SPLITS = ("dev", "validation", "test")
SIZES = {"dev": 150, "validation": 900, "test": 10500}
IMAGE_COLUMNS = 7  # image_1 ... image_7
SUBJECTS = ("Accounting", "Agriculture", "Architecture_and_Engineering", "Art", "Art_Theory", "Basic_Medical_Science",
            "Biology", "Chemistry", "Clinical_Medicine", "Computer_Science", "Design",
            "Diagnostics_and_Laboratory_Medicine", "Economics", "Electronics", "Energy_and_Power", "Finance",
            "Geography", "History", "Literature", "Manage", "Marketing", "Materials", "Math",
            "Mechanical_Engineering", "Music", "Pharmacy", "Physics", "Psychology", "Public_Health", "Sociology")


def open_scoring(answer: str) -> tuple[str, str, dict]:
    """(verifier, gold, params) of an open question whose answer may list accepted answers ("['2.5', '5/2']"):
    numbers -> `math` on the first; otherwise `exact` on the first, the others as alternatives."""
    accepted = [a for a in (parse_options(answer) if answer.startswith("[") else [answer]) if a]
    if not accepted:
        raise BadRow("empty answer")
    if all(parse_value(a) is not None for a in accepted):
        return "math", accepted[0], {}
    return "exact", accepted[0], ({"alternatives": accepted[1:]} if len(accepted) > 1 else {})


def records(split: str = "validation", *, seed: int = 0, limit: int | None = None, root: Path | None = None,
            path: str | None = None, subject: str | None = None) -> Iterator[Record | Skip]:
    """The rows of `split`, subject by subject, in source order (`seed` unused).

    path: hub id or local copy (the repository folder, a parquet or jsonl file); default `root`, else SOURCE.
    subject: one subject (a config name, e.g. "Math"); default all 30 (a local folder: all it holds).
    """
    src = path or root or SOURCE
    base = source_dir(src)
    configs = [subject] if subject else ([None] if is_local(src) else SUBJECTS)
    rows = itertools.chain.from_iterable(load_rows(src, split, config=c, limit=limit) for c in configs)

    def to_record(row: dict, rid: str) -> Record:
        answer, question = cell_text(row, "answer"), cell_text(row, "question")
        if answer == "?":
            raise BadRow("empty answer (withheld: test split)")
        images = {str(k): image_entry(row[f"image_{k}"], base=base, root=root)
                  for k in range(1, IMAGE_COLUMNS + 1) if row.get(f"image_{k}") is not None}
        if row.get("question_type") == "open":
            verifier, answer, params = open_scoring(answer)
        else:
            options = parse_options(row.get("options"))
            if len(options) < 2:
                raise BadRow(f"unparsable options: {len(options)} option(s) for a multiple-choice question")
            if answer not in tuple(LETTERS[:len(options)]):
                raise BadRow(f"bad answer: {answer[:40]!r} is not an option letter")
            verifier, params = "choice", {"choices": options}
            question += "\n" + format_options(options) + "\nAnswer with the option's letter."
        named = sorted({int(k) for k in re.findall(r"<image\s*(\d+)>", question)})
        missing = [k for k in named if k <= IMAGE_COLUMNS and str(k) not in images]
        if missing:
            raise BadRow(f"missing image: the text names <image {missing[0]}> but the row has no image {missing[0]}")
        # placeholders past image_7 (validation_Math_7's options name <image 7> ... <image 30>) stay as text
        prompt, slots = interleaved_prompt(PROMPT.format(question=question), images, unknown="text")
        return Record(id=rid, prompt=prompt, answer=answer, images=slots, verifier=verifier, verifier_params=params,
                      domain=DOMAIN, source=str(src), split=split,
                      meta={"subfield": row.get("subfield"), "img_type": row.get("img_type"),
                            "difficulty": row.get("topic_difficulty")})

    return rows_to_records(rows, to_record, name=NAME, split=split)

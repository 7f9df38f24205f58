"""MATH-Vision (MathLLMs/MathVision): competition math problems with a figure.

Source schema, one row: `id`, `question` (with an "<image1>" placeholder where the figure belongs),
`options` (five option texts, or empty for free-form problems), `image` (its path, "images/1.jpg"),
`decoded_image` (the image), `answer` (a letter when there are options, else the value), `solution`,
`level` (1-5), `subject`. Splits: test 3,040, testmini 304. The release's own files are
`data/test.jsonl` and `data/testmini.jsonl` (mathllm/MATH-V); the hub copy is parquet with the same columns.

Per row: with options -> `choice` with the option texts; without -> `math`. As MATH-V's own harness does:
- every row has one picture. Some questions name parts of it as `<image2>` ... `<image7>`, and some options
  are `<image2>` ... (the parts are drawn into the one merged picture): the picture's slot sits at
  `<image1>` (before the text when the question has none) and the other placeholders stay as text;
- options that are just the letters "A" ... "E" (the choices are drawn in the picture) get no option block;
- a gold whose LaTeX backslash a JSON writer ate (a form feed for `\\f`) is repaired (`repair_escapes`).

Check it:  sapo-vl recipe check mathvision --text-only -o path=/data/MATH-V/data --split test
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from sapo_vl.data.recipe import Skip
from sapo_vl.data.record import Record
from sapo_vl.data.sources import (LETTERS, BadRow, cell_text, format_options, image_entry, interleaved_prompt,
                                  load_rows, parse_options, rows_to_records, source_dir)

NAME = "mathvision"
DOMAIN = "math"
SOURCE = "MathLLMs/MathVision"
VERIFIER = "math"  # free form; rows with options use "choice"
DESCRIPTION = "MATH-Vision: competition math with figures; choice (5 options) or math per row."
PROMPT = "{question}\nThink step by step, then give the final answer inside <answer></answer>."
SPLITS = ("test", "testmini")
SIZES = {"test": 3040, "testmini": 304}


def records(split: str = "testmini", *, seed: int = 0, limit: int | None = None, root: Path | None = None,
            path: str | None = None) -> Iterator[Record | Skip]:
    """The rows of `split` in source order (`seed` unused).

    path: hub id or local copy (the repository folder, a parquet or jsonl file); default `root`, else SOURCE.
    """
    src = path or root or SOURCE
    base = source_dir(src)

    def to_record(row: dict, rid: str) -> Record:
        answer, question = cell_text(row, "answer"), cell_text(row, "question")
        image = image_entry(row.get("decoded_image") or row.get("image"), base=base, root=root)
        options = parse_options(row.get("options"))
        if options:
            if answer not in tuple(LETTERS[:len(options)]):
                raise BadRow(f"bad answer: {answer[:40]!r} is not an option letter")
            verifier, params = "choice", {"choices": options}
            if "".join(options) != LETTERS[:len(options)]:  # options "A" ... "E": the choices are in the picture
                question += "\nChoices:\n" + format_options(options)
            question += "\nAnswer with the option's letter."
        else:
            verifier, params = "math", {}
        prompt, slots = interleaved_prompt(PROMPT.format(question=question), {"1": image}, unknown="text")
        return Record(id=rid, prompt=prompt, answer=answer, images=slots, verifier=verifier, verifier_params=params,
                      domain=DOMAIN, source=str(src), split=split,
                      meta={"level": row.get("level"), "subject": row.get("subject")})

    return rows_to_records(load_rows(src, split, limit=limit), to_record, name=NAME, split=split)

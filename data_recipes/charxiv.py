"""CharXiv (princeton-nlp/CharXiv): reasoning questions on real charts from arXiv papers.

Two layouts of the same rows are read:
- the hub's (`val.parquet` / `test.parquet`; splits "validation" and "test"): one row per chart with
  `image`, `category`, `figure_path`, `descriptive_q1..4` / `descriptive_a1..4`, `reasoning_q`,
  `reasoning_q_source` (int), `reasoning_a`, `reasoning_a_type` (1 text in chart, 2 text in general,
  3 number in chart, 4 number in general);
- the release repository's (`data/reasoning_val.json`: {"0": {"figure_id", "query", "answer",
  "inst_category", "qa_source"}, ...}, the pictures in `images/<figure_id>.jpg` beside `data/`, the chart
  category in `data/image_metadata_val.json`); pass the repository folder or its `data/`.
Splits: validation 1,000, test 1,323 (answers withheld: skipped).

Prompt: the question, for type 4 the official precision hint ("Your final answer must be an exact integer."
or "... a number with N decimal places.", CharXiv's `get_number_instruction`), then the answer format.
Per row: numeric answers (types 3, 4) -> `numeric` with tolerance 0 (the value must be equal: "3.50" =
"3.5"); text answers -> `exact` (normalised; a gold that is one letter such as "a" or "(a)" keeps it).

Check it:  sapo-vl recipe check charxiv --text-only -o path=/data/CharXiv --split validation
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from sapo_vl.data.recipe import Skip
from sapo_vl.data.record import Record, user_prompt
from sapo_vl.data.sources import (BadRow, cell_text, image_entry, is_local, load_rows, rows_to_records,
                                  source_dir)
from sapo_vl.verifiers.extract import parse_number

NAME = "charxiv"
DOMAIN = "chart"
SOURCE = "princeton-nlp/CharXiv"
VERIFIER = "numeric"  # text answers use "exact"
DESCRIPTION = "CharXiv reasoning: questions on arXiv charts; numeric (exact value) or exact text per row."
PROMPT = "{question}\n{hint}Think step by step, then give the final answer inside <answer></answer>."
SPLITS = ("validation", "test")
SIZES = {"validation": 1000, "test": 1323}
ANSWER_TYPES = {1: "text-in-chart", 2: "text-in-general", 3: "number-in-chart", 4: "number-in-general"}


def precision_hint(answer: str) -> str:
    """CharXiv's instruction for number-in-general answers: an integer, or N decimal places."""
    decimals = answer.strip().split(".")[1] if "." in answer.strip() else ""
    if not decimals:
        return "Your final answer must be an exact integer.\n"
    return f"Your final answer must be a number with {len(decimals)} decimal places.\n"


def release_file(src: str | Path, split: str) -> Path | None:
    """`reasoning_<val|test>.json` of a copy of the release repository (the folder, its `data/`, or the file)."""
    if not is_local(src):
        return None
    p = Path(src).expanduser()
    name = f"reasoning_{'val' if split == 'validation' else split}.json"
    for candidate in (p, p / name, p / "data" / name):
        if candidate.is_file() and candidate.name.startswith("reasoning_"):
            return candidate
    return None


def release_rows(file: Path) -> Iterator[dict]:
    """The release's rows in the hub's column names; the image is `images/<figure_id>.jpg` beside `data/`."""
    meta_file = file.with_name(file.name.replace("reasoning_", "image_metadata_"))
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    for row in load_rows(file, "validation"):
        fid = row.get("figure_id")
        yield {"id": fid, "reasoning_q": row.get("query"), "reasoning_a": row.get("answer"),
               "reasoning_a_type": row.get("inst_category"), "reasoning_q_source": row.get("qa_source"),
               "image": f"images/{fid}.jpg", "category": meta.get(str(fid), {}).get("category"),
               "figure_path": meta.get(str(fid), {}).get("figure_path")}


def records(split: str = "validation", *, seed: int = 0, limit: int | None = None, root: Path | None = None,
            path: str | None = None) -> Iterator[Record | Skip]:
    """The reasoning question of each chart of `split`, in source order (`seed` unused).

    path: hub id or local copy (the hub layout's folder or parquet file, or the release repository's folder,
        its `data/` or `reasoning_val.json`); default `root`, else SOURCE.
    """
    src = path or root or SOURCE
    release = release_file(src, split)
    base = release.parent.parent if release else source_dir(src)  # release images sit beside data/

    def to_record(row: dict, rid: str) -> Record:
        question = cell_text(row, "reasoning_q", "question")
        if str(row.get("reasoning_a") or "").strip().lower() in ("", "none", "?"):
            raise BadRow("empty answer (withheld: test split)")
        answer = cell_text(row, "reasoning_a", "answer")
        kind = row.get("reasoning_a_type")
        if kind not in ANSWER_TYPES:
            raise BadRow(f"bad answer type: reasoning_a_type {kind!r} is not 1-4")
        image = image_entry(row.get("image"), base=base, root=root)
        numeric = kind in (3, 4) and parse_number(answer) is not None
        verifier, params = ("numeric", {"tolerance": 0.0}) if numeric else ("exact", {})
        hint = precision_hint(answer) if kind == 4 and numeric else ""
        return Record(id=rid, prompt=user_prompt(PROMPT.format(question=question, hint=hint)), answer=answer,
                      images=[image], verifier=verifier, verifier_params=params, domain=DOMAIN, source=str(src),
                      split=split, meta={"answer_type": ANSWER_TYPES[kind], "category": row.get("category"),
                                         "question_source": row.get("reasoning_q_source"),
                                         "figure_path": row.get("figure_path")})

    rows = release_rows(release) if release else load_rows(src, split, limit=limit)
    return rows_to_records(rows, to_record, name=NAME, split=split)

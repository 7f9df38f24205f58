"""ViRL39K (TIGER-Lab/ViRL39K): 38,870 verifiable questions curated for vision-language RL (VL-Rethinker).

Source: one parquet file, `39Krelease.parquet`, beside `images.zip`, whose `images/` folder the rows point
into. One row: `qid`, `question` (with one "<image>" token per image), `answer` (always "\\boxed{...}"),
`image` (a list of paths, "images/Processed-....jpg"), `category` (eight: "(GradeSchool) Geometric",
"Tables/Diagrams/Charts", "Spatial Reasoning", ...), `source` (the dataset it came from),
`PassRate_32BTrained` and `PassRate_7BBase` (how often those models solved it; -1 where not measured).
One split, train.

The images are not in the parquet, so this recipe needs a local copy:
    huggingface-cli download TIGER-Lab/ViRL39K --repo-type dataset --local-dir /data/ViRL39K
    unzip /data/ViRL39K/images.zip -d /data/ViRL39K
    sapo-vl recipe check virl39k --root /data/ViRL39K

Per row: the boxed answer is unwrapped; a single-letter answer -> `choice` (with the option texts when the
question spells them out); anything else -> `math`. The domain follows the category.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from sapo_vl.data.recipe import Skip
from sapo_vl.data.record import Record
from sapo_vl.data.sources import (BadRow, cell_text, image_entry, inline_options, interleaved_prompt, load_rows,
                                  rows_to_records, source_dir)

NAME = "virl39k"
DOMAIN = "math"  # per row: "chart" for tables/diagrams/charts, "reasoning" for spatial, social, other
SOURCE = "TIGER-Lab/ViRL39K"
VERIFIER = "math"  # single-letter answers use "choice"
DESCRIPTION = "ViRL39K: curated verifiable VL-RL questions (math, charts, science, spatial); math / choice."
PROMPT = "{question}\nThink step by step, then give the final answer inside <answer></answer>."
SPLITS = ("train",)


def _domain(category: str) -> str:
    c = category.lower()
    if "chart" in c or "table" in c:
        return "chart"
    return "math" if any(k in c for k in ("math", "geometr", "stem")) else "reasoning"


def records(split: str = "train", *, seed: int = 0, limit: int | None = None, root: Path | None = None,
            path: str | None = None, min_pass_rate: float = 0.0, max_pass_rate: float = 1.0) -> Iterator[Record | Skip]:
    """The rows in source order (`seed` unused), keeping those whose PassRate_32BTrained is in range.

    path: local copy (its folder, or the parquet beside the unzipped images/), or the hub id (images will
        be missing); default `root`, else SOURCE.
    min_pass_rate, max_pass_rate: keep questions the trained 32B model solved this often (difficulty knob).
    """
    src = path or root or SOURCE
    base = source_dir(src)
    rows = load_rows(src, split, data_files=None if base else "39Krelease.parquet",
                     limit=limit if (min_pass_rate, max_pass_rate) == (0.0, 1.0) else None)

    def wanted(row: dict) -> bool:
        try:
            return min_pass_rate <= float(row["PassRate_32BTrained"]) <= max_pass_rate
        except (KeyError, TypeError, ValueError):
            return True  # no usable pass rate: let to_record judge the row

    def to_record(row: dict, rid: str) -> Record:
        boxed = re.fullmatch(r"\s*\\boxed\{(.*)\}\s*", cell_text(row, "answer"), re.DOTALL)
        answer = cell_text({"answer": boxed.group(1) if boxed else row["answer"]}, "answer")
        question = cell_text(row, "question")
        cells = row.get("image") if isinstance(row.get("image"), list) else [row.get("image")]
        images = {str(i + 1): image_entry(c, base=base, root=root) for i, c in enumerate(cells) if c is not None}
        if not images:
            raise BadRow("missing image")
        if re.fullmatch(r"[A-J]", answer):  # option texts only when the question lists enough of them
            options = inline_options(question) or []
            verifier, params = "choice", ({"choices": options} if len(options) > ord(answer) - ord("A") else {})
        else:
            verifier, params = "math", {}
        prompt, slots = interleaved_prompt(PROMPT.format(question=question), images)
        category = str(row.get("category") or "")
        return Record(id=rid, prompt=prompt, answer=answer, images=slots, verifier=verifier, verifier_params=params,
                      domain=_domain(category), source=str(src), split=split,
                      meta={"category": category, "origin": row.get("source"),
                            "pass_rate_32b_trained": row.get("PassRate_32BTrained"),
                            "pass_rate_7b_base": row.get("PassRate_7BBase")})

    return rows_to_records((r for r in rows if wanted(r)), to_record, name=NAME, split=split)

"""ChartQA (HuggingFaceM4/ChartQA): questions on real charts, scored by ChartQA's relaxed accuracy.

Source schema, one row: `image`, `query` (the question), `label` (a list holding the answer: "14",
"Democrats"), `human_or_machine` (0 human-written, 1 generated; a class label). Splits: train 28,299,
val 1,920, test 2,500. The `numeric` verifier accepts a number within 5% of a numeric label and needs an
exact (normalised) match otherwise, as the published ChartQA evaluation does.

Check it:  sapo-vl recipe check chartqa -o path=/data/ChartQA
Build it:  sapo-vl recipe build chartqa --out runs/data/chartqa
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from sapo_vl.data.recipe import Skip
from sapo_vl.data.record import Record, user_prompt
from sapo_vl.data.sources import BadRow, cell_text, image_entry, load_rows, rows_to_records, source_dir

NAME = "chartqa"
DOMAIN = "chart"
SOURCE = "HuggingFaceM4/ChartQA"
VERIFIER = "numeric"
DESCRIPTION = "ChartQA: questions on real charts; relaxed accuracy (5% for numbers, exact for labels)."
PROMPT = "{question}\nGive the final answer, a single number or word, inside <answer></answer>."
SPLITS = ("train", "val", "test")
AUTHORS = {0: "human", 1: "machine"}


def records(split: str = "test", *, seed: int = 0, limit: int | None = None, root: Path | None = None,
            path: str | None = None, tolerance: float = 0.05) -> Iterator[Record | Skip]:
    """The rows of `split` in source order (`seed` unused).

    path: hub id or local copy (the repository folder, a parquet or jsonl file); default `root`, else SOURCE.
    tolerance: relative error accepted for numeric answers (ChartQA: 0.05).
    """
    src = path or root or SOURCE
    base = source_dir(src)

    def to_record(row: dict, rid: str) -> Record:
        label = row.get("label")
        label = label if isinstance(label, list) else [label]
        if not label or label[0] is None or not str(label[0]).strip():
            raise BadRow("empty answer")
        image = image_entry(row.get("image"), base=base, root=root)
        return Record(id=rid, prompt=user_prompt(PROMPT.format(question=cell_text(row, "query"))),
                      answer=str(label[0]).strip(), images=[image], verifier=VERIFIER,
                      verifier_params={"tolerance": tolerance}, domain=DOMAIN, source=str(src), split=split,
                      meta={"author": AUTHORS.get(row.get("human_or_machine"))})

    return rows_to_records(load_rows(src, split, limit=limit), to_record, name=NAME, split=split)

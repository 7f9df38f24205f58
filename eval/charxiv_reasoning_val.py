"""charxiv_reasoning_val: CharXiv reasoning questions, validation split (1,000 charts from arXiv papers).

    sapo-vl eval --task charxiv_reasoning_val --model Qwen/Qwen3-VL-2B-Instruct --out runs/eval/charxiv
    sapo-vl eval --task charxiv_reasoning_val --model PATH --data-path /data/CharXiv --out runs/eval/charxiv

No recipe in data_recipes/ reads CharXiv yet, so the loader is `records` below (copy it into
data_recipes/charxiv.py to train on it). Source schema, one row of princeton-nlp/CharXiv: `image`,
`category`, `year`, `original_id`, `figure_path`, `num_subplots`, `descriptive_q1..4`, `descriptive_a1..4`,
`reasoning_q`, `reasoning_q_source` (int), `reasoning_a`, `reasoning_a_type` (1 text in chart,
2 text in general, 3 number in chart, 4 number in general). Splits: validation 1,000, test (answers withheld).

Prompt: the question, for type 4 the official precision hint ("Your final answer must be an exact integer."
or "... a number with N decimal places."), then "Think step by step, then give the final answer inside
<answer></answer>.". Scoring per row: numeric answers (types 3, 4) -> `numeric` with tolerance 0 (the value
must be equal: "3.50" = "3.5"); text answers -> `exact` (normalised).

The published harness uses an LLM judge: CharXiv (Wang et al., NeurIPS 2024 Datasets and Benchmarks;
princeton-nlp/CharXiv) grades each reasoning answer with GPT-4o and type-specific grading instructions.
Our verifiers replace it; text answers that a judge would accept as paraphrases score 0 here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from sapo_vl.data.recipe import Skip
from sapo_vl.data.record import Record, user_prompt
from sapo_vl.data.sources import BadRow, cell_text, image_entry, load_rows, rows_to_records, source_dir
from sapo_vl.evaluation.task import Task
from sapo_vl.verifiers.extract import parse_number

NAME = "charxiv"
SOURCE = "princeton-nlp/CharXiv"
PROMPT = "{question}\n{hint}Think step by step, then give the final answer inside <answer></answer>."
ANSWER_TYPES = {1: "text-in-chart", 2: "text-in-general", 3: "number-in-chart", 4: "number-in-general"}


def precision_hint(answer: str) -> str:
    """CharXiv's instruction for number-in-general answers: an integer, or N decimal places."""
    decimals = answer.strip().split(".")[1] if "." in answer.strip() else ""
    if not decimals:
        return "Your final answer must be an exact integer.\n"
    return f"Your final answer must be a number with {len(decimals)} decimal places.\n"


def records(split: str = "validation", *, seed: int = 0, limit: int | None = None, root: Path | None = None,
            path: str | None = None) -> Iterator[Record | Skip]:
    """The reasoning question of each row of `split`, in source order (`seed` unused).

    path: hub id or local copy (the repository folder, a parquet or jsonl file); default `root`, else SOURCE.
    """
    src = path or root or SOURCE
    base = source_dir(src)

    def to_record(row: dict, rid: str) -> Record:
        answer, question = cell_text(row, "reasoning_a"), cell_text(row, "reasoning_q")
        if answer.lower() in ("", "none", "?"):
            raise BadRow("empty answer (withheld: test split)")
        kind = row.get("reasoning_a_type")
        if kind not in ANSWER_TYPES:
            raise BadRow(f"unknown reasoning_a_type {kind!r}")
        image = image_entry(row.get("image"), base=base, root=root)
        numeric = kind in (3, 4) and parse_number(answer) is not None
        verifier, params = ("numeric", {"tolerance": 0.0}) if numeric else ("exact", {})
        hint = precision_hint(answer) if kind == 4 and numeric else ""
        return Record(id=rid, prompt=user_prompt(PROMPT.format(question=question, hint=hint)), answer=answer,
                      images=[image], verifier=verifier, verifier_params=params, domain="chart", source=str(src),
                      split=split, meta={"answer_type": ANSWER_TYPES[kind], "category": row.get("category"),
                                         "question_source": row.get("reasoning_q_source"),
                                         "figure_path": row.get("figure_path")})

    return rows_to_records(load_rows(src, split, limit=limit), to_record, name=NAME, split=split)


TASK = Task(
    name="charxiv_reasoning_val", domain="chart", loader=records, dataset=SOURCE, split="validation", size=1000,
    description="CharXiv reasoning (validation): questions on arXiv charts; numeric (exact value) or exact text.",
    row_verifiers=("numeric", "exact"),
    scoring="judge", rule="GPT-4o grading replaced by our verifiers (numbers equal in value, text exact)",
    source="Wang et al. 2024, CharXiv; princeton-nlp/CharXiv (GPT-4o grading of reasoning answers)",
)

"""logicvista: LogicVista (448 visual logic questions: inductive, deductive, numerical, spatial, mechanical).

    git clone https://github.com/Yijia-Xiao/LogicVista
    sapo-vl eval --task logicvista --model Qwen/Qwen3-VL-2B-Instruct --data-path LogicVista/data \\
        --out runs/eval/logicvista

LogicVista is published on GitHub, not under a hub id we can rely on, so the task needs the local folder
(`--data-path` = the repository's `data/`, holding `dataset.json` and `images/`). No recipe reads it yet:
the loader is `records` below. Source schema, `dataset.json`: {"v1_0": {"imagename": "v1_0.png",
"question": ..., "answer": "C" | "A, C" | "3", "reasoning": ..., "skill": [...], "capability": [...]}, ...}.

Prompt: the question, then "Think step by step, then give the letter (or letters, or number) of your
choice inside <answer></answer>.". Scoring per row: one letter -> `choice` (letters up to the last one
the question names, e.g. "A-E"); several letters ("A, C") -> `math`, which compares them as a set
("C, A" and "A and C" match; only tagged answers are read); a numbered option ("3") -> `count`.

The published harness uses an LLM: LogicVista (Xiao et al. 2024; eval/extract_accuracy_new.py) has GPT-4
extract the chosen letters from the reply, then requires the sorted letter list to equal the gold list.
Our verifiers replace the GPT-4 extraction.
"""
from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Iterator

from sapo_vl.data.recipe import Skip
from sapo_vl.data.record import Record, user_prompt
from sapo_vl.data.sources import BadRow, SourceError, cell_text, image_entry, load_rows, rows_to_records, source_dir
from sapo_vl.evaluation.task import Task

NAME = "logicvista"
SOURCE = "https://github.com/Yijia-Xiao/LogicVista (data/)"
PROMPT = ("{question}\nThink step by step, then give the letter (or letters, or number) of your choice "
          "inside <answer></answer>.")
_RANGE = re.compile(r"\b([A-Z])\s*(?:-|–|to)\s*([A-Z])\b")
_LISTED = re.compile(r"\bor\s+\(?([A-Z])\)?[\s?.)]")


def letters_named(question: str) -> int:
    """How many option letters the question names ("A-E" -> 5, "A, B, C, or D" -> 4); 0 when it names none."""
    ends = [m.group(2) for m in _RANGE.finditer(question)] + [m.group(1) for m in _LISTED.finditer(question + " ")]
    return max((string.ascii_uppercase.index(e) + 1 for e in ends), default=0)


def records(split: str = "test", *, seed: int = 0, limit: int | None = None, root: Path | None = None,
            path: str | None = None) -> Iterator[Record | Skip]:
    """Every question in file order (`split` is a label: LogicVista has one set; `seed` unused).

    path: the repository's `data/` folder (or its dataset.json); default `root`.
    """
    src = path or root
    if src is None:
        raise SourceError("LogicVista is published on GitHub, not on the hub: git clone "
                          "https://github.com/Yijia-Xiao/LogicVista and pass --data-path LogicVista/data")
    base = source_dir(src)

    def to_record(row: dict, rid: str) -> Record:
        answer, question = cell_text(row, "answer"), cell_text(row, "question")
        image = image_entry(f"images/{cell_text(row, 'imagename')}", base=base, root=root)
        picks = [a.strip() for a in answer.split(",")]
        if all(re.fullmatch(r"[A-Z]", p) for p in picks) and len(picks) > 1:
            verifier, params, answer = "math", {"tags_only": True}, ", ".join(picks)
        elif re.fullmatch(r"[A-Z]", answer):
            n = max(letters_named(question), string.ascii_uppercase.index(answer) + 1, 4)
            verifier, params = "choice", {"num_options": n}
        elif re.fullmatch(r"\d+", answer):
            verifier, params = "count", {}
        else:
            raise BadRow(f"answer {answer[:40]!r} is neither option letters nor a number")
        return Record(id=rid, prompt=user_prompt(PROMPT.format(question=question)), answer=answer, images=[image],
                      verifier=verifier, verifier_params=params, domain="reasoning", source=str(src), split=split,
                      meta={"skill": row.get("skill"), "capability": row.get("capability"),
                            "imagename": row.get("imagename")})

    return rows_to_records(load_rows(src, split, limit=limit), to_record, name=NAME, split=split)


TASK = Task(
    name="logicvista", domain="reasoning", loader=records, dataset=SOURCE, split="test", size=448,
    metric="accuracy (letter set)",
    description="LogicVista: visual logic puzzles, multiple choice (one or several letters).",
    row_verifiers=("choice", "math", "count"),
    scoring="judge", rule="GPT-4 letter extraction replaced by our verifiers; the letter set must equal the gold",
    source="Xiao et al. 2024, LogicVista; Yijia-Xiao/LogicVista eval/extract_accuracy_new.py",
)

"""logicvista: LogicVista (448 visual logic questions: inductive, deductive, numerical, spatial, mechanical).

    git clone https://github.com/Yijia-Xiao/LogicVista
    sapo-vl eval --task logicvista --model Qwen/Qwen3-VL-2B-Instruct --data-path LogicVista/data \\
        --out runs/eval/logicvista

LogicVista is published on GitHub, not under a hub id we can rely on, so the task needs a local copy
(`--data-path` = the repository's `data/`, holding `dataset.json` and `images/`, or a downloaded hub copy in
parquet with an `image` column). Data and prompt: the `logicvista` recipe (the question, then "Think step by
step, then give the letter (or letters, or number) of your choice inside <answer></answer>."). Scoring per
row: one letter -> `choice` (letters up to the last one the question names, e.g. "A-E"); several letters
("A, C") -> `math`, which compares them as a set ("C, A" and "A and C" match; only tagged answers are
read); a numbered option ("3") -> `count`. 447 of the 448 rows are scored: the release's row v1_382 has an
empty gold (DATA_ERRORS).

The published harness uses an LLM: LogicVista (Xiao et al. 2024; eval/extract_accuracy_new.py) has GPT-4
extract the chosen letters from the reply, then requires the sorted letter list to equal the gold list.
Our verifiers replace the GPT-4 extraction.
"""
from sapo_vl.evaluation.task import Task

DATA_ERRORS = {"logicvista/test/v1_382": "the release's gold answer is empty"}

TASK = Task(
    name="logicvista", domain="reasoning", recipe="logicvista", split="test", size=448, data_errors=DATA_ERRORS,
    metric="accuracy (letter set)",
    description="LogicVista: visual logic puzzles, multiple choice (one or several letters).",
    row_verifiers=("choice", "math", "count"),
    scoring="judge", rule="GPT-4 letter extraction replaced by our verifiers; the letter set must equal the gold",
    source="Xiao et al. 2024, LogicVista; Yijia-Xiao/LogicVista eval/extract_accuracy_new.py",
)

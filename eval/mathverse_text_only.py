"""mathverse_text_only: MathVerse testmini, text-only version (788 problems, the diagram described in words).

    sapo-vl eval --task mathverse_text_only --model Qwen/Qwen3-VL-2B-Instruct --out runs/eval/mathverse_text
    sapo-vl eval --task mathverse_text_only --model PATH --data-path /data/MathVerse/data --out runs/eval/mv_text

Data and prompt: the `mathverse` recipe with `config=testmini_text_only` (on the hub its split is named
"testmini_text_only"; locally `testmini_text_only.json` / `.parquet`): no image, the question, "Answer with
the option's letter." for multiple choice, then "Think step by step, then give the final answer inside
<answer></answer>.". Scoring per row: multiple choice -> `choice` (two-letter golds -> `math` on the
letter set); free form -> `math` (math-verify equivalence).

The published harness uses an LLM judge: MathVerse (Zhang et al., ECCV 2024; ZrrSkywalker/MathVerse
evaluation/) extracts the answer with GPT-4 and has GPT-4 judge it against the gold. Here the training
verifiers score the tagged answer instead; no chain-of-thought grading.
"""
from sapo_vl.evaluation.task import Task

TASK = Task(
    name="mathverse_text_only", domain="math", recipe="mathverse", split="testmini", size=788,
    options={"config": "testmini_text_only"},
    description="MathVerse testmini, text-only version: the diagram in words, no image; math / choice per row.",
    row_verifiers=("math", "choice"),
    scoring="judge", rule="GPT-4 answer extraction and GPT-4 judging replaced by our verifiers",
    source="Zhang et al. 2024, MathVerse; ZrrSkywalker/MathVerse evaluation/",
)

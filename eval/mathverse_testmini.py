"""mathverse_testmini: MathVerse testmini (3,940 rows: each diagram problem in five versions with images).

    sapo-vl eval --task mathverse_testmini --model Qwen/Qwen3-VL-2B-Instruct --out runs/eval/mathverse
    sapo-vl eval --task mathverse_testmini --model PATH --data-path /data/MathVerse --out runs/eval/mathverse

Prompt: the recipe's (the version's question, "Answer with the option's letter." for multiple choice,
then "Think step by step, then give the final answer inside <answer></answer>.").
Scoring per row: multiple choice -> `choice`; free form -> `math` (math-verify equivalence).

The published harness uses an LLM judge: MathVerse (Zhang et al., ECCV 2024; ZrrSkywalker/MathVerse
evaluation/) extracts the answer with GPT-4 and has GPT-4 judge it against the gold. Here the training
verifiers score the tagged answer instead; no chain-of-thought grading.
"""
from sapo_vl.evaluation.task import Task

TASK = Task(
    name="mathverse_testmini", domain="math", recipe="mathverse", split="testmini", size=3940,
    description="MathVerse testmini: diagram math, text-dominant to vision-only; math / choice per row.",
    row_verifiers=("math", "choice"),
    scoring="judge", rule="GPT-4 answer extraction and GPT-4 judging replaced by our verifiers",
    source="Zhang et al. 2024, MathVerse; ZrrSkywalker/MathVerse evaluation/",
)

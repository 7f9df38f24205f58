"""mathvista_testmini: MathVista testmini (1,000 problems on figures, charts and photos).

    sapo-vl eval --task mathvista_testmini --model Qwen/Qwen3-VL-2B-Instruct --out runs/eval/mathvista
    sapo-vl eval --task mathvista_testmini --model PATH --data-path /data/MathVista --out runs/eval/mathvista

Prompt: the recipe's (question, choices or a format hint such as "Answer with a number with 1 decimal
place(s).", then "Think step by step, then give the final answer inside <answer></answer>.").
Scoring per row as the recipe assigns it: multiple choice -> `choice` (letter or option text);
integer and float answers -> `math` (math-verify equivalence); text and list answers -> `exact`.

The published harness uses an LLM: MathVista (Lu et al., ICLR 2024; lupantech/MathVista evaluation/
extract_answer.py) asks GPT-4 to extract the answer from the reply, then normalises it and compares it
with the gold (calculate_score.py). No paid model runs here: the training verifiers read the tagged answer
and score it, so figures are close to, not identical with, published MathVista numbers.
"""
from sapo_vl.evaluation.task import Task

TASK = Task(
    name="mathvista_testmini", domain="math", recipe="mathvista", split="testmini", size=1000,
    description="MathVista testmini: math on figures; choice / math / exact per row (no LLM judge).",
    row_verifiers=("choice", "math", "exact"),
    scoring="judge", rule="GPT-4 answer extraction + normalised match replaced by our verifiers",
    source="Lu et al. 2024, MathVista; lupantech/MathVista evaluation/extract_answer.py, calculate_score.py",
)

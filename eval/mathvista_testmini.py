"""mathvista_testmini: MathVista testmini (1,000 problems on figures, charts and photos).

    sapo-vl eval --task mathvista_testmini --model Qwen/Qwen3-VL-2B-Instruct --out runs/eval/mathvista
    sapo-vl eval --task mathvista_testmini --model PATH --data-path /data/MathVista --out runs/eval/mathvista

Prompt: the recipe's (question, choices or a format hint such as "Answer with a number with 1 decimal
place(s).", then "Think step by step, then give the final answer inside <answer></answer>.").
Scoring per row as the recipe assigns it: multiple choice -> `choice` (letter or option text);
integer and float answers -> `math` (math-verify equivalence; a float row compares at the row's own
`precision` decimals, `float_rounding=precision`, as MathVista rounds the extracted number to it); text and
list answers -> `exact`.

The published harness uses an LLM: MathVista (Lu et al., ICLR 2024; lupantech/MathVista evaluation/
extract_answer.py) asks GPT-4 to extract the answer from the reply, then normalises it and compares it
with the gold (calculate_score.py; lmms-eval 0.7.3 tasks/mathvista/mathvista_evals.py). No paid model runs
here: the training verifiers read the tagged answer and score it, so figures are close to, not identical
with, published MathVista numbers. Given the extracted answer, the published normalisation is followed
except (tests/eval/test_eval_parity_mathvista.py, row by row): an integer answer is not truncated ("3.7" is
not 3), and a multiple-choice answer that names no option scores 0 where MathVista picks the option with the
smallest edit distance.
"""
from sapo_vl.evaluation.task import Task

TASK = Task(
    name="mathvista_testmini", domain="math", recipe="mathvista", split="testmini", size=1000,
    description="MathVista testmini: math on figures; choice / math / exact per row (no LLM judge).",
    row_verifiers=("choice", "math", "exact"),
    scoring="judge", rule="GPT-4 answer extraction + normalised match replaced by our verifiers",
    source="Lu et al. 2024, MathVista; lupantech/MathVista evaluation/extract_answer.py, calculate_score.py",
)

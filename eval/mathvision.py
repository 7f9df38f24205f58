"""mathvision: MATH-Vision test split (3,040 competition problems with a figure).

    sapo-vl eval --task mathvision --model Qwen/Qwen3-VL-2B-Instruct --out runs/eval/mathvision
    sapo-vl eval --task mathvision --model PATH --data-path /data/MathVision --out runs/eval/mathvision

Prompt: the recipe's (question, options A-E when there are any, "Think step by step, then give the final
answer inside <answer></answer>."). Every row is kept as MATH-V's own harness keeps it: one merged picture
per row (`<image2>` ... in the text name its parts and stay as text), no option block when the options are
just "A" ... "E" (3,040 of 3,040 rows, measured on the release: README, "Checking a benchmark release"). Answer: <answer> content, else the last \\boxed{} (what MATH-V reads).
Scoring per row: with options -> `choice` (letter or option text); free form -> `math` (math-verify).

Published rule reproduced: MATH-V's evaluation (Wang et al., NeurIPS 2024 Datasets and Benchmarks;
mathllm/MATH-V evaluation/evaluate.py and utils.py): the answer is the last \\boxed{} (or the text after
"the answer is"), normalised, and it must equal the gold letter or the gold option's text, or evaluate to
the same number to 2 decimals (latex2sympy). We compare at 2 decimals too (`row_params`: `math` and
`choice` with `float_rounding=2`, so "3.14" matches "\\pi" and "0.67" picks the option "$\\frac{2}{3}$").
Deliberate differences: math-verify drops units ("5 cm" = 5) where latex2sympy fails on them; we read the
last <answer> first; a reply naming a letter in a sentence ("It is C.") counts; row by row:
tests/eval/test_eval_parity_mathvision.py.
"""
from sapo_vl.evaluation.task import Task

TASK = Task(
    name="mathvision", domain="math", recipe="mathvision", split="test", size=3040,
    description="MATH-Vision test: competition math with figures; choice (options) or math (free form).",
    row_verifiers=("choice", "math"), row_params={"choice": {"float_rounding": 2}, "math": {"float_rounding": 2}},
    scoring="rule", rule="MATH-V boxed answers: gold letter, gold option text, or an equal value",
    source="Wang et al. 2024, MATH-Vision; mathllm/MATH-V evaluation/evaluate.py, utils.py",
)

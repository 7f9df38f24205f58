"""mathvision_testmini: the 304-problem testmini split of MATH-Vision; prompt and scoring as `mathvision`.

    sapo-vl eval --task mathvision_testmini --model Qwen/Qwen3-VL-2B-Instruct --out runs/eval/mathvision_mini

Published rule reproduced: MATH-V's evaluation (mathllm/MATH-V evaluation/evaluate.py, utils.py), as in
`mathvision`, numbers compared at 2 decimals (eval/mathvision.py says how,
tests/eval/test_eval_parity_mathvision.py where we differ).
"""
from sapo_vl.evaluation.task import Task

TASK = Task(
    name="mathvision_testmini", domain="math", recipe="mathvision", split="testmini", size=304,
    description="MATH-Vision testmini (304 problems): quick version of `mathvision`.",
    row_verifiers=("choice", "math"), row_params={"choice": {"float_rounding": 2}, "math": {"float_rounding": 2}},
    scoring="rule", rule="MATH-V boxed answers: gold letter, gold option text, or an equal value",
    source="Wang et al. 2024, MATH-Vision; mathllm/MATH-V evaluation/evaluate.py, utils.py",
)

"""chartqa_test: ChartQA test split (2,500 questions on real charts), scored by relaxed accuracy.

    sapo-vl eval --task chartqa_test --model Qwen/Qwen3-VL-2B-Instruct --out runs/eval/chartqa
    sapo-vl eval --task chartqa_test --model PATH --data-path /data/ChartQA --out runs/eval/chartqa   (local copy)

Prompt: the recipe's ("{question}\\nGive the final answer, a single number or word, inside <answer></answer>.").
Answer: the content of <answer> (see EXTRACTION in sapo_vl/evaluation/task.py), then `numeric`:
a number within 5% of a numeric gold, |pred - gold| / |gold| <= 0.05; a text gold needs a case-insensitive
exact match.

Published rule reproduced: ChartQA's relaxed accuracy (Masry et al., Findings of ACL 2022, section 5.1,
after Methani et al. 2020), as implemented by `relaxed_correctness` in google-research/pix2struct
(pix2struct/metrics.py), which Qwen-VL's and lmms-eval's ChartQA scoring reuse. Known differences
(tests/eval/test_eval_parity_chartqa.py lists them row by row): that implementation reads "45%" as 0.45 and
compares a gold of 0 as a string, and applies the rule to the raw reply, where we first extract the answer.
"""
from sapo_vl.evaluation.task import Task

TASK = Task(
    name="chartqa_test", domain="charts", recipe="chartqa", metric="relaxed accuracy", split="test", size=2500,
    description="ChartQA test: questions on real charts, relaxed accuracy (5% for numbers, exact for text).",
    verifier="numeric", verifier_params={"tolerance": 0.05},
    scoring="rule", rule="ChartQA relaxed accuracy: numbers within 5% relative error, text exact (case-insensitive)",
    source="Masry et al. 2022, ChartQA, sec. 5.1; google-research/pix2struct pix2struct/metrics.py relaxed_correctness",
)

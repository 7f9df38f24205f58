"""chartqa_test: ChartQA test split (2,500 questions on real charts), scored by relaxed accuracy.

    sapo-vl eval --task chartqa_test --model Qwen/Qwen3-VL-2B-Instruct --out runs/eval/chartqa
    sapo-vl eval --task chartqa_test --model PATH --data-path /data/ChartQA --out runs/eval/chartqa   (local copy)

Prompt: the recipe's ("{question}\\nGive the final answer, a single number or word, inside <answer></answer>.").
Answer: the content of <answer> (see EXTRACTION in sapo_vl/evaluation/task.py), then `numeric`:
a number within 5% of a numeric gold, |pred - gold| / |gold| <= 0.05; a text gold needs a case-insensitive
exact match. A percent sign is dropped ("45%" reads as 45), as the chartqa training reward reads it.

Published rule reproduced: ChartQA's relaxed accuracy (Masry et al., Findings of ACL 2022, section 5.1,
after Methani et al. 2020), as implemented by `relaxed_correctness` in google-research/pix2struct
(pix2struct/metrics.py), which Qwen-VL's and lmms-eval's (0.7.3, tasks/chartqa/utils.py) ChartQA scoring
reuse. Deliberate differences (tests/eval/test_eval_parity_chartqa.py lists them row by row): we extract the
answer first (<answer>, "answer is"), where the published code compares the raw reply; we read numbers the
way people write them ("1,234", "1 234", "$12", "1/4", "12 million" -> 12), where float() fails and the
reply becomes text; a gold of 0 is compared as a number ("0.0" = "0"), not as a string; a trailing full stop
is ignored in text answers; and "45%" reads as 45, where the published code reads 0.45 (ChartQA golds are
written without the sign: a bar labelled 45% has the gold "45", which the published rule fails when the reply
keeps the sign; `numeric` with `percent="fraction"` reproduces the published reading).
"""
from sapo_vl.evaluation.task import Task

TASK = Task(
    name="chartqa_test", domain="chart", recipe="chartqa", metric="relaxed accuracy", split="test", size=2500,
    description="ChartQA test: questions on real charts, relaxed accuracy (5% for numbers, exact for text).",
    verifier="numeric", verifier_params={"tolerance": 0.05},
    scoring="rule", rule="ChartQA relaxed accuracy: numbers within 5% relative error, text exact (case-insensitive)",
    source="Masry et al. 2022, ChartQA, sec. 5.1; google-research/pix2struct pix2struct/metrics.py relaxed_correctness",
)

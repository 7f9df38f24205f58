"""geometry3k_test: Geometry3K test split (601 problems on a diagram), free-form answers.

    sapo-vl eval --task geometry3k_test --model Qwen/Qwen3-VL-2B-Instruct --out runs/eval/geo3k
    sapo-vl eval --task geometry3k_test --model PATH --data-path /data/geometry3k --out runs/eval/geo3k

Prompt: the recipe's (the problem, "Think step by step, then give the final answer inside
<answer></answer>."). Answer: <answer> / \\boxed{} content, else math-verify's free-text extraction;
`math` checks equivalence (2\\sqrt{221} = \\sqrt{884}, \\frac{40}{3} = 13.333333).

No published rule is reproduced: Geometry3K (Lu et al., ACL 2021, Inter-GPS) reports 4-way multiple-choice
accuracy; R1-style VLM work (EasyR1's geometry3k example) scores the free-form answer with math-verify,
which is what this task does, with the training reward's own verifier.
"""
from sapo_vl.evaluation.task import Task

TASK = Task(
    name="geometry3k_test", domain="math", recipe="geometry3k", split="test", size=601,
    description="Geometry3K test: geometry on a diagram, free-form answers (math-verify).",
    verifier="math",
    scoring="ours", rule="math-verify equivalence of the free-form answer (as the training reward)",
    source="Lu et al. 2021, Inter-GPS / Geometry3K; hiyouga/geometry3k (free-form answers)",
)

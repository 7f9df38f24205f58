"""synthetic_geometry: labelled triangles, rectangles and circles; exact answers such as 5\\sqrt{2} or 49\\pi.

    sapo-vl eval --task synthetic_geometry --model sapo-vl/tiny-qwen3-vl --out runs/eval/geometry

Prompt: the recipe's ("Find x, the length of the hypotenuse. Give the exact answer."). Answer: the tagged
or boxed answer, else math-verify's own free-text extraction; `math` checks equivalence (math-verify).
"""
from sapo_vl.evaluation.task import Task

TASK = Task(
    name="synthetic_geometry", domain="math", recipe="synthetic_geometry", split="test", size=200,
    description="Synthetic geometry figures; exact answers checked for mathematical equivalence.",
    verifier="math", format_style=None, max_new_tokens=512,
    scoring="ours", rule="math-verify equivalence of the final answer (math verifier)",
    source="data_recipes/synthetic_geometry.py",
)

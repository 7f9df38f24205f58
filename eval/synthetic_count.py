"""synthetic_count: count flat shapes (all, one kind, or one colour) on a white canvas.

    sapo-vl eval --task synthetic_count --model sapo-vl/tiny-qwen3-vl --out runs/eval/count

Prompt: the recipe's ("How many circles are there in this image? Answer with a single number.").
Answer: the last number mentioned (digits or words), or the first after "answer is"; `count` needs it exact.
"""
from sapo_vl.evaluation.task import Task

TASK = Task(
    name="synthetic_count", domain="reasoning", recipe="synthetic_count", split="test", size=200,
    description="Count synthetic shapes; the integer must be exact.",
    verifier="count", format_style=None, max_new_tokens=256,
    scoring="ours", rule="exact integer match (count verifier)", source="data_recipes/synthetic_count.py",
)

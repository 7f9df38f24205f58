"""synthetic_color: the dominant colour of a picture, one word from a small palette (the demo task).

    sapo-vl eval --task synthetic_color --model sapo-vl/tiny-qwen3-vl --out runs/eval/color

Prompt: the recipe's ("What is the dominant color in this image? Answer with just the color, one of: ...").
Answer: the reply itself, or the extracted answer when it has tags; scored by `exact` (SQuAD normalisation).
"""
from sapo_vl.evaluation.task import Task

TASK = Task(
    name="synthetic_color", domain="reasoning", recipe="synthetic_color", split="test", size=200,
    description="Dominant colour of a synthetic picture (the training demo's task).",
    verifier="exact", format_style=None, max_new_tokens=256,
    scoring="ours", rule="normalised exact match of the colour word (exact verifier)",
    source="data_recipes/synthetic_color.py",
)

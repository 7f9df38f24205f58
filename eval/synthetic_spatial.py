"""synthetic_spatial: CLEVR-like counting where every question has a spatial relation.

    sapo-vl eval --task synthetic_spatial --model sapo-vl/tiny-qwen3-vl --out runs/eval/spatial

Data: the synthetic_clevr recipe with `relations=1.0`, so every question reads "How many red cubes are
left of / right of / in front of / behind the large sphere?". Prompt: the recipe's ("... Answer with a
single number."). Answer: as in synthetic_count; `count` needs it exact.
"""
from sapo_vl.evaluation.task import Task

TASK = Task(
    name="synthetic_spatial", domain="reasoning", recipe="synthetic_clevr", split="test", size=200,
    options={"relations": 1.0},
    description="Spatial relations on CLEVR-like 2D scenes: count objects left of / behind a reference.",
    verifier="count", format_style=None, max_new_tokens=256,
    scoring="ours", rule="exact integer match (count verifier)", source="data_recipes/synthetic_clevr.py",
)

"""synthetic_chart: read bar, line and pie charts drawn with PIL (values, largest / smallest, differences).

    sapo-vl eval --task synthetic_chart --model sapo-vl/tiny-qwen3-vl --out runs/eval/chart

Prompt: the recipe's ("... Answer with a single number or label."). Scoring per row, as in training:
numeric answers by `numeric` (ChartQA's 5% relative tolerance), labels (a fruit, a year) by `exact`.
"""
from sapo_vl.evaluation.task import Task

TASK = Task(
    name="synthetic_chart", domain="chart", recipe="synthetic_chart", split="test", size=200,
    metric="relaxed accuracy",
    description="Synthetic bar / line / pie charts: read a value, find the extreme, take a difference.",
    row_verifiers=("numeric", "exact"), format_style=None, max_new_tokens=256,
    scoring="ours", rule="5% relative tolerance for numbers, normalised exact match for labels",
    source="data_recipes/synthetic_chart.py",
)

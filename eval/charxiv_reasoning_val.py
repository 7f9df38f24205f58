"""charxiv_reasoning_val: CharXiv reasoning questions, validation split (1,000 charts from arXiv papers).

    sapo-vl eval --task charxiv_reasoning_val --model Qwen/Qwen3-VL-2B-Instruct --out runs/eval/charxiv
    sapo-vl eval --task charxiv_reasoning_val --model PATH --data-path /data/CharXiv --out runs/eval/charxiv

Data and prompt: the `charxiv` recipe (the hub's parquet, or the release repository's
`data/reasoning_val.json` with `images/`): the question, for type 4 the official precision hint ("Your final
answer must be an exact integer." or "... a number with N decimal places."), then "Think step by step, then
give the final answer inside <answer></answer>.". Scoring per row: numeric answers (types 3, 4) -> `numeric`
with tolerance 0 (the value must be equal: "3.50" = "3.5"); text answers -> `exact` (normalised).

The published harness uses an LLM judge: CharXiv (Wang et al., NeurIPS 2024 Datasets and Benchmarks;
princeton-nlp/CharXiv) grades each reasoning answer with GPT-4o and type-specific grading instructions.
Our verifiers replace it; text answers that a judge would accept as paraphrases score 0 here.
"""
from sapo_vl.evaluation.task import Task

TASK = Task(
    name="charxiv_reasoning_val", domain="chart", recipe="charxiv", split="validation", size=1000,
    description="CharXiv reasoning (validation): questions on arXiv charts; numeric (exact value) or exact text.",
    row_verifiers=("numeric", "exact"),
    scoring="judge", rule="GPT-4o grading replaced by our verifiers (numbers equal in value, text exact)",
    source="Wang et al. 2024, CharXiv; princeton-nlp/CharXiv (GPT-4o grading of reasoning answers)",
)

"""clevr_count: CLEVR counting (200 test scenes of BUAADreamer/clevr_count_70k), integer match.

    sapo-vl eval --task clevr_count --model Qwen/Qwen3-VL-2B-Instruct --out runs/eval/clevr
    sapo-vl eval --task clevr_count --model PATH --data-path /data/superclevr_test --out runs/eval/superclevr

Super-CLEVR counting (R1-V's 200-question test set) runs the same way from a local copy in the recipe's
schema (`images` or `image`, `problem`, `answer` or `solution`).

Prompt: the recipe's ("{question}\\nThink step by step, then give the number inside <answer></answer>.").
Answer: only <answer> or \\boxed{} content counts (`tags_only`), as in R1-V; `count` needs the integer
exact.

Published rule reproduced: R1-V's counting evaluation (Chen et al. 2025, R1-V; src/eval/
test_qwen2vl_counting_superclevr.py): the integer inside <answer></answer> must equal the ground truth.
Differences (ours is more lenient): number words ("three"), "3.0", "3 cubes" and a boxed count inside the
tag count. Deliberate: the last tag wins where R1-V reads the first tag holding an integer, because RL
replies revise themselves and the format reward asks for one tag; row by row:
tests/eval/test_eval_parity_clevr.py.
"""
from sapo_vl.evaluation.task import Task

TASK = Task(
    name="clevr_count", domain="reasoning", recipe="clevr_count", split="test", size=200,
    metric="accuracy (integer match)",
    description="CLEVR / Super-CLEVR counting: the integer in <answer> must equal the count.",
    verifier="count", verifier_params={"tags_only": True},
    scoring="rule", rule="integer in <answer></answer> equals the ground truth",
    source="R1-V (Chen et al. 2025) src/eval/test_qwen2vl_counting_superclevr.py",
)

"""mmmu_val: MMMU validation (900 college-level questions, 30 subjects, interleaved images).

    sapo-vl eval --task mmmu_val --model Qwen/Qwen3-VL-2B-Instruct --out runs/eval/mmmu
    sapo-vl eval --task mmmu_val --model PATH --data-path /data/MMMU --out runs/eval/mmmu      (local copy)
    sapo-vl eval --task mmmu_val ... -o subject=Math                                          (one subject)

Prompt: the recipe's (question, lettered options, "Answer with the option's letter.", then "Think step by
step, then give the final answer inside <answer></answer>.").
Scoring per row as the recipe assigns it: multiple choice -> `choice` with the option texts (a letter
mark, else an option text, the last answer given wins); open questions (about 6%) -> `math` when the
accepted answers are numbers, else `exact` (case-insensitive, every accepted answer counts, as MMMU's
`eval_open` lowercases and accepts any of them).

Published rule reproduced: MMMU's option parsing (Yue et al., CVPR 2024; MMMU-Benchmark/MMMU
eval/eval_utils.py `parse_multi_choice_response`): letters in parentheses "(B)", else letters standing
alone " B ", else (in replies of more than 5 words) an option's text; with several candidates the last
mention wins. Open questions: numbers compare at 2 decimals (MMMU's `normalize_str` rounds to 2), so `math`
runs with `float_rounding=2` on those rows (`row_params`). A word answer must be the whole reply's answer
under `exact`, where MMMU accepts a reply that contains it anywhere ("… the embryonic stage").

Deliberate differences: when nothing parses, MMMU picks a random option (1/n expected credit); we give 0,
always the same for the same reply, since an eval score should not be a coin flip. We read the answer in
<answer> or after "answer is" first, and a letter only where it is marked as a pick ("(B)", "option B",
"B.", "It is B.", "I choose B"), where MMMU takes any " B " standing alone and the last bracketed letter even
when the reply rejects it. Row by row: tests/eval/test_eval_parity_mmmu.py.
"""
from sapo_vl.evaluation.task import Task

TASK = Task(
    name="mmmu_val", domain="reasoning", recipe="mmmu", metric="accuracy (micro)", split="validation", size=900,
    description="MMMU validation: multiple choice over 30 subjects (choice), open questions (math / exact).",
    row_verifiers=("choice", "math", "exact"), row_params={"math": {"float_rounding": 2}},
    scoring="rule",
    rule="MMMU option parsing (bracketed letter, lone letter, option text; last mention wins), no random fallback",
    source="Yue et al. 2024, MMMU; MMMU-Benchmark/MMMU eval/eval_utils.py parse_multi_choice_response",
)

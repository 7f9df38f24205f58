"""The real architecture on this CPU: random weights in Qwen3-VL-2B's exact shapes (vocabulary 151,936, 28 layers,
head_dim 128, 24-block deepstack vision tower, 2.13 B parameters) train one SAPO step with LoRA through the
DeepSpeed engine, through both update paths (packed and row), and the memory plan holds against the measured
peak resident memory within ±25% at that size (not only at 25M parameters).

Slow and memory-heavy (~13 GB peak, about a minute per step): run it alone, e.g.
    flock /path/to/bigmem.lock .venv/bin/python -m pytest -m slow tests/test_real_shape.py
"""
import sys
from pathlib import Path

import pytest

from sapo_vl.config import load_config
from sapo_vl.memplan import GIB, plan_memory
from test_memplan import _measure, _run_overrides
from train_helpers import REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def qwen3_vl_2b_shapes(tmp_path_factory) -> Path:
    """A checkpoint of random weights in Qwen3-VL-2B's shapes (bf16 on disk, 4.3 GB), the tiny tokenizer."""
    sys.path.insert(0, str(REPO / "bench"))
    from bench_engines import build_model

    out = tmp_path_factory.mktemp("qwen3_vl_2b_shapes")
    return Path(build_model("qwen3-vl-2b", str(out)))


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "row"])
def test_one_lora_step_at_qwen3_vl_2b_shapes_and_the_plan_holds(qwen3_vl_2b_shapes, tmp_path, packed):
    over = _run_overrides(tmp_path, str(qwen3_vl_2b_shapes), {
        "model.lora.r": 8, "model.dtype": "float32", "deepspeed.precision": "fp32",
        "rollout.prompts_per_step": 1, "rollout.group_size": 4, "rollout.max_new_tokens": 16,
        "deepspeed.micro_batch_size": 4, "data.max_prompt_tokens": 128, "model.min_pixels": 1024,
        "model.max_pixels": 4096, "algorithm.shared_prefix": str(packed).lower()})
    measured = _measure(over, tmp_path)  # peak RSS growth of one training step, from just before the weights load
    plan = plan_memory(load_config(REPO / "configs/demo.yaml", over), 1, device="cpu")
    assert 2.0e9 < plan.params < 2.3e9  # the real architecture, not the tiny one
    ratio = measured / (plan.peak_gib * GIB)
    print(f"{'packed' if packed else 'row'}: plan {plan.peak_gib:.2f} GiB, measured {measured / GIB:.2f} GiB, "
          f"ratio {ratio:.2f}")
    assert 0.75 <= ratio <= 1.25

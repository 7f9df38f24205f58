"""GPU checks (marked `gpu`, skipped without CUDA): bf16 training and ZeRO-3 rollouts on a real accelerator.

Run them on a GPU machine with `pytest -m gpu` (one GPU; the ZeRO-3 one uses 2 when there are 2).
"""
import pytest
import torch

from train_helpers import launch, metrics, small_overrides

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_bf16_training_on_one_gpu(tmp_path, tiny_dense):
    ov = small_overrides(tmp_path, "bf16", **{"deepspeed.precision": "bf16", "model.dtype": "bfloat16",
                                               "train.steps": 3})
    res = launch(ov, ranks=1, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = metrics(tmp_path / "bf16")
    assert len(rows) == 3 and all(r["grad_norm"] >= 0 for r in rows)
    assert "on cuda" in res.stdout


def test_zero3_rollout_and_update_on_gpus(tmp_path, tiny_dense):
    ranks = min(2, torch.cuda.device_count())
    ov = small_overrides(tmp_path, "z3gpu", **{"deepspeed.zero_stage": 3, "deepspeed.precision": "bf16",
                                                "model.dtype": "bfloat16"})
    res = launch(ov, ranks=ranks, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert len(metrics(tmp_path / "z3gpu")) == 2

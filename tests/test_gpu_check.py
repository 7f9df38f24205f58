"""`bench/gpu_check.py` (`make gpu-check`): without a GPU it says so and exits non-zero; its sections run on the
CPU at toy sizes (`--device cpu`), which checks the plumbing the GPU run goes through."""
import subprocess
import sys

import pytest
import torch

from train_helpers import REPO


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible: the check would run")
def test_without_a_gpu_it_says_so_and_exits_non_zero():
    res = subprocess.run([sys.executable, "bench/gpu_check.py"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert "no CUDA GPU visible" in res.stderr and "nothing was checked" in res.stderr
    assert "| section |" not in res.stdout  # no table of things that did not run


@pytest.mark.slow
def test_cpu_dry_mode_runs_the_sections_and_prints_one_table():
    res = subprocess.run([sys.executable, "bench/gpu_check.py", "--device", "cpu", "--only",
                          "update-2b,decode-2b,vllm-parity"], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "gpu-check on CPU (dry mode)" in res.stdout
    table = [l for l in res.stdout.splitlines() if l.startswith("| ")]
    assert [l.split(" | ")[0].strip("| ") for l in table[1:]] == ["update-2b", "decode-2b", "vllm-parity"]
    assert "| update-2b | pass | row " in res.stdout and "packed" in res.stdout
    assert "| decode-2b | pass | hf " in res.stdout and "tokens/s" in res.stdout

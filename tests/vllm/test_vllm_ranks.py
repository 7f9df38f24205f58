"""Two training ranks under ZeRO-3 (torchrun, gloo on CPU), each with its own vLLM engine fed the gathered weights."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.vllm
pytest.importorskip("vllm.entrypoints.llm")  # the real vLLM, not a namespace package

HERE = Path(__file__).parent


def _port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_zero3_ranks_each_sync_their_own_engine(vllm_checkpoints, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", DS_ACCELERATOR="cpu",
               PYTHONUNBUFFERED="1")
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_port()),
           str(HERE / "zero3_ranks.py"), str(vllm_checkpoints["dense"]), str(tmp_path)]
    res = subprocess.run(cmd, cwd=HERE.parent.parent, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-6000:]
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for r, rep in enumerate(reports):
        assert rep["rank"] == r and rep["world"] == 2 and rep["zero_stage"] == 3
        assert rep["rows"] == 3
        assert rep["gap_before"] <= 1e-4 and rep["gap_after"] <= 1e-4, rep
        assert rep["changed"], rep  # the optimizer step reached each rank's engine

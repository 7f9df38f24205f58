"""Data parallel eval: `torchrun --nproc_per_node 2 -m sapo_vl.evaluation` on 2 CPU ranks (gloo) gives the
summary and the samples of one process."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from eval_helpers import samples, without_timing

REPO = Path(__file__).resolve().parents[2]
ARGS = ["--task", "synthetic_count", "--model", "sapo-vl/tiny-qwen3-vl", "--limit", "7", "--batch-size", "2",
        "--n-samples", "2", "--temperature", "1", "--max-new-tokens", "5", "--min-pixels", "1024",
        "--max-pixels", "4096", "--no-progress"]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(ranks: int, out: Path):
    env = dict(os.environ, DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
               CUDA_VISIBLE_DEVICES="")
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks), "--master_port",
                 str(_port())] if ranks > 1 else [sys.executable])
    return subprocess.run([*launcher, "-m", "sapo_vl.evaluation", *ARGS, "--out", str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_two_ranks_merge_to_the_one_process_result(tiny_dense, tmp_path):
    one, two = _run(1, tmp_path / "one"), _run(2, tmp_path / "two")
    for res in (one, two):
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    s1 = json.loads((tmp_path / "one" / "summary.json").read_text())
    s2 = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert s2["timing"]["world_size"] == 2 and s1["timing"]["world_size"] == 1
    assert without_timing(s2) == without_timing(s1)
    assert samples(tmp_path / "two") == samples(tmp_path / "one")
    assert two.stdout.count("pass@1 (mean of K)") == 1  # only rank 0 prints
    # 7 records in 4 batches over 2 ranks: rank 1 sits out the last round; resuming on 2 ranks has nothing to do
    again = _run(2, tmp_path / "two")
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-4000:]
    assert json.loads((tmp_path / "two" / "summary.json").read_text())["timing"]["samples_generated"] == 0

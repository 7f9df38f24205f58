"""Split placement with vLLM on the rollout rank (torchrun, 1 trainer + 1 rollout rank, gloo on CPU): the rollout
rank's engine takes the trainer's weights over torch.distributed and samples what the colocated vLLM run samples."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sapo_vl.launch import free_port

pytestmark = pytest.mark.vllm
pytest.importorskip("vllm.entrypoints.llm")  # the real vLLM, not a namespace package

REPO = Path(__file__).parent.parent.parent


def _run(checkpoint, out: Path, name: str, ranks: int, *extra: str) -> list[dict]:
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", DS_ACCELERATOR="cpu")
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks), "--master_port",
                str(free_port()), "-m"] if ranks > 1 else [sys.executable, "-m"]
    cmd = [*launcher, "sapo_vl.train", "configs/demo.yaml", f"model.name_or_path={checkpoint}", "train.steps=3",
           "train.format_warmup_steps=4", f"logging.out_dir={out}", f"logging.run_name={name}",
           "logging.progress=false", "logging.plots=false", "logging.tensorboard=false", "logging.sample_every=1",
           "rollout.engine=vllm", "rollout.vllm.max_num_seqs=128", *extra]
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1500)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-6000:]
    return [json.loads(line) for line in (out / name / "metrics.jsonl").read_text().splitlines() if line]


def _texts(out: Path, name: str) -> list[list[str]]:
    return [[json.loads(l)["response"] for l in f.open()] for f in sorted((out / name / "samples").iterdir())]


def test_split_with_vllm_rollout_rank_samples_what_the_colocated_vllm_run_samples(vllm_checkpoints, tmp_path):
    ckpt = vllm_checkpoints["dense"]
    colo = _run(ckpt, tmp_path, "colo", 1)
    split = _run(ckpt, tmp_path, "split", 2, "rollout.placement=split")
    assert _texts(tmp_path, "split") == _texts(tmp_path, "colo")  # same prompts, seeds and weights each step
    for a, b in zip(split, colo):
        assert a["staleness"] == 0
        assert abs(a["reward_mean"] - b["reward_mean"]) < 1e-6 and abs(a["loss"] - b["loss"]) < 1e-5, (a, b)
        assert a["mismatch_kl"] < 1e-6  # float32: the rollout rank's weights are the trainer's
    one_off = _run(ckpt, tmp_path, "k1", 2, "rollout.placement=split", "rollout.max_staleness=1")
    assert [r["staleness"] for r in one_off] == [0, 1, 1]
    assert one_off[1]["mismatch_kl"] > 1e-5  # sampled with the weights one update older

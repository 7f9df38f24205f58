"""Helpers for the training tests: a small config, and launching the real DeepSpeed engine on 2 CPU ranks."""
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

MIXED_RECIPE = '''
"""Test recipe: even records have an image (dominant color), odd ones are text-only arithmetic."""
from PIL import Image
from sapo_vl.data.record import Record, user_prompt
from sapo_vl.data.images import encode_png

NAME, DOMAIN, SOURCE, VERIFIER = "mixed_test", "reasoning", "synthetic:test", "exact"
DESCRIPTION, PROMPT = "image and text-only records alternating", "{question}"


def records(split="train", *, seed=0, limit=None, root=None):
    colors = {"red": (220, 20, 20), "blue": (20, 20, 220)}
    for i in range(limit or 40):
        if i % 2 == 0:
            name = list(colors)[(i // 2) % 2]
            img = Image.new("RGB", (64, 64), colors[name])
            yield Record(id=f"mixed/{i}", prompt=user_prompt("Dominant color?"), answer=name,
                         images=[encode_png(img)], verifier="exact", domain="reasoning", source=SOURCE)
        else:
            yield Record(id=f"mixed/{i}", prompt=[{"role": "user", "content": [{"type": "text", "text": f"{i}+1=?"}]}],
                         answer=str(i + 1), images=[], verifier="exact", domain="reasoning", source=SOURCE)
'''


def small_overrides(out_dir: Path, run_name: str, **extra) -> list[str]:
    base = {
        "logging.out_dir": str(out_dir), "logging.run_name": run_name, "logging.progress": "false",
        "logging.tensorboard": "false", "train.steps": "2", "rollout.prompts_per_step": "2",
        "rollout.group_size": "4", "rollout.max_new_tokens": "4", "algorithm.updates_per_rollout": "2",
        "algorithm.num_minibatches": "2", "deepspeed.micro_batch_size": "2", "model.min_pixels": "1024",
        "model.max_pixels": "4096", "data.max_prompt_tokens": "128", "optimizer.lr": "1e-3",
    }
    base.update({k: str(v) for k, v in extra.items()})
    return [f"{k}={v}" for k, v in base.items()]


def launch(overrides: list[str], *, ranks: int = 2, timeout: int = 600, config: str = "configs/demo.yaml",
           launcher: str = "torchrun"):
    """Run `torchrun --nproc_per_node RANKS -m sapo_vl.train` (or `deepspeed --num_gpus RANKS`, or one plain
    process) and return the completed process."""
    import torch

    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    if not torch.cuda.is_available():
        env["DS_ACCELERATOR"] = "cpu"
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)  # an in-process test's group of one must not leak into the launched processes
    if ranks == 1:
        cmd = [sys.executable, "-m", "sapo_vl.train", config, *overrides]
    elif launcher == "deepspeed":
        ds_bin = str(Path(sys.executable).parent / "deepspeed")
        cmd = [ds_bin, "--num_gpus", str(ranks), "--master_port", str(_port()), "--module", "sapo_vl.train",
               config, *overrides]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks), "--master_port",
               str(_port()), "-m", "sapo_vl.train", config, *overrides]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def _port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines() if l]

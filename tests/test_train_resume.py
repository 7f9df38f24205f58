"""Resume after SIGKILL gives the same metrics as an uninterrupted run; a crash mid-save loses nothing."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sapo_vl.ds import latest_checkpoint
from train_helpers import REPO, launch, metrics, small_overrides

TIMING = {"rollout_s", "score_s", "update_s", "step_s", "tokens_per_s", "score_per_s"}


def _comparable(row):
    return {k: v for k, v in row.items() if k not in TIMING}


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path, tiny_dense):
    extra = {"train.steps": 5, "logging.save_every": 2, "algorithm.num_minibatches": 2}
    full = launch(small_overrides(tmp_path, "full", **extra), ranks=1)
    assert full.returncode == 0, full.stderr[-3000:]
    expected = metrics(tmp_path / "full")
    assert len(expected) == 5

    env = dict(os.environ, DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    cmd = [sys.executable, "-m", "sapo_vl.train", "configs/demo.yaml", *small_overrides(tmp_path, "killed", **extra)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run_dir = tmp_path / "killed"
    deadline = time.time() + 300
    while latest_checkpoint(run_dir) is None and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ckpt = latest_checkpoint(run_dir)
    assert ckpt is not None and ckpt.name in ("step_2", "step_4")
    resumed = launch(small_overrides(tmp_path, "killed", **extra, **{"train.resume": "auto"}), ranks=1)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {ckpt}" in resumed.stdout
    got = metrics(run_dir)
    assert [r["step"] for r in got] == list(range(5))
    start = int(ckpt.name.split("_")[1])
    for a, b in zip(expected[start:], got[start:]):
        assert _comparable(a) == _comparable(b)


def test_crash_mid_save_keeps_last_good_checkpoint(tmp_path):
    root = tmp_path / "run" / "checkpoints"
    (root / "step_2").mkdir(parents=True)
    (root / "step_2" / "COMPLETE").write_text("2")
    (root / "latest").write_text("step_2")
    # a save of step 4 that died half way: its temporary folder exists, nothing was renamed
    (root / ".step_4.tmp" / "ds").mkdir(parents=True)
    assert latest_checkpoint(tmp_path / "run") == root / "step_2"
    # died between removing an old copy of step_4 and renaming the new one: `latest` points nowhere valid
    (root / "latest").write_text("step_4")
    assert latest_checkpoint(tmp_path / "run") == root / "step_2"
    (root / "step_3").mkdir()  # incomplete (no COMPLETE marker) is never chosen
    assert latest_checkpoint(tmp_path / "run") == root / "step_2"
    assert latest_checkpoint(tmp_path / "nothing") is None

"""Every shipped launch script, run through the real `deepspeed` launcher on this CPU (`--dry-run`: the launcher
starts the rank process, which parses the script's arguments, plans memory and prints the DeepSpeed config),
`sapo-vl compare --launcher "deepspeed --num_gpus 1"` for one tiny step, and the launcher command lines."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sapo_vl.launch import LaunchError, train_command
from train_helpers import REPO, small_overrides

SCRIPTS = sorted(p.name for p in (REPO / "scripts").glob("train_*.sh"))
FAST = {"train_qwen3vl_2b.sh", "train_multinode.sh"}  # the others differ only in their config: slow (~20 s each)


def _launcher_env(tmp_path: Path) -> dict:
    """PATH with a `deepspeed` that is DeepSpeed's own launcher (`deepspeed.launcher.runner`) under this
    interpreter (an installed `deepspeed` script may name another venv's Python), then this venv's `sapo-vl`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    shim = bin_dir / "deepspeed"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m deepspeed.launcher.runner "$@"\n')
    shim.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{Path(sys.executable).parent}:{os.environ['PATH']}", NUM_GPUS="1",
               HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", DS_ACCELERATOR="cpu")
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    return env


def _ds_config(stdout: str) -> dict:
    import ast

    line = next(l for l in stdout.splitlines() if l.startswith("deepspeed config: "))
    return ast.literal_eval(line.removeprefix("deepspeed config: "))  # the dry run prints the dict


def test_every_training_script_is_tested():
    assert set(SCRIPTS) == {"train_qwen3vl_2b.sh", "train_qwen3vl_4b.sh", "train_qwen3vl_8b.sh",
                            "train_qwen3vl_32b.sh", "train_qwen3vl_30b_a3b.sh", "train_multinode.sh"}
    for name in SCRIPTS:
        assert " -m sapo_vl" not in (REPO / "scripts" / name).read_text()  # the deepspeed launcher has no -m


@pytest.mark.parametrize("script", [s if s in FAST else pytest.param(s, marks=pytest.mark.slow) for s in SCRIPTS])
def test_script_runs_through_the_deepspeed_launcher(tmp_path, script):
    env = _launcher_env(tmp_path)
    if script == "train_multinode.sh":  # one host, this one: the launcher runs it locally, no ssh
        (tmp_path / "hostfile").write_text("localhost slots=1\n")
        env.update(HOSTFILE=str(tmp_path / "hostfile"), MASTER_ADDR="127.0.0.1", LAUNCHER_ARGS="--no_ssh_check")
    res = subprocess.run(["bash", f"scripts/{script}", "--dry-run"], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=300)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    assert "unrecognized arguments" not in out
    assert "dry run: sapo on Qwen/Qwen3-VL-" in res.stdout and "1 rank(s)" in res.stdout  # WORLD_SIZE from the launcher
    conf = _ds_config(res.stdout)
    assert conf["bf16"]["enabled"] and conf["bf16"]["check_grad_overflow"] is True  # the NaN guard's DeepSpeed half


def test_demo_script_dry_run(tmp_path):
    res = subprocess.run(["bash", "scripts/demo.sh", "--dry-run"], cwd=REPO, env=_launcher_env(tmp_path),
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    assert "dry run: sapo on sapo-vl/tiny-qwen3-vl" in res.stdout


# ------------------------------------------------------------------------------------------------- command lines
def test_each_launcher_names_the_module_its_way():
    assert train_command("deepspeed --num_gpus 8")[0][-2:] == ["--module", "sapo_vl.train"]
    assert train_command("torchrun --nproc_per_node 8")[0][-2:] == ["-m", "sapo_vl.train"]
    assert train_command(f"{sys.executable} -m torch.distributed.run --nproc_per_node 2")[0][-2:] == \
        ["-m", "sapo_vl.train"]
    assert train_command("")[0] == [sys.executable, "-m", "sapo_vl.train"]


def test_parallel_jobs_get_their_own_gpus_and_ports():
    a, env_a = train_command("deepspeed --num_gpus 4", slot=0, jobs=2, gpus=8)
    b, env_b = train_command("deepspeed --num_gpus 4", slot=1, jobs=2, gpus=8)
    assert a[a.index("--include") + 1] == "localhost:0,1,2,3" and b[b.index("--include") + 1] == "localhost:4,5,6,7"
    assert "--num_gpus" not in a and env_a == env_b == {}
    assert a[a.index("--master_port") + 1] != b[b.index("--master_port") + 1]
    t, env_t = train_command("torchrun --nproc_per_node 2", slot=3, jobs=4, gpus=8)
    assert env_t == {"CUDA_VISIBLE_DEVICES": "6,7"} and "--master_port" in t
    cpu, env_cpu = train_command("deepspeed --num_gpus 2", slot=1, jobs=2, gpus=0)  # CPU ranks: only the port
    assert "--num_gpus" in cpu and "--master_port" in cpu and env_cpu == {}
    one, _ = train_command("deepspeed --num_gpus 8", jobs=1, gpus=8)  # one job: the launcher's own choices
    assert "--master_port" not in one and "--include" not in one


@pytest.mark.parametrize("launcher,jobs,msg", [
    ("deepspeed --num_gpus 8", 2, "--jobs 2 × --num_gpus 8 = 16 GPUs, but this machine has 8"),
    ("deepspeed", 2, "how many GPUs each job takes (--num_gpus G)"),
    ("torchrun --nproc_per_node 3", 3, "= 9 GPUs, but this machine has 8"),
    ("deepspeed --include localhost:0,1", 2, "--include / --hostfile"),
])
def test_jobs_that_would_share_gpus_are_refused(launcher, jobs, msg):
    with pytest.raises(LaunchError, match="GPU|--include") as err:
        train_command(launcher, slot=0, jobs=jobs, gpus=8)
    assert msg in str(err.value)


@pytest.mark.slow
def test_compare_under_the_deepspeed_launcher_one_tiny_step(tmp_path, tiny_dense):
    ov = small_overrides(tmp_path, "cmpds", **{"model.name_or_path": str(tiny_dense), "logging.plots": "false",
                                                "logging.sample_every": 0, "train.format_warmup_steps": 0,
                                                "train.steps": 1, "algorithm.updates_per_rollout": 1,
                                                "algorithm.num_minibatches": 1, "logging.save_every": 0})
    cmd = [sys.executable, "-m", "sapo_vl.cli", "compare", "configs/demo.yaml", *ov, "--algorithms", "sapo",
           "--launcher", "deepspeed --num_gpus 1"]
    res = subprocess.run(cmd, cwd=REPO, env=_launcher_env(tmp_path), capture_output=True, text=True, timeout=600)
    log = (tmp_path / "cmpds-sapo-s0" / "compare.log")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:] + (log.read_text()[-4000:] if log.exists() else "")
    assert "--module sapo_vl.train" in res.stdout
    assert "deepspeed.launcher.launch" in log.read_text()  # it really went through the launcher
    rows = [json.loads(l) for l in (tmp_path / "cmpds-sapo-s0" / "metrics.jsonl").read_text().splitlines() if l]
    assert [r["step"] for r in rows] == [0]

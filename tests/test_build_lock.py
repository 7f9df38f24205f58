"""DeepSpeed's JIT op build lock: each environment builds into its own folder, and a training run that waits on
a lock someone else holds (a build in progress, or, with torch < 2.14's lock file, one left by a killed build)
says so within a minute, naming the file."""
import fcntl
import os
import subprocess
import sys
import threading

from sapo_vl import ds
from train_helpers import REPO, small_overrides


def test_each_environment_has_its_own_extensions_folder(monkeypatch):
    here = ds.extensions_dir()
    monkeypatch.setattr(sys, "prefix", "/some/other/.venv-vllm")
    assert ds.extensions_dir() != here and ds.extensions_dir().parent == here.parent


def test_held_locks_sees_only_locks_held_by_another_process(tmp_path):
    lock = tmp_path / "deepspeed_shm_comm" / "lock"
    lock.parent.mkdir()
    lock.write_text("")
    assert ds.held_locks(tmp_path) == []  # a lock file nobody holds blocks nobody (torch >= 2.14)
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1]); "
                               "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)", str(lock)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert ds.held_locks(tmp_path) == [lock]
    finally:
        holder.kill()
        holder.wait()
    assert ds.held_locks(tmp_path) == []


def test_a_run_waiting_on_a_build_lock_names_it_within_a_minute(tmp_path, tiny_dense):
    ext = tmp_path / "ext"
    lock = ext / "deepspeed_shm_comm" / "lock"
    lock.parent.mkdir(parents=True)
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # a build that never finishes (torch 2.13: the file alone blocks)
        env = dict(os.environ, TORCH_EXTENSIONS_DIR=str(ext), DS_ACCELERATOR="cpu", PYTHONUNBUFFERED="1")
        for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_SIZE", "MASTER_ADDR", "MASTER_PORT"):
            env.pop(var, None)
        cmd = [sys.executable, "-m", "sapo_vl.train", "configs/demo.yaml",
               *small_overrides(tmp_path, "lock", **{"model.name_or_path": str(tiny_dense)})]
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        found: list[str] = []

        def read():
            for line in proc.stderr:
                if "op build lock" in line:
                    found.append(line)
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout=90)  # (the watcher speaks after 30 s; no wall-clock assertion on a shared machine)
        alive = proc.poll() is None
        proc.kill()
        proc.wait()
    assert found, "no word about the lock"
    assert str(lock) in found[0] and "delete that file" in found[0]
    assert alive  # it said so while still waiting, instead of hanging silently


def test_a_run_leaves_no_deepspeed_shared_memory_file_behind(tmp_path, tiny_dense):
    """DeepSpeed's CPU all-reduce creates /dev/shm/deepspeed_allreduce_buffer_* (~66 MiB each) and never removes
    it; `ds.unlink_shm_buffer` does, once every rank has mapped it."""
    import subprocess
    import sys
    from pathlib import Path

    from train_helpers import REPO

    code = ("import os, sys; from sapo_vl import ds; d = ds.init_distributed(); "
            "print(ds.shm_buffer(d.rank)); import deepspeed.comm as c; print(c.is_initialized())")
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("RANK", "WORLD_SIZE", "MASTER_PORT")}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=dict(env, DS_ACCELERATOR="cpu"),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    path, initialized = out.stdout.split()[-2:]
    assert initialized == "True" and "deepspeed_allreduce_buffer" in path
    assert not Path(path).exists()

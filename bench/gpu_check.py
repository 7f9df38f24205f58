"""One GPU check: every GPU path of sapo_vl in one command, one table (`make gpu-check`).

    python3 bench/gpu_check.py                        # a machine with NVIDIA GPUs, PyTorch and the project's deps
    python3 bench/gpu_check.py --wheels .whl          # deps carried as wheels (no network): see below
    python3 bench/gpu_check.py --device cpu           # the same sections at toy sizes on the CPU (plumbing only)

Sections (each in its own process, with its own time limit; about 6 minutes in all on one H100):
- demo-bf16: the tiny demo (`configs/demo.yaml`) in bf16 through DeepSpeed on one GPU; passes when it learns
  (mean reward of the last 10 steps above the first 10's by 0.2);
- zero3: ZeRO-3 generation (parameters gathered once per rollout) and update, 2 steps, on min(2, GPUs) ranks;
- nan-guard-bf16: a poisoned optimizer step in bf16 under ZeRO 0/1/2 and the tiny model's non-finite loss leave
  every weight bit-identical and the learning-rate schedule in place (`tests/test_ds_config.py`,
  `tests/test_train_loop.py`), and the GPU tests (`tests/test_gpu.py`);
- update-2b: one update phase at Qwen3-VL-2B's shapes (random weights, bf16), row vs packed path: time, peak
  memory, the packed path's model FLOPs utilisation (`bench/bench_update.py --arch qwen3-vl-2b`);
- decode-2b: the hf engine's decode tokens/s at those shapes (`bench/bench_engines.py --engines hf`);
- vllm (when vLLM is installed): its tokens/s beside hf at those shapes, and its parity with the trainer after
  weight syncs with CUDA graphs on (`tests/vllm/test_vllm_engine.py`, `tests/vllm/test_vllm_start.py`).

Prints one table (section, status, figures) and exits 0 when every section that ran passed. Without a CUDA GPU
it says so and exits 2 (unless `--device cpu`). Put its table in the README with the card it ran on.

Wheels: a GPU machine without network needs the project's pure-Python dependencies that its image lacks (for
this workplace's image: deepspeed, a newer transformers, qwen-vl-utils, math-verify, ...). On a machine with
network, `bash scripts/gpu_wheels.sh .whl` fills a folder; carry it and pass `--wheels .whl`: they are installed
with `pip --no-index --no-deps --target` into a private folder that every section's PYTHONPATH puts first, with
this repository (no `pip install -e .` needed).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Result:
    section: str
    status: str  # "pass", "FAIL", "skip"
    figures: str
    seconds: float = 0.0


def run(cmd: list[str], env: dict, timeout: int) -> tuple[int, str]:
    """(return code, stdout + stderr) of `cmd` in the repository; 124 when it ran past `timeout` seconds."""
    import signal

    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # its own process group: a timeout ends its builds and ranks too
    try:
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return 124, (out or "") + f"\n(timed out after {timeout}s)"


def json_line(out: str) -> dict:
    line = next((l for l in reversed(out.splitlines()) if l.startswith("json: ")), None)
    return json.loads(line.removeprefix("json: ")) if line else {}


def tail(out: str, n: int = 3) -> str:
    return " | ".join(l.strip() for l in out.strip().splitlines()[-n:])[:300]


def train_overrides(out_dir: str, name: str, cpu: bool, steps: int) -> list[str]:
    prec = ["deepspeed.precision=fp32", "model.dtype=float32"] if cpu else \
        ["deepspeed.precision=bf16", "model.dtype=bfloat16"]
    return [f"logging.out_dir={out_dir}", f"logging.run_name={name}", "logging.progress=false",
            "logging.tensorboard=false", "logging.plots=false", f"train.steps={steps}", *prec]


def section_demo(env: dict, cpu: bool, work: str) -> Result:
    steps = 2 if cpu else 100
    extra = ["train.format_warmup_steps=0", "rollout.prompts_per_step=2", "rollout.group_size=2"] if cpu else []
    code, out = run([sys.executable, "-m", "sapo_vl.train", "configs/demo.yaml",
                     *train_overrides(work, "demo", cpu, steps), *extra], env, 300)
    rows = _metrics(Path(work) / "demo")
    if code or len(rows) != steps:
        return Result("demo-bf16", "FAIL", f"exit {code}: {tail(out)}")
    r = [x["reward_mean"] for x in rows]
    first, last = sum(r[:10]) / len(r[:10]), sum(r[-10:]) / len(r[-10:])
    ok = cpu or last > first + 0.2
    return Result("demo-bf16", "pass" if ok else "FAIL", f"{steps} steps, reward {first:.2f} → {last:.2f}")


def _metrics(run_dir: Path) -> list[dict]:
    f = run_dir / "metrics.jsonl"
    return [json.loads(l) for l in f.read_text().splitlines() if l] if f.exists() else []


def section_zero3(env: dict, cpu: bool, work: str, gpus: int) -> Result:
    ranks = 2 if cpu else min(2, gpus)
    small = ["rollout.prompts_per_step=2", "rollout.group_size=4", "rollout.max_new_tokens=8",
             "train.format_warmup_steps=0", "deepspeed.zero_stage=3"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks), "--master_port",
           str(_port()), "-m", "sapo_vl.train", "configs/demo.yaml", *train_overrides(work, "z3", cpu, 2), *small]
    code, out = run(cmd, env, 300)
    rows = _metrics(Path(work) / "z3")
    ok = code == 0 and len(rows) == 2 and all(x["loss"] == x["loss"] for x in rows)
    return Result("zero3", "pass" if ok else "FAIL", f"{ranks} rank(s), 2 steps" if ok else f"exit {code}: {tail(out)}")


def _port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def section_nan_guard(env: dict, cpu: bool) -> Result:
    tests = ["tests/test_ds_config.py", "tests/test_train_loop.py::"
             "test_non_finite_loss_or_forward_skips_the_step_and_leaves_weights_bit_identical"]
    if not cpu:
        tests.append("tests/test_gpu.py")
    code, out = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow", *tests],
                    env, 300)
    summary = next((l for l in reversed(out.splitlines()) if " passed" in l or " failed" in l), tail(out, 1))
    return Result("nan-guard-bf16", "pass" if code == 0 else "FAIL", summary.strip("= "))


def section_update(env: dict, cpu: bool) -> Result:
    args = ["--arch", "small", "--prompts", "2", "--group", "2", "--image-tokens", "16", "--max-len", "16",
            "--min-len", "4"] if cpu else ["--arch", "qwen3-vl-2b", "--prompts", "4", "--group", "8",
                                           "--image-tokens", "1024", "--threads", "8"]
    code, out = run([sys.executable, "bench/bench_update.py", *args], env, 300)
    res = json_line(out)
    if code or not res:
        return Result("update-2b", "FAIL", f"exit {code}: {tail(out)}")
    r, p = res["row"], res["packed"]
    mfu = f", packed MFU {p['mfu']:.1%}" if p.get("mfu") is not None else ""
    return Result("update-2b", "pass", f"row {r['seconds']:.1f} s / {r['peak_mb'] / 1024:.1f} GiB, packed "
                  f"{p['seconds']:.1f} s / {p['peak_mb'] / 1024:.1f} GiB ({r['seconds'] / p['seconds']:.2f}×){mfu}")


def section_decode(env: dict, cpu: bool, engines: str, name: str) -> Result:
    args = ["--arch", "tiny", "--prompts", "2", "--group-size", "2", "--max-new-tokens", "8", "--repeats", "1"] \
        if cpu else ["--arch", "qwen3-vl-2b", "--prompts", "8", "--group-size", "8", "--max-new-tokens", "256"]
    code, out = run([sys.executable, "bench/bench_engines.py", *args, "--engines", engines], env, 420)
    res = json_line(out)
    if code or not res:
        return Result(name, "FAIL", f"exit {code}: {tail(out)}")
    figs = ", ".join(f"{n} {v['tokens_per_s']:,.0f} tokens/s" for n, v in res.items())
    if "vllm" in res and "hf" in res:
        figs += f" ({res['vllm']['tokens_per_s'] / res['hf']['tokens_per_s']:.2f}×)"
    return Result(name, "pass", figs)


def section_vllm_parity(env: dict) -> Result:
    code, out = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "vllm",
                     "tests/vllm/test_vllm_engine.py", "tests/vllm/test_vllm_start.py"], env, 420)
    summary = next((l for l in reversed(out.splitlines()) if " passed" in l or " failed" in l), tail(out, 1))
    return Result("vllm-parity", "pass" if code == 0 else "FAIL", summary.strip("= "))


def install_wheels(folder: str) -> str:
    """Install every wheel in `folder` into a private folder (no index, no dependencies); returns that folder."""
    target = tempfile.mkdtemp(prefix="sapo_vl_site_")
    wheels = sorted(str(p) for p in Path(folder).glob("*.whl"))
    if not wheels:
        sys.exit(f"gpu-check: no .whl files in {folder}")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                    "--target", target, *wheels], check=True)
    return target


def table(results: list[Result], device: str) -> str:
    head = f"gpu-check on {device}\n| section | status | figures | s |\n|---|---|---|---|"
    rows = [f"| {r.section} | {r.status} | {r.figures} | {r.seconds:.0f} |" for r in results]
    return "\n".join([head, *rows])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                    help="cpu: the sections at toy sizes on this CPU (checks the plumbing, not the GPU)")
    ap.add_argument("--wheels", default=None, help="folder of .whl files to install privately first")
    ap.add_argument("--only", default="", help="comma-separated section names to run (default: all)")
    args = ap.parse_args(argv)
    import torch

    cpu = args.device == "cpu"
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if not cpu and gpus == 0:
        print("gpu-check: no CUDA GPU visible (torch.cuda.is_available() is False); nothing was checked. "
              "Run it on a machine with an NVIDIA GPU, or pass --device cpu for the plumbing at toy sizes.",
              file=sys.stderr)
        return 2
    path = [str(REPO)] + ([install_wheels(args.wheels)] if args.wheels else [])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path + [os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
               PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1")
    if cpu:
        env.update(DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1")
    device = "CPU (dry mode)" if cpu else f"{gpus} × {torch.cuda.get_device_name(0)}"
    has_vllm = subprocess.run([sys.executable, "-c", "import vllm.entrypoints.llm"], env=env,
                              capture_output=True).returncode == 0
    work = tempfile.mkdtemp(prefix="gpu_check_")
    sections = {
        "demo-bf16": lambda: section_demo(env, cpu, work),
        "zero3": lambda: section_zero3(env, cpu, work, gpus),
        "nan-guard-bf16": lambda: section_nan_guard(env, cpu),
        "update-2b": lambda: section_update(env, cpu),
        "decode-2b": lambda: section_decode(env, cpu, "hf", "decode-2b"),
        "vllm-decode-2b": lambda: section_decode(env, cpu, "hf,vllm", "vllm-decode-2b"),
        "vllm-parity": lambda: section_vllm_parity(env),
    }
    only = [s for s in args.only.split(",") if s]
    results = []
    for name, fn in sections.items():
        if only and name not in only:
            continue
        if name.startswith("vllm") and not has_vllm:
            results.append(Result(name, "skip", "vLLM not installed"))
            continue
        t = time.time()
        r = fn()
        r.seconds = time.time() - t
        results.append(r)
        print(f"[{r.status}] {name}: {r.figures} ({r.seconds:.0f}s)", flush=True)
    print(table(results, device))
    return 1 if any(r.status == "FAIL" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())

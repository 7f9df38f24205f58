"""ZeRO-3 partitioned loading on 2 CPU ranks (gloo): memory per rank while loading, and the same log-probs.

The test builds a random Qwen3-VL of ~38M parameters (the tiny tokenizer and vision tower, a 12-layer 512-wide
text tower), launches this file on 2 ranks with torchrun, and on each rank loads it with `load_policy_zero3` + `reference_engine`
(`load_policy_zero3` + an optimizer-less DeepSpeed engine) while a thread samples the rank's private (anonymous)
resident memory. Each rank then scores a fixed image + text batch; the parent scores it with a plain load.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SIZES = dict(layers=12, hidden=512, heads=8, kv_heads=4, head_dim=64)


def build_midsize(out: Path) -> Path:
    """A random Qwen3-VL checkpoint with a bigger text tower than the tiny one (same tokenizer and processor)."""
    from transformers import AutoModelForImageTextToText

    from sapo_vl.models.tiny import tiny_config, tiny_processor, train_tokenizer

    tok = train_tokenizer()
    hd = SIZES["head_dim"]
    config = tiny_config(tok, head_dim=hd, mrope_section=(hd // 2 - 2 * (hd // 8), hd // 8, hd // 8))
    t = config.text_config
    t.num_hidden_layers, t.hidden_size, t.intermediate_size = SIZES["layers"], SIZES["hidden"], 3 * SIZES["hidden"]
    t.num_attention_heads, t.num_key_value_heads = SIZES["heads"], SIZES["kv_heads"]
    config.vision_config.out_hidden_size = SIZES["hidden"]
    torch.manual_seed(0)
    AutoModelForImageTextToText.from_config(config, dtype=torch.float32).save_pretrained(out)
    tiny_processor(tok).save_pretrained(out)
    return out


def batch_inputs(model_dir: Path):
    """A fixed batch (one prompt with an image, one text-only) followed by 6 completion tokens per row."""
    from PIL import Image, ImageDraw

    from sapo_vl.data.record import user_prompt
    from sapo_vl.models.loading import encode_prompts, load_processor
    from sapo_vl.rollout import RowBatch

    proc = load_processor(str(model_dir))
    im = Image.new("RGB", (96, 64), (200, 40, 40))
    ImageDraw.Draw(im).ellipse((10, 10, 40, 40), fill=(0, 0, 220))
    text_only = [{"role": "user", "content": [{"type": "text", "text": "What is two plus two?"}]}]
    enc = encode_prompts(proc, [user_prompt("What color dominates?"), text_only], [[im], []])
    comp = torch.randint(0, 700, (2, 6), generator=torch.Generator().manual_seed(0))
    return RowBatch(rows=[0, 1], input_ids=torch.cat([enc["input_ids"], comp], 1),
                    attention_mask=torch.cat([enc["attention_mask"], torch.ones_like(comp)], 1),
                    mm_token_type_ids=torch.cat([enc["mm_token_type_ids"], torch.zeros_like(comp)], 1),
                    pixel_values=enc["pixel_values"], image_grid_thw=enc["image_grid_thw"], n_completion=6,
                    mask=torch.ones_like(comp))


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


class PeakAnon:
    """Samples this process's anonymous (private) resident memory every millisecond; `.peak` is the highest."""

    def __enter__(self):
        self.peak, self._stop = _status("RssAnon"), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _status("RssAnon"))
            time.sleep(0.001)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _status("RssAnon"))


def worker(model_dir: Path, out_dir: Path) -> None:
    """One rank: partitioned load under a memory probe, then the batch's log-probs."""
    from sapo_vl import ds
    from sapo_vl.logprobs import PolicyLogprobs
    from sapo_vl.models.zero3 import load_policy_zero3, partitioned_numel, reference_engine

    dist = ds.init_distributed()
    inputs = batch_inputs(model_dir)  # (the processor is loaded before the probe starts)
    conf = {"train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 1,
            "train_batch_size": dist.world_size, "zero_optimization": {"stage": 3},
            "bf16": {"enabled": False}, "steps_per_print": 1 << 30}
    base, base_rss = _status("RssAnon"), _status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current RSS
    with PeakAnon() as probe:
        model = load_policy_zero3(str(model_dir), conf, dtype="float32")
    hwm = _status("VmHWM")  # peak resident set (anonymous + mapped files) since the reset
    with PeakAnon() as engine_probe:
        ref = reference_engine(PolicyLogprobs(model), conf)
    local, full = partitioned_numel(model)
    with torch.no_grad():
        logp, _ = ref(inputs)
    torch.save(logp, out_dir / f"logp_rank{dist.rank}.pt")
    (out_dir / f"rank{dist.rank}.json").write_text(json.dumps(dict(
        peak_anon=probe.peak - base, peak_total=hwm - base_rss, engine_anon=engine_probe.peak - base, local_numel=local, full_numel=full)))


def _load_on_two_ranks(model_dir: Path, out_dir: Path, **env_extra: str) -> None:
    """Run `worker` (this file) on 2 ranks under torchrun: partitioned load, memory figures, log-probs."""
    import socket

    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1", **env_extra)
    if not torch.cuda.is_available():
        env["DS_ACCELERATOR"] = "cpu"
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           __file__, str(model_dir), str(out_dir)]
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-6000:]


@pytest.mark.slow
def test_zero3_load_is_partitioned_on_two_ranks_and_scores_like_a_plain_load(tmp_path):
    from sapo_vl.logprobs import PolicyLogprobs
    from sapo_vl.models.loading import load_policy

    model_dir = build_midsize(tmp_path / "model")
    # glibc's default (dynamic) mmap threshold keeps freed multi-MB buffers (the gathered modules) in its heap, so
    # the resident set would count freed memory; a fixed threshold returns them, and RssAnon tracks live memory.
    _load_on_two_ranks(model_dir, tmp_path, MALLOC_MMAP_THRESHOLD_="131072")

    plain = load_policy(str(model_dir), dtype="float32").eval()
    model_bytes = sum(p.numel() * p.element_size() for p in plain.parameters())
    assert model_bytes > 100 * 2**20  # tens of millions of parameters (float32)
    with torch.no_grad():
        want, _ = PolicyLogprobs(plain)(batch_inputs(model_dir))
    infos = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    for rank, info in enumerate(infos):
        print(f"rank {rank}: peak private memory while loading +{info['peak_anon'] / 2**20:.0f} MiB (then "
              f"+{info['engine_anon'] / 2**20:.0f} MiB with the reference engine), peak resident "
              f"+{info['peak_total'] / 2**20:.0f} MiB (mapped checkpoint included), model {model_bytes / 2**20:.0f} "
              f"MiB; holds {info['local_numel']} of {info['full_numel']} parameters")
    for rank, info in enumerate(infos):
        assert info["full_numel"] == sum(p.numel() for p in plain.parameters())
        assert info["local_numel"] <= 0.55 * info["full_numel"]  # half the model (plus padding), not all of it
        assert info["peak_anon"] < 0.7 * model_bytes  # a plain load alone would take 1.0x
        torch.testing.assert_close(torch.load(tmp_path / f"logp_rank{rank}.pt"), want, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_zero3_load_of_a_moe_checkpoint_scores_like_a_plain_load(tmp_path, tiny_moe):
    """A checkpoint written by transformers' save_pretrained keeps the experts in the model's layout; handed to the
    loader as a state dict they must not be transposed twice (down_proj is square here, so only values tell)."""
    from sapo_vl.logprobs import PolicyLogprobs
    from sapo_vl.models.loading import load_policy

    _load_on_two_ranks(tiny_moe, tmp_path)
    with torch.no_grad():
        want, _ = PolicyLogprobs(load_policy(str(tiny_moe), dtype="float32").eval())(batch_inputs(tiny_moe))
    for rank in (0, 1):
        torch.testing.assert_close(torch.load(tmp_path / f"logp_rank{rank}.pt"), want, atol=1e-5, rtol=0)


if __name__ == "__main__":  # one rank of the launched test
    sys.path.insert(0, str(REPO))
    worker(Path(sys.argv[1]), Path(sys.argv[2]))


@pytest.mark.slow
def test_zero3_run_with_kl_uses_a_partitioned_reference(tmp_path, tiny_dense):
    """2 ranks, ZeRO-3, KL on: policy and reference both loaded partitioned; the logged KL equals that of the same
    run under ZeRO-2, whose reference is a plain (whole) load."""
    sys.path.insert(0, str(Path(__file__).parent))
    from train_helpers import launch, metrics, small_overrides

    kl = {}
    for stage in (3, 2):
        ov = small_overrides(tmp_path, f"kl{stage}", **{"deepspeed.zero_stage": stage, "algorithm.kl_beta": 0.05})
        res = launch(ov, timeout=500)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-6000:]
        rows = metrics(tmp_path / f"kl{stage}")
        assert [r["step"] for r in rows] == [0, 1]
        kl[stage] = [r["kl"] for r in rows]
    assert all(math.isfinite(k) for k in kl[3])  # the reference engine scored every rank's rows
    assert kl[3][1] > 1e-8  # after one update the policy has moved away from the reference
    # the same data, weights and steps: the partitioned reference scores as the whole one (up to ZeRO's rounding)
    assert kl[3] == pytest.approx(kl[2], rel=1e-3, abs=1e-9), kl

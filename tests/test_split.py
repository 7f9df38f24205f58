"""Split placement (`rollout.placement: split`, `sapo_vl/split.py`): trainers and rollout ranks in one launch.

The launches are real: `torchrun` with 2 CPU ranks (1 trainer under the DeepSpeed engine + 1 rollout rank with the
hf engine) on the tiny Qwen3-VL, compared with the colocated run on 1 rank.
"""
import json
import os
import re
import subprocess
import sys

import pytest
import torch

from sapo_vl.config import ConfigError, load_config
from sapo_vl.placement import Placement, SplitError, join, placement_of
from sapo_vl.rollout import Scored
from sapo_vl.split import RolloutFeed, Split
from train_helpers import REPO, _port, launch, metrics, small_overrides

TIMING = ("_s", "per_s", "tokens_per_s")


def _same(a: dict, b: dict) -> list[str]:
    """Keys both rows have whose values differ beyond float tolerance (timings left out)."""
    keys = [k for k in a if k in b and isinstance(a[k], float) and not k.endswith(TIMING)]
    return [k for k in keys if abs(a[k] - b[k]) > 1e-5 * max(1.0, abs(b[k]))]


def _split(tmp_path, name, steps, *extra):
    ov = small_overrides(tmp_path, name, **{"train.steps": steps, "logging.sample_every": 1,
                                           "rollout.placement": "split"}) + list(extra)
    return launch(ov, ranks=2, timeout=600)


# ---------------------------------------------------------------------------------------------------- units
def test_placement_counts_ranks_and_serves_trainers_round_robin():
    p = placement_of("split", 1, 4, 0)
    assert (p.trainers, p.rollout_ranks, p.is_trainer) == (3, [3], True)
    assert [p.server_of(r) for r in range(3)] == [3, 3, 3] and p.clients_of(3) == [0, 1, 2]
    q = placement_of("split", 0.25, 8, 7)  # a quarter of 8 ranks roll out
    assert (q.trainers, q.rollout_ranks, q.is_trainer) == (6, [6, 7], False)
    assert q.clients_of(6) == [0, 2, 4] and q.clients_of(7) == [1, 3, 5]
    assert placement_of("colocated", 1, 4, 0) is None
    with pytest.raises(ValueError, match="leaves no training rank.*rollout.rollout_ranks"):
        placement_of("split", 2, 2, 0)


def test_staleness_needs_split_placement_and_rollout_ranks_must_be_whole_or_a_fraction():
    with pytest.raises(ConfigError, match="rollout.max_staleness: needs rollout.placement=split"):
        load_config("configs/demo.yaml", ["rollout.max_staleness=1"])
    with pytest.raises(ConfigError, match="rollout.rollout_ranks: must be a whole number"):
        load_config("configs/demo.yaml", ["rollout.placement=split", "rollout.rollout_ranks=1.5"])


class _Channel:
    def __init__(self, messages):
        self.messages = list(messages)

    def recv(self, src, what):
        return self.messages.pop(0)


class _Stream:
    def load_state_dict(self, state):
        self.state = state


def test_a_batch_staler_than_max_staleness_is_dropped_counted_and_never_trained_on():
    cfg = load_config("configs/demo.yaml", ["rollout.placement=split", "rollout.max_staleness=1"])
    stale, fresh = Scored(rollout=None, zero_std_frac_sampled=0.5), Scored(rollout=None, zero_std_frac_sampled=0.25)
    msgs = [{"step": 5, "version": 3, "scored": stale, "stream": {"i": 5}, "sample_s": 0.1, "idle_s": 0.0},
            {"step": 6, "version": 5, "scored": fresh, "stream": {"i": 6}, "sample_s": 0.1, "idle_s": 0.0},
            {"step": 9, "version": 8, "scored": fresh, "stream": {}, "sample_s": 0.1, "idle_s": 0.0}]
    split = Split(Placement(world=2, trainers=1, rank=0), _Channel(msgs))
    stream = _Stream()
    feed = RolloutFeed(cfg, split, policy=None, ds_engine=None, stream=stream)
    assert feed.receive(5) is None  # two versions old: dropped
    assert feed.stats["staleness"] == 2 and feed.stats["stale_batches_dropped"] == 1
    assert feed.receive(6) is fresh and feed.stats["staleness"] == 1 and feed.stats["stale_batches_dropped"] == 1
    assert stream.state == {"i": 6}  # the checkpointed prompt order follows the batches
    with pytest.raises(SplitError, match="batch of step 9 when step 7 was due"):
        feed.receive(7)


def _channel_ends(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2")
    channel = join(Placement(world=2, trainers=1, rank=rank), backend="gloo", timeout_s=60)
    g = torch.Generator().manual_seed(0)
    sent = [("a.weight", torch.randn(3, 5, generator=g).to(torch.bfloat16)), ("a.bias", torch.randn(5, generator=g)),
            ("b.weight", torch.randn(7, 2, generator=g).to(torch.bfloat16)), ("c.scale", torch.randn(1, generator=g))]
    if rank == 0:
        channel.send({"hello": [1, 2]}, 1)
        channel.send_weights(iter(sent), version=7, bucket_bytes=20)  # several buckets of mixed dtypes
        channel.flush("test")
        return
    hello = channel.recv(0, "hello")
    got = []
    for name, tensor in channel.recv_weights(torch.device("cpu")):
        assert not hasattr(channel, "received_version")  # the version moves only after the last bucket
        got.append((name, tensor))
    torch.save({"hello": hello, "got": got, "sent": sent, "version": channel.received_version}, out)


def test_channel_carries_objects_and_weight_buckets_of_mixed_dtypes_bit_exactly(tmp_path):
    out = tmp_path / "got.pt"
    torch.multiprocessing.spawn(_channel_ends, args=(_port(), str(out)), nprocs=2)
    res = torch.load(out)
    assert res["hello"] == {"hello": [1, 2]} and res["version"] == 7
    assert [n for n, _ in res["got"]] == [n for n, _ in res["sent"]]
    for (_, a), (_, b) in zip(res["got"], res["sent"]):
        assert a.dtype == b.dtype and torch.equal(a, b)


# ---------------------------------------------------------------------------------------------------- launches
def test_split_at_staleness_0_is_the_colocated_run(tmp_path, tiny_dense):
    """1 trainer + 1 rollout rank, max_staleness 0 == 1 colocated rank, same seed: same prompts, completions,
    updates (every logged metric both runs have)."""
    res = _split(tmp_path, "split", 3)
    assert res.returncode == 0, res.stderr[-3000:]
    colo = launch(small_overrides(tmp_path, "colo", **{"train.steps": 3, "logging.sample_every": 1}), ranks=1)
    assert colo.returncode == 0, colo.stderr[-3000:]
    a, b = metrics(tmp_path / "split"), metrics(tmp_path / "colo")
    assert len(a) == len(b) == 3
    for x, y in zip(a, b):
        assert _same(x, y) == [], x["step"]
        assert x["staleness"] == 0 and x["stale_batches_dropped"] == 0
        assert abs(x["mismatch_kl"]) < 1e-6  # the rollout rank samples with the trainer's weights (kernels aside)
    texts = [[r["response"] for r in map(json.loads, (tmp_path / run / "samples" / f"step_{s:06d}.jsonl").open())]
             for run in ("split", "colo") for s in range(3)]
    assert texts[:3] == texts[3:]


def test_split_at_staleness_1_trains_one_step_off_and_resumes(tmp_path, tiny_dense):
    res = _split(tmp_path, "k1", 2, "rollout.max_staleness=1", "logging.save_every=2")
    assert res.returncode == 0, res.stderr[-3000:]
    res = _split(tmp_path, "k1", 4, "rollout.max_staleness=1", "train.resume=auto")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resumed from" in res.stdout and "at step 2" in res.stdout
    rows = metrics(tmp_path / "k1")
    # batch t is sampled with version max(start, t - 1): a fresh start, then one step off
    assert [r["step"] for r in rows] == [0, 1, 2, 3]
    assert [r["staleness"] for r in rows] == [0, 1, 0, 1]
    assert abs(rows[0]["mismatch_kl"]) < 1e-6 and min(rows[1]["mismatch_kl"], rows[3]["mismatch_kl"]) > 1e-5
    assert all(r["stale_batches_dropped"] == 0 for r in rows)


def test_a_resumed_split_run_at_staleness_0_continues_the_uninterrupted_one(tmp_path, tiny_dense):
    assert _split(tmp_path, "whole", 3).returncode == 0
    assert _split(tmp_path, "cut", 2, "logging.save_every=2").returncode == 0
    res = _split(tmp_path, "cut", 3, "train.resume=auto")
    assert res.returncode == 0, res.stderr[-3000:]
    whole, cut = metrics(tmp_path / "whole"), metrics(tmp_path / "cut")
    assert [r["step"] for r in cut] == [0, 1, 2]
    assert _same(cut[2], whole[2]) == []  # the prompt stream and weights came back from the checkpoint


def _fault(tmp_path, mode: str, timeout_s: int):
    """The trainer's completed process; the rollout rank (made to hang or die at its second batch) is killed."""
    env = dict(os.environ, OMP_NUM_THREADS="1", DS_ACCELERATOR="cpu", MASTER_ADDR="127.0.0.1",
               MASTER_PORT=str(_port()), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2", PYTHONPATH=str(REPO / "tests"))
    ov = small_overrides(tmp_path, mode, **{"train.steps": 4, "rollout.placement": "split",
                                            "rollout.sync_timeout_s": timeout_s})
    cmd = [sys.executable, str(REPO / "tests" / "split_fault.py"), mode, "configs/demo.yaml", *ov]
    rollout = subprocess.Popen(cmd, cwd=REPO, env=dict(env, RANK="1", LOCAL_RANK="1"), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        return subprocess.run(cmd, cwd=REPO, env=dict(env, RANK="0", LOCAL_RANK="0"), capture_output=True,
                              text=True, timeout=400)
    finally:
        rollout.kill()
        rollout.wait()


def test_a_hung_rollout_rank_ends_the_run_with_an_error_naming_it(tmp_path, tiny_dense):
    res = _fault(tmp_path, "hang", timeout_s=15)
    assert res.returncode == 2
    assert "rollout rank 1" in res.stderr and "rollout.sync_timeout_s=15" in res.stderr
    assert "batch of step 1" in res.stderr
    assert len(metrics(tmp_path / "hang")) == 1  # step 0 was trained and logged


def test_a_dead_rollout_rank_ends_the_run_without_waiting_for_the_timeout(tmp_path, tiny_dense):
    res = _fault(tmp_path, "die", timeout_s=3000)  # far longer than the subprocess may run
    assert res.returncode == 2
    assert "rollout rank 1 closed its connection while this rank waited for the batch of step 1" in res.stderr, \
        res.stderr[-2000:]


@pytest.mark.slow
def test_demo_on_one_trainer_and_one_rollout_rank_at_staleness_1_learns(tmp_path, tiny_dense):
    ov = [f"logging.out_dir={tmp_path}", "logging.run_name=demo", "logging.progress=false", "logging.plots=false",
          "rollout.placement=split", "rollout.max_staleness=1"]
    res = launch(ov, ranks=2, timeout=3000)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = metrics(tmp_path / "demo")
    assert len(rows) == 100 and all(r["staleness"] == (0 if r["step"] == 0 else 1) for r in rows)
    last = [r["reward_mean"] for r in rows[-20:]]
    assert sum(last) / 20 >= 0.9, last


def test_two_zero3_trainers_and_one_rollout_rank_train_on_the_colocated_batches(tmp_path, tiny_dense):
    """T = 2 under ZeRO-3 (every trainer gathers each weight bucket, trainer 0 sends it): the rollout rank samples
    both trainers' shares as the 2 colocated ranks would, so both runs log the same steps."""
    zero3 = {"deepspeed.zero_stage": 3, "train.steps": 2, "logging.sample_every": 0}
    colo = launch(small_overrides(tmp_path, "colo", **zero3), ranks=2)
    assert colo.returncode == 0, colo.stderr[-3000:]
    split = launch(small_overrides(tmp_path, "split", **zero3, **{"rollout.placement": "split"}), ranks=3)
    assert split.returncode == 0, split.stderr[-3000:]
    assert "2 training rank(s) + 1 rollout rank(s)" in split.stdout
    a, b = metrics(tmp_path / "split"), metrics(tmp_path / "colo")
    assert len(a) == len(b) == 2
    for x, y in zip(a, b):
        assert _same(x, y) == [] and abs(x["mismatch_kl"]) < 1e-6


def test_lora_weights_reach_the_rollout_rank_merged(tmp_path, tiny_dense):
    """The rollout rank's plain model takes W + B·A·scale: after LoRA updates it still samples from the trainer's
    policy (no mismatch beyond kernels), at staleness 0."""
    res = _split(tmp_path, "lora", 2, "model.lora.r=8", "optimizer.lr=5e-3", "train.format_warmup_steps=6")
    assert res.returncode == 0, res.stderr[-3000:]
    before, after = map(float, re.search(r"loss ([\d.]+) → ([\d.]+)", res.stdout).groups())
    assert after < before - 0.5  # the adapters moved the policy well away from the base weights
    rows = metrics(tmp_path / "lora")
    assert all(abs(r["mismatch_kl"]) < 1e-6 and r["mismatch_abs_max"] < 1e-3 for r in rows), rows


def test_moe_experts_reach_the_rollout_rank_in_the_models_layout(tmp_path, tiny_moe):
    """MoE expert tensors travel in the hub layout (transposed, as vLLM loads them) and the hf rollout rank puts them
    back: at staleness 0 the run is the colocated one, step for step."""
    moe = {"model.name_or_path": str(tiny_moe), "train.steps": 2, "logging.sample_every": 0,
           "train.format_warmup_steps": 4}
    assert _split(tmp_path, "split", 2, *[f"{k}={v}" for k, v in moe.items()]).returncode == 0
    colo = launch(small_overrides(tmp_path, "colo", **moe), ranks=1)
    assert colo.returncode == 0, colo.stderr[-3000:]
    a, b = metrics(tmp_path / "split"), metrics(tmp_path / "colo")
    assert len(a) == len(b) == 2
    for x, y in zip(a, b):
        assert _same(x, y) == [] and abs(x["mismatch_kl"]) < 1e-6


@pytest.mark.slow
def test_bench_async_runs_both_placements_and_prints_the_speedup():
    res = subprocess.run([sys.executable, "bench/bench_async.py", "--steps", "4", "--skip", "1", "--repeats", "1",
                          "--max-new-tokens", "4"], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "staleness 1.00" in res.stdout
    assert re.search(r"async speedup: \d+\.\d\d×", res.stdout), res.stdout

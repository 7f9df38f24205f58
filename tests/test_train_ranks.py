"""The training loop on the real DeepSpeed engine with 2 CPU ranks (gloo): ZeRO-2 and ZeRO-3, dense and MoE."""
import pytest
import torch

from train_helpers import MIXED_RECIPE, launch, metrics, small_overrides

REQUIRED = {
    "reward_mean", "reward_std", "accuracy", "advantage_mean", "advantage_std", "zero_std_frac", "loss", "pg_loss",
    "ratio_mean", "ratio_std", "ratio_max", "ratio_min", "ratio_seq_var", "response_length_mean", "truncation_rate",
    "entropy", "lr", "grad_norm", "tokens_per_s", "rollout_s", "score_s", "update_s",
}
ALGO_STATS = {"sapo": {"gate_weight_mean", "soft_suppressed_frac"}, "gspo": {"clip_frac_low", "clip_frac_high"},
              "grpo": {"clip_frac_low", "clip_frac_high"}}


def _check_run(res, run_dir, algo, steps=2, model="sapo-vl/tiny-qwen3-vl"):
    """The run finished, logged every step, pooled its numbers over both ranks consistently, and trained."""
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-6000:]
    rows = metrics(run_dir)
    assert [r["step"] for r in rows] == list(range(steps))
    for r in rows:
        missing = (REQUIRED | ALGO_STATS[algo]) - set(r)
        assert not missing, missing
        assert all(isinstance(r[k], float) for k in REQUIRED | ALGO_STATS[algo])
        # one verifier: its pooled reward (all_gather of scores) is the mean of the gathered rewards
        (verifier,) = [k for k in r if k.startswith("reward/")]
        assert r[verifier] == pytest.approx(r["reward_mean"], abs=1e-6), (verifier, r)
        assert r["skipped_steps"] == 0 and r["ratio_min"] <= r["ratio_mean"] <= r["ratio_max"]
    ckpt = run_dir / "checkpoints" / f"step_{steps}"
    assert (ckpt / "COMPLETE").exists() and (ckpt / "hf" / "model.safetensors").exists()
    from transformers import AutoModelForImageTextToText

    from sapo_vl.models.loading import load_policy

    trained = AutoModelForImageTextToText.from_pretrained(ckpt / "hf").state_dict()
    start = load_policy(model).state_dict()
    assert all(torch.isfinite(v).all() for v in trained.values())
    moved = [k for k in start if not torch.equal(start[k], trained[k])]
    assert moved and any("language_model" in k for k in moved), "the optimizer steps changed no weight"
    return rows


def test_zero3_two_ranks_text_only_and_image_records_no_deadlock(tmp_path, tiny_dense):
    """Rank 0 gets an image prompt, rank 1 a text-only one: ZeRO-3 must not hang on the vision tower."""
    recipe = tmp_path / "mixed_test.py"
    recipe.write_text(MIXED_RECIPE)
    ov = small_overrides(tmp_path, "z3", **{"deepspeed.zero_stage": 3, "algorithm.name": "sapo",
                                             "data.recipes": f"[{{name: {recipe}}}]", "data.shuffle": "false"})
    res = launch(ov, timeout=400)
    rows = _check_run(res, tmp_path / "z3", "sapo")
    assert "2 rank(s)" in res.stdout and "ZeRO-3" in res.stdout


@pytest.mark.slow
@pytest.mark.parametrize("stage,variant,algo", [(2, "dense", "sapo"), (2, "moe", "gspo"), (3, "moe", "grpo"),
                                                (3, "dense", "gspo")])
def test_two_ranks_each_stage_model_and_algorithm(tmp_path, tiny_dense, tiny_moe, stage, variant, algo):
    model = "sapo-vl/tiny-qwen3-vl-moe" if variant == "moe" else "sapo-vl/tiny-qwen3-vl"
    name = f"{variant}-z{stage}-{algo}"
    ov = small_overrides(tmp_path, name, **{"deepspeed.zero_stage": stage, "algorithm.name": algo,
                                             "model.name_or_path": model})
    _check_run(launch(ov, timeout=400), tmp_path / name, algo, model=model)


@pytest.mark.slow
def test_deepspeed_launcher_zero2(tmp_path, tiny_dense):
    ov = small_overrides(tmp_path, "dsl", **{"deepspeed.zero_stage": 2})
    res = launch(ov, launcher="deepspeed", timeout=400)
    _check_run(res, tmp_path / "dsl", "sapo")


@pytest.mark.slow
def test_two_ranks_dynamic_sampling_keeps_ranks_in_step(tmp_path, tiny_dense):
    ov = small_overrides(tmp_path, "dyn", **{"deepspeed.zero_stage": 2, "algorithm.dynamic_sampling": "true",
                                              "train.steps": 3})
    rows = _check_run(launch(ov, timeout=400), tmp_path / "dyn", "sapo", steps=3)
    for r in rows:  # both ranks drew the same rounds (else the run would hang); the counts follow the rule
        assert r["zero_std_frac"] <= r["zero_std_frac_sampled"]  # a refill never adds a zero-std group
        if r["zero_std_frac_sampled"] == 0:
            assert r["dynamic_sampling_rounds"] == 0
        if r["zero_std_frac"] > 0:  # groups left without signal: every allowed round was drawn
            assert r["dynamic_sampling_rounds"] == 3
    assert any(r["dynamic_sampling_rounds"] > 0 for r in rows)  # a random policy leaves groups to refill


def _step_on(ranks: int, out, tmp_path):
    import os
    import subprocess
    import sys

    from train_helpers import REPO, _port

    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", DS_ACCELERATOR="cpu")
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    overrides = [f"logging.out_dir={tmp_path}", f"logging.run_name=r{ranks}", "logging.tensorboard=false",
                 "logging.progress=false", "rollout.prompts_per_step=4", "rollout.group_size=4",
                 "algorithm.updates_per_rollout=2", "algorithm.num_minibatches=1", "deepspeed.micro_batch_size=4",
                 "deepspeed.zero_stage=2", "optimizer.lr=1e-2", "train.format_warmup_steps=0"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks), "--master_port",
           str(_port()), str(REPO / "tests" / "step_ranks.py"), str(out), *overrides]
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    import json

    return json.loads((out / "metrics.json").read_text()), torch.load(out / "weights.pt")


def test_a_training_step_on_two_ranks_equals_the_same_step_on_one(tmp_path, tiny_dense):
    """μ = 2 passes over one rollout (the second off-policy), ZeRO-2: the weights after the step and every logged
    number except timings are the same whether the rollout's 4 groups sit on one rank or two."""
    one, w1 = _step_on(1, tmp_path / "one", tmp_path)
    two, w2 = _step_on(2, tmp_path / "two", tmp_path)
    # timings, and the packing's padding (how 4 groups pack into micro-batches depends on how they are split)
    timing = {"rollout_s", "score_s", "update_s", "step_s", "tokens_per_s", "score_per_s", "padding_frac"}
    assert set(one) == set(two)
    assert one["ratio_mean"] != 1.0 and one["loss"] != 0.0  # the second pass was off-policy and the loss live
    for k in sorted(set(one) - timing):
        assert two[k] == pytest.approx(one[k], rel=1e-4, abs=1e-6), k
    # AdamW divides each gradient by its own scale, so float32 summation-order noise in near-zero gradients can
    # move a weight by a small fraction of a learning-rate-sized step (lr 1e-2 here): allow 2e-3 of one step
    assert torch.allclose(w1, w2, rtol=1e-5, atol=2e-5), float((w1 - w2).abs().max())

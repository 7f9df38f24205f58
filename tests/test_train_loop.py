"""The update step on the real DeepSpeed engine (one in-process rank): learning direction, NaN guard, plan, dry run."""
import copy
import dataclasses

import pytest
import torch

from sapo_vl import ds
from sapo_vl.algorithms import group_advantages
from sapo_vl.config import ConfigError, load_config
from sapo_vl.data.record import Record, user_prompt
from sapo_vl.logprobs import PolicyLogprobs
from sapo_vl.models.loading import load_policy, load_processor
from sapo_vl.rollout import Rollout
from sapo_vl.engines.base import SamplingSettings
from sapo_vl.sampling import sample_completions
from sapo_vl.batch_plan import batch_plan as plan
from train_helpers import REPO
from sapo_vl.update import UpdateSettings, micro_batch_source, rollout_logprobs, update_policy


def _row_settings(cfg, p):
    """The run's update settings on row micro-batches (these tests pin the row path)."""
    return dataclasses.replace(UpdateSettings.from_config(cfg, p), shared_prefix=False)


def _setup(tiny_dense, algo, **over):
    cfg = load_config(None, [f"algorithm.name={algo}", "deepspeed.zero_stage=0", "optimizer.lr=2e-3",
                             "optimizer.warmup_steps=0", "rollout.group_size=4", "rollout.prompts_per_step=2",
                             "algorithm.updates_per_rollout=1", "algorithm.num_minibatches=1",
                             "deepspeed.micro_batch_size=4", "model.name_or_path=" + str(tiny_dense),
                             *[f"{k}={v}" for k, v in over.items()]])
    dist = ds.init_distributed()
    p = plan(cfg, dist.world_size)
    torch.manual_seed(0)
    policy = load_policy(str(tiny_dense))
    module = PolicyLogprobs(policy)
    engine = ds.create_engine(module, cfg, micro_batch=p.micro, grad_accum=p.grad_accum, dist=dist,
                              total_optimizer_steps=100)
    proc = load_processor(str(tiny_dense))
    from PIL import Image

    recs = [Record(id=str(i), prompt=user_prompt("Dominant color?"), answer="red", images=[b"-"]) for i in range(2)]
    imgs = [[Image.new("RGB", (64, 64), c)] for c in ((200, 10, 10), (10, 10, 200))]
    s = sample_completions(policy, proc, [r.prompt for r in recs], imgs,
                           SamplingSettings(group_size=4, max_new_tokens=5),
                           generator=torch.Generator().manual_seed(3))
    return cfg, dist, p, engine, Rollout.from_samples(recs, s)


@pytest.mark.parametrize("algo", ["sapo", "gspo", "grpo"])
def test_updates_on_a_fixed_rollout_move_logprobs_the_right_way(tiny_dense, algo):
    cfg, dist, p, engine, ro = _setup(tiny_dense, algo)
    rewards = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0])
    ro.advantages, _ = group_advantages(rewards, 4)
    ro.loss_mask = ro.completion_mask
    u = _row_settings(cfg, p)
    source = micro_batch_source(ro, engine.module.policy, u, dist.device)
    before, _ = rollout_logprobs(engine, ro, source, u)
    ro.old_logprobs = before
    for _ in range(4):  # several off-policy updates on the same rollout (π_old fixed)
        stats, skipped = update_policy(engine, ro, source, u, seed=0)
        assert skipped == 0
    after, _ = rollout_logprobs(engine, ro, source, u)
    delta = ((after - before) * ro.completion_mask).sum(-1)  # (N,) change of the sequence log-prob
    pos, neg = rewards > 0, rewards == 0
    assert (delta[pos] > 0).all(), (algo, delta)
    assert (delta[neg] < 0).all(), (algo, delta)
    assert stats["ratio_mean"] != 1.0  # the later updates were off-policy


@pytest.mark.parametrize("stage", [0, 2])
@pytest.mark.parametrize("poison", ["advantage", "pixel"])
def test_non_finite_loss_or_forward_skips_the_step_and_leaves_weights_bit_identical(tiny_dense, stage, poison):
    """A NaN advantage (non-finite loss) or one NaN pixel (non-finite forward: every activation after the vision
    tower) must leave every weight bit-identical and count the step as skipped; the next finite step updates."""
    cfg, dist, p, engine, ro = _setup(tiny_dense, "sapo", **{"deepspeed.zero_stage": stage, "model.freeze_vision": False})
    ro.advantages = torch.tensor([1.0, -1.0, 0.3, 0.5, 0.0, 1.0, -1.0, 0.0])
    clean = ro.pixel_values[0].clone()
    if poison == "advantage":
        ro.advantages[2] = float("nan")
    else:
        ro.pixel_values[0][3, 5] = float("nan")
    before = copy.deepcopy({k: v.detach().clone() for k, v in engine.module.state_dict().items()})
    ro.loss_mask = ro.completion_mask
    u = _row_settings(cfg, p)
    source = micro_batch_source(ro, engine.module.policy, u, dist.device)
    stats, skipped = update_policy(engine, ro, source, u, seed=0)
    assert skipped == 1
    after = engine.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    # the next, finite step does update, and nothing non-finite was left behind in the optimizer
    ro.advantages[2] = 0.3
    ro.pixel_values[0] = clean
    _, skipped = update_policy(engine, ro, source, u, seed=0)
    assert skipped == 0
    now = engine.module.state_dict()
    assert not all(torch.equal(before[k], now[k]) for k in before)
    assert all(torch.isfinite(v).all() for v in now.values())


def test_plan_arithmetic_and_errors():
    cfg = load_config(None, ["rollout.prompts_per_step=8", "rollout.group_size=8", "algorithm.num_minibatches=2",
                             "deepspeed.micro_batch_size=6", "algorithm.updates_per_rollout=2", "train.steps=10"])
    p = plan(cfg, 2)
    # 8 prompts / 2 ranks × G=8 = 32 rows per rank; 2 minibatches of 16; micro 6 → 3 micro-batches
    assert (p.rows_per_rank, p.minibatch_rows, p.micro, p.grad_accum) == (32, 16, 6, 3)
    assert p.total_optimizer_steps == 10 * 2 * 2
    with pytest.raises(ConfigError, match="prompts_per_step=8 must be a multiple of the number of ranks"):
        plan(cfg, 3)
    bad = load_config(None, ["rollout.prompts_per_step=2", "rollout.group_size=3", "algorithm.num_minibatches=4"])
    with pytest.raises(ConfigError, match="algorithm.num_minibatches=4"):
        plan(bad, 1)


@pytest.mark.parametrize("config", sorted(str(p.relative_to(REPO)) for p in (REPO / "configs").glob("*.yaml")))
def test_dry_run_of_every_shipped_config_plans_offline_and_fits(tmp_path, capsys, monkeypatch, config):
    from sapo_vl.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for var in ("WORLD_SIZE", "RANK"):  # an in-process test's group of one set them; a plain run plans for 8 GPUs
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(REPO)
    extra = []
    if config == "configs/compare_sapo_regime.yaml" and not (REPO / "runs/coldstart_color_think/hf").is_dir():
        # it loads the checkpoint `sapo-vl sft configs/coldstart_color_think.yaml` writes from the tiny MoE: same
        # architecture, so plan that one in a checkout where the cold start has not been run
        extra = ["model.name_or_path=sapo-vl/tiny-qwen3-vl-moe"]
    assert main(["train", config, "--dry-run", f"logging.out_dir={tmp_path}", *extra]) == 0
    out = capsys.readouterr().out
    assert "GiB" in out and "train_micro_batch_size_per_gpu" in out
    assert "does not fit" not in out.lower() and "fits" in out.lower(), out
    assert not list(tmp_path.iterdir())  # nothing loaded, nothing written


def test_dry_run_errors_are_one_line(tmp_path, capsys, monkeypatch):
    from sapo_vl.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["train", "configs/demo.yaml", "--dry-run", "model.name_or_path=Qwen/Qwen3-VL-999B"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "Qwen/Qwen3-VL-999B" in err and "\n" not in err


def test_ds_config_from_ours_and_users_json(tmp_path):
    cfg = load_config(None, ["deepspeed.zero_stage=3", "deepspeed.offload_params=true",
                             "deepspeed.offload_optimizer=true", "optimizer.max_grad_norm=0.5"])
    c = ds.ds_config(cfg, micro_batch=4, grad_accum=2, world_size=2, device=torch.device("cpu"))
    assert c["train_batch_size"] == 16 and c["gradient_clipping"] == 0.5
    assert c["zero_optimization"]["offload_param"]["device"] == "cpu"
    user = tmp_path / "ds.json"
    user.write_text('{"train_micro_batch_size_per_gpu": "auto", "zero_optimization": {"stage": 2}, "gradient_clipping": "auto"}')
    cfg2 = load_config(None, [f"deepspeed.config_file={user}"])
    c2 = ds.ds_config(cfg2, micro_batch=4, grad_accum=2, world_size=1, device=torch.device("cpu"))
    assert c2["zero_optimization"] == {"stage": 2} and c2["train_micro_batch_size_per_gpu"] == 4
    assert c2["gradient_accumulation_steps"] == 2 and c2["gradient_clipping"] == cfg2.optimizer.max_grad_norm
    user.write_text("{not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        ds.ds_config(cfg2, micro_batch=4, grad_accum=2, world_size=1, device=torch.device("cpu"))


def test_lr_schedule():
    assert ds.lr_lambda(0, warmup=4, total=20, schedule="constant") == 0.25
    assert ds.lr_lambda(10, warmup=4, total=20, schedule="constant") == 1.0
    assert ds.lr_lambda(12, warmup=4, total=20, schedule="linear") == pytest.approx(0.5)
    assert ds.lr_lambda(12, warmup=4, total=20, schedule="cosine") == pytest.approx(0.5)
    assert ds.lr_lambda(20, warmup=4, total=20, schedule="cosine") == pytest.approx(0.0)


def test_lora_policy_trains_only_adapters_and_frozen_vision_stays(tiny_dense):
    pytest.importorskip("peft")
    from sapo_vl.run import build_policy

    cfg = load_config(None, ["model.name_or_path=" + str(tiny_dense), "model.lora.r=4", "model.freeze_vision=true"])
    policy = build_policy(cfg, torch.device("cpu"))
    trainable = [n for n, p in policy.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert not any("visual" in n for n in trainable)
    module = PolicyLogprobs(policy)
    from PIL import Image

    proc = load_processor(str(tiny_dense))
    rec = Record(id="x", prompt=user_prompt("Dominant color?"), answer="red", images=[b"-"])
    s = sample_completions(policy, proc, [rec.prompt], [[Image.new("RGB", (64, 64), "red")]],
                           SamplingSettings(group_size=2, max_new_tokens=3), generator=torch.Generator().manual_seed(0))
    ro = Rollout.from_samples([rec], s)
    batch = ro.row_batch([0, 1])
    logp, _ = batch.logprobs(module)
    logp.sum().backward()
    assert all(p.grad is not None for n, p in policy.named_parameters() if p.requires_grad)


def test_format_warmup_lowers_the_answer_loss_through_the_engine(tiny_dense):
    from sapo_vl.data.stream import PromptStream
    from sapo_vl.update import format_warmup

    cfg, dist, p, engine, _ = _setup(tiny_dense, "sapo", **{"optimizer.lr": "3e-3"})
    proc = load_processor(str(tiny_dense), min_pixels=1024, max_pixels=4096)
    stream = PromptStream(cfg.data, cfg.model, proc, seed=0, rank=0, world=1)
    losses = format_warmup(engine, proc, stream, 12, plan=p, dist=dist, seed=0)
    assert len(losses) == 12 and losses[-1] < 0.6 * losses[0]


def test_periodic_eval_metrics_land_in_the_training_log(tmp_path, tiny_dense):
    from train_helpers import launch, metrics, small_overrides

    ov = small_overrides(tmp_path, "ev", **{"eval.tasks": "[synthetic_color]", "eval.every": 1, "eval.limit": 4,
                                             "train.steps": 2})
    res = launch(ov, ranks=1, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = metrics(tmp_path / "ev")
    assert all(0.0 <= r["eval/synthetic_color/accuracy"] <= 1.0 for r in rows)
    assert (tmp_path / "ev" / "eval" / "step_2" / "synthetic_color" / "summary.json").exists()


def test_dynamic_sampling_refills_zero_std_groups(tiny_dense):
    from types import SimpleNamespace

    from sapo_vl.algorithms import zero_std_groups
    from sapo_vl.rollout import Scored, refill_zero_std_groups

    _, dist, _, _, ro = _setup(tiny_dense, "sapo")  # 2 prompts × G=4
    ro.rewards = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0])  # group 0 zero-std, group 1 has signal
    ro.scores = [SimpleNamespace(score=float(r)) for r in ro.rewards]
    draws = []

    def draw(n, round_):
        draws.append((n, round_))
        extra = ro.groups(list(range(n)) if round_ == 0 else [1] * n)
        # round 0 brings only a zero-std group back (group 0 again), round 1 a group with signal
        return Scored(extra, score_s=0.5, score_timeouts=1)

    got = Scored(ro)
    refill_zero_std_groups(got, draw, rounds=3, pad_id=0)
    out = got.rollout
    assert draws == [(1, 0), (1, 1)] and got.dynamic_sampling_rounds == 2
    assert got.score_s == 1.0 and got.score_timeouts == 2  # the refills' scoring counted
    assert not zero_std_groups(out.rewards, 4).any() and len(out.records) == 2
    assert out.rewards.tolist() == [0.0, 1.0, 0.0, 0.0] * 2


def test_rollout_concat_repads_parts_of_different_widths(tiny_dense):
    import dataclasses

    import torch.nn.functional as F

    *_, ro = _setup(tiny_dense, "sapo")
    ro.rewards = torch.arange(8.0)
    ro.scores = list(range(8))
    wide = ro.groups([1])  # the same group, padded 3 more on the left of prompts and 2 more right of completions
    wide = dataclasses.replace(
        wide, prompt_ids=F.pad(wide.prompt_ids, (3, 0), value=7), prompt_mask=F.pad(wide.prompt_mask, (3, 0)),
        prompt_mm_types=F.pad(wide.prompt_mm_types, (3, 0)), completion_ids=F.pad(wide.completion_ids, (0, 2)),
        completion_mask=F.pad(wide.completion_mask, (0, 2)), sample_logprobs=F.pad(wide.sample_logprobs, (0, 2)))
    out = type(ro).concat([ro.groups([0]), wide], pad_id=0)
    assert out.prompt_ids.shape[1] == ro.prompt_ids.shape[1] + 3
    assert out.completion_ids.shape[1] == ro.completion_ids.shape[1] + 2
    assert out.rewards.tolist() == list(range(8)) and out.scores == list(range(8))
    # prompts stay left-padded (they end where generation starts), completions right-padded
    assert out.prompt_mask[:, -1].all() and (out.prompt_mask.diff(dim=1) >= 0).all()
    assert (out.completion_mask.diff(dim=1) <= 0).all()
    got, want = out.row_batch(range(8)), ro.row_batch(range(8))
    for row in range(8):  # every row keeps exactly its prompt and completion tokens, and its images
        assert torch.equal(got.input_ids[row][got.attention_mask[row].bool()],
                           want.input_ids[row][want.attention_mask[row].bool()])
    assert torch.equal(got.pixel_values, want.pixel_values)


def test_training_with_dynamic_sampling_runs(tmp_path, tiny_dense):
    from train_helpers import launch, metrics, small_overrides

    ov = small_overrides(tmp_path, "ds", **{"algorithm.dynamic_sampling": "true", "train.steps": 2})
    res = launch(ov, ranks=1, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = metrics(tmp_path / "ds")
    assert all("dynamic_sampling_rounds" in r and "zero_std_frac_sampled" in r for r in rows)

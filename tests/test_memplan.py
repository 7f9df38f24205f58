"""The memory planner and the architecture table: counts against `transformers`, hand-computed bytes, the shipped
configs offline, and the plan against memory measured on the CPU through the real training loop."""
import json
import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from sapo_vl.config import load_config
from sapo_vl.memplan import (
    GIB, dry_run_report, layer_activation_bytes, plan_memory,
)
from sapo_vl.models.archs import (
    KNOWN_HUB_IDS, Arch, ArchError, VisionArch, arch_for, arch_from_config_json, known_arch, tiny_arch,
)

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted(REPO.glob("configs/qwen3vl_*.yaml"))


def hf_config(a: Arch):
    """A transformers config of the architecture `a` describes (what from_pretrained would build)."""
    from transformers import Qwen3VLConfig, Qwen3VLMoeConfig

    hd = a.head_dim
    text = dict(vocab_size=a.vocab_size, hidden_size=a.hidden_size, intermediate_size=a.intermediate_size,
                num_hidden_layers=a.num_layers, num_attention_heads=a.num_heads, num_key_value_heads=a.num_kv_heads,
                head_dim=hd, rope_parameters={"rope_type": "default", "rope_theta": 5e6, "mrope_interleaved": True,
                                              "mrope_section": [hd // 2 - 2 * (hd // 6), hd // 6, hd // 6]})
    v = a.vision
    vision = dict(depth=v.depth, hidden_size=v.hidden_size, intermediate_size=v.intermediate_size, num_heads=v.num_heads,
                  patch_size=v.patch_size, temporal_patch_size=v.temporal_patch_size,
                  spatial_merge_size=v.spatial_merge_size, out_hidden_size=v.out_hidden_size,
                  deepstack_visual_indexes=list(v.deepstack_layers), in_channels=v.in_channels,
                  num_position_embeddings=v.num_position_embeddings)
    if a.moe:
        text.update(num_experts=a.num_experts, num_experts_per_tok=a.experts_per_token,
                    moe_intermediate_size=a.moe_intermediate_size, decoder_sparse_step=1)
        return Qwen3VLMoeConfig(text_config=text, vision_config=vision, tie_word_embeddings=a.tie_word_embeddings)
    return Qwen3VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=a.tie_word_embeddings)


# ------------------------------------------------------------------------------------------------ architectures
@pytest.mark.parametrize("size", sorted({s for s in KNOWN_HUB_IDS.values()}))
def test_published_sizes_count_what_transformers_builds(size):
    from transformers import AutoModelForImageTextToText

    a = known_arch(f"Qwen/{size}-Instruct")
    assert a == known_arch(f"qwen/{size}-thinking") and a.vision.out_hidden_size == a.hidden_size
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(hf_config(a))
    assert a.param_count() == sum(p.numel() for p in model.parameters())
    vision = sum(p.numel() for n, p in model.named_parameters() if ".visual." in f".{n}")
    assert a.vision.param_count() == vision and a.text_param_count() == a.param_count() - vision


def test_published_totals_are_the_advertised_sizes():
    # the names say the size: 2B, 4B, 8B (8.77 B as listed by model hubs), 32B, 30B total with ~3B active
    totals = {s: known_arch(f"Qwen/{s}-Instruct").param_count() / 1e9 for s in set(KNOWN_HUB_IDS.values())}
    assert 2.0 < totals["Qwen3-VL-2B"] < 2.3 and 4.3 < totals["Qwen3-VL-4B"] < 4.6
    assert round(totals["Qwen3-VL-8B"], 2) == 8.77
    # Qwen3-VL-32B-Instruct's 14 bf16 shards hold 66,714,912,872 bytes: 2 B per parameter plus the shard headers
    assert 0 < 66_714_912_872 - 2 * known_arch("Qwen/Qwen3-VL-32B-Instruct").param_count() < 14 * 200_000
    moe = known_arch("Qwen/Qwen3-VL-30B-A3B-Instruct")
    active = moe.param_count() - moe.num_layers * (moe.num_experts - moe.experts_per_token) * 3 * moe.hidden_size \
        * moe.moe_intermediate_size
    assert 30 < totals["Qwen3-VL-30B-A3B"] < 32 and 3 < active / 1e9 < 4.5


@pytest.mark.parametrize("moe", [False, True])
def test_tiny_and_local_folders_read_the_built_checkpoint(moe, tiny_dense, tiny_moe):
    from transformers import AutoModelForImageTextToText

    folder = tiny_moe if moe else tiny_dense
    name = "sapo-vl/tiny-qwen3-vl" + ("-moe" if moe else "")
    assert replace(arch_for(str(folder)), name=name) == tiny_arch(moe) == arch_for(name)
    model = AutoModelForImageTextToText.from_pretrained(folder)
    assert arch_from_config_json(folder / "config.json").param_count() == sum(p.numel() for p in model.parameters())


def test_lora_adapter_folder_plans_with_its_base_model(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "Qwen/Qwen3-VL-8B-Instruct"}))
    assert arch_for(str(tmp_path)).param_count() == known_arch("Qwen/Qwen3-VL-8B-Instruct").param_count()


def test_unknown_models_and_other_architectures_are_named(tmp_path):
    with pytest.raises(ArchError, match="'org/SomeModel-7B'.*config.json.*Qwen3-VL-8B"):
        arch_for("org/SomeModel-7B")
    (tmp_path / "gpt").mkdir()
    (tmp_path / "gpt" / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_layer": 2}))
    with pytest.raises(ArchError, match="gpt.*no text_config.*'gpt2'"):
        arch_for(str(tmp_path / "gpt"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text(json.dumps({"text_config": {"hidden_size": 8}, "vision_config": {}}))
    with pytest.raises(ArchError, match="bad: config.json has no text_config.num_attention_heads"):
        arch_for(str(tmp_path / "bad"))


# ------------------------------------------------------------------------------------------------ hand-computed
TOY = Arch("toy", num_layers=2, hidden_size=4, intermediate_size=8, num_heads=2, num_kv_heads=1, head_dim=2,
           vocab_size=10, tie_word_embeddings=False,
           vision=VisionArch(depth=1, hidden_size=2, intermediate_size=4, patch_size=1, temporal_patch_size=1,
                             spatial_merge_size=1, out_hidden_size=4, in_channels=1, num_position_embeddings=4))


def test_toy_counts_by_hand():
    # layer: q 4·4 + k,v 2·(4·2) + o 4·4 + q/k norms 2·2 = 52; MLP 3·4·8 = 96; two norms 8 → 156
    assert TOY.layer_param_count() == 156
    # text: 2 layers 312 + embedding 40 + head 40 + final norm 4 = 396; vision: patch 1·2+2, positions 4·2,
    # block (norms 8, qkv 2·6+6, proj 2·2+2, MLP 2·4+4 + 4·2+2) = 54, merger (norm 4, 2·2+2, 2·4+4) = 22 → 88
    assert TOY.text_param_count() == 396 and TOY.vision.param_count() == 88 and TOY.param_count() == 484


def _toy_cfg(*over: str):
    return load_config(None, ["rollout.prompts_per_step=8", "rollout.group_size=2", "data.max_prompt_tokens=16",
                              "rollout.max_new_tokens=8", "algorithm.num_minibatches=1", *over])


def _bytes(plan, name: str, phase: str) -> float:
    item = next(i for i in plan.items if i.name.startswith(name))
    return getattr(item, phase) * GIB


def test_zero_stages_and_offload_by_hand():
    # bf16 on GPUs, 4 ranks, vision frozen: P = 484 parameters, 396 trainable
    p3 = plan_memory(_toy_cfg("deepspeed.zero_stage=3"), 4, arch=TOY)
    assert _bytes(p3, "parameters", "update") == pytest.approx(484 * 2 / 4)  # bf16, 1/4 each
    assert _bytes(p3, "optimizer state", "update") == pytest.approx(396 * 12 / 4)  # fp32 master + m + v, 1/4
    assert _bytes(p3, "gradients", "update") == pytest.approx(396 * 2 / 4 + 396 * 4 / 4)  # bf16 + fp32 partitions
    p2 = plan_memory(_toy_cfg("deepspeed.zero_stage=2"), 4, arch=TOY)
    assert _bytes(p2, "parameters", "update") == pytest.approx(484 * 2)  # whole under ZeRO-2
    assert _bytes(p2, "gathered full weights", "rollout") == 0
    assert _bytes(p3, "gathered full weights", "rollout") == pytest.approx(484 * 2)  # ZeRO-3 gathers for the rollout
    off = plan_memory(_toy_cfg("deepspeed.zero_stage=3", "deepspeed.offload_optimizer=true",
                               "deepspeed.offload_params=true"), 4, arch=TOY)
    assert _bytes(off, "parameters", "update") == 0 and _bytes(off, "optimizer state", "update") == 0
    host = dict(off.host)
    assert host["offloaded optimizer state + fp32 gradients"] * GIB == pytest.approx(396 * 16 / 4 * 4)  # 4 ranks/node
    assert host["offloaded parameters"] * GIB == pytest.approx(484 * 2 / 4 * 4)
    fp32 = plan_memory(_toy_cfg("deepspeed.precision=fp32", "model.dtype=float32"), 1, arch=TOY, device="cpu")
    assert _bytes(fp32, "optimizer state", "update") == pytest.approx(396 * 8)  # plain AdamW: m + v, no master
    assert _bytes(fp32, "gradients", "update") == pytest.approx(396 * 4)


def test_kv_cache_by_hand_and_rows_at_once():
    # 8 prompts / 4 ranks × G 2 = 4 rows; 16 + 8 positions × 2 layers × (K, V) × 1 KV head × head dim 2 × 2 B
    p = plan_memory(_toy_cfg(), 4, arch=TOY)
    assert _bytes(p, "generation KV cache", "rollout") == 4 * 24 * 2 * 2 * 1 * 2 * 2
    assert _bytes(p, "generation KV cache", "update") == 0
    half = plan_memory(_toy_cfg("rollout.generation_batch_size=2"), 4, arch=TOY)
    assert _bytes(half, "generation KV cache", "rollout") == 2 * 24 * 2 * 2 * 1 * 2 * 2


def test_vllm_share_and_kl_reference():
    p = plan_memory(_toy_cfg("rollout.engine=vllm", "rollout.vllm.gpu_memory_utilization=0.25"), 4, arch=TOY)
    assert _bytes(p, "vLLM engine", "rollout") == pytest.approx(0.25 * 80 * GIB)
    assert _bytes(p, "vLLM engine", "update") == 0  # asleep while training
    assert not any(i.name.startswith("generation KV") for i in p.items)
    awake = plan_memory(_toy_cfg("rollout.engine=vllm", "rollout.vllm.enable_sleep_mode=false"), 4, arch=TOY)
    assert _bytes(awake, "vLLM engine", "update") == pytest.approx(0.35 * 80 * GIB)
    kl = plan_memory(_toy_cfg("algorithm.kl_beta=0.01", "deepspeed.zero_stage=3"), 4, arch=TOY)
    assert _bytes(kl, "KL reference model", "update") == pytest.approx(484 * 2 / 4)
    assert not any(i.name.startswith("KL") for i in p.items)


def test_batch_arithmetic_errors_name_the_key():
    from sapo_vl.config import ConfigError

    with pytest.raises(ConfigError, match="rollout.prompts_per_step=12 must be a multiple of the number of ranks"):
        dry_run_report(load_config(REPO / "configs/qwen3vl_8b.yaml", ["rollout.prompts_per_step=12"]), 8)


# ------------------------------------------------------------------------------------------------ split placement
def _split(*over: str):
    return _toy_cfg("rollout.placement=split", "rollout.rollout_ranks=1", *over)


@pytest.mark.parametrize("over, w", [
    ((), 2),  # bf16 on GPUs
    (("deepspeed.precision=bf16", "model.dtype=float32"), 2),  # the dtype the trainer computes in, not the checkpoint's
    (("deepspeed.precision=fp32", "model.dtype=float32"), 4),
    (("model.lora.r=2",), 2),  # no LoRA wrapper: the base weights, adapters arrive merged
])
def test_split_rollout_rank_holds_whole_weights_and_no_training_state(over, w):
    # 5 ranks, 1 rolls out: T = 4 trainers; ZeRO-3 and a KL reference on the trainers, none of it on the rollout rank
    r = plan_memory(_split("deepspeed.zero_stage=3", "algorithm.kl_beta=0.01", *over), 5, arch=TOY).rollout
    assert r.role == "rollout" and r.world_size == 1 and r.settings["clients"] == 4  # it serves all 4 trainers
    assert _bytes(r, "parameters", "rollout") == _bytes(r, "parameters", "update") == 484 * w  # all 484, not / 4
    assert [i.name for i in r.items if i.name.startswith(
        ("optimizer", "gradients", "activations", "log-prob", "ZeRO", "KL", "gathered", "weight send"))] == []
    # one trainer's share at a time: 8 prompts / 4 trainers × G 2 = 4 rows; 16 + 8 positions × 2 layers × (K, V)
    # × 1 KV head × head dim 2 × w
    assert _bytes(r, "generation KV cache", "rollout") == 4 * 24 * 2 * 2 * 1 * 2 * w
    assert _bytes(r, "generation KV cache", "update") == 0  # freed before the weight sync
    # the sync: one flat bucket (the whole toy model, far under 1 GiB) + a copy of its largest tensor, the
    # embedding (vocabulary 10 × hidden 4)
    assert _bytes(r, "weight receive", "update") == 484 * w + 10 * 4 * w
    assert _bytes(r, "weight receive", "rollout") == 0
    assert r.update_gib * GIB == pytest.approx(484 * w + 484 * w + 10 * 4 * w + 2 * GIB)  # + the CUDA runtime


GENERATION = ("generation ", "gathered full weights", "vLLM ")
"""The colocated plan's items that a split placement's training ranks do not hold: they never sample."""


@pytest.mark.parametrize("over", [
    (), ("deepspeed.zero_stage=3",), ("algorithm.kl_beta=0.01", "deepspeed.zero_stage=2"),
    ("rollout.engine=vllm", "rollout.vllm.enable_sleep_mode=false", "deepspeed.zero_stage=3"),
    ("deepspeed.zero_stage=3", "deepspeed.offload_optimizer=true", "deepspeed.offload_params=true"),
])
def test_split_trainers_plan_is_the_colocated_plan_of_T_ranks_without_generation(over):
    split = plan_memory(_split(*over), 5, arch=TOY).trainers  # 5 ranks: 4 train
    colocated = plan_memory(_toy_cfg(*over), 4, arch=TOY)
    assert split.role == "trainer" and split.world_size == 4
    kept = [(i.name, i.rollout, i.update, i.note) for i in colocated.items if not i.name.startswith(GENERATION)]
    sync = ("weight send", "gathered bucket")
    assert [(i.name, i.rollout, i.update, i.note) for i in split.items if not i.name.startswith(sync)] == kept
    assert split.host == [h for h in colocated.host if not h[0].startswith("vLLM")]
    # trainer 0 between updates: the bucket's tensors cloned, then their flat concatenation: 2 × the toy model's
    # 484 × 2 B (one bucket); under ZeRO-3 every trainer gathers that bucket too
    assert _bytes(split, "weight send", "rollout") == 2 * 484 * 2 and _bytes(split, "weight send", "update") == 0
    zero3 = "deepspeed.zero_stage=3" in over
    assert [i.name for i in split.items if i.name.startswith("gathered bucket")] == (["gathered bucket (ZeRO-3 sync)"]
                                                                                    if zero3 else [])
    if zero3:
        assert _bytes(split, "gathered bucket", "rollout") == 484 * 2
    assert split.update_gib == pytest.approx(sum(k[2] for k in kept))  # the update is the colocated one's


def test_split_dry_run_prints_both_roles_with_rollout_ranks_as_a_fraction(no_network):
    # 12 ranks, rollout_ranks 0.33: round(0.33 × 12) = round(3.96) = 4 roll out, 8 train, 128 / 8 = 16 prompts each
    over = ["rollout.placement=split", "rollout.rollout_ranks=0.33"]
    cfg = load_config(REPO / "configs/qwen3vl_8b.yaml", over)
    plan, report = plan_memory(cfg, 12), dry_run_report(cfg, 12)
    assert plan.trainers.world_size == 8 and plan.rollout.world_size == 4 and plan.rollout.settings["clients"] == 2
    whole = plan_memory(load_config(REPO / "configs/qwen3vl_8b.yaml", [over[0], "rollout.rollout_ranks=4"]), 12)
    assert whole.trainers.items == plan.trainers.items and whole.rollout.items == plan.rollout.items
    # the trainers' update is the colocated 8-rank run's; a rollout rank holds the whole 8B model in bf16 and
    # samples 16 × G 8 = 128 rows, 48 at once (the config's generation_batch_size): 48 × (2048 + 2048) positions ×
    # 36 layers × (K, V) × 8 KV heads × 128 × 2 B
    colocated = plan_memory(load_config(REPO / "configs/qwen3vl_8b.yaml"), 8)
    assert plan.trainers.update_gib == pytest.approx(colocated.update_gib)
    assert _bytes(plan.rollout, "parameters", "rollout") == known_arch("Qwen/Qwen3-VL-8B-Instruct").param_count() * 2
    assert plan.rollout.settings["rows_per_rank"] == 128
    assert _bytes(plan.rollout, "generation KV cache", "rollout") == 48 * 4096 * 36 * 2 * 8 * 128 * 2
    assert "12 rank(s) split: 8 train, 4 roll out" in report
    assert "memory plan, training ranks:" in report and "memory plan, rollout ranks:" in report
    for role in (plan.trainers, plan.rollout):  # each table with its totals and its own verdict
        assert f"{role.rollout_gib:8.2f}  {role.update_gib:8.2f}" in report
    lines = report.splitlines()
    assert any(l.startswith("training ranks: FITS: peak") for l in lines)
    assert any(l.startswith("rollout ranks: FITS: peak") for l in lines)
    assert lines[-1].startswith("split placement FITS: both roles") and plan.fits


def test_split_dry_run_command_prints_both_roles_and_the_trainers_deepspeed_config(capsys, monkeypatch, tmp_path):
    from sapo_vl.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for var in ("WORLD_SIZE", "RANK"):
        monkeypatch.delenv(var, raising=False)
    assert main(["train", str(REPO / "configs/qwen3vl_8b.yaml"), "--dry-run", "--gpus", "12", "rollout.placement=split",
                 "rollout.rollout_ranks=0.33", f"logging.out_dir={tmp_path}"]) == 0
    out = capsys.readouterr().out
    assert "memory plan, training ranks:" in out and "memory plan, rollout ranks:" in out
    assert "split placement FITS: both roles" in out
    # DeepSpeed runs on the 8 training ranks: 128 prompts / 8 × G 8 = 128 rows, 4 minibatches of 32, micro-batches
    # of 4 → 8 accumulation steps; 4 × 8 × 8 ranks = 256 rows per optimizer step (128 prompts do not divide over 12)
    assert "'gradient_accumulation_steps': 8" in out and "'train_batch_size': 256" in out
    assert not list(tmp_path.iterdir())


def test_split_where_only_the_rollout_rank_does_not_fit_names_a_generation_knob():
    # 16 ranks, 8 roll out: each samples one trainer's 128 rows, all at once: a KV cache of 128 × 4096 × 36 × 2 × 8
    # × 128 × 2 B = 72 GiB beside the 16.3 GiB of whole weights, over the 76 GiB plannable
    over = ["rollout.placement=split", "rollout.rollout_ranks=8", "rollout.generation_batch_size=0"]
    plan = plan_memory(load_config(REPO / "configs/qwen3vl_8b.yaml", over), 16)
    assert _bytes(plan.rollout, "generation KV cache", "rollout") == 128 * 4096 * 36 * 2 * 8 * 128 * 2 == 72 * GIB
    assert plan.trainers.fits and not plan.rollout.fits and not plan.fits
    assert plan.trainers.knobs == [] and [k for k, _ in plan.rollout.knobs] == ["rollout.generation_batch_size"]
    text = plan.render()
    assert "rollout ranks: DOES NOT FIT" in text and "training ranks: FITS" in text
    last = text.splitlines()[-1]
    assert last.startswith("split placement DOES NOT FIT: the rollout ranks do not")
    assert "turn rollout.generation_batch_size=" in last
    fixed = plan_memory(load_config(REPO / "configs/qwen3vl_8b.yaml", over + [f"{k}={v}" for k, v in plan.knobs]), 16)
    assert fixed.fits and fixed.rollout.peak_gib == pytest.approx(plan.rollout.knobs_peak_gib)
    # a vLLM rollout rank holds its share of the GPU (its `transformers` twin stays on the host) and never sleeps,
    # so at the sync it also holds the received bucket: 0.97 × 80 + 2 (runtime) + bucket > 76 GiB. Its share is the
    # knob: any value with share × 80 + 2 + bucket ≤ 76
    vllm = ["rollout.placement=split", "rollout.rollout_ranks=8", "rollout.engine=vllm",
            "rollout.vllm.gpu_memory_utilization=0.97"]
    plan = plan_memory(load_config(REPO / "configs/qwen3vl_8b.yaml", vllm), 16)
    [(key, share)] = plan.knobs
    bucket = _bytes(plan.rollout, "weight receive (one bucket)", "update") / GIB
    assert not plan.fits and plan.trainers.fits and key == "rollout.vllm.gpu_memory_utilization"
    assert 0.8 <= share and share * 80 + 2 + bucket <= 76 < 0.97 * 80 + 2 + bucket
    assert "twin on the host" in plan.render()


def test_split_trainers_that_do_not_fit_get_training_knobs():
    # ZeRO-0 on 8 training ranks of the 8B: every trainer holds 8.19 B × 12 B of optimizer state (91 GiB)
    over = ["rollout.placement=split", "rollout.rollout_ranks=8", "deepspeed.zero_stage=0"]
    plan = plan_memory(load_config(REPO / "configs/qwen3vl_8b.yaml", over), 16)
    assert not plan.trainers.fits and plan.rollout.fits and plan.rollout.knobs == []
    keys = {k for k, _ in plan.knobs}
    assert "deepspeed.zero_stage" in keys and not keys & {"rollout.generation_batch_size",
                                                          "rollout.vllm.gpu_memory_utilization"}
    assert plan.render().splitlines()[-1].startswith("split placement DOES NOT FIT: the training ranks do not")
    assert plan_memory(load_config(REPO / "configs/qwen3vl_8b.yaml", over + [f"{k}={v}" for k, v in plan.knobs]),
                       16).fits


def test_split_errors_name_the_key():
    from sapo_vl.config import ConfigError

    cfg = load_config(REPO / "configs/qwen3vl_8b.yaml", ["rollout.placement=split", "rollout.rollout_ranks=8"])
    with pytest.raises(ConfigError, match="rollout.rollout_ranks=8 leaves no training rank in a launch of 8"):
        dry_run_report(cfg, 8)
    cfg = load_config(REPO / "configs/qwen3vl_8b.yaml", ["rollout.placement=split", "rollout.rollout_ranks=2"])
    with pytest.raises(ConfigError, match=r"prompts_per_step=128 must be a multiple of the number of ranks \(6\).*"
                                          r"rollout.rollout_ranks=2: 6 of the 8 ranks train"):
        dry_run_report(cfg, 8)


# ------------------------------------------------------------------------------------------------ activations
def _saved_bytes_per_layer_token(arch: Arch, dtype: torch.dtype, seq: int = 48, rows: int = 3) -> float:
    """Bytes autograd keeps per token per text layer, measured: 3 layers minus 1 layer, padded rows."""
    from transformers import AutoModelForImageTextToText

    from sapo_vl.logprobs import PolicyLogprobs
    from sapo_vl.rollout import RowBatch

    def saved(layers: int) -> int:
        torch.manual_seed(0)
        model = AutoModelForImageTextToText.from_config(hf_config(replace(arch, num_layers=layers)), dtype=dtype)
        module = PolicyLogprobs(model.train())
        kept: dict[int, int] = {}

        def pack(t):
            kept[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        ids = torch.randint(0, arch.vocab_size - 30, (rows, seq))
        mask = torch.ones_like(ids)
        mask[0, :5] = 0  # left padding, as in every rollout batch
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            module(RowBatch(rows=list(range(rows)), input_ids=ids, attention_mask=mask, pixel_values=None,
                            mm_token_type_ids=torch.zeros_like(ids), n_completion=seq // 2, image_grid_thw=None,
                            mask=mask[:, -(seq // 2):]), with_entropy=False)
        weights = {p.untyped_storage().data_ptr() for p in module.parameters()}
        return sum(n for ptr, n in kept.items() if ptr not in weights)

    return (saved(3) - saved(1)) / 2 / (rows * seq)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [
    dict(hidden_size=128, intermediate_size=352, num_heads=4, num_kv_heads=2, head_dim=32),
    dict(hidden_size=96, intermediate_size=512, num_heads=6, num_kv_heads=1, head_dim=32),
    dict(hidden_size=128, intermediate_size=256, num_heads=4, num_kv_heads=4, head_dim=32),
    dict(hidden_size=64, intermediate_size=128, num_heads=4, num_kv_heads=2, head_dim=16, num_experts=8,
         experts_per_token=2, moe_intermediate_size=48),
])
def test_activation_bytes_match_what_autograd_keeps(shape, dtype):
    arch = replace(tiny_arch(moe="num_experts" in shape), **shape)
    arch = replace(arch, vision=replace(arch.vision, out_hidden_size=arch.hidden_size))
    measured = _saved_bytes_per_layer_token(arch, dtype)
    planned = layer_activation_bytes(arch, 4 if dtype == torch.float32 else 2, seq_len=48)
    assert planned == pytest.approx(measured, rel=0.10)


def _saved_bytes_packed(arch: Arch, prompt: int = 12, completions: int = 3, rows: int = 3) -> float:
    """The same measure on the packed path: `rows` text prompts each followed by `completions` completions of
    `prompt` tokens in one packed row, through `packing.packed_logprobs` (the shared-prefix kernel)."""
    from transformers import AutoModelForImageTextToText

    from sapo_vl import packing
    from sapo_vl.logprobs import PolicyLogprobs

    n = rows * completions
    table = packing.PromptTable(
        ids=[torch.randint(1, arch.vocab_size - 30, (prompt,)) for _ in range(rows)],
        positions=[torch.arange(prompt).expand(3, prompt) for _ in range(rows)], next_pos=[prompt] * rows,
        pixel_values=[None] * rows, image_grid_thw=[None] * rows,
        completion_ids=torch.randint(1, arch.vocab_size - 30, (n, prompt)), completion_len=[prompt] * n,
        group_size=completions)
    batch = packing.packed_batch(table, [(g, tuple(range(g * completions, (g + 1) * completions)))
                                         for g in range(rows)])

    def saved(layers: int) -> int:
        torch.manual_seed(0)
        model = AutoModelForImageTextToText.from_config(hf_config(replace(arch, num_layers=layers)))
        module = PolicyLogprobs(model.train())
        kept: dict[int, int] = {}

        def pack(t):
            kept[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            packing.packed_logprobs(module, batch, with_entropy=False)
        weights = {p.untyped_storage().data_ptr() for p in module.parameters()}
        return sum(n for ptr, n in kept.items() if ptr not in weights)

    return (saved(3) - saved(1)) / 2 / batch.input_ids.numel()


@pytest.mark.parametrize("shape", [
    dict(hidden_size=128, intermediate_size=352, num_heads=4, num_kv_heads=2, head_dim=32),
    dict(hidden_size=128, intermediate_size=256, num_heads=4, num_kv_heads=4, head_dim=32),
])
def test_packed_activation_bytes_match_what_autograd_keeps(shape):
    arch = replace(tiny_arch(), **shape)
    arch = replace(arch, vision=replace(arch.vision, out_hidden_size=arch.hidden_size))
    measured = _saved_bytes_packed(arch)
    planned = layer_activation_bytes(arch, 4, seq_len=48, shared_prefix=True)
    assert planned == pytest.approx(measured, rel=0.10)
    assert planned < layer_activation_bytes(arch, 4, seq_len=48)  # no mask, no grouped-query copies kept


# ------------------------------------------------------------------------------------------------ shipped configs
@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test."""
    def refuse(*a, **k):
        raise AssertionError(f"network access attempted: {a[1:]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_config_fits_its_8_gpus_offline(path, no_network):
    cfg = load_config(path)
    report = dry_run_report(cfg, 8)
    assert cfg.model.name_or_path in report and "FITS: peak" in report and "DOES NOT FIT" not in report
    plan = plan_memory(cfg, 8)
    assert plan.fits and plan.peak_gib <= 0.95 * 80
    for phase in ("rollout", "update"):  # the table's rows add up to its totals
        assert f"{getattr(plan, phase + '_gib'):8.2f}" in report


def test_a_plan_that_does_not_fit_names_the_knob_that_makes_it_fit():
    cfg = load_config(REPO / "configs/qwen3vl_8b.yaml", ["rollout.generation_batch_size=0"])
    plan = plan_memory(cfg, 8)
    assert not plan.fits and plan.settings["rows_at_once"] == 128
    assert [k for k, _ in plan.knobs] == ["rollout.generation_batch_size"]
    assert "DOES NOT FIT" in plan.render() and "turn rollout.generation_batch_size=" in plan.render()
    fixed = load_config(REPO / "configs/qwen3vl_8b.yaml", [f"{k}={v}" for k, v in plan.knobs])
    assert plan_memory(fixed, 8).fits and plan_memory(fixed, 8).peak_gib == pytest.approx(plan.knobs_peak_gib)
    # an update that overflows: the micro-batch or checkpointing, never the rollout's rows
    big = load_config(REPO / "configs/qwen3vl_4b.yaml", ["model.gradient_checkpointing=false",
                                                         "deepspeed.micro_batch_size=8"])
    knobs = dict(plan_memory(big, 8).knobs)
    assert knobs and set(knobs) <= {"deepspeed.micro_batch_size", "model.gradient_checkpointing",
                                    "rollout.generation_batch_size"}
    assert plan_memory(load_config(REPO / "configs/qwen3vl_4b.yaml", [
        "model.gradient_checkpointing=false", "deepspeed.micro_batch_size=8", *[f"{k}={v}" for k, v in knobs.items()]
    ]), 8).fits


def test_knobs_turned_together_when_no_single_one_fits():
    # 30B-A3B with its optimizer state on the GPU and all 128 rows at once: rows alone cannot make room
    cfg = load_config(REPO / "configs/qwen3vl_30b_a3b.yaml", ["deepspeed.offload_optimizer=false",
                                                             "rollout.generation_batch_size=0"])
    plan = plan_memory(cfg, 8)
    knobs = dict(plan.knobs)
    assert not plan.fits and len(knobs) >= 2 and knobs.get("deepspeed.offload_optimizer") is True
    fixed = plan_memory(load_config(REPO / "configs/qwen3vl_30b_a3b.yaml", [
        "deepspeed.offload_optimizer=false", "rollout.generation_batch_size=0", *[f"{k}={v}" for k, v in plan.knobs]
    ]), 8)
    assert fixed.fits
    for key in knobs:  # each knob is needed: without any one of them the plan does not fit
        rest = [f"{k}={v}" for k, v in plan.knobs if k != key and k != "deepspeed.zero_stage"]
        assert not plan_memory(load_config(REPO / "configs/qwen3vl_30b_a3b.yaml", [
            "deepspeed.offload_optimizer=false", "rollout.generation_batch_size=0", *rest]), 8).fits


def test_hub_id_offline_fails_at_once_in_one_line(no_network):
    from sapo_vl.models.loading import ModelLoadError, load_processor

    with pytest.raises(ModelLoadError) as e:  # no connection is attempted: `no_network` would raise first
        load_processor("Qwen/Qwen3-VL-2B-Instruct")
    msg = str(e.value)
    assert "\n" not in msg and "'Qwen/Qwen3-VL-2B-Instruct'" in msg and "HF_HUB_OFFLINE" in msg and "local" in msg


# ------------------------------------------------------------------------------------------------ measured on CPU
PROBE = r'''
import json, os, resource, sys
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
from transformers import AutoModelForImageTextToText
mark = {}
_load = AutoModelForImageTextToText.from_pretrained.__func__
def from_pretrained(cls, *a, **k):  # the baseline: processor, data and libraries in place, no weights yet
    mark.setdefault("rss", rss())
    return _load(cls, *a, **k)
AutoModelForImageTextToText.from_pretrained = classmethod(from_pretrained)
from sapo_vl import ds, sampling
ds.save_checkpoint = lambda *a, **k: None  # measure the step, not the checkpoint writer
sampling.STOP_TOKENS = ("<|no stop token|>",)  # every completion runs to max_new_tokens: the plan's worst case
from sapo_vl.config import load_config
from sapo_vl.train import train
train(load_config(sys.argv[1], sys.argv[2:]))
print("PROBE " + json.dumps({"baseline": mark["rss"], "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
'''


def _measure(overrides: list[str], tmp_path: Path) -> float:
    """Peak RSS growth (bytes) of one `sapo_vl.train.train` step, from just before the weights load.

    Completions never stop early (no stop token), so every row has the length the plan assumes; a random model
    would otherwise stop at random and leave the packed update shorter than the worst case."""
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1",
               # large blocks go back to the OS when freed, so RSS follows live memory, not glibc's retained heap
               MALLOC_MMAP_THRESHOLD_="65536")
    if not torch.cuda.is_available():
        env["DS_ACCELERATOR"] = "cpu"
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    out = subprocess.run([sys.executable, "-c", PROBE, str(REPO / "configs/demo.yaml"), *overrides], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=900)
    line = next((l for l in out.stdout.splitlines() if l.startswith("PROBE ")), None)
    assert out.returncode == 0 and line, out.stdout[-2000:] + out.stderr[-4000:]
    got = json.loads(line[len("PROBE "):])
    return got["peak"] - got["baseline"]


def _run_overrides(tmp_path: Path, model: str, *more: dict, **extra) -> list[str]:
    base = {"model.name_or_path": model, "logging.out_dir": str(tmp_path / "runs"), "logging.run_name": "mem",
            "logging.progress": "false", "logging.tensorboard": "false", "logging.plots": "false",
            "logging.sample_every": "0", "train.steps": "1", "train.format_warmup_steps": "0",
            "rollout.score_workers": "0", "algorithm.num_minibatches": "2", "algorithm.updates_per_rollout": "1"}
    for d in (*more, extra):
        base.update({k: str(v) for k, v in d.items()})
    return [f"{k}={v}" for k, v in base.items()]


def build_midsize(out: Path) -> Path:
    """A random Qwen3-VL of ~30M parameters (tiny's tokenizer and processor, wider and deeper text model)."""
    from transformers import AutoModelForImageTextToText

    from sapo_vl.models import tiny

    tok = tiny.train_tokenizer()
    cfg = tiny.tiny_config(tok, head_dim=64, mrope_section=(16, 8, 8))
    text = cfg.text_config
    text.hidden_size, text.intermediate_size, text.num_hidden_layers = 512, 1536, 8
    text.num_attention_heads, text.num_key_value_heads = 8, 2
    cfg.vision_config.out_hidden_size = 512
    torch.manual_seed(0)
    AutoModelForImageTextToText.from_config(cfg, dtype=torch.float32).save_pretrained(out, safe_serialization=True)
    tiny.tiny_processor(tok).save_pretrained(out)
    return out


def _check(plan_gib: float, measured: float, label: str) -> None:
    ratio = measured / (plan_gib * GIB)
    print(f"{label}: plan {plan_gib * GIB / 1e6:.0f} MB, measured peak RSS growth {measured / 1e6:.0f} MB, "
          f"ratio {ratio:.2f}")
    assert 0.7 <= ratio <= 1.3


@pytest.mark.slow
@pytest.mark.parametrize("heavy, extra", [
    ("update", {"rollout.prompts_per_step": 16, "rollout.max_new_tokens": 256, "deepspeed.micro_batch_size": 64}),
    ("rollout", {"rollout.prompts_per_step": 32, "rollout.max_new_tokens": 1024, "deepspeed.micro_batch_size": 2}),
])
def test_plan_holds_against_measured_memory_tiny(heavy, extra, tiny_cache, tmp_path):
    over = _run_overrides(tmp_path, "sapo-vl/tiny-qwen3-vl", {"rollout.group_size": 8, "data.max_prompt_tokens": 64},
                          extra)
    plan = plan_memory(load_config(REPO / "configs/demo.yaml", over), 1, device="cpu")
    assert (plan.update_gib > plan.rollout_gib) == (heavy == "update")  # the phase this case measures is the peak
    _check(plan.peak_gib, _measure(over, tmp_path), f"tiny, {heavy} peak")


@pytest.mark.slow
def test_plan_holds_against_measured_memory_midsize(tmp_path):
    folder = build_midsize(tmp_path / "mid")
    arch = arch_for(str(folder))
    assert 20e6 < arch.param_count() < 60e6  # tens of millions
    over = _run_overrides(tmp_path, str(folder), **{
        "rollout.prompts_per_step": 2, "rollout.group_size": 8, "rollout.max_new_tokens": 192,
        "deepspeed.micro_batch_size": 8, "data.max_prompt_tokens": 64})
    measured = _measure(over, tmp_path)
    plan = plan_memory(load_config(REPO / "configs/demo.yaml", over), 1, device="cpu")
    _check(plan.peak_gib, measured, "mid-size")

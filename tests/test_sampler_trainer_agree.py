"""The sampler and the trainer agree: π_old recomputed by the trainer equals the sampling distribution to float32
precision (`rollout_logprob_gap` ≤ 1e-5) on images, on text-only prompts of very different lengths, and with LoRA
after several steps; a LoRA run's checkpoint evaluates and exports."""
import json
from pathlib import Path

import pytest
import torch

from train_helpers import launch, metrics, small_overrides

GAP = 1e-5

TEXT_RECIPE = '''
"""Test recipe: text-only questions from 2 to ~120 words, so a batch's prompts pad each other a lot."""
from sapo_vl.data.record import Record

NAME, DOMAIN, SOURCE, VERIFIER = "text_lengths", "reasoning", "synthetic:test", "exact"
DESCRIPTION, PROMPT = "text-only prompts of very different lengths", "{question}"


def records(split="train", *, seed=0, limit=None, root=None):
    for i in range(limit or 32):
        words = " ".join(["word"] * (2 + (i * 37) % 120))
        yield Record(id=f"text/{i}", prompt=[{"role": "user", "content": [{"type": "text", "text": f"{words} {i}?"}]}],
                     answer=str(i), images=[], verifier="exact", domain="reasoning", source=SOURCE)
'''


def _gaps(run_dir: Path) -> list[float]:
    rows = metrics(run_dir)
    assert rows and all("rollout_logprob_gap" in r for r in rows)
    return [r["rollout_logprob_gap"] for r in rows]


def test_gap_on_the_demo_config_with_images(tmp_path, tiny_dense):
    ov = small_overrides(tmp_path, "img", **{"train.steps": 2, "rollout.max_new_tokens": 12,
                                             "train.format_warmup_steps": 0})
    res = launch(ov, ranks=1)
    assert res.returncode == 0, res.stderr[-3000:]
    assert max(_gaps(tmp_path / "img")) <= GAP


def test_gap_on_text_only_prompts_of_very_different_lengths(tmp_path, tiny_dense):
    recipe = tmp_path / "text_lengths.py"
    recipe.write_text(TEXT_RECIPE)
    ov = small_overrides(tmp_path, "txt", **{"train.steps": 2, "rollout.prompts_per_step": 4,
                                             "rollout.max_new_tokens": 12, "data.recipes": f"[{{name: {recipe}}}]",
                                             "data.max_prompt_tokens": 1024, "deepspeed.micro_batch_size": 4})
    res = launch(ov, ranks=1)
    assert res.returncode == 0, res.stderr[-3000:]
    assert max(_gaps(tmp_path / "txt")) <= GAP


def test_lora_run_gap_then_checkpoint_evaluates_and_exports(tmp_path, tiny_dense):
    pytest.importorskip("peft")
    ov = small_overrides(tmp_path, "lora", **{"train.steps": 3, "model.lora.r": 4, "optimizer.lr": 5e-2,
                                              "rollout.max_new_tokens": 8})
    res = launch(ov, ranks=1)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = metrics(tmp_path / "lora")
    assert max(r["rollout_logprob_gap"] for r in rows) <= GAP
    assert rows[-1]["ratio_mean"] != 1.0  # the adapter moved: the later steps are off-policy
    ckpt = tmp_path / "lora" / "checkpoints" / "step_3"
    hf = ckpt / "hf"
    assert (hf / "adapter_config.json").is_file() and not (hf / "config.json").exists()

    # the DeepSpeed state holds the adapter (and its optimizer state), not the frozen base model
    base_bytes = (Path(str(tiny_dense)) / "model.safetensors").stat().st_size
    ds_bytes = sum(f.stat().st_size for f in (ckpt / "ds").rglob("*") if f.is_file())
    assert ds_bytes < 0.25 * base_bytes, (ds_bytes, base_bytes)

    from sapo_vl.cli import main

    out = tmp_path / "eval"
    assert main(["eval", "--task", "synthetic_color", "--model", str(hf), "--limit", "2", "--out", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text())["metrics"]["n_records"] == 2

    merged = tmp_path / "merged"
    assert main(["export", str(hf), str(merged)]) == 2  # an adapter needs --merge
    assert main(["export", str(hf), str(merged), "--merge"]) == 0
    from transformers import AutoModelForImageTextToText

    from sapo_vl.models.loading import load_policy

    plain = AutoModelForImageTextToText.from_pretrained(merged)
    adapted = load_policy(str(hf))
    base = load_policy(str(tiny_dense))
    ids = torch.tensor([[1, 5, 9, 30, 2]])
    with torch.no_grad():
        a, b, c = (m(input_ids=ids, mm_token_type_ids=torch.zeros_like(ids)).logits for m in (plain, adapted, base))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)  # the merged weights carry the training


def test_lora_forwards_are_deterministic(tiny_dense):
    """Two π_old passes with the same weights give the same log-probs (no dropout anywhere in the policy)."""
    pytest.importorskip("peft")
    from PIL import Image

    from sapo_vl import ds
    from sapo_vl.batch_plan import batch_plan
    from sapo_vl.config import ConfigError, load_config
    from sapo_vl.data.record import Record, user_prompt
    from sapo_vl.logprobs import PolicyLogprobs
    from sapo_vl.models.loading import load_processor
    from sapo_vl.rollout import Rollout
    from sapo_vl.run import build_policy
    from sapo_vl.engines.base import SamplingSettings
    from sapo_vl.sampling import sample_completions
    from sapo_vl.update import RowSource, UpdateSettings, rollout_logprobs

    with pytest.raises(ConfigError, match="model.lora.dropout: must be 0"):
        load_config(None, ["model.lora.r=4", "model.lora.dropout=0.05"])
    cfg = load_config(None, ["model.name_or_path=" + str(tiny_dense), "model.lora.r=4", "rollout.group_size=4",
                             "rollout.prompts_per_step=2", "deepspeed.micro_batch_size=4"])
    dist = ds.init_distributed()
    p = batch_plan(cfg, dist.world_size)
    policy = build_policy(cfg, dist.device)
    engine = ds.create_engine(PolicyLogprobs(policy), cfg, micro_batch=p.micro, grad_accum=p.grad_accum, dist=dist,
                              total_optimizer_steps=10)
    proc = load_processor(str(tiny_dense))
    recs = [Record(id=str(i), prompt=user_prompt("Dominant color?"), answer="red", images=[b"-"]) for i in range(2)]
    imgs = [[Image.new("RGB", (64, 64), c)] for c in ((200, 10, 10), (10, 10, 200))]
    s = sample_completions(policy, proc, [r.prompt for r in recs], imgs,
                           SamplingSettings(group_size=4, max_new_tokens=6),
                           generator=torch.Generator().manual_seed(3))
    ro = Rollout.from_samples(recs, s)
    engine.train()  # the update phase's mode: dropout would be live here
    u = UpdateSettings.from_config(cfg, p)
    a, _ = rollout_logprobs(engine, ro, RowSource(ro, p.micro, dist.device), u)
    b, _ = rollout_logprobs(engine, ro, RowSource(ro, p.micro, dist.device), u)
    assert torch.equal(a, b)
    # the control: the same two passes with attention dropout switched on in one layer differ, so the equality
    # above holds because no dropout is live (and would catch one)
    attn = [m for n, m in policy.named_modules() if hasattr(m, "attention_dropout") and "language_model" in n]
    assert attn and all(m.attention_dropout == 0.0 for m in attn)
    attn[0].attention_dropout = 0.5
    c, _ = rollout_logprobs(engine, ro, RowSource(ro, p.micro, dist.device), u)
    d, _ = rollout_logprobs(engine, ro, RowSource(ro, p.micro, dist.device), u)
    assert not torch.equal(c, d)

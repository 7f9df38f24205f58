"""`sapo-vl sft`: supervised steps on worked responses through the real DeepSpeed engine, an ordinary transformers
checkpoint out, the accuracy before and after, and a clear error for recipes without worked responses."""
import json

import pytest
import torch

from sapo_vl.config import load_config


def _overrides(tmp_path, tiny, **extra):
    base = {"model.name_or_path": str(tiny), "model.min_pixels": 1024, "model.max_pixels": 4096,
            "model.freeze_vision": "false", "data.recipes": "[{name: synthetic_color_think, options: {n_colors: 4}}]",
            "data.max_prompt_tokens": 128, "rollout.prompts_per_step": 4, "rollout.group_size": 2,
            "rollout.max_new_tokens": 32, "rollout.score_workers": 0, "algorithm.updates_per_rollout": 1,
            "algorithm.num_minibatches": 1, "optimizer.lr": "5e-3", "optimizer.warmup_steps": 0,
            "deepspeed.micro_batch_size": 4, "logging.out_dir": str(tmp_path), "logging.run_name": "sft",
            "logging.tensorboard": "false", "logging.progress": "false", "train.steps": 12}
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def _response_nll(model_dir, processor, record, images) -> float:
    """Mean NLL per token of the record's worked response under the checkpoint in `model_dir` (a plain
    transformers forward, not the trainer's module)."""
    from sapo_vl.models.loading import encode_prompts, load_policy

    model = load_policy(str(model_dir)).eval()
    inputs = encode_prompts(processor, [record.prompt], [images])
    tok = processor.tokenizer
    stop = tok.convert_tokens_to_ids("<|im_end|>")
    resp = tok(record.meta["response"], add_special_tokens=False)["input_ids"] + [stop]
    ids = torch.cat([inputs["input_ids"], torch.tensor([resp])], dim=1)
    mask = torch.ones_like(ids)
    extra = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
    if "mm_token_type_ids" in extra:
        mm = extra["mm_token_type_ids"]  # (1, Lp): the response tokens are text (0)
        extra["mm_token_type_ids"] = torch.cat([mm, torch.zeros(1, len(resp), dtype=mm.dtype)], dim=1)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, **extra).logits[0, -len(resp) - 1 : -1]  # (L, V)
    return float(torch.nn.functional.cross_entropy(logits.float(), torch.tensor(resp)))


def test_sft_trains_on_worked_responses_and_saves_a_loadable_checkpoint(tmp_path, tiny_dense):
    from sapo_vl.data.stream import PromptStream
    from sapo_vl.models.loading import load_processor
    from sapo_vl.sft import sft

    cfg = load_config(None, _overrides(tmp_path, tiny_dense))
    report = sft(cfg, eval_prompts=4)
    losses = report["losses"]
    assert len(losses) == 12 and losses[-1] < 0.5 * losses[0], losses
    assert report["skipped_no_response"] == 0 and set(report["accuracy"]) == {"0", "12"}
    for acc in report["accuracy"].values():  # 4 test prompts × 2 sampled completions
        assert acc["completions"] == 8 and 0.0 <= acc["accuracy"] <= 1.0
    assert report["accuracy"]["0"]["accuracy"] == 0.0  # the random policy never writes <answer>color</answer>
    run_dir = tmp_path / "sft"
    assert json.loads((run_dir / "sft.json").read_text())["losses"] == losses
    # an ordinary transformers folder: it loads on its own and gives the worked responses of held-out records a
    # lower NLL than the weights it started from
    proc = load_processor(str(run_dir / "hf"), min_pixels=1024, max_pixels=4096)
    test_cfg = load_config(None, _overrides(tmp_path, tiny_dense, **{"data.recipes": "[{name: synthetic_color_think, "
                                                                     "split: test, options: {n_colors: 4}}]"}))
    prompts = PromptStream(test_cfg.data, test_cfg.model, proc, seed=0, rank=0, world=1).next_batch(3)
    for q in prompts:
        after = _response_nll(run_dir / "hf", proc, q.record, q.images)
        before = _response_nll(tiny_dense, proc, q.record, q.images)
        assert after < 0.5 * before, (before, after)


def test_sft_on_records_without_worked_responses_is_a_clear_error(tmp_path, tiny_dense, capsys):
    import argparse

    from sapo_vl import sft

    p = argparse.ArgumentParser()
    sft.add_arguments(p)
    ov = _overrides(tmp_path, tiny_dense, **{"data.recipes": "[{name: synthetic_color}]", "train.steps": 1})
    assert sft.run(p.parse_args(["defaults", *ov, "--eval-prompts", "0"])) == 2
    err = capsys.readouterr().err
    assert "synthetic_color" in err and "meta['response']" in err and "synthetic_color_think" in err

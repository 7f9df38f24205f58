"""The vLLM weight sync's CPU side (no vLLM needed): bucketed streaming sends exactly what the one-shot gather
sent, LoRA layers stay whole in one bucket, and the start-up source is the policy's own checkpoint when vLLM can
load it as is."""
import torch

from sapo_vl.engines.vllm_engine import start_checkpoint
from sapo_vl.weights import policy_weights, streamed_weights, weight_buckets
from sapo_vl.models.loading import load_policy


def test_streamed_weights_in_tiny_buckets_equal_the_whole_model(tiny_dense):
    policy = load_policy(str(tiny_dense))
    whole = dict(policy_weights(policy))
    streamed = list(streamed_weights(policy, None, bucket_bytes=1))  # every module a bucket of its own
    assert [n for n, _ in streamed] == list(whole)
    assert all(torch.equal(t, whole[n]) for n, t in streamed)
    buckets = weight_buckets(policy, bucket_bytes=1 << 20)
    assert 1 < len(buckets) < len(list(policy.parameters()))
    assert sum(len(b) for b in buckets) == len(list(policy.named_parameters()))


def test_lora_factors_stay_with_their_base_weight(tiny_dense):
    from peft import LoraConfig, get_peft_model

    policy = get_peft_model(load_policy(str(tiny_dense)), LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for n, p in policy.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)  # B starts at zero: make the adapters matter
    for bucket in weight_buckets(policy, bucket_bytes=1):
        owners = {n.split(".base_layer.")[0].split(".lora_")[0] for n, _ in bucket if "q_proj" in n}
        assert len(owners) <= 1
    merged = dict(streamed_weights(policy, None, bucket_bytes=1))
    assert merged.keys() == dict(policy_weights(policy)).keys()
    assert all(".lora_" not in n for n in merged)
    name = next(n for n in merged if n.endswith("q_proj.weight"))
    from sapo_vl.models.loading import hf_model

    base = dict(hf_model(policy).named_parameters())[name.replace("q_proj.weight", "q_proj.base_layer.weight")]
    assert not torch.equal(merged[name], base)  # W + B·A·scale, not W


def test_start_checkpoint_is_the_policys_own_folder_unless_vllm_cannot_load_it(tiny_dense, tiny_moe):
    dense = load_policy(str(tiny_dense))
    assert start_checkpoint(str(tiny_dense), dense) == tiny_dense
    moe = load_policy(str(tiny_moe))  # saved by transformers 5: experts in its own layout → written instead
    assert start_checkpoint(str(tiny_moe), moe) is None


def test_memory_plan_holds_the_sync_bucket_and_no_sleeping_host_copy():
    from sapo_vl.config import load_config
    from sapo_vl.memplan import GIB, plan_memory

    def plan(stage):
        cfg = load_config(None, ["rollout.engine=vllm", f"deepspeed.zero_stage={stage}",
                                 "model.name_or_path=Qwen/Qwen3-VL-8B-Instruct"])
        return plan_memory(cfg, 8)

    z3, z2 = plan(3), plan(2)
    sync3 = next(i for i in z3.items if i.name.startswith("vLLM weight sync"))
    sync2 = next(i for i in z2.items if i.name.startswith("vLLM weight sync"))
    assert sync3.rollout == 1.0 and sync3.update == 0.0  # 1 GiB: one bucket, not the 8B model's 16 GiB
    assert sync2.rollout == 0.0
    assert not any("sleeping" in n for n, _ in z3.host)  # level-2 sleep keeps no host copy
    start = next(g for n, g in z3.host if n.startswith("vLLM start-up"))
    assert start == 1.0 and start < z3.params * 2 / GIB


def test_start_checkpoint_refuses_a_folder_that_does_not_hold_the_policys_tensors(tiny_dense, tmp_path):
    """A policy whose shapes differ from the folder named (another model under that name) is written instead."""
    from transformers import AutoConfig, AutoModelForImageTextToText

    cfg = AutoConfig.from_pretrained(tiny_dense)
    cfg.text_config.vocab_size += 64  # same names, another embedding shape
    other = AutoModelForImageTextToText.from_config(cfg)
    assert start_checkpoint(str(tiny_dense), other) is None
    from peft import LoraConfig, get_peft_model

    lora = get_peft_model(load_policy(str(tiny_dense)), LoraConfig(r=2, target_modules=["q_proj"]))
    from sapo_vl.models.loading import hf_model

    assert start_checkpoint(str(tiny_dense), hf_model(lora)) == tiny_dense  # base weights named as saved


def test_load_into_puts_streamed_weights_back_and_names_what_does_not_fit(tiny_moe):
    """`weights.load_into` is `policy_weights`' inverse (MoE experts back in the transformers layout); a tensor the
    model lacks, or one of another shape, is an error naming it."""
    import pytest
    import torch

    from sapo_vl.models.loading import load_policy
    from sapo_vl.weights import WeightSyncError, load_into

    src = load_policy(str(tiny_moe), dtype="float32", device="cpu")
    dst = load_policy(str(tiny_moe), dtype="float32", device="cpu")
    with torch.no_grad():
        for p in src.parameters():
            p.add_(torch.randn_like(p))
    sent = list(policy_weights(src))
    assert any(n.endswith("experts.gate_up_proj") for n, _ in sent)
    assert load_into(dst, sent) == len(sent)
    for (name, a), b in zip(src.named_parameters(), dst.parameters()):
        assert torch.equal(a, b), name
    with pytest.raises(WeightSyncError, match="no parameter 'model.extra.weight'"):
        load_into(dst, [("model.extra.weight", torch.zeros(1))])
    name, tensor = sent[0]
    with pytest.raises(WeightSyncError, match=f"{name!r} arrived with shape"):
        load_into(dst, [(name, tensor[..., :1])])

"""The vLLM rollout engine against the trainer: same prompt tokens, same log-probs, before and after weight syncs.

Every parity check compares vLLM's log-prob of each sampled token with the trainer's teacher-forced one
(`PolicyLogprobs` with the never-sampled tokens out of its softmax, as the training run builds it), in float32,
to <= 1e-4.
"""
import pytest
import torch

pytestmark = pytest.mark.vllm
pytest.importorskip("vllm.entrypoints.llm")  # the real vLLM, not a namespace package

from vllm_helpers import PROMPTS, load, max_gap, prompt_images, trainer_logprobs, vllm_config  # noqa: E402

from sapo_vl.engines import engine_class  # noqa: E402
from sapo_vl.engines.base import RolloutEngine, SamplingSettings  # noqa: E402
from sapo_vl.engines.vllm_engine import VLLMEngine, VLLMEngineError, request_seeds  # noqa: E402
from sapo_vl.weights import policy_weights  # noqa: E402
from sapo_vl.models.loading import encode_prompts  # noqa: E402
from sapo_vl.sampling import NEVER_SAMPLE, STOP_TOKENS, token_ids  # noqa: E402

TOL = 1e-4
SETTINGS = SamplingSettings(group_size=3, max_new_tokens=12)


@pytest.fixture
def engine_for(vllm_checkpoints):
    """engine_for(kind, policy=None, *overrides) → (engine, policy, processor); engines are closed after the test."""
    made = []

    def make(kind, *overrides, policy=None):
        cfg = vllm_config(*overrides)
        pol, proc = load(vllm_checkpoints[kind], cfg)
        pol = policy if policy is not None else pol
        eng = VLLMEngine(None, pol, proc, cfg)
        made.append(eng)
        return eng, pol, proc

    yield make
    for eng in made:
        eng.close()


def _perturb(policy, which: str, scale: float, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if which in name:
                p.add_(torch.randn(p.shape, generator=g) * scale)


def _check_rows(samples, proc):
    """Stop tokens end a row and are in its mask; banned tokens never appear; truncation agrees with the mask."""
    stop = set(token_ids(proc.tokenizer, STOP_TOKENS))
    banned = set(token_ids(proc.tokenizer, NEVER_SAMPLE))
    for ids, mask, trunc in zip(samples.completion_ids, samples.completion_mask, samples.truncated):
        real = ids[mask.bool()].tolist()
        assert not banned & set(real)
        assert not stop & set(real[:-1])  # nothing after a stop token
        assert bool(trunc) == (real[-1] not in stop)
        assert len(real) <= SETTINGS.max_new_tokens


@pytest.mark.parametrize("kind", ["dense", "moe"])
def test_logprobs_match_the_trainer_before_and_after_weight_syncs(engine_for, kind):
    eng, pol, proc = engine_for(kind)
    assert isinstance(eng, RolloutEngine) and engine_class("vllm") is VLLMEngine
    images = prompt_images()
    s0 = eng.generate(PROMPTS, images, SETTINGS, seed=1)
    _check_rows(s0, proc)
    assert max_gap(s0, trainer_logprobs(pol, proc, PROMPTS, images, s0)) <= TOL

    # Same images, new VISION weights: the image rows must change and still match the trainer (a stale encoder
    # or prefix cache would serve the old image embeddings); the text-only prompt (row group 1) must not change.
    _perturb(pol, "visual", 0.2, seed=0)
    eng.update_weights()
    s1 = eng.generate(PROMPTS, images, SETTINGS, seed=1)
    assert max_gap(s1, trainer_logprobs(pol, proc, PROMPTS, images, s1)) <= TOL
    G = SETTINGS.group_size
    image_rows = [r for r in range(len(PROMPTS) * G) if images[r // G]]
    assert not torch.equal(s0.sample_logprobs[image_rows], s1.sample_logprobs[image_rows])
    assert torch.equal(s0.completion_ids[G : 2 * G], s1.completion_ids[G : 2 * G])

    # Every weight changes (the MoE experts and the tied embedding / lm_head included).
    _perturb(pol, "", 0.05, seed=1)
    eng.update_weights()
    s2 = eng.generate(PROMPTS, images, SETTINGS, seed=1)
    _check_rows(s2, proc)
    assert max_gap(s2, trainer_logprobs(pol, proc, PROMPTS, images, s2)) <= TOL
    assert not torch.equal(s1.sample_logprobs, s2.sample_logprobs)


def test_prompt_tokens_and_image_token_counts_equal_the_trainers(engine_for):
    eng, pol, proc = engine_for("dense")
    images = prompt_images()
    s = eng.generate(PROMPTS, images, SETTINGS, seed=3)
    enc = encode_prompts(proc, PROMPTS, images)
    # `inputs` is the trainer's own encoding; vLLM's prompts (checked token by token inside `generate`) add up to it
    assert torch.equal(s.inputs["input_ids"], enc["input_ids"])
    assert s.prefill_tokens == int(enc["attention_mask"].sum())
    pad = proc.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    merge = proc.image_processor.merge_size ** 2
    assert int((enc["input_ids"] == pad).sum()) == int(enc["image_grid_thw"].prod(-1).sum()) // merge
    assert len({int(g.prod()) for g in enc["image_grid_thw"]}) == 2  # the two images got different token counts
    # a trainer whose processor resizes differently from the engine's is caught, not sampled from
    proc.image_processor.size = {**proc.image_processor.size, "longest_edge": 32 * 32 * 4}
    with pytest.raises(VLLMEngineError, match="image tokens.*model.max_pixels"):
        eng.generate(PROMPTS, images, SETTINGS, seed=3)


def test_lora_adapters_are_merged_into_the_synced_weights(engine_for, vllm_checkpoints):
    from peft import LoraConfig, get_peft_model

    cfg = vllm_config()
    base, _ = load(vllm_checkpoints["dense"], cfg)
    pol = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))
    _perturb(pol, "lora_B", 0.3, seed=2)  # B starts at zero: make the adapters matter
    before = {n: p.detach().clone() for n, p in pol.named_parameters()}
    eng, pol, proc = engine_for("dense", policy=pol)
    images = prompt_images()
    s = eng.generate(PROMPTS, images, SETTINGS, seed=5)
    assert max_gap(s, trainer_logprobs(pol, proc, PROMPTS, images, s)) <= TOL
    _perturb(pol, "lora_", 0.1, seed=3)
    eng.update_weights()
    s = eng.generate(PROMPTS, images, SETTINGS, seed=5)
    assert max_gap(s, trainer_logprobs(pol, proc, PROMPTS, images, s)) <= TOL
    # the sync merged on the fly: the policy's base weights are untouched and nothing is marked merged
    after = dict(pol.named_parameters())
    assert all(torch.equal(before[n], after[n]) for n in before if "lora_" not in n)
    names = [n for n, _ in policy_weights(pol)]
    assert not any("lora_" in n or "base_layer" in n for n in names)


def test_seeds_are_spaced_so_requests_do_not_share_samples(engine_for):
    # vLLM seeds sample j of a request with seed + j: adjacent request seeds repeat each other's samples
    seeds = request_seeds(7, 4, 1_000_003)
    assert all(abs(a - b) >= 1_000_003 for i, a in enumerate(seeds) for b in seeds[i + 1 :])
    assert request_seeds(8, 4, 1_000_003)[0] - seeds[-1] > 1_000_003 * 1000  # the next call's seeds are far too

    eng, _, proc = engine_for("dense", "rollout.vllm.seed_stride=1")
    same = [PROMPTS[1], PROMPTS[1]]  # one prompt twice: only the seeds tell the two requests apart
    settings = SamplingSettings(group_size=3, max_new_tokens=8)
    s = eng.generate(same, [[], []], settings, seed=0)
    rows = [tuple(r.tolist()) for r in s.completion_ids]
    assert rows[1] == rows[3] and rows[2] == rows[4]  # stride 1 (seed_stride ignored): the correlation shows
    eng.close()

    eng, _, _ = engine_for("dense")
    s = eng.generate(same, [[], []], settings, seed=0)
    rows = [tuple(r.tolist()) for r in s.completion_ids]
    assert len(set(rows)) == 6  # the default stride: six distinct samples
    again = eng.generate(same, [[], []], settings, seed=0)
    assert torch.equal(s.completion_ids, again.completion_ids)  # deterministic given the seed


def test_failures_name_the_cause_and_the_knob(engine_for, vllm_checkpoints):
    cfg = vllm_config("rollout.vllm.tensor_parallel_size=2")
    pol, proc = load(vllm_checkpoints["dense"], cfg)
    with pytest.raises(VLLMEngineError, match="rollout.vllm.tensor_parallel_size"):
        VLLMEngine(None, pol, proc, cfg)
    cfg = vllm_config("rollout.vllm.max_model_len=1000000")  # beyond the model's 4,096 positions
    with pytest.raises(VLLMEngineError, match="(?s)did not start.*rollout.vllm.max_model_len=1000000"):
        VLLMEngine(None, pol, proc, cfg)
    # a weight the engine's model does not have: the sync fails loudly instead of serving stale weights
    eng, pol, _ = engine_for("dense")
    pol.model.language_model.layers[0].mlp.register_parameter("extra", torch.nn.Parameter(torch.zeros(3)))
    with pytest.raises(VLLMEngineError, match="weight sync into vLLM failed"):
        eng.update_weights()

"""vLLM engine start-up: external-launcher mode on this rank's device, from the policy's own checkpoint files
(linked, not copied) when vLLM can load them, else from weights written once; either way in step with the
trainer after the start-up sync."""
import os

import pytest

pytestmark = pytest.mark.vllm
pytest.importorskip("vllm.entrypoints.llm")  # the real vLLM, not a namespace package

from vllm_helpers import PROMPTS, load, max_gap, prompt_images, trainer_logprobs, vllm_config  # noqa: E402

from sapo_vl.engines.base import SamplingSettings  # noqa: E402
from sapo_vl.engines.vllm_engine import VLLMEngine  # noqa: E402


@pytest.mark.parametrize("kind,source", [("dense", "checkpoint"), ("moe", "written")])
def test_engine_starts_in_launcher_mode_from_the_right_weights(vllm_checkpoints, kind, source):
    cfg = vllm_config()
    policy, proc = load(vllm_checkpoints[kind], cfg)
    eng = VLLMEngine(None, policy, proc, cfg)
    try:
        assert eng.start_source == source
        pc = eng.llm.llm_engine.vllm_config.parallel_config
        assert pc.distributed_executor_backend == "external_launcher"
        assert str(eng.llm.llm_engine.model_executor.driver_worker.worker.device) == "cpu"
        assert not [f for f in os.listdir(eng._dir) if f.endswith(".safetensors")]  # nothing left on disk
        s = eng.generate(PROMPTS, prompt_images(), SamplingSettings(group_size=2, max_new_tokens=6), seed=0)
        assert max_gap(s, trainer_logprobs(policy, proc, PROMPTS, prompt_images(), s)) <= 1e-4
    finally:
        eng.close()

"""Fixtures of the tests marked `vllm`; the environment and helpers are in `vllm_helpers.py` (imported first).

(Test modules import `vllm_helpers`, not `conftest`: several conftest.py files share that module name.)
"""
import importlib.util

import pytest

# Only where vLLM is installed (.venv-vllm): set its environment before anything imports it. (Elsewhere, with tests/
# on sys.path, `vllm` finds this folder as a namespace package, whose spec has no origin.)
_spec = importlib.util.find_spec("vllm")
if _spec is not None and _spec.origin is not None:
    import vllm_helpers  # noqa: F401


@pytest.fixture(scope="session")
def vllm_checkpoints(tmp_path_factory):
    """{"dense": path, "moe": path}: the tiny Qwen3-VL checkpoints with vLLM-compatible text heads."""
    from sapo_vl.models.tiny import VLLM_TEXT_HEADS, cached_tiny_checkpoint

    cache = tmp_path_factory.mktemp("vllm_tiny")
    return {kind: cached_tiny_checkpoint(moe=kind == "moe", cache_dir=cache, **VLLM_TEXT_HEADS)
            for kind in ("dense", "moe")}

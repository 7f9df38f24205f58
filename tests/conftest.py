"""Shared fixtures: the tiny checkpoints are built once per session into a temporary cache."""
import os
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory) -> Path:
    """A private SAPO_VL_CACHE for the session, so tests never depend on what a user built before."""
    cache = tmp_path_factory.mktemp("sapo_vl_cache")
    old = os.environ.get("SAPO_VL_CACHE")
    os.environ["SAPO_VL_CACHE"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("SAPO_VL_CACHE", None)
    else:
        os.environ["SAPO_VL_CACHE"] = old


@pytest.fixture(scope="session")
def tiny_dense(tiny_cache) -> Path:
    from sapo_vl.models.tiny import cached_tiny_checkpoint

    return cached_tiny_checkpoint(moe=False, cache_dir=tiny_cache)


@pytest.fixture(scope="session")
def tiny_moe(tiny_cache) -> Path:
    from sapo_vl.models.tiny import cached_tiny_checkpoint

    return cached_tiny_checkpoint(moe=True, cache_dir=tiny_cache)
try:
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # DeepSpeed's CPU accelerator (gloo) on GPU-less machines
except ImportError:  # pragma: no cover
    pass

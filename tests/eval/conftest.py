"""Fixtures for the eval tests: one torch thread, the tiny policy loaded once, small run settings."""
from __future__ import annotations

import pytest

PIXELS = {"min_pixels": 1024, "max_pixels": 4096}
"""32x32 to 64x64 pixels: 1 to 4 image tokens per image, so the tiny model runs in milliseconds."""


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: the tiny model's matmuls are microseconds, and on a shared 2-core machine a second
    thread costs milliseconds of synchronisation per call (about 100x slower)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def policy(tiny_dense):
    from sapo_vl.models.loading import load_policy, load_processor

    return load_policy(str(tiny_dense)).eval(), load_processor(str(tiny_dense), **PIXELS)


@pytest.fixture
def small():
    """Settings for a quick run: 6 records in batches of 3, 6 new tokens, sampling at T=1, no progress bar."""
    from sapo_vl.evaluation.runner import Settings

    return Settings(limit=6, batch_size=3, max_new_tokens=6, temperature=1.0, progress=False, **PIXELS)

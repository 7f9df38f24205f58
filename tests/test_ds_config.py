"""The generated DeepSpeed config and the NaN guard's DeepSpeed half, on the real engine (one in-process rank):
bf16's gradient overflow check set explicitly, a user config that turns it off refused, a poisoned step that
DeepSpeed applies anyway stopped, and ZeRO-0's skip leaving the learning-rate schedule where ZeRO 1-3 leave it."""
import json

import pytest
import torch

from sapo_vl import ds
from sapo_vl.config import load_config

CPU = torch.device("cpu")


def _conf(*overrides, device=CPU):
    cfg = load_config(None, list(overrides))
    return ds.ds_config(cfg, micro_batch=2, grad_accum=1, world_size=1, device=device)


def test_generated_bf16_config_sets_the_overflow_check():
    conf = _conf("deepspeed.precision=bf16")
    assert conf["bf16"] == {"enabled": True, "check_grad_overflow": True}
    assert _conf(device=torch.device("cuda"))["bf16"]["enabled"]  # "auto" is bf16 on GPUs


def test_user_config_that_turns_the_overflow_check_off_is_refused(tmp_path):
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"bf16": {"enabled": True, "check_grad_overflow": False}, "zero_optimization":
                                {"stage": 2}}))
    with pytest.raises(ValueError, match=r"ds\.json sets bf16\.check_grad_overflow to False; the NaN guard needs it"):
        _conf("deepspeed.precision=bf16", f"deepspeed.config_file={path}")


@pytest.mark.parametrize("section,expect", [
    ({"bf16": {"enabled": True}}, {"enabled": True, "check_grad_overflow": True}),  # missing: set
    ({"bf16": {"enabled": "auto", "check_grad_overflow": "auto"}}, {"enabled": True, "check_grad_overflow": True}),
    ({"bf16": {"enabled": False, "check_grad_overflow": False}}, {"enabled": False, "check_grad_overflow": False}),
])
def test_user_config_overflow_check_filled(tmp_path, section, expect):
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({**section, "zero_optimization": {"stage": 2}}))
    assert _conf("deepspeed.precision=bf16", f"deepspeed.config_file={path}")["bf16"] == expect


# ------------------------------------------------------------------------------------------ the real engine, bf16
class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Linear(8, 16), torch.nn.Linear(16, 4)

    def forward(self, x):  # (B, 8) → (B, 4)
        return self.b(torch.tanh(self.a(x)))


def _engine(stage: int, precision: str, check: bool = True):
    import deepspeed

    cfg = load_config(None, [f"deepspeed.zero_stage={stage}", f"deepspeed.precision={precision}",
                             "optimizer.lr=1e-2", "optimizer.warmup_steps=0", "optimizer.schedule=cosine"])
    dist = ds.init_distributed()
    torch.manual_seed(0)
    net = _Net()
    if check:
        return ds.create_engine(net, cfg, micro_batch=2, grad_accum=1, dist=dist, total_optimizer_steps=10)
    conf = ds.ds_config(cfg, micro_batch=2, grad_accum=1, world_size=1, device=dist.device)
    conf["bf16"]["check_grad_overflow"] = False  # what a user's JSON could say, past ds_config's refusal
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - s / 10)
    engine, *_ = deepspeed.initialize(model=net, optimizer=opt, lr_scheduler=sched, config=conf,
                                      dist_init_required=False)
    return engine


def _step(engine, poison: bool):
    dtype = next(engine.module.parameters()).dtype
    x = torch.linspace(-1, 1, 16, dtype=dtype).reshape(2, 8).to(engine.device)
    out = engine(x)  # (2, 4)
    loss = out.float().square().mean()
    if poison:
        loss = ds.poisoned(loss, out.float())
    ds.backward(engine, loss, 1)
    ds.optimizer_step(engine, skip=poison)


def _weights(engine):
    return {k: v.detach().clone() for k, v in engine.module.state_dict().items()}


@pytest.mark.parametrize("stage,precision", [(2, "bf16"), (1, "bf16"), (0, "bf16"), (0, "fp32"), (2, "fp32")])
def test_poisoned_step_is_skipped_and_schedule_does_not_advance(stage, precision):
    engine = _engine(stage, precision)
    _step(engine, poison=False)  # one real step: the schedule is past its start, the moments are non-zero
    before, lr, skipped = _weights(engine), engine.lr_scheduler.get_last_lr(), engine.skipped_steps
    epoch = engine.lr_scheduler.last_epoch
    _step(engine, poison=True)
    after = _weights(engine)
    assert all(torch.equal(before[k], after[k]) for k in before)  # bit-identical
    assert engine.skipped_steps == skipped + 1
    assert engine.lr_scheduler.last_epoch == epoch and engine.lr_scheduler.get_last_lr() == lr  # ZeRO 0-3 agree
    _step(engine, poison=False)  # the next finite step moves the weights and the schedule on
    assert not all(torch.equal(before[k], v) for k, v in _weights(engine).items())
    assert engine.lr_scheduler.last_epoch == epoch + 1 and engine.lr_scheduler.get_last_lr()[0] < lr[0]


def test_poisoned_step_applied_by_deepspeed_stops_the_run():
    """bf16 ZeRO-2 with the overflow check off (a user's JSON could say so) applies the NaN step: caught."""
    engine = _engine(2, "bf16", check=False)
    with pytest.raises(ds.SkippedStepError, match="applied an optimizer step with non-finite gradients"):
        _step(engine, poison=True)
    assert not all(torch.isfinite(v).all() for v in engine.module.state_dict().values())  # what it stopped

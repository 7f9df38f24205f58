"""Pinned numbers: the first steps of a short demo-config run, per algorithm, on the tiny model (torchtune-style).

The runs are deterministic (seeded data order, sampling and initialisation, float32 on the CPU), so a change that
is meant to keep behaviour (a refactor) must reproduce these numbers; a change that is meant to alter them
re-pins them in the same commit and says why. History: pinned before the first reshaping of the package
(setup / step / loss registry), which reproduced them exactly; re-pinned when never-sampled tokens left the
trainer's softmax and the logged loss became the optimizer-step loss, when the tiny model's text head_dim went
16 → 32, and when packed update micro-batches became the default, each of which changes the numbers by design;
reproduced exactly by the one update loop (row and packed micro-batch sources).
"""
import pytest

from train_helpers import launch, metrics

PINNED = {
    "sapo": [
        (-0.025724981911480427, 0.078125, 1.0165350112650129),
        (-0.027535430621355772, 0.078125, 1.0002456529770491),
        (-0.028564047068357468, 0.09375, 0.999373713808675),
    ],
    "gspo": [
        (0.003067336045205593, 0.078125, 1.0087542394797007),
        (0.0034297725651413202, 0.0625, 0.9903570047489882),
        (0.003013159614056349, 0.09375, 0.9971482362110577),
    ],
    "grpo": [
        (0.018327506259083748, 0.078125, 1.0092002987861632),
        (0.05367795750498772, 0.078125, 0.9847086329119547),
        (0.02068002838641403, 0.09375, 0.9978944285243165),
    ],
}
"""algorithm → per step (loss, reward_mean, ratio_mean)."""


@pytest.mark.parametrize("algo", sorted(PINNED))
def test_first_steps_match_the_pinned_numbers(tmp_path, tiny_dense, algo):
    overrides = [
        f"logging.out_dir={tmp_path}", f"logging.run_name={algo}", "logging.progress=false",
        "logging.tensorboard=false", "logging.plots=false", "train.steps=3", f"algorithm.name={algo}",
        "algorithm.updates_per_rollout=2", "rollout.prompts_per_step=8", "train.format_warmup_steps=50",
    ]
    res = launch(overrides, ranks=1)
    assert res.returncode == 0, res.stderr[-3000:]
    got = [(r["loss"], r["reward_mean"], r["ratio_mean"]) for r in metrics(tmp_path / algo)]
    assert len(got) == len(PINNED[algo])
    for step, (g, want) in enumerate(zip(got, PINNED[algo])):
        assert g == pytest.approx(want, rel=1e-5, abs=1e-7), f"step {step}: got {g}, pinned {want}"

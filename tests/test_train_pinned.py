"""Pinned numbers: the first steps of a short demo-config run, per algorithm, on the tiny model (torchtune-style).

The runs are deterministic (seeded data order, sampling and initialisation, float32 on the CPU), so a change that
is meant to keep behaviour (a refactor) must reproduce these numbers; a change that is meant to alter them
re-pins them in the same commit and says why. Pinned from the code before the issue-8 reshaping.
"""
import pytest

from train_helpers import launch, metrics

PINNED = {
    "sapo": [
        (-0.018104795834731534, 0.0625, 0.9988409202606952),
        (-0.009499823612174349, 0.046875, 0.9929513439322203),
        (-0.018968824615202298, 0.078125, 0.9994316481962436),
    ],
    "gspo": [
        (0.0015760536096949395, 0.0625, 0.9932876390511872),
        (0.0023696311773397983, 0.046875, 0.9864173218225821),
        (0.014287515952773801, 0.078125, 0.9747976228431031),
    ],
    "grpo": [
        (0.02305868210314259, 0.0625, 0.9982987091840942),
        (0.024089328027988605, 0.046875, 0.9969237677713964),
        (0.02168853663062379, 0.078125, 0.9683404058747037),
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

"""`sapo-vl compare`: the summary arithmetic on hand-made metric rows, the report files, skipping complete runs,
and (slow) the CLI end to end on the tiny model."""
import json
import math
import subprocess
import sys

import pytest

from sapo_vl import compare
from sapo_vl.compare import (collapses, mean_std, paired, run_summary, sign_flip_p, smooth, steps_to_threshold,
                              summarize)


def test_smooth_is_a_trailing_moving_average():
    assert smooth([0.0, 1.0, 2.0, 3.0], 2) == [0.0, 0.5, 1.5, 2.5]
    assert smooth([0.0, 1.0, 2.0, 3.0], 1) == [0.0, 1.0, 2.0, 3.0]


def test_steps_to_threshold_counts_steps_up_to_the_first_reach():
    assert steps_to_threshold([0.1, 0.5, 0.6, 0.4, 0.9], 0.6) == 3  # index 2 reaches 0.6 exactly: 3 steps run
    assert steps_to_threshold([0.7], 0.6) == 1
    assert steps_to_threshold([0.1, 0.59], 0.6) is None
    # logged every 4 steps (rows for steps 3, 7, 11): reaching it on the second row means 8 steps run, not 2
    assert steps_to_threshold([0.1, 0.7, 0.9], 0.6, steps=[3, 7, 11]) == 8


def test_run_summary_counts_steps_not_rows_when_logging_every_few_steps():
    rows = [{"step": s, "reward_mean": r} for s, r in ((4, 0.0), (9, 0.2), (14, 0.9), (19, 1.0))]  # log_every 5
    assert run_summary(rows, threshold=0.5, smooth_k=1)["steps_to_threshold"] == 15


def test_collapses_count_episodes_below_the_running_best():
    assert collapses([0.1, 0.2, 0.3]) == 0
    # best 0.8; 0.65 is 0.15 below (no); 0.55 is 0.25 below (one episode); 0.5 still below (same episode)
    assert collapses([0.5, 0.8, 0.65, 0.55, 0.5]) == 1
    # back to within 0.2 (0.7 vs best 0.8) ends it; 0.55 again opens a second episode
    assert collapses([0.8, 0.5, 0.7, 0.55]) == 2
    # a new best during recovery raises the bar: best 0.9 at index 3, then 0.65 is 0.25 below
    assert collapses([0.8, 0.5, 0.9, 0.9, 0.65]) == 2
    assert collapses([1.0, 0.75], drop=0.25) == 0  # exactly `drop` below is not "more than"
    assert collapses([0.3, 0.0], drop=0.5) == 0 and collapses([0.6, 0.0], drop=0.5) == 1


def test_mean_std_uses_the_sample_std_and_skips_none():
    got = mean_std([1.0, 2.0, 3.0, None])
    assert got["mean"] == 2.0 and got["std"] == pytest.approx(1.0) and got["n"] == 3  # sqrt((1+0+1)/2)
    assert mean_std([5.0]) == {"mean": 5.0, "std": 0.0, "n": 1}
    assert mean_std([None, None]) == {"mean": None, "std": None, "n": 0}


def _rows(rewards, **const):
    return [{"step": i, "reward_mean": r, **const} for i, r in enumerate(rewards)]


def test_run_summary_on_hand_made_rows():
    # 12 steps: reward 0 for 2 steps, then 1 for 10; final = mean of the last 10 = 1.0; mean = 10/12
    sapo = _rows([0.0, 0.0] + [1.0] * 10, ratio_seq_var=0.02, gate_weight_mean=0.8, soft_suppressed_frac=0.1)
    sapo[3]["gate_weight_mean"] = 0.5
    for i, r in enumerate(sapo):
        r["entropy"] = 2.0 if i < 2 else 0.5
    got = run_summary(sapo, threshold=0.5, smooth_k=2)
    assert got["gate_weight_min"] == 0.5 and got["entropy_final"] == 0.5  # the last 10 steps all have 0.5
    sapo[3]["gate_weight_mean"] = 0.8
    got = run_summary(sapo, threshold=0.5, smooth_k=2)
    assert got["final_reward"] == 1.0 and got["mean_reward"] == pytest.approx(10 / 12)
    assert got["steps_to_threshold"] == 3  # smoothed [0, 0, 0.5, 1, ...]: index 2 reaches 0.5
    assert got["collapses"] == 0 and got["ratio_seq_var"] == pytest.approx(0.02)
    assert got["gate_weight_mean"] == pytest.approx(0.8) and got["clip_frac"] is None and got["clip_frac_low"] is None
    assert got["logratio_seq_var"] is None  # not in these rows
    grpo = _rows([1.0, 1.0, 0.0, 0.0], clip_frac_low=0.1, clip_frac_high=0.05)
    got = run_summary(grpo, threshold=0.5, smooth_k=1)
    assert got["collapses"] == 1 and got["clip_frac"] == pytest.approx(0.15) and got["gate_weight_mean"] is None
    assert got["final_reward"] == 0.5  # fewer than 10 steps: the mean of all of them


def test_run_summary_reads_every_registry_diagnostic_and_takes_extremes_of_min_keys():
    from sapo_vl.losses import summary_stats

    rows = _rows([0.5, 0.5], logratio_seq_var=0.01, ratio_dev_gt02_frac=0.03, frac_neg_r_lt1=0.2)
    rows[0]["gate_weight_token_min"], rows[1]["gate_weight_token_min"] = 0.7, 0.4
    rows[1]["logratio_seq_var"] = 0.03
    got = run_summary(rows)
    assert set(summary_stats()) <= set(got)
    assert got["logratio_seq_var"] == pytest.approx(0.02) and got["ratio_dev_gt02_frac"] == pytest.approx(0.03)
    assert got["frac_neg_r_lt1"] == pytest.approx(0.2) and got["gate_weight_token_min"] == 0.4  # lowest, not mean


def test_sign_flip_p_by_hand():
    # n = 3, diffs [1, 2, 3]: |sum| over the 8 sign patterns = 6, 0, 2, 4, 4, 2, 0, 6 (…); >= 6 twice → 2/8
    assert sign_flip_p([1.0, 2.0, 3.0]) == 0.25
    assert sign_flip_p([0.1] * 5) == 2 / 32  # all five seeds agree: the smallest p that 5 seeds can give
    # [1, -1]: patterns give |sum| 0, 2, 2, 0 → observed 0 is reached by all four
    assert sign_flip_p([1.0, -1.0]) == 1.0
    assert sign_flip_p([]) is None


def test_paired_differences_per_seed():
    runs = {"sapo": {0: _rows([0.5] * 10), 1: _rows([0.7] * 10), 2: _rows([0.2] * 10)},
            "grpo": {0: _rows([0.3] * 10), 1: _rows([0.4] * 10), 2: _rows([0.3] * 10)}}
    got = paired(summarize(runs, smooth_k=1))["sapo-grpo"]["final_reward"]
    # per seed: 0.5−0.3 = 0.2, 0.7−0.4 = 0.3, 0.2−0.3 = −0.1 → mean 0.1333, sample std 0.2082
    assert got["diffs"] == pytest.approx({0: 0.2, 1: 0.3, 2: -0.1})
    assert got["mean"] == pytest.approx(0.4 / 3) and got["std"] == pytest.approx(math.sqrt(0.0433333333))
    assert (got["higher"], got["lower"]) == (2, 1)
    assert got["t"] == pytest.approx((0.4 / 3) / (math.sqrt(0.0433333333) / math.sqrt(3)))
    # sign patterns of [0.2, 0.3, −0.1]: |sums| 0.4, 0.6, 0.0, 0.2, 0.2, 0.0, 0.6, 0.4 → >= 0.4 four times
    assert got["p_sign_flip"] == 0.5


def test_summarize_gives_mean_and_std_over_seeds():
    runs = {"sapo": {0: _rows([0.2] * 10), 1: _rows([0.4] * 10), 2: _rows([0.9] * 10)}}
    s = summarize(runs, threshold=0.6, smooth_k=1)["sapo"]
    o = s["over_seeds"]
    assert o["final_reward"]["mean"] == pytest.approx(0.5)
    assert o["final_reward"]["std"] == pytest.approx(math.sqrt((0.09 + 0.01 + 0.16) / 2))
    assert o["reached"] == 1 and o["steps_to_threshold"] == {"mean": 1.0, "std": 0.0, "n": 1}
    assert s["seeds"][1]["steps_to_threshold"] is None


def test_report_writes_summary_table_and_plot(tmp_path, capsys):
    runs = {"sapo": {s: _rows([0.1 * i + 0.05 * s for i in range(8)], ratio_seq_var=0.01, gate_weight_mean=0.7,
                              soft_suppressed_frac=0.2) for s in (0, 1)},
            "grpo": {s: _rows([0.05 * i for i in range(8)], ratio_seq_var=0.03, clip_frac_low=0.1,
                              clip_frac_high=0.2) for s in (0, 1)}}
    assert compare.report(runs, tmp_path / "cmp", threshold=0.5, smooth_k=1) == 0
    summary = json.loads((tmp_path / "cmp" / "summary.json").read_text())
    assert set(summary["algorithms"]) == {"sapo", "grpo"} and summary["settings"]["threshold"] == 0.5
    # sapo seed 0 reaches 0.5 at i=5 (6 steps), seed 1 (0.05 higher) at i=5 too: 0.55 >= 0.5, 0.45 < 0.5 at i=4
    assert summary["algorithms"]["sapo"]["over_seeds"]["steps_to_threshold"]["mean"] == 6.0
    assert summary["algorithms"]["grpo"]["over_seeds"]["reached"] == 0  # 0.35 at most
    md = (tmp_path / "cmp" / "summary.md").read_text()
    results, diagnostics, pairs = md.strip().split("\n\n")
    lines = results.splitlines()
    assert len(lines) == 4 and lines[2].startswith("| sapo | 2 |") and "never (0/2)" in lines[3]
    head, _, sapo_row, grpo_row = diagnostics.splitlines()
    cols = [c.strip() for c in head.strip("|").split("|")]
    assert cols[:2] == ["algorithm", "ratio_seq_var"] and "gate_weight_mean" in cols and "clip_frac_low" in cols
    assert "logratio_seq_var" not in cols  # no run logged it: no empty column
    assert [c.strip() for c in grpo_row.strip("|").split("|")][cols.index("clip_frac_high")] == "0.2000 ± 0.0000"
    assert [c.strip() for c in sapo_row.strip("|").split("|")][cols.index("clip_frac_high")] == "–"
    # paired: sapo − grpo final reward: seed s: (last-10 mean of 0.1i + 0.05s) − (0.05i) = 0.05·3.5 + 0.05s
    assert "| sapo − grpo | final_reward | +0.175, +0.225 |" in pairs
    assert summary["algorithms"]["sapo"]["seeds"]["0"]["final_reward"] == pytest.approx(0.35)
    assert summary["paired"]["sapo-grpo"]["final_reward"]["higher"] == 2
    assert md in capsys.readouterr().out
    assert (tmp_path / "cmp" / "curves.png").stat().st_size > 5000


def test_report_with_variants_writes_one_part_per_variant(tmp_path):
    rows = {s: _rows([0.1 * s] * 4) for s in (0, 1)}
    runs = {"mb2": {"sapo": rows, "gspo": rows}, "mb4": {"sapo": rows, "gspo": rows}}
    assert compare.report(runs, tmp_path / "cmp", threshold=0.5, smooth_k=1) == 0
    summary = json.loads((tmp_path / "cmp" / "summary.json").read_text())
    assert set(summary["variants"]) == {"mb2", "mb4"} and "algorithms" not in summary
    assert summary["variants"]["mb4"]["paired"]["sapo-gspo"]["final_reward"]["mean"] == 0.0
    md = (tmp_path / "cmp" / "summary.md").read_text()
    assert md.startswith("### mb2\n") and "### mb4\n" in md
    assert (tmp_path / "cmp" / "curves-mb2.png").exists() and (tmp_path / "cmp" / "curves-mb4.png").exists()


def test_complete_runs_are_not_run_again(tmp_path, monkeypatch):
    """A comparison whose metric logs all reach train.steps only reports: no training process starts."""
    for a in ("sapo", "gspo"):
        for s in (3, 4):
            d = tmp_path / f"cmp-{a}-s{s}"
            d.mkdir()
            (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _rows([0.5, 0.7, 0.8])))

    def no_training(*a, **k):
        raise AssertionError("a complete run was started again")

    monkeypatch.setattr(subprocess, "Popen", no_training)
    args = _args("configs/demo.yaml", [f"logging.out_dir={tmp_path}", "logging.run_name=cmp", "train.steps=3"],
                 algorithms="sapo,gspo", seeds="3,4")
    assert compare.run(args) == 0
    summary = json.loads((tmp_path / "cmp-comparison" / "summary.json").read_text())["algorithms"]
    assert set(summary["gspo"]["seeds"]) == {"3", "4"}
    # one more step asked for: the logs are no longer complete
    assert not compare.complete(tmp_path / "cmp-sapo-s3" / "metrics.jsonl", 4)


def test_bad_metric_line_names_the_file_and_line(tmp_path):
    p = tmp_path / "metrics.jsonl"
    p.write_text('{"step": 0, "reward_mean": 0.1}\n{"step": 1\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2"):
        compare.complete(p, 2)


def test_bad_variants_are_clear_errors(capsys):
    assert compare.run(_args("configs/demo.yaml", ["compare.variants={a/b: [train.steps=2]}"], seeds="0")) == 2
    assert "compare.variants: name 'a/b'" in capsys.readouterr().err
    assert compare.run(_args("configs/demo.yaml", ["compare.variants={mb2: train.steps}"], seeds="0")) == 2
    assert "compare.variants.mb2: expected a list of str" in capsys.readouterr().err  # the typed config's check
    assert compare.run(_args("configs/demo.yaml", ["compare.variants={mb2: [train.steps]}"], seeds="0")) == 2
    assert "compare.variants.mb2: must be a list of dotted key=value overrides" in capsys.readouterr().err
    # a variant whose override is not a valid config key fails before anything runs, naming the key
    assert compare.run(_args("configs/demo.yaml", ["compare.variants={mb2: [algorithm.num_minibatchs=2]}"])) == 2
    assert "num_minibatches" in capsys.readouterr().err


def test_variants_name_their_runs_and_reuse_complete_ones(tmp_path, monkeypatch):
    for v in ("mb2", "mb4"):
        for a in ("sapo", "grpo"):
            d = tmp_path / f"cmp-{v}-{a}-s0"
            d.mkdir()
            (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _rows([0.5, 0.7])))
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: (_ for _ in ()).throw(AssertionError("ran")))
    args = _args("configs/demo.yaml", [f"logging.out_dir={tmp_path}", "logging.run_name=cmp", "train.steps=2",
                                       "compare.variants={mb2: [algorithm.num_minibatches=2], "
                                       "mb4: [algorithm.num_minibatches=4]}"], algorithms="sapo,grpo", seeds="0")
    assert compare.run(args) == 0
    summary = json.loads((tmp_path / "cmp-comparison" / "summary.json").read_text())
    assert set(summary["variants"]) == {"mb2", "mb4"}
    assert set(summary["variants"]["mb4"]["algorithms"]) == {"sapo", "grpo"}


def test_bad_seed_is_a_clear_error(capsys):
    assert compare.run(_args("configs/demo.yaml", [], algorithms="sapo", seeds="0,x")) == 2
    assert "invalid literal" in capsys.readouterr().err


def _args(config, overrides, **kw):
    import argparse

    p = argparse.ArgumentParser()
    compare.add_arguments(p)
    flags = [x for k, v in kw.items() for x in (f"--{k}", v)]
    return p.parse_args([config, *overrides, *flags])


@pytest.mark.slow
def test_cli_end_to_end_two_algorithms_two_seeds(tmp_path, tiny_dense):
    """2 algorithms × 2 seeds of 2 steps on the tiny dense model through `sapo-vl compare`; then a second call
    finds every run complete and only reports."""
    from train_helpers import REPO, small_overrides

    ov = small_overrides(tmp_path, "cmp", **{"model.name_or_path": str(tiny_dense), "logging.plots": "false",
                                              "logging.sample_every": 1,
                                              "train.format_warmup_steps": 0})
    cmd = [sys.executable, "-m", "sapo_vl.cli", "compare", "configs/demo.yaml", *ov, "--algorithms", "sapo,grpo",
           "--seeds", "0,1", "--jobs", "2"]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    summary = json.loads((tmp_path / "cmp-comparison" / "summary.json").read_text())["algorithms"]
    assert set(summary) == {"sapo", "grpo"}
    for a in summary:
        assert set(summary[a]["seeds"]) == {"0", "1"}
        assert all(s["steps"] == 2 for s in summary[a]["seeds"].values())
    assert summary["sapo"]["over_seeds"]["gate_weight_mean"]["n"] == 2
    assert summary["grpo"]["over_seeds"]["clip_frac"]["n"] == 2 and summary["grpo"]["over_seeds"]["gate_weight_mean"]["n"] == 0
    # the prompts of a seed are the same under both algorithms, and differ between the two seeds
    def prompts(a, s):
        lines = (tmp_path / f"cmp-{a}-s{s}" / "samples" / "step_000001.jsonl").read_text().splitlines()
        return [json.loads(l)["id"] for l in lines]

    assert prompts("sapo", 0) == prompts("grpo", 0) and prompts("sapo", 1) == prompts("grpo", 1)
    assert prompts("sapo", 0) != prompts("sapo", 1)
    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and again.stdout.count("complete, not run again") == 4


def test_unfinished_run_without_checkpoint_starts_over_and_one_with_a_checkpoint_is_kept(tmp_path):
    fresh, resumable = tmp_path / "a", tmp_path / "b"
    for d in (fresh, resumable):
        d.mkdir()
        (d / "metrics.jsonl").write_text(json.dumps({"step": 0, "reward_mean": 0.1}) + "\n")
    ckpt = resumable / "checkpoints" / "step_1"
    ckpt.mkdir(parents=True)
    (ckpt / "COMPLETE").write_text("")
    compare._prepare(fresh)
    compare._prepare(resumable)
    assert not fresh.exists()  # its partial log would otherwise be appended to by the new run
    assert (resumable / "metrics.jsonl").exists()  # train.resume=auto picks up from step_1 and trims the log

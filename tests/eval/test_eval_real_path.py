"""The real-model / hub-dataset path, offline: a local model folder (as a downloaded Qwen/Qwen3-VL-2B-Instruct
snapshot would be) and local copies of the benchmarks in their hub schema go through the same code as the
offline synthetic runs; `--model Qwen/Qwen3-VL-2B-Instruct` and a hub dataset id differ only in where
`load_policy` / `load_rows` read from (their offline errors are in test_eval_cli.py)."""
import json
import shutil
from dataclasses import replace

import pytest

from eval_helpers import samples
from hub_fixtures import WRITERS
from sapo_vl.evaluation.cli import main
from sapo_vl.evaluation.registry import get_task
from sapo_vl.evaluation.runner import run_task


def test_chartqa_from_a_local_copy_with_a_local_model_folder(tiny_dense, tmp_path, capsys):
    model = tmp_path / "hub" / "Qwen3-VL-local"
    shutil.copytree(tiny_dense, model)
    data = WRITERS["chartqa_test"](tmp_path / "ChartQA")
    out = tmp_path / "out"
    assert main(["--task", "chartqa_test", "--model", str(model), "--data-path", str(data), "--out", str(out),
                 "--max-new-tokens", "4", "--min-pixels", "1024", "--max-pixels", "4096", "--no-progress"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["dataset"]["source"] == str(data) and s["dataset"]["revision"] == "local copy"
    assert s["dataset"]["records"] == 3 and s["dataset"]["skipped"] == {"empty answer": 1}
    assert s["scoring_kind"] == "published rule" and "relaxed accuracy" in s["scoring"]
    assert s["metrics"]["format_compliance"] is not None  # the prompt asks for <answer>
    lines = samples(out)
    assert sorted(x["answer"] for x in lines.values()) == ["14", "45.5", "Democrats"]
    assert all(x["verifier"] == "numeric" and "<answer>" in x["prompt"] for x in lines.values())
    captured = capsys.readouterr()
    assert "reproduces the published rule" in captured.out
    # a 4-row copy of a 2,500-row split: the printout, summary.json and stderr say how many were scored, and why not
    assert s["coverage"]["scored"] == 3 and s["coverage"]["published"] == 2500 and s["coverage"]["unscored"] == 2497
    assert s["coverage"]["unscored_reasons"] == {"empty answer": 1}
    assert "rows: 3 scored of 2500 published (2497 not scored)" in captured.out
    assert "WARNING: only 3 of the 2500 published rows of chartqa_test were scored" in captured.err
    assert "(empty answer: 1)" in captured.err


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_every_real_task_runs_end_to_end_on_its_local_copy(name, policy, small, tmp_path):
    model, proc = policy
    task = get_task(name).with_options(path=str(WRITERS[name](tmp_path / "data")))
    s = run_task(model, proc, task, tmp_path / "out", replace(small, max_new_tokens=3, n_samples=2), model_name="tiny")
    assert s["metrics"]["n_records"] >= 2 and s["dataset"]["revision"] == "local copy"
    lines = samples(tmp_path / "out")
    assert len(lines) == 2 * s["metrics"]["n_records"]
    expected = set(task.row_verifiers) if task.verifier is None else {task.verifier}
    assert {x["verifier"] for x in lines.values()} <= expected
    assert s["scoring_kind"] in ("published rule", "replaces an LLM judge", "project verifiers")

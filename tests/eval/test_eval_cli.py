"""`sapo-vl eval` on the command line: one task, a suite with its table / CSV / chart, --list, and bad input
(one line on stderr, exit status 2, no traceback)."""
import argparse
import csv
import json
import shutil

import pytest

from eval_helpers import samples
from sapo_vl.evaluation.cli import add_eval_commands, main
from sapo_vl.evaluation.registry import TASKS

TINY = "sapo-vl/tiny-qwen3-vl"
FAST = ["--limit", "4", "--max-new-tokens", "4", "--batch-size", "2", "--min-pixels", "1024", "--max-pixels", "4096",
        "--no-progress"]


def test_list_shows_every_task_with_its_dataset_split_size_verifier_and_metric(capsys):
    assert main(["--list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["task", "domain", "dataset", "split", "size", "verifier", "metric", "scoring"]
    rows = {line.split()[0]: line for line in out[1:]}
    assert set(rows) == set(TASKS)
    assert "HuggingFaceM4/ChartQA" in rows["chartqa_test"] and "2500" in rows["chartqa_test"]
    assert "numeric(tolerance=0.05)" in rows["chartqa_test"] and "relaxed accuracy" in rows["chartqa_test"]
    assert "published rule" in rows["chartqa_test"]
    assert "replaces an LLM judge" in rows["mathvista_testmini"] and "per row: choice|math|exact" in rows["mathvista_testmini"]
    main(["--list", "--suite", "chart"])
    assert len(capsys.readouterr().out.splitlines()) == 1 + 3


def test_one_task_prints_its_table_and_resumes(tiny_dense, tmp_path, capsys):
    argv = ["--task", "synthetic_color", "--model", TINY, "--n-samples", "2", "--temperature", "1", "--seed", "3",
            "--out", str(tmp_path), *FAST]
    assert main(argv) == 0
    out = capsys.readouterr().out
    for text in ("synthetic_color", "accuracy (sample 0)", "pass@1 (mean of K)", "pass@2", "95% CI",
                 "format compliance", "mean response", "samples/s", "scoring: project benchmark", "seed 3"):
        assert text in out, text
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["model"] == TINY and summary["metrics"]["n_samples"] == 8
    first = samples(tmp_path)
    assert main(argv) == 0  # the same command again: nothing to generate, same lines
    assert samples(tmp_path) == first
    assert json.loads((tmp_path / "summary.json").read_text())["timing"]["samples_generated"] == 0


def test_suite_writes_a_table_a_csv_and_a_chart(tiny_dense, tmp_path, capsys):
    copy = tmp_path / "models" / "my-policy"
    shutil.copytree(tiny_dense, copy)
    out = tmp_path / "suite"
    assert main(["--suite", "synthetic_color,synthetic_count", "--models", f"{TINY},{copy}", "--out", str(out),
                 *FAST]) == 0
    md = (out / "results.md").read_text().splitlines()
    assert md[0] == "| model | synthetic_color | synthetic_count | mean |"
    assert [line.split("|")[1].strip() for line in md[2:]] == [TINY, str(copy)]
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [(r["model"], r["task"]) for r in rows] == [(TINY, "synthetic_color"), (TINY, "synthetic_count"),
                                                       (str(copy), "synthetic_color"), (str(copy), "synthetic_count")]
    assert {"pass@1", "ci95_low", "ci95_high", "accuracy", "format_compliance", "records"} <= set(rows[0])
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "sapo-vl__tiny-qwen3-vl" / "synthetic_count" / "summary.json").exists()
    # the copy holds the same weights, so the same greedy samples
    slug = [p.name for p in out.iterdir() if p.name.endswith("my-policy")][0]
    a, b = samples(out / "sapo-vl__tiny-qwen3-vl" / "synthetic_color"), samples(out / slug / "synthetic_color")
    assert {k: v["response"] for k, v in a.items()} == {k: v["response"] for k, v in b.items()}
    assert "| model |" in capsys.readouterr().out


def test_suite_goes_on_past_a_task_that_fails(tiny_dense, tmp_path, capsys):
    out = tmp_path / "suite"
    code = main(["--suite", "synthetic_color,chartqa_test", "--models", TINY, "--out", str(out), *FAST])
    err = capsys.readouterr().err
    assert code == 2 and "skipped chartqa_test" in err and "Traceback" not in err
    assert "synthetic_color" in (out / "results.md").read_text()


def _bert_folder(tmp_path):
    folder = tmp_path / "bert"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8, "num_attention_heads": 2,
                                                    "num_hidden_layers": 1, "intermediate_size": 8, "vocab_size": 10}))
    return folder


def _clip_processor_folder(tmp_path, tiny_dense):
    folder = tmp_path / "odd-processor"
    shutil.copytree(tiny_dense, folder)
    cfg = json.loads((folder / "processor_config.json").read_text())
    cfg["image_processor"] = {"image_processor_type": "CLIPImageProcessor", "size": {"shortest_edge": 224},
                              "crop_size": {"height": 224, "width": 224}}
    (folder / "processor_config.json").write_text(json.dumps(cfg))
    return folder


BAD = {  # case: (argv builder, message on stderr)
    "unknown task": (lambda t, d: ["--task", "synthetic_colour", "--model", TINY],
                     "unknown task 'synthetic_colour' (did you mean 'synthetic_color'?)"),
    "missing model path": (lambda t, d: ["--task", "synthetic_color", "--model", str(t / "no" / "such" / "model")],
                           "does not exist"),
    "hub model offline": (lambda t, d: ["--task", "synthetic_color", "--model", "Qwen/Qwen3-VL-2B-Instruct"],
                          "could not load 'Qwen/Qwen3-VL-2B-Instruct'"),
    "dataset unreachable": (lambda t, d: ["--task", "chartqa_test", "--model", TINY],
                            "cannot load hub dataset HuggingFaceM4/ChartQA"),
    "data path missing": (lambda t, d: ["--task", "chartqa_test", "--model", TINY, "--data-path", str(t / "nothing")],
                          "no such file or folder"),
    "logicvista without a copy": (lambda t, d: ["--task", "logicvista", "--model", TINY], "git clone"),
    "not a Qwen-VL model": (lambda t, d: ["--task", "synthetic_color", "--model", str(_bert_folder(t))],
                            "is a 'bert' model, not Qwen-VL"),
    "not a Qwen-VL processor": (lambda t, d: ["--task", "synthetic_color", "--model", str(_clip_processor_folder(t, d))],
                                "not a Qwen-VL processor"),
    "unknown suite": (lambda t, d: ["--suite", "charts", "--models", TINY], "did you mean 'chart'"),
    "bad option": (lambda t, d: ["--task", "synthetic_count", "--model", TINY, "-o", "colours=3"],
                   "has no option 'colours' (did you mean 'colors'?)"),
    "no model": (lambda t, d: ["--task", "synthetic_color"], "--task needs --model"),
    "bad loader option": (lambda t, d: ["--task", "charxiv_reasoning_val", "--model", TINY, "-o", "pth=x"],
                          "has no option 'pth' (did you mean 'path'?)"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_and_exit_2(case, tiny_dense, tmp_path, capsys):
    build, message = BAD[case]
    code = main([*build(tmp_path, tiny_dense), "--out", str(tmp_path / "out"), *FAST])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("sapo-vl eval: error: ") and message in err[-1], err[-1]
    assert not any("Traceback" in line for line in err)


def test_other_settings_in_the_out_folder_are_refused(tiny_dense, tmp_path, capsys):
    argv = ["--task", "synthetic_color", "--model", TINY, "--out", str(tmp_path), *FAST]
    assert main(argv) == 0
    assert main([*argv, "--seed", "7"]) == 2
    assert "seed: 0 there, 7 now" in capsys.readouterr().err


def test_registers_as_a_sapo_vl_subcommand(tiny_dense, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="sapo-vl")
    add_eval_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["eval", "--task", "synthetic_count", "--model", TINY, "--out", str(tmp_path), *FAST])
    assert args.func(args) == 0 and (tmp_path / "summary.json").exists()
    args = parser.parse_args(["eval", "--list"])
    assert args.func(args) == 0

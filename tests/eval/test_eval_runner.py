"""The harness end to end on the tiny checkpoint and synthetic tasks: files, resume, determinism, skips, and
metrics through the whole pipeline (with a scripted generator where the right answers must be known)."""
import json
from dataclasses import replace

import pytest

from eval_helpers import samples, without_timing
from sapo_vl.evaluation import runner
from sapo_vl.evaluation.generate import Generated
from sapo_vl.evaluation.registry import get_task
from sapo_vl.evaluation.runner import RunMismatch, run_task
from sapo_vl.evaluation.task import Task

LINE_KEYS = {"id", "sample", "prompt", "response", "answer", "extracted", "score", "reason", "verifier", "format",
             "tokens", "truncated", "seconds"}


def test_run_writes_one_line_per_sample_and_a_summary(policy, small, tmp_path):
    model, proc = policy
    s = run_task(model, proc, get_task("synthetic_count"), tmp_path, replace(small, n_samples=2),
                 model_name="tiny")
    lines = samples(tmp_path)
    assert len(lines) == 12 and all(LINE_KEYS - {"seconds"} <= set(x) for x in lines.values())
    assert all(0 <= x["score"] <= 1 and x["tokens"] <= 6 and x["verifier"] == "count" for x in lines.values())
    assert json.loads((tmp_path / "summary.json").read_text()) == s
    m = s["metrics"]
    assert m["n_records"] == 6 and m["n_samples"] == 12 and set(m["pass@k"]) == {"1", "2"}
    assert m["format_compliance"] is None  # the synthetic prompt asks for a bare number
    assert s["model"] == "tiny" and s["task"] == "synthetic_count" and s["seed"] == 0
    assert s["generation"] == {"n_samples": 2, "greedy": False, "temperature": 1.0, "top_p": 1.0, "top_k": 0,
                               "max_new_tokens": 6, "batch_size": 3, "min_pixels": 1024, "max_pixels": 4096,
                               "prompt": "recipe"}
    assert s["scoring"].startswith("project benchmark") and s["dataset"]["revision"] == "generated"
    assert s["timing"]["samples_generated"] == 12 and s["timing"]["samples_per_s"] > 0


def test_resume_after_a_crash_equals_an_uninterrupted_run(policy, small, tmp_path, monkeypatch):
    model, proc = policy
    task, settings = get_task("synthetic_color"), replace(small, n_samples=2)
    full = run_task(model, proc, task, tmp_path / "full", settings)

    calls = {"n": 0}
    real = runner.run_batch

    def crash_on_second_batch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "run_batch", crash_on_second_batch)
    with pytest.raises(KeyboardInterrupt):
        run_task(model, proc, task, tmp_path / "resumed", settings)
    monkeypatch.setattr(runner, "run_batch", real)
    assert len(samples(tmp_path / "resumed")) == 6  # the first batch: 3 records x 2 samples
    with open(tmp_path / "resumed" / "samples.jsonl", "a") as f:
        f.write('{"id": "synthetic_color/test/3", "sam')  # a line torn by the crash
    resumed = run_task(model, proc, task, tmp_path / "resumed", settings)
    assert resumed["timing"]["samples_generated"] == 6  # only the missing batch was generated
    assert without_timing(resumed) == without_timing(full)
    assert samples(tmp_path / "resumed") == samples(tmp_path / "full")


def test_resume_fills_lost_lines_inside_a_batch(policy, small, tmp_path):
    model, proc = policy
    task = get_task("synthetic_count")
    full = run_task(model, proc, task, tmp_path / "a", small)
    run_task(model, proc, task, tmp_path / "b", small)
    path = tmp_path / "b" / "samples.jsonl"
    path.write_text("".join(line + "\n" for n, line in enumerate(path.read_text().splitlines()) if n not in (1, 4)))
    again = run_task(model, proc, task, tmp_path / "b", small)
    assert again["timing"]["samples_generated"] == 2
    assert without_timing(again) == without_timing(full) and samples(tmp_path / "b") == samples(tmp_path / "a")


def test_more_records_and_samples_extend_a_run(policy, small, tmp_path):
    model, proc = policy
    task = get_task("synthetic_count")
    fresh = run_task(model, proc, task, tmp_path / "fresh", replace(small, n_samples=3))
    run_task(model, proc, task, tmp_path / "grown", replace(small, limit=2, n_samples=1))
    grown = run_task(model, proc, task, tmp_path / "grown", replace(small, n_samples=3))
    assert grown["timing"]["samples_generated"] == 18 - 2
    assert without_timing(grown) == without_timing(fresh)
    # a smaller limit reports on its records only, from the lines already there
    head = run_task(model, proc, task, tmp_path / "grown", replace(small, limit=3, n_samples=3))
    assert head["metrics"]["n_records"] == 3 and head["timing"]["samples_generated"] == 0


def test_same_seed_same_samples_whatever_the_batch_size(policy, small, tmp_path):
    model, proc = policy
    task = get_task("synthetic_count")
    a = run_task(model, proc, task, tmp_path / "a", replace(small, n_samples=2))
    b = run_task(model, proc, task, tmp_path / "b", replace(small, n_samples=2, batch_size=2))
    c = run_task(model, proc, task, tmp_path / "c", replace(small, n_samples=2, seed=1))
    responses = lambda d: {k: v["response"] for k, v in samples(tmp_path / d).items()}  # noqa: E731
    assert responses("a") == responses("b")
    assert a["metrics"] == b["metrics"]
    assert responses("a") != responses("c")  # another seed samples other tokens (and other synthetic records)
    assert c["dataset"]["fingerprint"] != a["dataset"]["fingerprint"]


def test_greedy_decoding_ignores_the_sampling_seed(policy, small, tmp_path):
    model, proc = policy
    color = get_task("synthetic_color").with_options()
    greedy = replace(small, temperature=0.0)
    run_task(model, proc, color, tmp_path / "a", greedy)
    run_task(model, proc, color, tmp_path / "b", replace(greedy, batch_size=1))
    assert {k: v["response"] for k, v in samples(tmp_path / "a").items()} == \
           {k: v["response"] for k, v in samples(tmp_path / "b").items()}


def test_a_folder_with_other_settings_is_refused(policy, small, tmp_path):
    model, proc = policy
    task = get_task("synthetic_color")
    run_task(model, proc, task, tmp_path, replace(small, limit=2))
    with pytest.raises(RunMismatch, match=r"temperature: 1.0 there, 0.5 now"):
        run_task(model, proc, task, tmp_path, replace(small, limit=2, temperature=0.5))
    with pytest.raises(RunMismatch, match="task"):
        run_task(model, proc, get_task("synthetic_count"), tmp_path, replace(small, limit=2))


def test_model_mode_is_restored(policy, small, tmp_path):
    model, proc = policy
    model.train()
    try:
        run_task(model, proc, get_task("synthetic_color"), tmp_path, replace(small, limit=1))
        assert model.training
    finally:
        model.eval()


# ------------------------------------------------------------------------------------------- scripted model
SCRIPTED_RECIPE = '''"""Five counting records; record 1 has an image that does not decode; a sixth has a gold that is no count."""
from PIL import Image

from sapo_vl.data.images import encode_png
from sapo_vl.data.record import Record, user_prompt

NAME, DOMAIN, SOURCE, VERIFIER, DESCRIPTION, PROMPT = "scripted", "reasoning", "test", "count", "test", "{question}"


def records(split="test", *, seed=0, limit=None, root=None):
    good = encode_png(Image.new("RGB", (32, 32), (200, 0, 0)))
    for i in range(5):
        yield Record(id=f"scripted/{i}", prompt=user_prompt(f"How many? ({i})"), answer=str(i),
                     images=[b"not an image" if i == 1 else good], verifier="count", domain="reasoning", source="test")
    yield Record(id="scripted/5", prompt=user_prompt("How many? (5)"), answer="many", images=[good],
                 verifier="count", domain="reasoning", source="test")
'''

SCRIPT = {0: [1, 1, 1], 2: [1, 0, 0], 3: [0, 0, 0], 4: [0, 1, 1]}
"""Record index -> which of its 3 samples answer right (c = 3, 1, 0, 2: the test_metrics hand example)."""


def _scripted_task(folder, **fields) -> Task:
    path = folder / "scripted_recipe.py"
    path.write_text(SCRIPTED_RECIPE)
    return Task(name="scripted", domain="reasoning", description="test", split="test", scoring="ours", rule="test",
                source="test", recipe=str(path), verifier="count", **fields)


def _scripted_generator(model, processor, prompts, images, sampling, seeds=None):
    texts = []
    for p in prompts:
        i = int(p[-1]["content"][-1]["text"].split("(")[1].rstrip(")"))
        texts += [f"<answer>{i if ok else i + 1}</answer>" for ok in SCRIPT[i]]
    return Generated(texts=texts, tokens=[3] * len(texts), truncated=[False] * len(texts))


def test_metrics_through_the_pipeline_with_a_scripted_generator(policy, tmp_path, monkeypatch):
    """The runner's bookkeeping (rows, seeds, scoring, skips) with known right answers: pass@k as by hand in
    test_eval_metrics.test_summary_by_hand; the undecodable image and the unreadable gold skipped and counted, not
    scored."""
    model, proc = policy
    monkeypatch.setattr(runner, "generate", _scripted_generator)
    task = _scripted_task(tmp_path)
    s = run_task(model, proc, task, tmp_path / "out", runner.Settings(n_samples=3, batch_size=2, progress=False))
    m = s["metrics"]
    assert m["n_records"] == 4 and m["accuracy"] == 0.5
    assert m["pass@k"] == pytest.approx({"1": 0.5, "2": 2 / 3, "3": 0.75})
    assert m["format_compliance"] == 1.0  # every scripted reply is one <answer>
    assert s["dataset"]["skipped"] == {"bad image": 1, "bad ground truth": 1} and s["dataset"]["records"] == 4
    assert any("scripted/1: bad image" in e for e in s["dataset"]["skipped_examples"])
    assert any("scripted/5: bad ground truth" in e for e in s["dataset"]["skipped_examples"])
    again = run_task(model, proc, task, tmp_path / "out", runner.Settings(n_samples=3, batch_size=2, progress=False))
    assert again["timing"]["samples_generated"] == 0  # the bad record is remembered, not retried


def test_summary_counts_the_rows_scored_against_the_published_size(policy, tmp_path, monkeypatch):
    """6 published rows, 4 scored: summary.json and the printed table say so, with the skipped rows' reasons; a
    row the task lists as a data error in the release is no loss; with --limit there is nothing to warn about."""
    from sapo_vl.evaluation.report import summary_text

    model, proc = policy
    monkeypatch.setattr(runner, "generate", _scripted_generator)
    settings = runner.Settings(n_samples=1, batch_size=2, progress=False)
    s = run_task(model, proc, _scripted_task(tmp_path, size=6), tmp_path / "a", settings)
    assert s["coverage"] == {"scored": 4, "published": 6, "limit": None, "data_errors": 0, "unscored": 2,
                             "unscored_reasons": {"bad image": 1, "bad ground truth": 1},
                             "warning": "only 4 of the 6 published rows of scripted were scored; 2 were not "
                                        "(bad image: 1, bad ground truth: 1), so the accuracy is over the rest"}
    text = summary_text(s)
    assert "rows: 4 scored of 6 published (2 not scored)" in text and "WARNING: only 4 of the 6" in text
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["coverage"] == s["coverage"]

    known = _scripted_task(tmp_path, size=6, data_errors={"scripted/5": "the gold is no count"})
    c = run_task(model, proc, known, tmp_path / "b", settings)["coverage"]
    assert (c["unscored"], c["data_errors"], c["unscored_reasons"]) == (1, 1, {"bad image": 1})

    whole = _scripted_task(tmp_path, size=4, data_errors={"scripted/1": "broken picture", "scripted/5": "no count"})
    c = run_task(model, proc, whole, tmp_path / "c", settings)["coverage"]
    assert (c["unscored"], c["warning"]) == (0, None)
    assert "4 scored of 4 published (2 data error(s) in the release)" in summary_text(
        run_task(model, proc, whole, tmp_path / "c", settings))

    c = run_task(model, proc, _scripted_task(tmp_path, size=6), tmp_path / "d", replace(settings, limit=2))["coverage"]
    assert (c["scored"], c["limit"], c["unscored"], c["warning"]) == (1, 2, None, None)  # records 0 and 1 (bad image)

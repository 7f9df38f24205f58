"""`evaluate_policy`, the trainer's hook: flat metrics for the log, from the same runs as `sapo-vl eval`."""
import json

from sapo_vl.evaluation import evaluate_policy, policy_settings


def test_evaluate_policy_returns_log_metrics_and_writes_the_runs(policy, tmp_path):
    model, proc = policy
    model.train()
    try:
        settings = policy_settings(proc, limit=3, n_samples=2, max_new_tokens=4, seed=0)
        metrics = evaluate_policy(model, proc, ["synthetic_color", "synthetic_count"], settings,
                                  out_dir=tmp_path / "step_10")
        assert model.training  # put back as it was
    finally:
        model.eval()
    assert set(metrics) == {f"eval/{t}/{k}" for t in ("synthetic_color", "synthetic_count")
                            for k in ("accuracy", "pass@1", "pass@2", "response_tokens")}
    assert all(isinstance(v, float) for v in metrics.values())
    s = json.loads((tmp_path / "step_10" / "synthetic_count" / "summary.json").read_text())
    assert s["metrics"]["pass@1"] == metrics["eval/synthetic_count/pass@1"]
    assert s["generation"]["temperature"] == 1.0 and s["generation"]["n_samples"] == 2  # pass@k needs sampling
    assert (s["generation"]["min_pixels"], s["generation"]["max_pixels"]) == (1024, 4096)  # the processor's bounds


def test_greedy_by_default_with_one_sample_and_format_compliance_for_tagged_tasks(policy, tmp_path, monkeypatch):
    from hub_fixtures import WRITERS
    from sapo_vl.evaluation import registry

    monkeypatch.setitem(registry.TASKS, "chartqa_test",
                        registry.TASKS["chartqa_test"].with_options(path=str(WRITERS["chartqa_test"](tmp_path / "d"))))
    model, proc = policy
    settings = policy_settings(proc, limit=2, max_new_tokens=3, seed=0)
    metrics = evaluate_policy(model, proc, ["chartqa_test"], settings, out_dir=tmp_path / "e")
    assert set(metrics) == {"eval/chartqa_test/accuracy", "eval/chartqa_test/pass@1",
                            "eval/chartqa_test/format_compliance", "eval/chartqa_test/response_tokens"}
    s = json.loads((tmp_path / "e" / "chartqa_test" / "summary.json").read_text())
    assert s["generation"]["greedy"] is True

"""The eval harness: benchmark tasks scored by the training verifiers, resumable, data parallel.

| module        | what it holds                                                                         |
|---------------|---------------------------------------------------------------------------------------|
| `task.py`     | `Task`: data (a recipe), prompt, verifier, published size, the rule or judge replaced   |
| `registry.py` | `TASKS` (name → task, from the files in `eval/`), suites, closest-name errors           |
| `generate.py` | batched K-sample generation, one seeded random stream per (record, sample)             |
| `runner.py`   | `run_task`: batches, scoring, samples.jsonl, resume, summary.json                      |
| `metrics.py`  | accuracy, unbiased pass@k, bootstrap interval, format compliance                       |
| `dist.py`     | torch.distributed: join the launcher's group, broadcast, gather                        |
| `report.py`   | the printed table; the suite's Markdown / CSV table and bar chart                      |
| `cli.py`      | `sapo-vl eval` (`add_eval_commands`) and `python -m sapo_vl.evaluation`                |
| `hook.py`     | `evaluate_policy`: metrics for the training log every N steps (`policy_settings`)      |

How it departs from lmms-eval / VLMEvalKit: no LLM judge anywhere (where the published harness uses one,
the task says so and the training verifiers score instead); the verifiers are the reward functions, so what
is trained is what is reported; pass@k with the unbiased estimator; every sample is a line on disk and a
rerun resumes from them with the same result.
"""


def __getattr__(name):  # lazy: `import sapo_vl.evaluation` stays cheap
    if name in ("evaluate_policy", "policy_settings"):
        from . import hook

        return getattr(hook, name)
    if name in ("TASKS", "get_task", "suite"):
        from . import registry

        return getattr(registry, name)
    if name in ("run_task", "Settings"):
        from . import runner

        return getattr(runner, name)
    raise AttributeError(name)


__all__ = ["evaluate_policy", "policy_settings", "TASKS", "get_task", "suite", "run_task", "Settings"]

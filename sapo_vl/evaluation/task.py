"""The eval task: one benchmark split, how its prompts are made, and how its responses are scored.

A task is one small declarative file in `eval/` holding `TASK = Task(...)`: the data (a recipe from
`data_recipes/`, its split and options, the split's published size and the release's known data errors),
the prompt (the recipe's own, so that eval asks what training asked, unless the task
overrides it), the scoring (which verifier and parameters, the same functions as the training rewards),
and the published rule the scoring reproduces or the LLM judge it replaces, with its source.

`Task.load(...)` gives the records to evaluate (and the rows that could not become records, with their
reasons); `Task.score_spec(record)` gives the (verifier, params) for one record.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from sapo_vl.data.record import DOMAINS, Record  # noqa: F401  (one set of domains for recipes and eval suites)

"""Task domains; each is also a suite (`sapo-vl eval --suite math`)."""
SCORING_KINDS = {"rule": "published rule", "judge": "replaces an LLM judge", "ours": "project verifiers"}
"""Scoring kind -> its short label (in `--list`, summary.json and the suite table). rule: reproduces a
published rule-based scorer; judge: the published harness uses an LLM judge or LLM answer extractor, which
our verifiers replace; ours: no published scorer is reproduced (synthetic data, or free-form answers where
the benchmark reports something else), the training verifiers score."""
EXTRACTION = ("the last <answer>…</answer>, else the last \\boxed{}, else the text after the last "
              "'answer is' / 'Answer:', else the whole reply; <think> blocks are never read "
              "(sapo_vl/verifiers/extract.py)")
"""Answer extraction shared by every verifier, stated once."""


class TaskError(ValueError):
    """An unknown task or suite, or a task file that does not declare a valid task; one line."""


@dataclass(frozen=True)
class Task:
    name: str
    """Equals the task file's name (`eval/<name>.py`)."""
    domain: str
    """One of DOMAINS; the suite the task belongs to."""
    description: str
    """One line for `sapo-vl eval --list`."""
    split: str
    """The dataset split evaluated."""
    scoring: str
    """One of SCORING_KINDS."""
    rule: str
    """What the score is: the published rule reproduced, or the judge replaced and what scores instead."""
    source: str
    """Where the rule or the judge is published (paper and repository file)."""
    recipe: str = ""
    """The recipe in `data_recipes/` that reads the benchmark (required)."""
    dataset: str = ""
    """The dataset as users know it (hub id or URL), for `--list`; defaults to the recipe's SOURCE."""
    options: dict[str, Any] = field(default_factory=dict)
    """Recipe options (`-o key=value` on the command line overrides them)."""
    size: int | None = None
    """Rows in the split as the benchmark publishes them; a run that scores fewer (without `--limit`) says so
    loudly, naming why the others were skipped."""
    data_errors: dict[str, str] = field(default_factory=dict)
    """Record id -> what is wrong with that row in the release itself (an empty gold): rows the published
    harness cannot score either, so they do not count as lost."""
    prompt: str | None = None
    """Prompt override: a template with `{question}` (the record's question, the recipe's instruction
    removed); None keeps the recipe's prompt, the one training uses."""
    verifier: str | None = None
    """Verifier for every record; None keeps each record's own (the recipe picks it per row)."""
    verifier_params: dict[str, Any] = field(default_factory=dict)
    """Parameters merged over the record's own parameters."""
    row_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    """With `verifier=None`: parameters per verifier name, merged over the own parameters of the records that
    verifier scores (e.g. {"math": {"float_rounding": 2}} for a benchmark that compares numbers at 2 decimals)."""
    row_verifiers: tuple[str, ...] = ()
    """With `verifier=None`: the verifiers the recipe assigns per row, for documentation and `--list`."""
    metric: str = "accuracy"
    """The benchmark's headline metric as its paper names it ("relaxed accuracy"); every run reports accuracy,
    pass@k, format compliance and response length."""
    format_style: str | None = "answer"
    """Style of the `format` verifier for the format-compliance rate; None when the prompt asks for a bare
    answer (the rate is then not reported)."""
    max_new_tokens: int = 1024
    """Default generation budget (`--max-new-tokens` overrides it)."""

    def __post_init__(self) -> None:
        if self.domain not in DOMAINS:
            raise TaskError(f"task {self.name!r}: domain {self.domain!r} is not one of {', '.join(DOMAINS)}")
        if self.scoring not in SCORING_KINDS:
            raise TaskError(f"task {self.name!r}: scoring {self.scoring!r} is not one of {', '.join(SCORING_KINDS)}")
        if not self.recipe:
            raise TaskError(f"task {self.name!r}: name the `recipe` in data_recipes/ that reads its data")
        if self.verifier is None and not self.row_verifiers:
            raise TaskError(f"task {self.name!r}: name a `verifier` or list the recipe's `row_verifiers`")
        stray = [name for name in self.row_params if self.verifier is not None or name not in self.row_verifiers]
        if stray:
            raise TaskError(f"task {self.name!r}: row_params names {stray[0]!r}, which is not one of its row_verifiers")
        if self.prompt is not None and "{question}" not in self.prompt:
            raise TaskError(f"task {self.name!r}: the prompt override must contain {{question}}")

    # ------------------------------------------------------------------------------------------- describe
    @property
    def verifier_label(self) -> str:
        """"numeric(tolerance=0.05)" or "per row: choice|math"."""
        if self.verifier is None:
            return "per row: " + "|".join(
                name + (f"({', '.join(f'{k}={v!r}' for k, v in self.row_params[name].items())})"
                        if self.row_params.get(name) else "") for name in self.row_verifiers)
        params = ", ".join(f"{k}={v!r}" for k, v in self.verifier_params.items())
        return f"{self.verifier}({params})" if params else self.verifier

    @property
    def scoring_line(self) -> str:
        """The line every summary prints: whether the score reproduces a published rule or replaces a judge."""
        lead = {"rule": "reproduces the published rule", "judge": "replaces the published LLM judge",
                "ours": "project benchmark, scored by the training verifiers"}[self.scoring]
        return f"{lead}: {self.rule} [{self.source}]"

    def dataset_name(self) -> str:
        return self.dataset or self._recipe().source

    # ------------------------------------------------------------------------------------------------ data
    def _recipe(self):
        from sapo_vl.data.recipe import get_recipe

        return get_recipe(self.recipe)

    def with_options(self, **options: Any) -> "Task":
        """The same task with recipe options overridden (e.g. `path=` for a local copy)."""
        return replace(self, options={**self.options, **options})

    def load(self, *, limit: int | None = None, seed: int = 0, root: str | None = None
             ) -> tuple[list[Record], list[tuple[str, str]]]:
        """(records in source order, [(id, reason)] for the rows that could not be used), at most `limit`
        records. A source that cannot be reached raises the recipe's one-line error (SourceError)."""
        from sapo_vl.data.recipe import Skip

        recipe = self._recipe()
        rows = recipe.records(self.split, seed=seed, limit=None, root=root, **self.options)
        template = recipe.prompt
        records: list[Record] = []
        skipped: list[tuple[str, str]] = []
        for item in rows:
            if isinstance(item, Skip):
                skipped.append((item.id, item.reason))
                continue
            records.append(self._prompted(item, template))
            if limit is not None and len(records) >= limit:
                break
        ids = [r.id for r in records]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise TaskError(f"task {self.name!r}: record id {dup!r} is not unique; results could not be resumed")
        return records, skipped

    def _prompted(self, record: Record, recipe_template: str) -> Record:
        if self.prompt is None:
            return record
        return replace(record, prompt=override_prompt(record.prompt, recipe_template, self.prompt))

    def score_spec(self, record: Record) -> tuple[str, dict[str, Any]]:
        """(verifier name, parameters) that score `record`."""
        if self.verifier is None:
            row = self.row_params.get(record.verifier, {})
            return record.verifier, {**record.verifier_params, **row, **self.verifier_params}
        same = self.verifier == record.verifier
        base = dict(record.verifier_params) if same else {}
        return self.verifier, {**base, **self.verifier_params}


def recipe_tail(template: str) -> str:
    """The constant instruction after a recipe template's last placeholder ("\\nThink step by step, ...")."""
    m = list(re.finditer(r"\{[A-Za-z_]\w*\}", template))
    return template[m[-1].end():] if m else ""


def override_prompt(prompt: list[dict], recipe_template: str, template: str) -> list[dict]:
    """A copy of the chat `prompt` whose last text item is `template` filled with the record's question
    (that text with the recipe's constant instruction tail removed)."""
    messages = [dict(m, content=[dict(c) for c in m["content"]]) if isinstance(m.get("content"), list) else dict(m)
                for m in prompt]
    for m in reversed(messages):
        items = m.get("content") if isinstance(m.get("content"), list) else []
        texts = [c for c in items if c.get("type") == "text"]
        if texts:
            tail = recipe_tail(recipe_template)
            question = texts[-1]["text"]
            if tail.strip() and question.endswith(tail):
                question = question[: -len(tail)]
            texts[-1]["text"] = template.format(question=question.strip())
            return messages
    raise TaskError("the prompt has no text to rewrite")

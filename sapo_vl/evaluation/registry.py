"""`TASKS`: every task file in `eval/`, by name; suites by domain; lookups that suggest the closest name.

A task file is `eval/<name>.py` holding `TASK = Task(name="<name>", ...)`; files starting with `_` are not
tasks. The table is built when this module is imported, by importing each file (they only declare data).
"""
from __future__ import annotations

import importlib
from pathlib import Path

from ..suggest import did_you_mean
from .task import DOMAINS, Task, TaskError

SUITES = (*DOMAINS, "all")


def tasks_dir() -> Path:
    """The folder of shipped task files: `eval/` in the repository, installed as `sapo_vl.eval_tasks`."""
    from .. import eval_tasks

    return Path(eval_tasks.__file__).resolve().parent


def _discover() -> dict[str, Task]:
    found: dict[str, Task] = {}
    for path in sorted(tasks_dir().glob("*.py")):
        if path.stem.startswith("_"):
            continue
        module = importlib.import_module(f"sapo_vl.eval_tasks.{path.stem}")
        task = getattr(module, "TASK", None)
        if not isinstance(task, Task):
            raise TaskError(f"{path}: no `TASK = Task(...)` in the task file")
        if task.name != path.stem:
            raise TaskError(f"{path}: TASK.name {task.name!r} must equal the file name {path.stem!r}")
        found[task.name] = task
    return found


TASKS: dict[str, Task] = _discover()
"""name → Task, from the files in `eval/`."""


def get_task(name: str) -> Task:
    """The task called `name`; TaskError naming the closest task otherwise."""
    if name not in TASKS:
        raise TaskError(f"unknown task {name!r}{did_you_mean(name, TASKS)}; `sapo-vl eval --list` shows them all")
    return TASKS[name]


def suite(name: str) -> list[Task]:
    """The tasks of a suite (a domain, or "all") in name order, or of a comma-separated list of task names."""
    if name in SUITES:
        return [t for _, t in sorted(TASKS.items()) if name == "all" or t.domain == name]
    names = [n.strip() for n in name.split(",") if n.strip()]
    if len(names) == 1 and names[0] not in TASKS:
        raise TaskError(f"unknown suite {name!r}{did_you_mean(name, [*SUITES, *TASKS])}; suites: {', '.join(SUITES)}, "
                        "or a comma-separated list of tasks")
    return [get_task(n) for n in names]

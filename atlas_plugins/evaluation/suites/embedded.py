"""The ``embedded`` suite: the held-out tasks of the embedded task set, on the embedded servers.

Held-out tasks are never used in training (their templates are held-out-only), so this is the
suite that measures what ``atlas train`` / ``atlas demo`` changed. Objective success: every
task-fulfilment criterion of the task's template rubric met — those criteria are programmatic
checks of the answer and of the servers' end state, so no judge model is involved.
"""

from __future__ import annotations

from typing import Any

from atlas_plugins.rewards.rubric import is_success
from atlas_plugins.types import Task, Trajectory

SUITE = "embedded"


def load_tasks(limit: int | None = None, *, max_difficulty: int | None = None, split: str = "heldout") -> list[Task]:
    """Held-out tasks, ordered round-robin over templates so a small ``limit`` still covers
    many servers (the same order every time)."""
    from atlas_plugins.envs.taskgen import load_default_tasks

    tasks = [t for t in load_default_tasks(split) if max_difficulty is None or t.difficulty <= max_difficulty]
    ordered = round_robin(tasks)
    return ordered[:limit] if limit else ordered


def round_robin(tasks: list[Task]) -> list[Task]:
    """Tasks interleaved over their templates (first of each, then second of each, …), so any
    prefix of the list covers as many templates, hence servers, as it can."""
    by_template: dict[str, list[Task]] = {}
    for t in tasks:
        by_template.setdefault(str(t.metadata.get("template", t.id)), []).append(t)
    ordered: list[Task] = []
    while any(by_template.values()):
        for key in list(by_template):
            if by_template[key]:
                ordered.append(by_template[key].pop(0))
    return ordered


def toolspace(seed: int = 0) -> Any:
    """The embedded servers (not started)."""
    from atlas_plugins.toolspace import Toolspace

    return Toolspace.default(seed=seed)


def check(task: Task, trajectory: Trajectory) -> dict[str, Any]:
    """Success = the trajectory's task-fulfilment (TF) score is full. Needs a scored trajectory."""
    if not trajectory.reward_by_category:
        raise ValueError(f"trajectory of {task.id!r} is not scored yet; score it before checking (TF decides success)")
    tf = trajectory.reward_by_category.get("TF")
    return {"success": is_success(trajectory), "details": {"TF": tf}}

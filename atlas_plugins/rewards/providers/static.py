"""The ``static`` provider: the rubric comes with the task.

Looks, in order, at ``task.rubric`` (a dict ``{"criteria": [...]}`` or a list of criteria —
this is also where a dataset column ``rubric`` lands) and ``task.metadata["rubric"]``; a
provider-level ``rubric=`` (dict, Rubric or file path) applies to tasks that carry none.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from atlas_plugins.errors import ConfigError
from atlas_plugins.hookspecs import Register, hookimpl
from atlas_plugins.rewards.base import coerce_task
from atlas_plugins.rewards.rubric import Rubric
from atlas_plugins.types import Task


class StaticProvider:
    name = "static"

    def __init__(self, rubric: Rubric | dict[str, Any] | list[dict[str, Any]] | str | Path | None = None) -> None:
        if isinstance(rubric, (str, Path)):
            rubric = Rubric.from_file(rubric)
        self.default = Rubric.from_dict(rubric, source="static provider rubric") if rubric is not None else None

    def rubric_for(self, task: Task | dict[str, Any] | str) -> Rubric:
        t = coerce_task(task)
        data = t.rubric if t.rubric is not None else t.metadata.get("rubric")
        if data is None:
            if self.default is not None:
                return self.default.model_copy(update={"task_id": t.id})
            raise ConfigError(
                f"task {t.id!r} has no rubric: the 'static' provider needs task.rubric (or a 'rubric' "
                "dataset column); use the 'template' or 'llm' provider to build one"
            )
        rubric = Rubric.from_dict(data, source=f"task {t.id!r} rubric")
        return rubric.model_copy(update={"task_id": rubric.task_id or t.id, "source": rubric.source or "static"})


@hookimpl
def atlas_register_rubric_providers(register: Register) -> None:
    register("static", StaticProvider)

"""One scorer: rubric provider → judge → aggregator, used by every reward path.

The trainer's reward, :func:`atlas_plugins.rubric_reward` (the plain TRL reward function),
held-out evaluation, benchmarks and the warm start's verification all score through
:class:`Scorer`, so a trajectory gets the same reward wherever it is scored:

* ``rubric(task)`` asks the provider once per task and caches the rubric (fixed per task, as the
  paper requires). The cache key is ``rubric_key``: :func:`by_task_id` (evaluation: a task
  padded with extra servers keeps its one rubric) or :func:`by_task_content` (training: two
  different tasks can never share a rubric by sharing an id);
* ``score(traj)`` / ``score_batch(trajs)`` run the judge and the aggregator and write the
  results onto the trajectories (``scores``, ``judge_failures``, ``reward``,
  ``reward_by_category``). A group-aware aggregator scores each task's group together.

:func:`batch_metrics` gives the ``rubric/*`` metrics of a scored batch; :func:`notify` fires the
``atlas_on_trajectory`` hook. Success is :func:`atlas_plugins.rewards.rubric.is_success`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

from atlas_plugins.errors import ConfigError
from atlas_plugins.types import Task, Trajectory

if TYPE_CHECKING:
    from atlas_plugins.rewards.base import (
        GroupAggregator,
        Judge,
        JudgeResult,
        RewardAggregator,
        RewardBreakdown,
        RubricProvider,
    )
    from atlas_plugins.rewards.rubric import Rubric
    from atlas_plugins.toolspace import Toolspace

RubricKey = Callable[[Task], str]


def by_task_id(task: Task) -> str:
    return task.id


def by_task_content(task: Task) -> str:
    return hashlib.sha256(task.model_dump_json().encode()).hexdigest()


def resolve(kind: str, value: Any, options: dict[str, Any] | None) -> Any:
    """A registered plugin by name (created with ``options``), or an instance as given.

    ``Any``: the value is whatever the ``kind`` of plugin is (callers annotate what they keep)."""
    if isinstance(value, str):
        from atlas_plugins.plugins import get_plugin_manager

        return get_plugin_manager().create(kind, value, **(options or {}))
    if options:
        raise ConfigError(f"{kind} options were given, but the {kind[:-1]} is already an instance")
    return value


class Scorer:
    """Rubric provider → judge → aggregator (see the module docs).

    ``provider``, ``judge`` and ``aggregator`` are registered names or instances;
    ``*_options`` go to the named factories; ``toolspace`` is needed by ``state`` checks.
    """

    def __init__(
        self,
        provider: str | RubricProvider = "template",
        judge: str | Judge = "rules",
        aggregator: str | RewardAggregator = "atlas",
        toolspace: Toolspace | None = None,
        *,
        provider_options: dict[str, Any] | None = None,
        judge_options: dict[str, Any] | None = None,
        aggregator_options: dict[str, Any] | None = None,
        rubric_key: RubricKey = by_task_id,
    ) -> None:
        self.provider: RubricProvider = resolve("rubric_providers", provider, provider_options)
        self.judge: Judge = resolve("judges", judge, judge_options)
        self.aggregator: RewardAggregator = resolve("aggregators", aggregator, aggregator_options)
        self.toolspace = toolspace
        self.rubric_key = rubric_key
        self._rubrics: dict[str, Rubric] = {}

    def rubric(self, task: Task) -> Rubric:
        key = self.rubric_key(task)
        if key not in self._rubrics:
            self._rubrics[key] = self.provider.rubric_for(task)
        return self._rubrics[key]

    def score(self, traj: Trajectory, rubric: Rubric | None = None) -> Trajectory:
        """Score one trajectory (its task's rubric unless ``rubric`` is given); returns it."""
        self.score_batch([traj], None if rubric is None else [rubric])
        return traj

    def score_batch(
        self, trajs: Sequence[Trajectory], rubrics: Sequence[Rubric] | None = None
    ) -> list[RewardBreakdown]:
        """Score trajectories (each against ``rubrics[i]``, else its task's rubric)."""
        if rubrics is None:
            rubrics = [self.rubric(Task.model_validate(t.task)) for t in trajs]
        if len(rubrics) != len(trajs):
            raise ValueError(f"{len(rubrics)} rubrics for {len(trajs)} trajectories")
        out: list[RewardBreakdown | None] = [None] * len(trajs)
        results: list[JudgeResult | None] = [None] * len(trajs)
        if getattr(self.aggregator, "group_aware", False):
            aggregator = cast("GroupAggregator", self.aggregator)
            groups: dict[tuple[str, str], list[int]] = {}
            for i, (rubric, traj) in enumerate(zip(rubrics, trajs, strict=True)):
                key = (rubric.content_hash(), json.dumps(traj.task.get("prompt"), default=str))
                groups.setdefault(key, []).append(i)
            for idx in groups.values():
                rubric = rubrics[idx[0]]
                group = self.judge.score_group(rubric, [trajs[i] for i in idx], toolspace=self.toolspace)
                breakdowns = aggregator.aggregate_group(rubric, [r.scores for r in group])
                for i, res, b in zip(idx, group, breakdowns, strict=False):  # as many as the plugins return
                    results[i], out[i] = res, b
        else:
            for i, (rubric, traj) in enumerate(zip(rubrics, trajs, strict=True)):
                result = results[i] = self.judge.score(rubric, traj, toolspace=self.toolspace)
                out[i] = self.aggregator.aggregate(rubric, result.scores)
        for traj, scored, breakdown in zip(trajs, results, out, strict=True):
            assert scored is not None and breakdown is not None  # every index was scored above
            traj.scores = dict(scored.scores)
            for f in scored.failures:
                if f not in traj.judge_failures:
                    traj.judge_failures.append(f)
            traj.reward = None if breakdown.empty else breakdown.value
            traj.reward_by_category = dict(breakdown.by_category)
        return cast("list[RewardBreakdown]", out)


def batch_metrics(trajs: Sequence[Trajectory], breakdowns: Sequence[RewardBreakdown | None]) -> dict[str, float]:
    """The ``rubric/*`` metrics of a scored batch (NaN reward when nothing could be scored)."""
    scored = [b for b in breakdowns if b is not None and not b.empty]
    metrics: dict[str, float] = {
        "reward": sum(b.value for b in scored) / len(scored) if scored else float("nan"),
        "scored_fraction": len(scored) / len(breakdowns) if breakdowns else 0.0,
        "unscored_criteria": sum(len(b.unscored) for b in breakdowns if b is not None) / max(1, len(breakdowns)),
        "judge_failures": float(sum(len(t.judge_failures) for t in trajs)),
    }
    cats: dict[str, list[float]] = {}
    for b in scored:
        for c, v in b.by_category.items():
            cats.setdefault(c, []).append(v)
    for c, vs in cats.items():
        metrics[c] = sum(vs) / len(vs)
    return metrics


def notify(trajs: Sequence[Trajectory]) -> None:
    """Fire ``atlas_on_trajectory`` for each scored trajectory."""
    from atlas_plugins.plugins import get_plugin_manager

    pm = get_plugin_manager()
    for t in trajs:
        pm.on_trajectory(t)


__all__ = ["RubricKey", "Scorer", "batch_metrics", "by_task_content", "by_task_id", "notify", "resolve"]
